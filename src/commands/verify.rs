//! Checking a release before trusting it: `snp-build verify`, and the first
//! step of `snp-build install`.
//!
//! Guarantees:
//! - **Checksums**: every file `SHA256SUMS` lists is present, a regular
//!   file, with its hash; every file present is listed, but for
//!   `SHA256SUMS` itself and `SHA256SUMS.minisig` (the signature cannot
//!   list itself). A bad line, `..`, an absolute path or a duplicate in
//!   `SHA256SUMS` is a problem, as is a symlink anywhere.
//! - **Signature**: with trusted keys, the release must carry a
//!   `SHA256SUMS.minisig` made by one of them over this `SHA256SUMS`;
//!   unsigned, another key's, or not matching is refused. Without trusted
//!   keys a signature is reported, not judged.
//! - **The release the signature names**: a trusted signature's comment
//!   (`release:NAME ... manifest_sha256:HEX`) must name the release the
//!   files are found as: the directory's name, or the tarball's file name
//!   (`NAME.tar.gz`) and its top directory, and `manifest.json`'s
//!   `release` and SHA-256. Renamed, an old release cannot pass for a new
//!   one.
//! - **SBOM and provenance**: when present, the SBOM's file components and
//!   the provenance's subjects carry exactly the digests `SHA256SUMS`
//!   lists (every file but `SHA256SUMS`, the SBOM, the provenance and the
//!   signature).
//! - A tarball is read as a stream, never unpacked: an entry that is
//!   absolute, holds `..`, or is anything but a file or directory is
//!   refused ([`TarballRefused`], a verification failure like the others).
//! - Never changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::release::manifest::Manifest;
use crate::release::provenance::Statement;
use crate::signing::{self, SignatureCheck, TrustedKey};

pub const SUMS: &str = "SHA256SUMS";
pub const SBOM: &str = "sbom.cdx.json";
pub const PROVENANCE: &str = "provenance.json";
pub const MANIFEST: &str = "manifest.json";

/// The files kept in memory while reading a release (all small).
const DOCUMENTS: [&str; 5] = [SUMS, signing::SIGNATURE_FILE, SBOM, PROVENANCE, MANIFEST];

// ---------------------------------------------------------------------------
// Errors.

/// The release does not match its `SHA256SUMS`; nothing was changed.
#[derive(Debug)]
pub struct ChecksumMismatch {
    /// The release directory, or the tarball it came from.
    pub release: PathBuf,
    pub problems: Vec<Problem>,
}

/// One file that fails verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    pub path: String,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Listed, present, different content.
    Modified,
    /// Listed, not present (or not a regular file).
    Missing,
    /// Present, not listed.
    NotListed,
    /// A line of `SHA256SUMS` that is not `<sha256>  <relative path>`.
    BadLine,
}

impl ProblemKind {
    fn label(self) -> &'static str {
        match self {
            ProblemKind::Modified => "modified",
            ProblemKind::Missing => "missing",
            ProblemKind::NotListed => "not listed in SHA256SUMS",
            ProblemKind::BadLine => "bad SHA256SUMS line",
        }
    }
}

impl fmt::Display for ChecksumMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} does not match its SHA256SUMS ({} problem(s)); nothing was changed:",
            self.release.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "    {}: {}", p.kind.label(), p.path)?;
        }
        write!(
            f,
            "  help: the release was changed or damaged after it was made: copy it again, or make it again with `snp-build --package`"
        )
    }
}

impl std::error::Error for ChecksumMismatch {}

/// The signature does not come from a trusted key, or is for another
/// release; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: {check}; nothing was changed\n  trusted keys: {}\n  help: {}",
    release.display(),
    keys.iter().map(|k| k.display().to_string()).collect::<Vec<_>>().join(", "),
    signature_help(check)
)]
pub struct SignatureRefused {
    pub release: PathBuf,
    pub check: SignatureCheck,
    pub keys: Vec<PathBuf>,
}

/// What to do about a refused signature.
fn signature_help(check: &SignatureCheck) -> String {
    match check {
        SignatureCheck::OtherRelease { signed, .. } => format!(
            "these files are not {signed} as it was signed (renamed, or the manifest replaced since): if they are {signed}, install them under that name ({signed}/ or {signed}{}); otherwise get the release you want again from its builder",
            crate::release_name::TARBALL_SUFFIX
        ),
        _ => "install only releases signed by a key you trust; a release made elsewhere needs its builder's .pub (`--trusted-key PUB`)".into(),
    }
}

