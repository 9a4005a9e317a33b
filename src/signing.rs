//! Release signatures: minisign keys, signing `SHA256SUMS`, and checking a
//! signature against trusted public keys (the `minisign` crate, so Debian's
//! `minisign -V` reads what we write).
//!
//! Guarantees:
//! - A secret key's password comes from `SNP_BUILD_SIGNING_PASSWORD` or a
//!   prompt on a terminal, never from the command line; neither the key
//!   nor the password is ever printed or written anywhere but the key file
//!   `keygen` creates (mode 0600).
//! - The trusted comment is fixed by what is signed (release name,
//!   `SOURCE_DATE_EPOCH` and the manifest's SHA-256), never the signing
//!   time, so it says the same on every rebuild. (The signature itself
//!   differs each time: minisign adds random noise.) It binds the
//!   signature to its release: `commands/verify.rs` refuses the files under
//!   another name or with another manifest.
//! - Keys are machine policy: nothing here reaches a fingerprint, the
//!   manifest or `source-config`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use crate::error::UsageError;

/// The signature file beside `SHA256SUMS`: the one file of a release that
/// `SHA256SUMS` does not list.
pub const SIGNATURE_FILE: &str = "SHA256SUMS.minisig";
/// Where the secret key's password may come from.
pub const PASSWORD_ENV: &str = "SNP_BUILD_SIGNING_PASSWORD";
/// Where the signing key may come from (after `--sign`).
pub const KEY_ENV: &str = "SNP_BUILD_SIGNING_KEY";

/// `snp-build keygen -o PATH`: the secret key at PATH (0600), the public
/// key at PATH.pub. An existing file is never overwritten.
pub fn keygen(path: &Path, no_password: bool) -> anyhow::Result<PathBuf> {
    let public = pub_path(path);
    for p in [path, public.as_path()] {
        if p.exists() {
            return Err(UsageError::new(format!("{} already exists", p.display()))
                .help("choose another -o PATH, or move the old key away first")
                .into());
        }
    }
    let pair = if no_password {
        KeyPair::generate_unencrypted_keypair()
    } else {
        let password = new_password()?;
        KeyPair::generate_encrypted_keypair(Some(password))
    }
    .map_err(|e| anyhow::anyhow!("generating a minisign key pair: {e}"))?;
    let secret = pair
        .sk
        .to_box(Some("snp-build secret key"))
        .map_err(|e| anyhow::anyhow!("encoding the secret key: {e}"))?;
    let public_box = pair
        .pk
        .to_box()
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
    write_new(path, &secret.to_bytes(), 0o600)?;
    write_new(&public, &public_box.to_bytes(), 0o644)?;
    Ok(public)
}

/// `PATH.pub`.
pub fn pub_path(secret: &Path) -> PathBuf {
    let mut p = secret.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The password for a new key: the environment, else asked twice on a
/// terminal.
fn new_password() -> anyhow::Result<String> {
    if let Some(p) = env_password() {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal("a new key's password").into());
    }
    let first = rpassword::prompt_password("Password for the new key: ")?;
    let again = rpassword::prompt_password("Password (again): ")?;
    if first != again {
        anyhow::bail!("the passwords differ; no key was written");
    }
    if first.is_empty() {
        return Err(UsageError::new("an empty password")
            .help("give a password, or use --no-password for an unencrypted key")
            .into());
    }
    Ok(first)
}

/// The password taken out of the environment by [`take_password_from_env`].
static ENV_PASSWORD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Moves `SNP_BUILD_SIGNING_PASSWORD` out of the process environment into
/// memory, so no child (a one-off `git`, `gcc --version`, a configure
/// script) inherits it. Call once at start, before any thread exists.
pub fn take_password_from_env() {
    let value = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
    if std::env::var_os(PASSWORD_ENV).is_some() {
        // SAFETY: called first thing in `main`, while the process has one
        // thread, so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(PASSWORD_ENV) };
    }
    let _ = ENV_PASSWORD.set(value);
}

fn env_password() -> Option<String> {
    match ENV_PASSWORD.get() {
        Some(taken) => taken.clone(),
        None => std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()),
    }
}

fn no_terminal(what: &str) -> UsageError {
    UsageError::new(format!(
        "{what} is needed and there is no terminal to ask on"
    ))
    .help(format!(
        "set {PASSWORD_ENV} (a CI secret), or make the key with `snp-build keygen --no-password`"
    ))
}

/// A secret key, decrypted, with its public key: loaded before the build,
/// so a wrong password stops nothing late.
pub struct Signer {
    secret: SecretKey,
    public: PublicKey,
    path: PathBuf,
}

impl std::fmt::Debug for Signer {
    /// Never the key: only where it came from and its id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signer({}, key id {})",
            self.path.display(),
            self.key_id()
        )
    }
}

