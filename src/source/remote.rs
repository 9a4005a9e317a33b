//! Talking to upstream: list a remote's refs and fetch exactly what a pin
//! needs into a source store, with credentials, proxy and progress.

use std::cell::Cell;

use git2::{
    AutotagOption, Cred, CredentialType, Direction, FetchOptions, Oid, ProxyOptions,
    RemoteCallbacks, Repository,
};

use crate::config::PinUrl;
use crate::progress::Progress;

/// What one fetch transferred (from git2's transfer stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Transfer {
    pub objects: usize,
    pub bytes: usize,
}

impl std::ops::AddAssign for Transfer {
    fn add_assign(&mut self, other: Transfer) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// libgit2's local transport (paths and `file://`) cannot fetch shallow;
/// every other transport (git://, http(s), ssh) can.
pub fn is_local(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    if url.contains("://") {
        return false;
    }
    // scp-like `host:path` is ssh; a path has no colon before its first slash.
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
        _ => true,
    }
}

/// What to do when a fetch failed because a local upstream belongs to
/// another user: git's own rule (safe.directory), which libgit2 reads from
/// the same config. Its local transport reports this as a generic config
/// error, so the message tells.
pub fn ownership_help(e: &git2::Error) -> Option<&'static str> {
    (e.code() == git2::ErrorCode::Owner || e.message().contains("not owned by current user")).then_some(
        "the repository belongs to another user; if you trust it, run `git config --global --add safe.directory <its path>` (or fetch it over git:// or https)",
    )
}

/// A remote ref as advertised by upstream.
#[derive(Debug, Clone)]
pub struct RemoteRef {
    pub name: String,
    pub oid: Oid,
}

/// Callbacks shared by list and fetch: the pin URL's own user and password
/// (kept out of the URL libgit2 sees), else ssh-agent or git's credential
/// helpers; and transfer progress.
fn callbacks<'a>(
    repo: &'a Repository,
    pin: Option<&'a PinUrl>,
    progress: &'a Progress,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let attempts = Cell::new(0u32);
    let own = pin.and_then(PinUrl::credentials);
    cb.credentials(move |url, username, allowed| {
        // libgit2 calls again after a rejected credential: stop instead of
        // looping forever.
        attempts.set(attempts.get() + 1);
        if attempts.get() > 3 {
            return Err(git2::Error::from_str(
                "authentication failed (tried the URL's credentials, ssh-agent and git's credential helpers)",
            ));
        }
        let user = own.as_ref().map(|(u, _)| u.as_str()).or(username);
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && attempts.get() == 1
            && let Some((u, Some(p))) = &own
        {
            return Cred::userpass_plaintext(u, p);
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(user.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let config = repo.config()?;
            return Cred::credential_helper(&config, url, user);
        }
        Cred::default()
    });
    // Counted as a transfer for as long as libgit2 holds these callbacks
    // (the fetch, or the connection of a listing).
    let transfer = crate::exec::Transfer::start();
    cb.transfer_progress(move |stats| {
        let _ = &transfer;
        progress.transfer(
            stats.received_objects(),
            stats.total_objects(),
            stats.received_bytes(),
        );
        // Returning false aborts the transfer: Ctrl-C stops a fetch too.
        !crate::exec::interrupted()
    });
    cb
}

fn proxy() -> ProxyOptions<'static> {
    let mut p = ProxyOptions::new();
    p.auto();
    p
}

/// The refs `url` advertises (`git ls-remote`), without fetching objects.
pub fn list(
    repo: &Repository,
    url: &PinUrl,
    progress: &Progress,
) -> Result<Vec<RemoteRef>, git2::Error> {
    let mut remote = repo.remote_anonymous(&url.for_fetch())?;
    let conn = remote.connect_auth(
        Direction::Fetch,
        Some(callbacks(repo, Some(url), progress)),
        Some(proxy()),
    )?;
    let refs = conn
        .list()?
        .iter()
        .map(|h| RemoteRef {
            name: h.name().to_string(),
            oid: h.oid(),
        })
        .collect();
    Ok(refs)
}

/// Fetches `refspecs` from `url` into `repo`; `depth` only where the
/// transport supports it.
pub fn fetch(
    repo: &Repository,
    url: &PinUrl,
    refspecs: &[String],
    depth: Option<i32>,
    progress: &Progress,
) -> Result<Transfer, git2::Error> {
    let fetch_url = url.for_fetch();
    let mut remote = repo.remote_anonymous(&fetch_url)?;
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(repo, Some(url), progress));
    opts.proxy_options(proxy());
    opts.download_tags(AutotagOption::None);
    // FETCH_HEAD would record the URL (a query token with it).
    opts.update_fetchhead(false);
    if let Some(d) = depth.filter(|_| !is_local(&fetch_url)) {
        opts.depth(d);
    }
    remote.fetch(refspecs, Some(&mut opts), None)?;
    let stats = remote.stats();
    Ok(Transfer {
        objects: stats.received_objects(),
        bytes: stats.received_bytes(),
    })
}

/// Fetch options for submodule updates (same credentials and progress).
pub fn submodule_fetch_options<'a>(
    repo: &'a Repository,
    progress: &'a Progress,
) -> FetchOptions<'a> {
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(repo, None, progress));
    opts.proxy_options(proxy());
    opts
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn local_urls() {
        assert!(is_local("file:///srv/linux.git"));
        assert!(is_local("/srv/linux.git"));
        assert!(is_local("../linux"));
        assert!(!is_local("https://github.com/AMDESE/linux.git"));
        assert!(!is_local("git://127.0.0.1:9418/linux.git"));
        assert!(!is_local("git@github.com:AMDESE/linux.git"));
    }
}