/// The SBOM or the provenance disagrees with `SHA256SUMS`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: {document} {problem}\n  help: the release was changed after it was made: make it again with `snp-build --package`",
    release.display()
)]
pub struct DocumentMismatch {
    pub release: PathBuf,
    pub document: &'static str,
    pub problem: String,
}

/// A release tarball holds what no release does: a path with `..`, an
/// absolute path, a link or special file, a mode or owner snp-build never
/// writes, a path twice, not one top directory, or data after the
/// archive's end. A verification failure like a bad checksum (exit 8).
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing {}: {problem}; nothing was changed\n  help: a release tarball is one snp-release-<date>/ directory of plain files, as `snp-build --package` writes it: get or make the release again",
    tarball.display()
)]
pub struct TarballRefused {
    pub tarball: PathBuf,
    pub problem: String,
}

impl TarballRefused {
    fn new(tarball: &Path, problem: impl fmt::Display) -> TarballRefused {
        TarballRefused {
            tarball: tarball.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// A release's files, from a directory or a tarball.

/// One file of a release.
#[derive(Debug, Clone)]
struct Item {
    /// A regular file (a symlink or other special file is not).
    regular: bool,
    sha256: String,
}

/// What a release holds: every file's hash, and the small documents.
#[derive(Debug, Default)]
pub struct Contents {
    items: BTreeMap<String, Item>,
    documents: BTreeMap<&'static str, Vec<u8>>,
    /// A tarball's one top directory.
    top: Option<String>,
}

impl Contents {
    /// Every entry under `dir` that is not a directory (relative, `/`).
    pub fn from_dir(dir: &Path) -> anyhow::Result<Contents> {
        let mut out = Contents::default();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            if entry.file_type().is_dir() {
                continue;
            }
            let rel = utf8(entry.path().strip_prefix(dir)?)?;
            let regular = entry.file_type().is_file();
            let mut sha256 = String::new();
            if regular {
                let file = std::fs::File::open(entry.path())
                    .with_context(|| format!("reading {}", entry.path().display()))?;
                sha256 = out.take(&rel, file)?;
            }
            out.items.insert(rel, Item { regular, sha256 });
        }
        Ok(out)
    }

    /// The files of a release tarball (its one top directory stripped),
    /// read as a stream. Judged as `tar -xzf` would unpack it: every gzip
    /// member is read, nothing may follow the archive's end, and no path
    /// may appear twice.
    pub fn from_tarball(tarball: &Path) -> anyhow::Result<Contents> {
        let mut archive = open_tarball(tarball)?;
        let mut out = Contents::default();
        let mut tops = BTreeSet::new();
        for entry in archive
            .entries()
            .with_context(|| format!("reading {}", tarball.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", tarball.display()))?;
            let kind = entry.header().entry_type();
            if kind == tar::EntryType::XGlobalHeader {
                continue;
            }
            let path = entry.path()?.into_owned();
            check_entry(tarball, &path, entry.header())?;
            let mut parts = path.components().filter(|c| *c != Component::CurDir);
            if let Some(Component::Normal(top)) = parts.next() {
                tops.insert(top.to_os_string());
            }
            let rel: PathBuf = parts.collect();
            if kind.is_dir() || rel.as_os_str().is_empty() {
                continue;
            }
            let rel = utf8(&rel)?;
            if out.items.contains_key(&rel) {
                return Err(TarballRefused::new(
                    tarball,
                    format!("{rel} appears twice (which copy a tool unpacks differs)"),
                )
                .into());
            }
            let sha256 = out.take(&rel, entry)?;
            out.items.insert(
                rel,
                Item {
                    regular: true,
                    sha256,
                },
            );
        }
        check_end(tarball, archive.into_inner())?;
        out.top = Some(one_top(tarball, tops)?.to_string_lossy().into_owned());
        Ok(out)
    }

    /// Hashes `reader`, keeping the bytes of a document.
    fn take(&mut self, rel: &str, mut reader: impl Read) -> anyhow::Result<String> {
        let mut hasher = Sha256::new();
        let keep = DOCUMENTS.iter().find(|d| **d == rel);
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .with_context(|| format!("reading {rel}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if keep.is_some() {
                if kept.len() + n > DOCUMENT_LIMIT {
                    bail!("{rel} is larger than {} MiB", DOCUMENT_LIMIT >> 20);
                }
                kept.extend_from_slice(&buf[..n]);
            }
        }
        if let Some(d) = keep {
            self.documents.insert(d, kept);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    fn document(&self, name: &str) -> Option<&[u8]> {
        self.documents.get(name).map(Vec::as_slice)
    }

    /// A tarball's top directory (`None` for a directory).
    pub fn top(&self) -> Option<&str> {
        self.top.as_deref()
    }
}

/// A release's documents are small; a bigger one is refused before it fills
/// memory.
const DOCUMENT_LIMIT: usize = 16 << 20;

/// A release path as text: a name that is not UTF-8 is refused (two such
/// names could become one key).
fn utf8(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(String::from)
        .with_context(|| format!("{} is not a UTF-8 name", path.display()))
}

/// A release tarball as `tar -xzf` reads it: all its gzip members.
pub fn open_tarball(
    tarball: &Path,
) -> anyhow::Result<tar::Archive<flate2::read::MultiGzDecoder<std::io::BufReader<std::fs::File>>>> {
    let file =
        std::fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    Ok(tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::io::BufReader::new(file),
    )))
}

/// After the archive's last entry only zero blocks may follow: anything
/// else is a second archive some tool would unpack.
pub fn check_end(tarball: &Path, mut rest: impl Read) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = rest
            .read(&mut buf)
            .with_context(|| format!("reading {} past the archive's end", tarball.display()))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(
                TarballRefused::new(tarball, "data follows the end of the tar archive").into(),
            );
        }
    }
}

