//! The release: `snp-release-<date>/` and `snp-release-<date>.tar.gz`.
//!
//! Guarantees:
//! - It holds exactly what the stages of this build recorded (their stamps'
//!   outputs): never packages left over from earlier runs, never the other
//!   kernel's packages.
//! - It and its tarball are written under temporary names beside the
//!   final ones and put in place together (`place.rs`); an existing
//!   release of the same date is replaced only once the new one and its
//!   tarball are complete. A failed write removes its temporary names at
//!   once and leaves the previous release whole; what a killed run left is
//!   swept by the next run under the release lock.
//! - `SHA256SUMS` covers every file (and checks with `sha256sum -c`);
//!   `manifest.json` ([`manifest::Manifest`]; its JSON Schema beside it as
//!   `manifest.schema.json`) records versions, SHAs, patches, kernel
//!   config verification and every artifact's size and SHA-256.
//! - `MEASUREMENTS` and the manifest's `measurement` hold the expected
//!   SEV-SNP launch digest of the packaged `usr/local/share/qemu/OVMF.fd`
//!   for the shape `launch-qemu.sh -sev-snp` launches (and a few more
//!   shapes) of OVMF.fd and of every other `OVMF.<name>.fd` (lines with
//!   `--firmware NAME`), with every input (see `measure`); a packaged OVMF.fd without
//!   SEV metadata fails the release with an error naming it. Without an
//!   OVMF.fd (no OVMF stage) there is no `MEASUREMENTS` and `measurement`
//!   is null.
//! - `libvirt-snp.xml` and `libvirt-sev.xml` are libvirt domains using the
//!   release's QEMU and firmware, its absolute path left as `@RELEASE_DIR@`;
//!   with `OVMF.amdsev.fd`, `libvirt-snp-direct.xml` boots that firmware
//!   with a kernel whose hashes the launch digest covers.
//! - The tarball is reproducible: entries sorted, owner root/0, fixed
//!   modes, every mtime `SOURCE_DATE_EPOCH` (else the newest commit time of
//!   the pinned sources), gzip header mtime 0. Same outputs in, same bytes
//!   out.
//! - Never knows which components exist: the build hands it each stage's
//!   files ([`Part`]) and manifest section ([`Section`]) as plain data.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::IgnoredAny;

use crate::fingerprint::{self, Decision, Fingerprint, Stamp};
use crate::hash::{digest, sha256_file, sha256_hex};
use crate::host::PackageFormat;
use crate::progress::Progress;
use crate::signing::{self, Signer};
use crate::source::Synced;
use crate::tools::versions::ToolVersions;
use crate::workdir::WorkDir;
use measure::ReleaseMeasurements;

mod facts;
mod installer;
pub mod manifest;
pub mod measure;
mod place;
pub mod provenance;
pub mod sbom;

/// The stage name of packaging, in plans, stamps and `--force`.
pub const STAGE: &str = "release";

const INSTALL_SH: &[u8] = include_bytes!("../../templates/install.sh");
/// Where the release carries snp-build, the installer `install.sh` runs.
pub const INSTALLER_REL: &str = "bin/snp-build";
const LAUNCH_QEMU_SH: &[u8] = include_bytes!("../../templates/launch-qemu.sh");
const KVM_CONF: &[u8] = include_bytes!("../../templates/kvm.conf");
const LIBVIRT_SNP_XML: &[u8] = include_bytes!("../../templates/libvirt-snp.xml");
const LIBVIRT_SNP_DIRECT_XML: &[u8] = include_bytes!("../../templates/libvirt-snp-direct.xml");
const LIBVIRT_SEV_XML: &[u8] = include_bytes!("../../templates/libvirt-sev.xml");

/// What goes into a release file.
#[derive(Debug, Clone)]
enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// One file of the release.
#[derive(Debug, Clone)]
struct Entry {
    /// Path inside the release directory.
    rel: String,
    content: Content,
    executable: bool,
    sha256: String,
    size: u64,
}

/// A file a stage puts into the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// Its path inside the release directory.
    pub rel: String,
    /// Where it is now.
    pub path: PathBuf,
}

impl ReleaseFile {
    pub fn new(rel: impl Into<String>, path: &Path) -> ReleaseFile {
        ReleaseFile {
            rel: rel.into(),
            path: path.to_path_buf(),
        }
    }