impl Signer {
    /// Reads the secret key at `path` (asking for its password when it is
    /// encrypted).
    pub fn load(path: &Path) -> anyhow::Result<Signer> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read the signing key {}: {e}",
                path.display()
            ))
            .help("make one with `snp-build keygen -o PATH` and pass --sign PATH")
        })?;
        let sk_box = SecretKeyBox::from_string(&text).map_err(|e| bad_key(path, e))?;
        let secret = match SecretKey::from_unencrypted_box(sk_box.clone()) {
            Ok(sk) => sk,
            Err(_) => {
                let password = match env_password() {
                    Some(p) => p,
                    None if std::io::stdin().is_terminal() => {
                        rpassword::prompt_password(format!("Password for {}: ", path.display()))?
                    }
                    None => {
                        return Err(no_terminal(&format!(
                            "the password of the encrypted key {}",
                            path.display()
                        ))
                        .into());
                    }
                };
                SecretKey::from_box(sk_box, Some(password)).map_err(|e| {
                    UsageError::new(format!(
                        "cannot open the signing key {}: {e}",
                        path.display()
                    ))
                    .help(format!("check {PASSWORD_ENV}, or the password you typed"))
                })?
            }
        };
        let public = PublicKey::from_secret_key(&secret).map_err(|e| bad_key(path, e))?;
        Ok(Signer {
            secret,
            public,
            path: path.to_path_buf(),
        })
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public)
    }

    /// The signature of `data`, as the text of a `.minisig` file.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> anyhow::Result<String> {
        let sig = minisign::sign(
            Some(&self.public),
            &self.secret,
            std::io::Cursor::new(data),
            Some(trusted_comment),
            Some("signature from snp-build"),
        )
        .map_err(|e| anyhow::anyhow!("signing with {}: {e}", self.path.display()))?;
        Ok(sig.into_string())
    }
}

fn bad_key(path: &Path, e: minisign::PError) -> anyhow::Error {
    UsageError::new(format!(
        "{} is not a minisign secret key: {e}",
        path.display()
    ))
    .help("make one with `snp-build keygen -o PATH`")
    .into()
}

/// The trusted comment of a release's signature: what the release is,
/// signed with it (a signature over `SHA256SUMS` alone would vouch for
/// the same files under any name). Words `key:value`, space-separated, as
/// `minisign -V` prints it on one line.
pub fn trusted_comment(release: &str, source_date_epoch: u64, manifest_sha256: &str) -> String {
    format!(
        "release:{release} source_date_epoch:{source_date_epoch} manifest_sha256:{manifest_sha256}"
    )
}

/// What a trusted comment says the release is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAs {
    /// `release:` (always there: a comment without it is refused).
    pub release: String,
    /// `manifest_sha256:`; absent in releases signed before snp-build put
    /// it there (their `manifest.json` is still covered: `SHA256SUMS`
    /// lists it).
    pub manifest_sha256: Option<String>,
}

impl SignedAs {
    /// Reads a trusted comment; why not, when it names no release or a key
    /// twice (which of two values counts would be a guess). Unknown words
    /// are left for later versions.
    pub fn parse(comment: &str) -> Result<SignedAs, String> {
        let mut fields = std::collections::BTreeMap::new();
        for word in comment.split_whitespace() {
            if let Some((key, value)) = word.split_once(':')
                && !key.is_empty()
                && fields.insert(key, value).is_some()
            {
                return Err(format!("its trusted comment gives {key}: twice"));
            }
        }
        let release = fields
            .get("release")
            .filter(|r| !r.is_empty())
            .ok_or("its trusted comment names no release (release:NAME)")?;
        Ok(SignedAs {
            release: release.to_string(),
            manifest_sha256: fields
                .get("manifest_sha256")
                .map(|h| h.to_ascii_lowercase()),
        })
    }
}

/// A public key someone trusts, with where it came from.
#[derive(Clone)]
pub struct TrustedKey {
    pub key: PublicKey,
    pub path: PathBuf,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (key id {})", self.path.display(), key_id(&self.key))
    }
}

impl TrustedKey {
    /// Reads a `.pub` file (minisign's two-line box, or the bare base64
    /// line).
    pub fn load(path: &Path) -> anyhow::Result<TrustedKey> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read the trusted key {}: {e}",
                path.display()
            ))
            .help("give the .pub file `snp-build keygen` wrote beside the secret key")
        })?;
        let key = if text.trim_start().starts_with("untrusted comment:") {
            PublicKeyBox::from_string(&text).and_then(PublicKeyBox::into_public_key)
        } else {
            PublicKey::from_base64(text.trim())
        }
        .map_err(|e| {
            UsageError::new(format!(
                "{} is not a minisign public key: {e}",
                path.display()
            ))
            .help("give the .pub file `snp-build keygen` wrote beside the secret key")
        })?;
        Ok(TrustedKey {
            key,
            path: path.to_path_buf(),
        })
    }

    /// Every `*.pub` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<TrustedKey>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pub") && p.is_file())
            .collect();
        paths.sort();
        paths.iter().map(|p| TrustedKey::load(p)).collect()
    }
}