/// The tarball's one top directory (`snp-release-<date>/`), from the top
/// directories its entries were found under.
pub fn one_top(
    tarball: &Path,
    tops: BTreeSet<std::ffi::OsString>,
) -> Result<std::ffi::OsString, TarballRefused> {
    let n = tops.len();
    let mut tops = tops.into_iter();
    match (tops.next(), n) {
        (Some(top), 1) => Ok(top),
        _ => Err(TarballRefused::new(
            tarball,
            format!("expected one top-level directory (snp-release-<date>/), found {n}"),
        )),
    }
}

/// A tarball entry must be a file or directory at a relative path without
/// `..`, owned by root, with the modes snp-build writes (0644 or 0755 for
/// files, 0755 for directories): a setuid bit or a world-writable file is
/// not covered by `SHA256SUMS`, so it is refused.
pub fn check_entry(
    tarball: &Path,
    path: &Path,
    header: &tar::Header,
) -> Result<(), TarballRefused> {
    entry_problem(path, header).map_err(|e| TarballRefused::new(tarball, format!("{e:#}")))
}

fn entry_problem(path: &Path, header: &tar::Header) -> anyhow::Result<()> {
    check_path_and_kind(path, header.entry_type())?;
    let mode = header.mode().unwrap_or(0) & 0o7777;
    let allowed: &[u32] = if header.entry_type().is_dir() {
        &[0o755]
    } else {
        &[0o644, 0o755]
    };
    if !allowed.contains(&mode) {
        bail!("entry {} has mode {mode:04o}", path.display());
    }
    if header.uid().unwrap_or(1) != 0 || header.gid().unwrap_or(1) != 0 {
        bail!("entry {} is not owned by root (0/0)", path.display());
    }
    Ok(())
}

