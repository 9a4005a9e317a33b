//! A pin's URL, and what of it may leave memory.
//!
//! A password in the user-info part (`https://user:secret@host/...`) or a
//! token in the query string (`...?private_token=secret`) is a credential.
//! Guarantees:
//! - What is shown or stored (messages, logs, the lock, the manifest, the
//!   JSON summary, `source-config`) is [`PinUrl::redacted`]:
//!   `https://user:***@host/...?private_token=***`.
//! - libgit2 gets [`PinUrl::for_fetch`], without user-info; the user and
//!   password reach it only through the credentials callback
//!   ([`PinUrl::credentials`]). A tree's `.git/config` gets
//!   [`PinUrl::for_remote`], with neither user-info nor query.
//! - Two URLs that differ only in their secrets redact to the same text,
//!   so the lock still matches the pin when a password changes.
//! - Paths and scp-like `user@host:path` forms carry no secret (ssh
//!   authenticates by key) and pass through unchanged.

use std::fmt;

/// What replaces a secret.
const HIDDEN: &str = "***";

/// A pin's URL, secrets included; shown only redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PinUrl {
    raw: String,
}

impl PinUrl {
    pub fn new(raw: impl Into<String>) -> PinUrl {
        PinUrl { raw: raw.into() }
    }

    /// The parsed URL, when it has user-info or a query to take apart
    /// (any other URL is used exactly as written: no normalisation).
    fn parsed(&self) -> Option<url::Url> {
        // Only real URLs (`scheme://`) can carry user-info or a query.
        if !self.raw.contains("://") {
            return None;
        }
        let u = url::Url::parse(&self.raw).ok()?;
        let userinfo = !u.username().is_empty() || u.password().is_some();
        (userinfo || u.query().is_some()).then_some(u)
    }

    /// Whether it is a path relative to a directory it does not name
    /// (`../qemu.git`, `qemu.git`): libgit2 would take it from wherever
    /// the build runs, not from the pin file. Not relative: a URL
    /// (`scheme://`), an absolute path, and git's scp-like
    /// `[user@]host:path` (a `:` before any `/`, git's own rule).
    pub fn is_relative_path(&self) -> bool {
        let raw = &self.raw;
        if raw.contains("://") || raw.starts_with('/') {
            return false;
        }
        match raw.find(':') {
            Some(colon) => raw[..colon].contains('/'),
            None => true,
        }
    }

    /// Whether it carries a password or a query value.
    pub fn has_secret(&self) -> bool {
        self.parsed()
            .is_some_and(|u| u.password().is_some() || u.query().is_some_and(|q| !q.is_empty()))
    }

    /// The URL with its password and query values replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some(mut u) = self.parsed() else {
            return self.raw.clone();
        };
        if u.password().is_some() {
            let _ = u.set_password(Some(HIDDEN));
        }
        if u.query().is_some() {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let hidden = if v.is_empty() {
                        String::new()
                    } else {
                        HIDDEN.into()
                    };
                    (k.into_owned(), hidden)
                })
                .collect();
            let query = pairs
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect::<Vec<_>>()
                .join("&");
            u.set_query(Some(&query));
        }
        // `***` is kept as typed rather than percent-encoded.
        u.to_string().replace("%2A%2A%2A", HIDDEN)
    }

    /// What libgit2 fetches from: no user-info (the callback gives it).
    pub fn for_fetch(&self) -> String {
        match self.parsed() {
            Some(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }
            None => self.raw.clone(),
        }
    }

    /// What a tree's remote `current` records: no user-info, no query.
    pub fn for_remote(&self) -> String {
        match self.parsed() {
            Some(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_query(None);
                u.to_string()
            }
            None => self.raw.clone(),
        }
    }

    /// The user-info's user and password, for the credentials callback.
    pub fn credentials(&self) -> Option<(String, Option<String>)> {
        let u = self.parsed()?;
        if u.username().is_empty() {
            return None;
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| s.to_string())
        };
        Some((decode(u.username()), u.password().map(decode)))
    }

    /// `text` with every form of this URL's secrets replaced (for messages
    /// that come back from libgit2).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.raw, &self.redacted());
        if let Some(u) = self.parsed() {
            out = out.replace(&self.for_fetch(), &self.redacted());
            if let Some(p) = u.password().filter(|p| !p.is_empty()) {
                out = out.replace(p, HIDDEN);
            }
            for (_, v) in u.query_pairs() {
                if !v.is_empty() {
                    out = out.replace(v.as_ref(), HIDDEN);
                }
            }
        }
        out
    }
}

impl fmt::Display for PinUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for PinUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinUrl({})", self.redacted())
    }
}

impl serde::Serialize for PinUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let u =
            PinUrl::new("https://alice:s3cr%40t@git.example.com/qemu.git?private_token=tok123&x");
        assert!(u.has_secret());
        assert_eq!(
            u.redacted(),
            "https://alice:***@git.example.com/qemu.git?private_token=***&x"
        );
        assert_eq!(
            u.for_fetch(),
            "https://git.example.com/qemu.git?private_token=tok123&x"
        );
        assert_eq!(u.for_remote(), "https://git.example.com/qemu.git");
        assert_eq!(
            u.credentials(),
            Some(("alice".to_string(), Some("s3cr@t".to_string())))
        );
        assert!(!format!("{u} {u:?}").contains("s3cr"));
        let scrubbed = u.scrub(
            "cannot reach https://git.example.com/qemu.git?private_token=tok123&x (s3cr%40t)",
        );
        assert!(
            !scrubbed.contains("tok123") && !scrubbed.contains("s3cr"),
            "{scrubbed}"
        );
    }

    #[test]
    fn a_changed_password_redacts_the_same() {
        let a = PinUrl::new("git://u:one@127.0.0.1:9418/qemu.git");
        let b = PinUrl::new("git://u:two@127.0.0.1:9418/qemu.git");
        assert_eq!(a.redacted(), b.redacted());
        assert_eq!(a.for_fetch(), "git://127.0.0.1:9418/qemu.git");
    }

    #[test]
    fn urls_without_secrets_pass_through() {
        for raw in [
            "https://github.com/AMDESE/linux.git",
            "git@github.com:AMDESE/linux.git",
            "/srv/git/linux.git",
            "file:///srv/git/linux.git",
        ] {
            let u = PinUrl::new(raw);
            assert!(!u.has_secret(), "{raw}");
            assert_eq!(u.redacted(), raw);
            assert_eq!(u.for_fetch(), raw);
            assert_eq!(u.for_remote(), raw);
        }
    }

    #[test]
    fn relative_paths_are_told_from_urls() {
        for raw in ["../qemu.git", "qemu.git", "./a:b", "~/qemu.git", "sub/dir"] {
            assert!(PinUrl::new(raw).is_relative_path(), "{raw}");
        }
        for raw in [
            "/srv/git/qemu.git",
            "file:///srv/git/qemu.git",
            "https://gitlab.com/qemu-project/qemu.git",
            "ssh://git@host/qemu.git",
            "git://127.0.0.1:9418/qemu.git",
            "git@github.com:AMDESE/qemu.git",
            "host:qemu.git",
        ] {
            assert!(!PinUrl::new(raw).is_relative_path(), "{raw}");
        }
    }
}