    /// A file installed under `install`: `usr/local/<its path below it>`.
    pub fn installed(path: &Path, install: &Path) -> anyhow::Result<ReleaseFile> {
        let rel = path.strip_prefix(install).with_context(|| {
            format!(
                "{} is outside the install prefix {}",
                path.display(),
                install.display()
            )
        })?;
        Ok(ReleaseFile::new(
            format!("usr/local/{}", rel.display()),
            path,
        ))
    }

    /// [`ReleaseFile::installed`] for each of `paths`.
    pub fn all_installed(paths: &[PathBuf], install: &Path) -> anyhow::Result<Vec<ReleaseFile>> {
        paths.iter().map(|p| Self::installed(p, install)).collect()
    }
}

/// A manifest section (a stage's, typed by it) at its key path; `None`
/// when the stage is not part of this release.
pub struct Section {
    /// `["qemu"]`, or `["kernels", "host"]`.
    pub key: &'static [&'static str],
    pub body: Option<Box<dyn erased_serde::Serialize + Send + Sync>>,
}

/// One stage's part of a release.
pub struct Part {
    /// The stage's name: its stamp holds the hashes of its files.
    pub stage: &'static str,
    /// build.sh's `source-commit.<table>` record of it.
    pub commit_file: PathBuf,
    pub files: Vec<ReleaseFile>,
}

/// Everything the release is made from.
pub struct Release<'a> {
    pub work: &'a WorkDir,
    /// The stages it packages, in build order.
    pub parts: Vec<Part>,
    /// Every registered stage's manifest section.
    pub sections: Vec<Section>,
    pub synced: &'a [Synced],
    /// The pin file as read (`source-config`).
    pub pin_text: &'a str,
    pub lock_path: &'a Path,
    pub package_format: PackageFormat,
    /// `--force` names the release.
    pub forced: bool,
    /// Absolute output directory.
    pub output: PathBuf,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// [`source_date_epoch`], read before the build.
    pub source_date_epoch: Option<u64>,
    /// Signs `SHA256SUMS` into `SHA256SUMS.minisig` (`--sign`).
    pub signer: Option<&'a Signer>,
    /// The key id the release should be signed by (`plan` knows it without
    /// the key being opened).
    pub sign_key_id: Option<String>,
    /// The snp-build binary the release carries as [`INSTALLER_REL`]; its
    /// hash is in the fingerprint like every file's.
    pub installer: Option<PathBuf>,
    /// `manifest.schema.json`: the manifest's JSON Schema, with the
    /// registry's sections ([`manifest::schema`]).
    pub manifest_schema: Vec<u8>,
    /// The VMSA mode its digests assume, and why (from its host kernel
    /// and QEMU).
    pub launch: crate::snp_support::Choice,
}

/// Where the release went.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    pub release: PathBuf,
    pub tarball: PathBuf,
    pub tarball_sha256: String,
    pub files: usize,
    /// The expected SEV-SNP launch digest for `launch-qemu.sh -sev-snp`'s
    /// default shape, when the release has an OVMF.fd.
    #[serde(default)]
    pub snp_launch_digest: Option<String>,
    /// The key id of the signature, when signed.
    #[serde(default)]
    pub signed_by: Option<String>,
}