fn check_path_and_kind(path: &Path, kind: tar::EntryType) -> anyhow::Result<()> {
    for c in path.components() {
        match c {
            Component::ParentDir => bail!("entry {} holds `..`", path.display()),
            Component::RootDir | Component::Prefix(_) => {
                bail!("entry {} is an absolute path", path.display())
            }
            _ => {}
        }
    }
    if !(kind.is_file() || kind.is_dir()) {
        bail!(
            "entry {} is a {kind:?}: a release holds only files and directories",
            path.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The checks.

/// `SHA256SUMS` as (relative path -> sha256), plus its bad lines.
fn parse_sums(text: &str) -> (BTreeMap<String, String>, Vec<Problem>) {
    let mut sums = BTreeMap::new();
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_sums_line(line) {
            Some((hash, path)) if !sums.contains_key(&path) => {
                sums.insert(path, hash);
            }
            _ => bad.push(Problem {
                path: line.to_string(),
                kind: ProblemKind::BadLine,
            }),
        }
    }
    (sums, bad)
}

/// `<64 hex>  <path>` (or `<64 hex> *<path>`); the path relative, no `..`.
fn parse_sums_line(line: &str) -> Option<(String, String)> {
    let (hash, rest) = line.split_once(' ')?;
    let path = rest.strip_prefix([' ', '*'])?;
    let path = path.strip_prefix("./").unwrap_or(path);
    let hash_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let rel = Path::new(path);
    let path_ok = !path.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (hash_ok && path_ok).then(|| (hash.to_ascii_lowercase(), path.to_string()))
}

/// Checks the release against its `SHA256SUMS`; returns the listed files.
pub fn check_sums(
    contents: &Contents,
    release: &Path,
) -> Result<BTreeMap<String, String>, ChecksumMismatch> {
    let mismatch = |problems| ChecksumMismatch {
        release: release.to_path_buf(),
        problems,
    };
    let Some(text) = contents.document(SUMS) else {
        return Err(mismatch(vec![Problem {
            path: SUMS.into(),
            kind: ProblemKind::Missing,
        }]));
    };
    let (sums, mut problems) = parse_sums(&String::from_utf8_lossy(text));
    for (path, want) in &sums {
        let kind = match contents.items.get(path) {
            Some(item) if item.regular && item.sha256 == *want => continue,
            Some(item) if item.regular => ProblemKind::Modified,
            _ => ProblemKind::Missing,
        };
        problems.push(Problem {
            path: path.clone(),
            kind,
        });
    }
    for (path, item) in &contents.items {
        let unlisted_ok = (path == SUMS || path == signing::SIGNATURE_FILE) && item.regular;
        if !unlisted_ok && !sums.contains_key(path) {
            problems.push(Problem {
                path: path.clone(),
                kind: ProblemKind::NotListed,
            });
        }
    }
    if problems.is_empty() {
        Ok(sums)
    } else {
        Err(mismatch(problems))
    }
}

/// The signature over `SHA256SUMS`, judged against `trusted`.
pub fn check_signature(contents: &Contents, trusted: &[TrustedKey]) -> SignatureCheck {
    let sums = contents.document(SUMS).unwrap_or_default();
    let sig = contents
        .document(signing::SIGNATURE_FILE)
        .map(|b| String::from_utf8_lossy(b).into_owned());
    signing::check(sums, sig.as_deref(), trusted)
}

/// A name the release is found under, outside its signature: the
/// directory's, or the tarball's and its top directory's.
#[derive(Debug, Clone)]
pub struct FoundAs {
    /// "the directory", "the tarball", ...
    what: &'static str,
    /// As found (`snp-release-2026-12-04.tar.gz`).
    file: String,
    /// The release name it gives (`snp-release-2026-12-04`).
    name: String,
}

/// The names the release at `given` is found under: a directory's name,
/// or, for a tarball (`top`: its one top directory), the tarball's file
/// name and that directory.
pub fn found_as(given: &Path, top: Option<&str>) -> Vec<FoundAs> {
    let file = given
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match top {
        None => vec![FoundAs {
            what: "the directory",
            name: file.clone(),
            file,
        }],
        Some(top) => vec![
            FoundAs {
                what: "the tarball",
                name: crate::release_name::of_tarball(&file).to_string(),
                file,
            },
            FoundAs {
                what: "the tarball's top directory",
                file: top.to_string(),
                name: top.to_string(),
            },
        ],
    }
}

/// Refuses a release not signed by one of `trusted` (none: no
/// judgement), or signed for another release than `found` and its
/// manifest say.
pub fn require_signature(
    contents: &Contents,
    release: &Path,
    trusted: &[TrustedKey],
    found: &[FoundAs],
) -> Result<SignatureCheck, SignatureRefused> {
    let check = match check_signature(contents, trusted) {
        SignatureCheck::Trusted { key, comment } => {
            match other_release(contents, &comment, found) {
                Some((signed, why)) => SignatureCheck::OtherRelease { key, signed, why },
                None => SignatureCheck::Trusted { key, comment },
            }
        }
        check => check,
    };
    if trusted.is_empty() || matches!(check, SignatureCheck::Trusted { .. }) {
        return Ok(check);
    }
    Err(SignatureRefused {
        release: release.to_path_buf(),
        check,
        keys: trusted.iter().map(|k| k.path.clone()).collect(),
    })
}

/// Where the release the trusted `comment` names differs from what the
/// files are found as: (the release signed, what disagrees); `None` when
/// all agree.
fn other_release(
    contents: &Contents,
    comment: &str,
    found: &[FoundAs],
) -> Option<(String, String)> {
    let signed = match signing::SignedAs::parse(comment) {
        Ok(s) => s,
        Err(why) => return Some((format!("`{comment}`"), why)),
    };
    let release = signed.release.clone();
    let differs = |why: String| Some((release.clone(), why));
    if let Some(f) = found.iter().find(|f| f.name != signed.release) {
        return differs(format!("{} is named {}", f.what, f.file));
    }
    let Some(manifest) = contents.document(MANIFEST) else {
        return differs(format!("there is no {MANIFEST}"));
    };
    if let Some(want) = &signed.manifest_sha256 {
        let got = contents
            .items
            .get(MANIFEST)
            .map_or("", |i| i.sha256.as_str());
        if got != want {
            return differs(format!(
                "its {MANIFEST} has SHA-256 {got}, the signature names {want}"
            ));
        }
    }
    let named = serde_json::from_slice::<Manifest>(manifest)
        .ok()
        .map(|m| m.release);
    match named {
        Some(n) if n == signed.release => None,
        Some(n) => differs(format!("its {MANIFEST} names the release {n}")),
        None => differs(format!("its {MANIFEST} names no release")),
    }
}

/// The files the SBOM and provenance describe: all listed but themselves.
fn described(sums: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    sums.iter()
        .filter(|(p, _)| *p != SBOM && *p != PROVENANCE)
        .map(|(p, h)| (p.clone(), h.clone()))
        .collect()
}

/// The SBOM's file components and the provenance's subjects against
/// `SHA256SUMS`; `required`: a missing one is a problem too. Returns which
/// were checked.
pub fn check_documents(
    contents: &Contents,
    release: &Path,
    sums: &BTreeMap<String, String>,
    required: bool,
) -> Result<Vec<&'static str>, DocumentMismatch> {
    let want = described(sums);
    let fail = |document: &'static str, problem: String| DocumentMismatch {
        release: release.to_path_buf(),
        document,
        problem,
    };
    let mut checked = Vec::new();
    for (document, read) in [
        (
            SBOM,
            sbom_files as fn(&[u8]) -> Result<Option<BTreeMap<String, String>>, serde_json::Error>,
        ),
        (PROVENANCE, provenance_subjects),
    ] {
        let Some(bytes) = contents.document(document) else {
            if required {
                return Err(fail(document, "is missing".into()));
            }
            continue;
        };
        if !sums.contains_key(document) {
            return Err(fail(document, "is not listed in SHA256SUMS".into()));
        }
        let got = read(bytes)
            .map_err(|e| fail(document, format!("does not read as one: {e}")))?
            .ok_or_else(|| fail(document, "has no file list, or names a file twice".into()))?;
        if let Some(diff) = first_difference(&want, &got) {
            return Err(fail(document, diff));
        }
        checked.push(document);
    }
    Ok(checked)
}