/// minisign's key id: 16 hex digits, as `minisign -V` prints it.
pub fn key_id(key: &PublicKey) -> String {
    key.keynum()
        .iter()
        .rev()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// What checking a signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Good, by this trusted key (its file); the trusted comment.
    Trusted { key: PathBuf, comment: String },
    /// No signature file.
    Unsigned,
    /// Signed by a key none of the trusted ones is (its id).
    UnknownKey { key_id: String },
    /// The signature does not match the data (or is not a signature).
    Invalid { why: String },
    /// Good, by this trusted key, but for another release than the files
    /// are found as: `signed` the release its trusted comment names (or
    /// the comment, when it names none), `why` what disagrees.
    OtherRelease {
        key: PathBuf,
        signed: String,
        why: String,
    },
}

impl std::fmt::Display for SignatureCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureCheck::Trusted { key, comment } => {
                write!(f, "signed by {} ({comment})", key.display())
            }
            SignatureCheck::Unsigned => write!(f, "unsigned: there is no {SIGNATURE_FILE}"),
            SignatureCheck::UnknownKey { key_id } => {
                write!(f, "signed by key {key_id}, which is not a trusted key")
            }
            SignatureCheck::Invalid { why } => {
                write!(f, "{SIGNATURE_FILE} does not match SHA256SUMS: {why}")
            }
            SignatureCheck::OtherRelease { key, signed, why } => {
                write!(f, "signed by {} for {signed}, but {why}", key.display())
            }
        }
    }
}

/// Checks `signature` (a `.minisig` text, if any) over `data` against the
/// trusted keys.
pub fn check(data: &[u8], signature: Option<&str>, trusted: &[TrustedKey]) -> SignatureCheck {
    let Some(text) = signature else {
        return SignatureCheck::Unsigned;
    };
    let sig = match SignatureBox::from_string(text) {
        Ok(s) => s,
        Err(e) => {
            return SignatureCheck::Invalid {
                why: format!("not a minisign signature ({e})"),
            };
        }
    };
    let signer_id: String = sig
        .keynum()
        .iter()
        .rev()
        .map(|b| format!("{b:02X}"))
        .collect();
    let Some(key) = trusted.iter().find(|k| k.key.keynum() == sig.keynum()) else {
        return SignatureCheck::UnknownKey { key_id: signer_id };
    };
    match minisign::verify(
        &key.key,
        &sig,
        std::io::Cursor::new(data),
        true,
        false,
        false,
    ) {
        Ok(()) => SignatureCheck::Trusted {
            key: key.path.clone(),
            comment: sig.trusted_comment().unwrap_or_default(),
        },
        Err(e) => SignatureCheck::Invalid { why: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_check_and_each_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        let public = keygen(&key, true).unwrap();
        assert!(keygen(&key, true).is_err(), "never overwrites");
        let signer = Signer::load(&key).unwrap();
        let trusted = vec![TrustedKey::load(&public).unwrap()];
        let sig = signer
            .sign(b"data", &trusted_comment("r", 7, "ab"))
            .unwrap();
        assert_eq!(
            check(b"data", Some(&sig), &trusted),
            SignatureCheck::Trusted {
                key: public.clone(),
                comment: "release:r source_date_epoch:7 manifest_sha256:ab".into()
            }
        );
        assert!(matches!(
            check(b"datA", Some(&sig), &trusted),
            SignatureCheck::Invalid { .. }
        ));
        assert_eq!(check(b"data", None, &trusted), SignatureCheck::Unsigned);
        let other = dir.path().join("other.key");
        let other_pub = keygen(&other, true).unwrap();
        let others = vec![TrustedKey::load(&other_pub).unwrap()];
        assert!(matches!(
            check(b"data", Some(&sig), &others),
            SignatureCheck::UnknownKey { .. }
        ));
        assert!(!format!("{signer:?}").contains(&std::fs::read_to_string(&key).unwrap()));
    }

    #[test]
    fn a_trusted_comment_says_which_release_it_signs() {
        let said = SignedAs::parse(&trusted_comment("snp-release-2026-11-29", 7, "AB12")).unwrap();
        assert_eq!(
            said,
            SignedAs {
                release: "snp-release-2026-11-29".into(),
                manifest_sha256: Some("ab12".into())
            }
        );
        // Signed before the manifest's digest was part of it.
        let older = SignedAs::parse("release:snp-release-2024-05-01 source_date_epoch:7").unwrap();
        assert_eq!(older.manifest_sha256, None);
        // Words a later version adds are left alone.
        assert!(SignedAs::parse("release:r later:x").is_ok());
        for bad in [
            "source_date_epoch:7",
            "release: x",
            "release:a release:b",
            "",
        ] {
            assert!(SignedAs::parse(bad).is_err(), "{bad:?}");
        }
    }
}