impl Release<'_> {
    pub fn name(&self) -> String {
        crate::release_name::of(&self.date)
    }

    /// The release's files, from the stages' summaries, with the hashes
    /// their stamps recorded (so nothing big is read twice), and the launch
    /// measurements of its OVMF.fd.
    fn entries(
        &self,
        measure_firmware: bool,
    ) -> anyhow::Result<(Vec<Entry>, Option<ReleaseMeasurements>)> {
        let mut known: BTreeMap<PathBuf, (String, u64)> = BTreeMap::new();
        for part in &self.parts {
            let stamp: Option<Stamp<IgnoredAny>> =
                fingerprint::read_stamp(&self.work.stamp(part.stage));
            for out in stamp.map(|s| s.outputs).unwrap_or_default() {
                known.insert(out.path, (out.sha256, out.size));
            }
        }
        let file_entry = |rel: String, path: PathBuf, executable: bool| -> anyhow::Result<Entry> {
            let (sha256, size) = match known.get(&path) {
                Some(k) => k.clone(),
                None => (
                    sha256_file(&path)?,
                    std::fs::metadata(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .len(),
                ),
            };
            Ok(Entry {
                rel,
                content: Content::File(path),
                executable,
                sha256,
                size,
            })
        };
        let bytes_entry = |rel: &str, bytes: &[u8], executable: bool| Entry {
            rel: rel.to_string(),
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
            content: Content::Bytes(bytes.to_vec()),
            executable,
        };

        let mut entries = Vec::new();
        for part in &self.parts {
            for f in &part.files {
                let executable = is_executable(&f.path);
                entries.push(file_entry(f.rel.clone(), f.path.clone(), executable)?);
            }
            let name = part
                .commit_file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            entries.push(file_entry(name, part.commit_file.clone(), false)?);
        }
        entries.push(bytes_entry(
            "source-config",
            self.pin_text.as_bytes(),
            false,
        ));
        if let Ok(lock) = std::fs::read(self.lock_path) {
            entries.push(bytes_entry("stable-commits.lock", &lock, false));
        }
        entries.push(bytes_entry("install.sh", INSTALL_SH, true));
        if let Some(binary) = &self.installer {
            // Hashed once per version of the file, not on every run.
            let (sha256, size) = installer::sha256(binary, &self.work.installer_hash())?;
            entries.push(Entry {
                rel: INSTALLER_REL.into(),
                content: Content::File(binary.clone()),
                executable: true,
                sha256,
                size,
            });
        }
        entries.push(bytes_entry("launch-qemu.sh", LAUNCH_QEMU_SH, true));
        entries.push(bytes_entry("kvm.conf", KVM_CONF, false));
        entries.push(bytes_entry(
            manifest::SCHEMA_FILE,
            &self.manifest_schema,
            false,
        ));
        entries.push(bytes_entry("libvirt-snp.xml", LIBVIRT_SNP_XML, false));
        // The measured direct boot domain, for a release with that firmware.
        if entries
            .iter()
            .any(|e| e.rel == measure::RELEASE_AMDSEV_OVMF)
        {
            entries.push(bytes_entry(
                "libvirt-snp-direct.xml",
                LIBVIRT_SNP_DIRECT_XML,
                false,
            ));
        }
        entries.push(bytes_entry("libvirt-sev.xml", LIBVIRT_SEV_XML, false));
        // The expected launch digests of the firmware launch-qemu.sh boots.
        // (Not needed to decide: MEASUREMENTS follows from OVMF.fd's hash,
        // already an input, and this program's version.)
        let firmware = entries
            .iter()
            .find(|e| e.rel == measure::RELEASE_OVMF)
            .filter(|_| measure_firmware);
        // And the release's other firmwares (OVMF.amdsev.fd), by the same
        // shapes.
        let others: Vec<(String, PathBuf)> = entries
            .iter()
            .filter(|e| measure::is_other_firmware(&e.rel))
            .filter_map(|e| match &e.content {
                Content::File(p) => Some((
                    e.rel.rsplit('/').next().unwrap_or(&e.rel).to_string(),
                    p.clone(),
                )),
                Content::Bytes(_) => None,
            })
            .collect();
        let measured = match firmware {
            Some(Entry {
                content: Content::File(ovmf),
                ..
            }) => Some(
                measure::release_measurements(ovmf, &others, &self.launch).with_context(|| {
                    format!(
                        "computing the SEV-SNP launch measurement of {} (the release's {})",
                        ovmf.display(),
                        measure::RELEASE_OVMF
                    )
                })?,
            ),
            _ => None,
        };
        if let Some(m) = &measured {
            entries.push(bytes_entry(
                measure::MEASUREMENTS_FILE,
                m.file_text().as_bytes(),
                false,
            ));
        }
        entries.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok((entries, measured))
    }

    /// `SOURCE_DATE_EPOCH` if set, else the newest pinned commit's time.
    fn epoch(&self) -> u64 {
        self.source_date_epoch.unwrap_or_else(|| {
            self.synced
                .iter()
                .map(|s| s.commit_time.max(0) as u64)
                .max()
                .unwrap_or(0)
        })
    }

    /// The release's fingerprint: every file's path and hash, the date,
    /// the timestamp and this program's version.
    fn inputs(&self, entries: &[Entry]) -> anyhow::Result<Fingerprint> {
        // MEASUREMENTS is derived from OVMF.fd, the VMSA mode and this
        // program's version, all inputs; leaving it out lets `decide` skip
        // computing it.
        let files: Vec<(&str, &str, bool)> = entries
            .iter()
            .filter(|e| e.rel != measure::MEASUREMENTS_FILE)
            .map(|e| (e.rel.as_str(), e.sha256.as_str(), e.executable))
            .collect();
        // Without SOURCE_DATE_EPOCH the time is the newest pinned commit's,
        // which the SHAs (inside source-commit.*, so inside `files`) fix.
        let epoch = self
            .source_date_epoch
            .map_or_else(|| "newest pinned commit".into(), |e| e.to_string());
        Ok(Fingerprint::from([
            ("files".into(), digest(&files)),
            ("date".into(), self.date.clone()),
            ("source-date-epoch".into(), epoch),
            ("output".into(), self.output.display().to_string()),
            ("snp-build".into(), env!("CARGO_PKG_VERSION").into()),
            ("vmsa-mode".into(), self.launch.mode.to_string()),
        ]))
    }

    /// Holds the output directory (a lock on the directory itself, so no
    /// file is left beside the release) until dropped: a second snp-build
    /// writing a release there, from any work dir, waits, so what each
    /// prints is what is on disk. Once held, the temporary names of runs
    /// that died are swept ([`place::sweep`]).
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        std::fs::create_dir_all(&self.output)
            .with_context(|| format!("creating {}", self.output.display()))?;
        let dir = std::fs::File::open(&self.output)
            .with_context(|| format!("opening {}", self.output.display()))?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(
                    "release: another snp-build is writing a release into {}: waiting for it",
                    self.output.display()
                );
                dir.lock()
                    .with_context(|| format!("waiting for {}", self.output.display()))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", self.output.display()));
            }
        }
        // Now that no live run writes here: what dead ones left goes.
        place::sweep(&self.output)?;
        Ok(dir)
    }

    /// Whether the release must be made again, and why.
    pub fn decide(&self) -> anyhow::Result<Decision> {
        let inputs = self.inputs(&self.entries(false)?.0)?;
        let stamp: Option<Stamp<Summary>> = fingerprint::read_stamp(&self.work.stamp(STAGE));
        let decision = fingerprint::decide(&inputs, stamp.as_ref(), self.forced);
        if decision.run {
            return Ok(decision);
        }
        // The signature is machine policy, not an input: an up-to-date
        // release is made again only when it is not signed as asked.
        let signed_by = stamp.and_then(|s| s.summary.signed_by);
        let wanted = self.sign_key_id.clone();
        if signed_by != wanted {
            return Ok(Decision::run(vec![fingerprint::Reason::Changed {
                input: "signature".into(),
                old: signed_by.map(|k| format!("signed by {k}")),
                new: wanted.map(|k| format!("signed by {k}")),
            }]));
        }
        Ok(decision)
    }

    /// The summary of the release an up-to-date stamp describes.
    pub fn recorded(&self) -> Option<Summary> {
        let stamp: Stamp<Summary> = fingerprint::read_stamp(&self.work.stamp(STAGE))?;
        Some(stamp.summary)
    }

    /// Assembles the directory and the tarball, then stamps them.
    pub fn make(&self) -> anyhow::Result<Summary> {
        let (entries, measured) = self.entries(true)?;
        let inputs = self.inputs(&entries)?;
        let epoch = self.epoch();
        let progress = Progress::new(STAGE);
        fingerprint::remove_stamp(&self.work.stamp(STAGE))?;
        std::fs::create_dir_all(&self.output)
            .with_context(|| format!("creating {}", self.output.display()))?;
        let name = self.name();
        let final_dir = self.output.join(&name);
        // Removed on any error below (place.rs).
        let staged = place::temp_dir(&self.output, &name)?;
        let tmp = staged.path();
        progress.step(format!("assembling {}", final_dir.display()));
        for e in &entries {
            put(tmp, e)?;
        }
        let manifest = self
            .manifest(&entries, epoch, measured.as_ref())?
            .to_bytes()?;
        write_in(tmp, manifest::FILE, &manifest)?;
        let manifest_sha256 = sha256_hex(&manifest);
        let mut artifacts: Vec<(String, String)> = entries
            .iter()
            .map(|e| (e.rel.clone(), e.sha256.clone()))
            .collect();
        artifacts.push((manifest::FILE.into(), manifest_sha256.clone()));
        artifacts.sort();
        // The SBOM and the provenance describe every other file; SHA256SUMS
        // lists them too, so the signature covers them.
        let facts = self.facts(&name, epoch, artifacts.clone());
        let mut sums = artifacts;
        for (file, bytes) in [
            (sbom::FILE, sbom::render(&facts)?),
            (provenance::FILE, provenance::render(&facts)?),
        ] {
            write_in(tmp, file, &bytes)?;
            sums.push((file.into(), sha256_hex(&bytes)));
        }
        sums.sort();
        let text: String = sums.iter().map(|(p, h)| format!("{h}  {p}\n")).collect();
        write_in(tmp, "SHA256SUMS", text.as_bytes())?;
        if let Some(signer) = self.signer {
            // The comment names the release and its manifest, so these
            // files cannot pass for another release (install and verify
            // check both against the names they are found under).
            let comment = signing::trusted_comment(&name, epoch, &manifest_sha256);
            let sig = signer.sign(text.as_bytes(), &comment)?;
            write_in(tmp, signing::SIGNATURE_FILE, sig.as_bytes())?;
        }

        // The tarball from the assembled directory, then both put in place
        // together: a failure anywhere leaves the previous release whole.
        progress.step("writing the tarball");
        let tarball = self
            .output
            .join(format!("{name}{}", crate::release_name::TARBALL_SUFFIX));
        let tmp_tar = place::temp_tarball(&self.output, &name)?;
        write_tarball(tmp, &name, epoch, tmp_tar.as_file(), &progress)
            .with_context(|| format!("writing {}", tarball.display()))?;
        place::swap_in(staged, tmp_tar, &final_dir, &tarball)?;
        let summary = Summary {
            release: final_dir.clone(),
            tarball: tarball.clone(),
            tarball_sha256: sha256_file(&tarball)?,
            files: sums.len() + 1 + usize::from(self.signer.is_some()),
            snp_launch_digest: measured.as_ref().map(|m| m.default.digest.clone()),
            signed_by: self.signer.map(Signer::key_id),
        };
        let stamp = Stamp {
            inputs,
            outputs: fingerprint::record_outputs(
                &[
                    final_dir.join("SHA256SUMS"),
                    final_dir.join(manifest::FILE),
                    tarball,
                ]
                .into_iter()
                .chain(self.signer.map(|_| final_dir.join(signing::SIGNATURE_FILE)))
                .collect::<Vec<_>>(),
            )?,
            summary: &summary,
            duration_s: None,
            source: None,
        };
        fingerprint::write_stamp(&self.work.stamp(STAGE), &stamp)?;
        progress.finish(format!(
            "{} ({})",
            summary.tarball.display(),
            &summary.tarball_sha256[..16]
        ));
        Ok(summary)
    }

    /// What the SBOM and the provenance say about this build.
    fn facts<'s>(
        &'s self,
        name: &'s str,
        epoch: u64,
        artifacts: Vec<(String, String)>,
    ) -> facts::BuildFacts<'s> {
        let stamps: Vec<PathBuf> = self
            .parts
            .iter()
            .map(|p| self.work.stamp(p.stage))
            .collect();
        facts::BuildFacts {
            release: name,
            date: &self.date,
            epoch,
            sources: self.synced.iter().map(facts::SourceFacts::of).collect(),
            artifacts,
            pin_file_sha256: sha256_hex(self.pin_text.as_bytes()),
            lock_sha256: std::fs::read(self.lock_path).ok().map(|b| sha256_hex(&b)),
            tools: facts::stamped_tools(&stamps),
        }
    }

    fn manifest(
        &self,
        entries: &[Entry],
        epoch: u64,
        measured: Option<&ReleaseMeasurements>,
    ) -> anyhow::Result<manifest::Manifest> {
        let os = crate::host::os_release(Path::new(crate::host::OS_RELEASE));
        let mut tools = ToolVersions::load(self.work);
        let sources = self
            .synced
            .iter()
            .map(|s| {
                let source = manifest::Source {
                    url: s.url.clone(),
                    pin: s.pin.clone(),
                    sha: s.sha.clone(),
                    short_sha: s.built_name(),
                    submodules: s.submodules.clone(),
                    patched_head: s.patched_head.clone(),
                    patch_series_sha256: s.series_hash.clone(),
                    patches: s.patches.clone(),
                    // Built with local changes: never the pinned SHA alone.
                    dirty: s.dirty.as_ref().map(|_| true),
                    dirty_diff: s.dirty.as_ref().map(|_| format!("dirty/{}.diff", s.source)),
                    dirty_diff_sha256: s.dirty.as_ref().map(|d| d.diff_sha256.clone()),
                    dirty_files: s.dirty.as_ref().map(|d| d.files.clone()),
                };
                (s.source.to_string(), source)
            })
            .collect();
        let mut manifest = manifest::Manifest {
            schema_version: manifest::SCHEMA_VERSION,
            snp_build_version: env!("CARGO_PKG_VERSION").into(),
            release: self.name(),
            date: self.date.clone(),
            source_date_epoch: epoch,
            build_host: manifest::BuildHost {
                distro: os.get("PRETTY_NAME").cloned(),
                id: os.get("ID").cloned(),
                id_like: os.get("ID_LIKE").cloned(),
                gcc: tools.version("gcc"),
                package_format: self.package_format,
            },
            sources,
            measurement: measured.map(ReleaseMeasurements::manifest),
            artifacts: entries
                .iter()
                .map(|e| manifest::Artifact {
                    path: e.rel.clone(),
                    size: e.size,
                    sha256: e.sha256.clone(),
                })
                .collect(),
            stages: BTreeMap::new(),
        };
        manifest.place(&self.sections)?;
        Ok(manifest)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Writes the file `rel` of the release being assembled under `root`.
fn write_in(root: &Path, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = root.join(rel);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes one entry under `root` (a hard link when the file system allows,
/// else a copy), with the mode the tarball will carry.
fn put(root: &Path, e: &Entry) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dest = root.join(&e.rel);
    std::fs::create_dir_all(dest.parent().unwrap_or(root))?;
    match &e.content {
        Content::Bytes(b) => {
            std::fs::write(&dest, b).with_context(|| format!("writing {}", dest.display()))?
        }
        Content::File(src) => {
            std::fs::copy(src, &dest)
                .with_context(|| format!("copying {} into the release", src.display()))?;
        }
    }
    let mode = if e.executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The reproducible tarball of `dir`, its entries under `name/`.
fn write_tarball(
    dir: &Path,
    name: &str,
    epoch: u64,
    file: &std::fs::File,
    progress: &Progress,
) -> anyhow::Result<()> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(BufWriter::new(file), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("root");
        let _ = h.set_groupname("root");
        h.set_mtime(epoch);
        h
    };
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, format!("{name}/"), std::io::empty())?;
    let mut done_dirs = std::collections::BTreeSet::new();
    let mut bytes = 0u64;
    for rel in files {
        // Parent directories first, once each, in order.
        let mut parents: Vec<PathBuf> = rel
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .collect();
        parents.reverse();
        for p in parents {
            if done_dirs.insert(p.clone()) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, format!("{name}/{}/", p.display()), std::io::empty())?;
            }
        }
        let path = dir.join(&rel);
        let meta = std::fs::metadata(&path)?;
        let mode = if is_executable(&path) { 0o755 } else { 0o644 };
        let mut h = header(tar::EntryType::Regular, mode, meta.len());
        let f = std::fs::File::open(&path)?;
        tar.append_data(&mut h, format!("{name}/{}", rel.display()), f)
            .with_context(|| format!("adding {} to the tarball", rel.display()))?;
        bytes += meta.len();
        progress.status(format!("tarball: {}", crate::progress::human_bytes(bytes)));
    }
    let gz = tar.into_inner()?;
    let mut w = gz.finish()?;
    w.flush()?;
    // A full disk may only say so here.
    file.sync_all()?;
    Ok(())
}