/// What verify reads of a CycloneDX SBOM: its components' names and
/// hashes (the rest is CycloneDX's, checked against its own schema by the
/// tests).
#[derive(Deserialize)]
struct SbomFiles {
    #[serde(default)]
    components: Vec<SbomComponent>,
}

#[derive(Deserialize)]
struct SbomComponent {
    #[serde(rename = "bom-ref", default)]
    bom_ref: Option<String>,
    name: String,
    #[serde(default)]
    hashes: Vec<SbomHash>,
}

#[derive(Deserialize)]
struct SbomHash {
    alg: String,
    content: String,
}

/// The SBOM's `file:` components with a SHA-256: name -> SHA-256 (`None`
/// when a name is given twice).
fn sbom_files(bytes: &[u8]) -> Result<Option<BTreeMap<String, String>>, serde_json::Error> {
    let sbom: SbomFiles = serde_json::from_slice(bytes)?;
    let files = sbom
        .components
        .into_iter()
        .filter(|c| c.bom_ref.as_deref().is_some_and(|r| r.starts_with("file:")))
        .filter_map(|c| {
            let hash = c.hashes.into_iter().find(|h| h.alg == "SHA-256")?;
            Some((c.name, hash.content))
        })
        .collect();
    Ok(unique(files))
}

/// The provenance's subjects: name -> sha256 (`None` when a name is given
/// twice).
fn provenance_subjects(
    bytes: &[u8],
) -> Result<Option<BTreeMap<String, String>>, serde_json::Error> {
    let statement: Statement = serde_json::from_slice(bytes)?;
    Ok(unique(
        statement
            .subject
            .into_iter()
            .map(|s| (s.name, s.digest.sha256))
            .collect(),
    ))
}

/// Name -> digest pairs as a map; a name given twice is a problem.
fn unique(pairs: Vec<(String, String)>) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, hash) in pairs {
        if out.insert(name, hash).is_some() {
            return None;
        }
    }
    Some(out)
}

fn first_difference(
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Option<String> {
    for (path, hash) in want {
        match got.get(path) {
            None => return Some(format!("does not list {path}")),
            Some(h) if h != hash => {
                return Some(format!(
                    "gives {path} the digest {h}, SHA256SUMS gives {hash}"
                ));
            }
            _ => {}
        }
    }
    got.keys()
        .find(|p| !want.contains_key(*p))
        .map(|p| format!("lists {p}, which SHA256SUMS does not"))
}

// ---------------------------------------------------------------------------
// `snp-build verify`.

/// What `verify` found (its `--json` document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Verified {
    pub release: PathBuf,
    pub files: usize,
    /// The signature, in words.
    pub signature: String,
    pub signed: bool,
    pub trusted: bool,
    pub documents: Vec<&'static str>,
}

/// `snp-build verify RELEASE [--trusted-key PUB]`: checksums, signature
/// (judged when keys are given), SBOM and provenance digests.
pub fn verify(release: &Path, trusted_keys: &[PathBuf]) -> anyhow::Result<Verified> {
    let trusted = trusted_keys
        .iter()
        .map(|p| TrustedKey::load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Named as the user would read it (no `..`), when it exists.
    let given = release
        .canonicalize()
        .or_else(|_| std::path::absolute(release))
        .with_context(|| format!("resolving {}", release.display()))?;
    let contents = if given.is_dir() {
        Contents::from_dir(&given)?
    } else if given.is_file() {
        Contents::from_tarball(&given)?
    } else {
        return Err(
            crate::error::UsageError::new(format!("{}: no such release", given.display()))
                .help("give an snp-release-<date> directory or its .tar.gz")
                .into(),
        );
    };
    let sums = check_sums(&contents, &given)?;
    let found = found_as(&given, contents.top());
    let check = require_signature(&contents, &given, &trusted, &found)?;
    if let SignatureCheck::Invalid { .. } = check {
        // Not judged for trust without a key, but a broken signature file
        // is a broken release.
        return Err(SignatureRefused {
            release: given,
            check,
            keys: Vec::new(),
        }
        .into());
    }
    let documents = check_documents(&contents, &given, &sums, true)?;
    Ok(Verified {
        release: given,
        files: sums.len(),
        signed: !matches!(check, SignatureCheck::Unsigned),
        trusted: matches!(check, SignatureCheck::Trusted { .. }),
        signature: match (&check, trusted.is_empty()) {
            (SignatureCheck::UnknownKey { key_id }, true) => {
                format!("signed by key {key_id} (not checked: no --trusted-key)")
            }
            (c, _) => c.to_string(),
        },
        documents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "7bc4fa3b930c2964087c3b239250a63c2275c24dfa7bd6abdabdfec68e8cf5be";

    #[test]
    fn sums_lines_parse_and_bad_ones_are_named() {
        let text = format!(
            "{HASH}  kvm.conf\n{HASH} *./usr/local/bin/x\n\n{HASH}  ../etc/passwd\nnope\n{HASH}  /abs\n{HASH}  kvm.conf\n"
        );
        let (sums, bad) = parse_sums(&text);
        assert_eq!(
            sums.keys().collect::<Vec<_>>(),
            ["kvm.conf", "usr/local/bin/x"]
        );
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad.iter().all(|p| p.kind == ProblemKind::BadLine));
    }

    #[test]
    fn tarball_entries_must_be_relative_files_or_directories() {
        use tar::EntryType;
        assert!(
            check_path_and_kind(Path::new("snp-release-x/kvm.conf"), EntryType::Regular).is_ok()
        );
        assert!(check_path_and_kind(Path::new("./snp-release-x/"), EntryType::Directory).is_ok());
        assert!(
            check_path_and_kind(Path::new("snp-release-x/../../etc/x"), EntryType::Regular)
                .is_err()
        );
        assert!(check_path_and_kind(Path::new("/etc/passwd"), EntryType::Regular).is_err());
        assert!(check_path_and_kind(Path::new("snp-release-x/l"), EntryType::Symlink).is_err());
        assert!(check_path_and_kind(Path::new("snp-release-x/h"), EntryType::Link).is_err());
    }
}