/// Every file under `dir`, relative to it, in name order.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if !entry.file_type().is_dir() {
            out.push(entry.path().strip_prefix(dir)?.to_path_buf());
        }
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` from the environment: seconds since 1970, or
/// `None` when unset or empty (`SOURCE_DATE_EPOCH= snp-build ...` clears
/// it, as a shell user means). Anything else is refused, before a build.
pub fn source_date_epoch() -> anyhow::Result<Option<u64>> {
    let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") else {
        return Ok(None);
    };
    let text = v.to_string_lossy();
    if text.trim().is_empty() {
        return Ok(None);
    }
    // Up to 2242 (what a ustar header's 11 octal digits, the SBOM's
    // timestamp and jiff can all hold).
    match text.trim().parse::<u64>() {
        Ok(n) if jiff::Timestamp::from_second(n as i64).is_ok() && n < 0o77777777777 => {
            Ok(Some(n))
        }
        _ => bail!(
            crate::error::UsageError::new(format!(
                "SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970 (before 2242)"
            ))
            .help("set it to e.g. `$(git log -1 --format=%ct)`, or unset it to use the newest pinned commit's time")
        ),
    }
}

/// Checks a `--date` value: `YYYY-MM-DD`, a real calendar date.
pub fn check_date(date: &str) -> anyhow::Result<()> {
    if !crate::release_name::is_date(date) {
        bail!(
            crate::error::UsageError::new(format!("--date {date:?} is not a calendar date"))
                .help("use YYYY-MM-DD, e.g. 2026-11-22")
        );
    }
    Ok(())
}
