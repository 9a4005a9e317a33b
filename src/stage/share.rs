//! A stage's outputs shared through the cache registry: pulled instead of
//! built when its fingerprint's tag is there, pushed after it was built
//! (read-write mode).
//!
//! What is shared is exactly what the stage's stamp records: its typed
//! outputs, every output file (each under the work dir) and the facts of
//! its source tree that the release reads. So a box that pulls every stage
//! needs no tree, and assembles the release the pushing box assembled.
//!
//! Refusals: a pulled artifact that fails any check (`cache::artifact`'s,
//! a blob's digest or size, outputs that do not read as this stage's) is
//! a warning naming the tag, and the stage is built here (and, read-write,
//! pushed over the bad tag). A registry that cannot be reached or refuses
//! us is a warning too, unless `--cache-remote-required`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use super::component::{BuildEnv, Built, Component};
use crate::cache::artifact::{self, Record, RecordFile};
use crate::cache::oci::{Found, Registry};
use crate::cache::{Damaged, Unreachable};
use crate::config::cache::{CacheMode, CachePolicy};
use crate::fingerprint::{self, Fingerprint, OutputFile, Reason, SourceRecord, Stamp};
use crate::progress::{Progress, human_bytes};

/// A build's shared cache.
pub struct Share {
    registry: Registry,
    policy: CachePolicy,
    /// Set at the first registry problem: the rest of the run asks no
    /// more (a dead registry costs one timeout, not one per stage).
    down: std::sync::atomic::AtomicBool,
    /// Tags refused this run: their re-push uploads every blob again,
    /// even one the registry says it has (it may be the damaged one).
    refused: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// What a pull brought.
pub struct Pulled {
    pub built: Built,
    pub source: Option<SourceRecord>,
    pub reason: Reason,
}

/// A problem with the registry itself (not with one artifact): fatal only
/// under `--cache-remote-required`.
#[derive(Debug, thiserror::Error)]
#[error("the cache remote {remote}: {message}")]
pub struct Unavailable {
    pub remote: String,
    pub message: String,
}

impl Share {
    /// The build's cache, if it has a remote.
    pub fn open(env: &BuildEnv) -> anyhow::Result<Option<Share>> {
        let Some(policy) = env.cache.clone() else {
            return Ok(None);
        };
        Ok(Some(Share {
            registry: Registry::new(&policy)?,
            policy,
            down: Default::default(),
            refused: Default::default(),
        }))
    }

    pub fn pushes(&self) -> bool {
        self.policy.mode == CacheMode::ReadWrite
    }

    /// `oci://HOST/NAMESPACE/STAGE:TAG`, as messages name it.
    pub fn location(&self, stage: &str, inputs: &Fingerprint) -> String {
        format!("{}/{stage}:{}", self.policy.remote, tag(inputs))
    }

    /// A registry problem: an error under `--cache-remote-required`, else
    /// a warning (and the caller builds).
    fn unavailable(&self, stage: &str, e: anyhow::Error) -> anyhow::Result<()> {
        let err = Unavailable {
            remote: self.policy.remote.to_string(),
            message: format!("{e:#}"),
        };
        if self.policy.required {
            return Err(
                anyhow::Error::new(err).context(format!("{stage}: --cache-remote-required"))
            );
        }
        self.down.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("{stage}: {err}; building here (the cache is not asked again this run)");
        Ok(())
    }

    pub fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the registry has the stage built from `inputs` (the plan:
    /// reads the manifest, pulls nothing). A registry problem reads as no.
    pub fn has(&self, stage: &str, inputs: &Fingerprint) -> anyhow::Result<bool> {
        if self.is_down() {
            return Ok(false);
        }
        let reference = self.registry.reference(stage, &tag(inputs));
        match self.registry.manifest(&reference) {
            Ok(Found::Manifest(bytes)) => {
                Ok(artifact::check_manifest(&bytes, stage, &fingerprint::shared(inputs)).is_ok())
            }
            Ok(Found::Missing) => Ok(false),
            Err(e) => self.unavailable(stage, e).map(|()| false),
        }
    }

    /// The stage built from `inputs`, pulled into the work dir with its
    /// stamp written, if the registry has it whole. `None`: build it here.
    pub fn pull(
        &self,
        env: &BuildEnv,
        c: &dyn Component,
        inputs: &Fingerprint,
    ) -> anyhow::Result<Option<Pulled>> {
        if self.is_down() {
            return Ok(None);
        }
        let name = c.spec().name;
        let location = self.location(name, inputs);
        let reference = self.registry.reference(name, &tag(inputs));
        let manifest = match self.registry.manifest(&reference) {
            Ok(Found::Manifest(bytes)) => bytes,
            Ok(Found::Missing) => {
                tracing::info!("{name}: not in the cache ({location}); building here");
                return Ok(None);
            }
            Err(e) => return self.unavailable(name, e).map(|()| None),
        };
        let progress = Progress::new(name);
        progress.step(format!("pulling {location}"));
        let result = self.fetch(env, c, inputs, &reference, &manifest);
        if result.is_err() {
            // Nothing half-pulled may stand as built.
            fingerprint::remove_stamp(&env.work.stamp(name))?;
        }
        match result {
            Ok((built, record, bytes)) => {
                let reason = Reason::Pulled {
                    from: self.policy.remote.to_string(),
                    tag: tag(inputs),
                    bytes,
                };
                progress.finish(format!(
                    "pulled from {} ({})",
                    self.policy.remote,
                    human_bytes(bytes)
                ));
                Ok(Some(Pulled {
                    built,
                    source: record.source,
                    reason,
                }))
            }
            Err(e) if e.is::<Damaged>() => {
                progress.warn(format!("refused {location}: {e:#}; building here"));
                self.refused.lock().unwrap().insert(tag(inputs));
                Ok(None)
            }
            Err(e) if e.is::<Unreachable>() => {
                progress.finish("not pulled");
                self.unavailable(name, e).map(|()| None)
            }
            Err(e) => {
                progress.warn(format!(
                    "could not put the outputs pulled from {location} in place: {e:#}; building here"
                ));
                Ok(None)
            }
        }
    }

    /// Pulls and checks everything, then puts the files in place and
    /// writes the stamp.
    fn fetch(
        &self,
        env: &BuildEnv,
        c: &dyn Component,
        inputs: &Fingerprint,
        reference: &oci_client::Reference,
        manifest: &[u8],
    ) -> anyhow::Result<(Built, Record, u64)> {
        let name = c.spec().name;
        let roots = roots(env)?;
        let (m, record_layer) =
            artifact::check_manifest(manifest, name, &fingerprint::shared(inputs))?;
        let record_bytes = self.registry.blob(reference, &record_layer)?;
        let record: Record = serde_json::from_slice(&record_bytes)
            .map_err(|e| Damaged(format!("its record does not parse: {e}")))?;
        let layers = artifact::check_layers(&m, &record, name)?;
        // The record's files must be exactly the outputs its summary
        // describes (what the release will read), each where this stage
        // keeps its products or in the install dir.
        let summary = record.summary.resolved(&roots);
        let built = c
            .parse_outputs(&summary)
            .ok_or_else(|| Damaged(format!("its outputs do not read as {name}'s")))?;
        let targets = layers
            .iter()
            .map(|(_, f)| {
                roots
                    .absolute(&f.path)
                    .ok_or_else(|| Damaged(format!("no place for {}", f.path)))
            })
            .collect::<Result<Vec<PathBuf>, Damaged>>()?;
        check_targets(env, c, &built, &targets)?;
        // Into a scratch dir first: no output is touched until every blob
        // has arrived whole.
        let scratch = env
            .work
            .root()
            .join("state")
            .join(format!("pull-{name}.tmp"));
        remove_dir(&scratch)?;
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let mut bytes = record_bytes.len() as u64;
        for (i, (layer, _)) in layers.iter().enumerate() {
            self.registry
                .blob_to_file(reference, layer, &scratch.join(i.to_string()))?;
            bytes += layer.size as u64;
        }
        let stamp_path = env.work.stamp(name);
        fingerprint::remove_stamp(&stamp_path)?;
        let mut outputs = Vec::new();
        for (i, ((_, f), to)) in layers.iter().zip(&targets).enumerate() {
            outputs.push(place(&scratch.join(i.to_string()), to, f)?);
        }
        remove_dir(&scratch)?;
        fingerprint::write_stamp(
            &stamp_path,
            &Stamp {
                inputs: inputs.clone(),
                outputs,
                summary,
                duration_s: record.duration_s,
                source: record.source.clone(),
            },
        )?;
        Ok((built, record, bytes))
    }

    /// Pushes the stage whose stamp was just written (read-write mode):
    /// the artifact is tagged by `inputs`, unless the tag already holds a
    /// sound artifact (a tag is written once; a damaged one is replaced).
    pub fn push(&self, env: &BuildEnv, c: &dyn Component) -> anyhow::Result<()> {
        let name = c.spec().name;
        if self.is_down() {
            tracing::warn!(
                "{name}: not pushed: the cache remote was unavailable earlier in this run"
            );
            return Ok(());
        }
        let result = self.upload(env, name);
        match result {
            Ok(Upload::Pushed { location, bytes }) => {
                tracing::info!("{name}: pushed to {location} ({})", human_bytes(bytes));
                Ok(())
            }
            Ok(Upload::Kept {
                location,
                differing,
            }) if differing.is_empty() => {
                tracing::info!("{name}: {location} already holds these bytes; not pushed");
                Ok(())
            }
            Ok(Upload::Kept {
                location,
                differing,
            }) => {
                tracing::warn!(
                    "{name}: not pushed: {location} already holds this fingerprint built with other bytes, so this build is not reproducible; the first copy is kept. Files that differ: {}",
                    differing.join(", ")
                );
                Ok(())
            }
            Err(e) if e.is::<Unreachable>() => self.unavailable(name, e.context("pushing")),
            // Not shareable, or a local read error: this push only.
            Err(e) => {
                tracing::warn!("{name}: not pushed: {e:#}");
                Ok(())
            }
        }
    }

    fn upload(&self, env: &BuildEnv, name: &str) -> anyhow::Result<Upload> {
        let roots = roots(env)?;
        let stamp: Stamp<artifact::Outputs> = fingerprint::read_stamp(&env.work.stamp(name))
            .ok_or_else(|| NotShareable(format!("{name} has no stamp")))?;
        // Only what was built from the pinned bytes is shared (the caller
        // pushes only a clean, hashed tree's build; this holds it here too).
        if stamp.inputs.contains_key("dirty") {
            bail!(NotShareable(
                "it was built from a tree with local changes (--allow-dirty)".into()
            ));
        }
        let mut files: Vec<RecordFile> = Vec::new();
        let mut outputs = Vec::new();
        for out in &stamp.outputs {
            // A path a stage lists twice is one file.
            if outputs.iter().any(|o: &&OutputFile| o.path == out.path) {
                continue;
            }
            outputs.push(out);
            let rel = out
                .path
                .to_str()
                .and_then(|p| roots.relative(p))
                .ok_or_else(|| {
                    NotShareable(format!(
                        "its output {} is outside the work and install dirs",
                        out.path.display()
                    ))
                })?;
            let meta = std::fs::metadata(&out.path)
                .with_context(|| format!("reading {}", out.path.display()))?;
            files.push(RecordFile {
                path: rel,
                size: out.size,
                sha256: out.sha256.clone(),
                // No set-id bits travel.
                mode: meta.permissions().mode() & 0o777,
            });
        }
        let record = Record {
            stage: name.to_string(),
            summary: stamp.summary.tokenized(&roots),
            files,
            source: stamp.source.clone(),
            duration_s: stamp.duration_s,
        };
        let record_bytes = serde_json::to_vec(&record).context("serializing the record")?;
        let sha = stamp.inputs.get("sha").cloned().unwrap_or_default();
        let manifest = artifact::manifest(
            &record,
            &record_bytes,
            &sha,
            &fingerprint::shared(&stamp.inputs),
        );
        let reference = self.registry.reference(name, &tag(&stamp.inputs));
        let digest = |b: &[u8]| format!("sha256:{}", crate::hash::sha256_hex(b));
        let again = self.refused.lock().unwrap().contains(&tag(&stamp.inputs));
        // A tag is written once: an artifact that passes the pull's checks
        // is never replaced, so no box can swap what others pull (a
        // damaged one, refused by this run's pull or failing the checks
        // here, is pushed again).
        if !again && let Some(theirs) = self.sound_record(name, &reference, &stamp.inputs)? {
            return Ok(Upload::Kept {
                location: self.location(name, &stamp.inputs),
                differing: differing_files(&theirs, &record),
            });
        }
        self.registry.push_blob(
            &reference,
            artifact::EMPTY.to_vec(),
            &digest(artifact::EMPTY),
            again,
        )?;
        let mut bytes = record_bytes.len() as u64;
        self.registry.push_blob(
            &reference,
            record_bytes.clone(),
            &digest(&record_bytes),
            again,
        )?;
        for (f, out) in record.files.iter().zip(&outputs) {
            let data = std::fs::read(&out.path)
                .with_context(|| format!("reading {}", out.path.display()))?;
            // What is pushed is what the stamp recorded, or nothing.
            if crate::hash::sha256_hex(&data) != f.sha256 {
                bail!(NotShareable(format!(
                    "{} changed since the stage recorded it",
                    out.path.display()
                )));
            }
            bytes += data.len() as u64;
            self.registry
                .push_blob(&reference, data, &format!("sha256:{}", f.sha256), again)?;
        }
        self.registry.push_manifest(&reference, manifest.clone())?;
        if again {
            self.still_damaged(name, &reference, &manifest);
        }
        Ok(Upload::Pushed {
            location: self.location(name, &stamp.inputs),
            bytes,
        })
    }

    /// The record of the artifact the registry has at `reference`, if it
    /// passes the checks a pull makes before downloading the files (the
    /// manifest against the wanted inputs, the record, the layers against
    /// the record). A blob damaged at rest is found by the pull that reads
    /// it, which then refuses the tag and lets this run push it again.
    fn sound_record(
        &self,
        name: &str,
        reference: &oci_client::Reference,
        inputs: &Fingerprint,
    ) -> anyhow::Result<Option<Record>> {
        let Found::Manifest(manifest) = self.registry.manifest(reference)? else {
            return Ok(None);
        };
        let Ok((m, record_layer)) =
            artifact::check_manifest(&manifest, name, &fingerprint::shared(inputs))
        else {
            return Ok(None);
        };
        let record_bytes = match self.registry.blob(reference, &record_layer) {
            Ok(bytes) => bytes,
            Err(e) if e.is::<Unreachable>() => return Err(e),
            Err(_) => return Ok(None),
        };
        let Ok(record) = serde_json::from_slice::<Record>(&record_bytes) else {
            return Ok(None);
        };
        Ok(artifact::check_layers(&m, &record, name)
            .is_ok()
            .then_some(record))
    }
}

/// What a push did.
enum Upload {
    Pushed {
        location: String,
        bytes: u64,
    },
    /// The tag already held a sound artifact, kept; `differing` names the
    /// files whose bytes are not this build's (empty: the same bytes).
    Kept {
        location: String,
        differing: Vec<String>,
    },
}

/// The files of two records of one fingerprint whose bytes differ, or
/// that only one of them has.
fn differing_files(theirs: &Record, ours: &Record) -> Vec<String> {
    let digests = |r: &Record| -> std::collections::BTreeMap<String, String> {
        r.files
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect()
    };
    let (theirs, ours) = (digests(theirs), digests(ours));
    let mut paths: Vec<String> = theirs
        .keys()
        .chain(ours.keys())
        .filter(|p| theirs.get(*p) != ours.get(*p))
        .cloned()
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

impl Share {
    /// After re-pushing a refused tag: reads every blob back, and says so
    /// if the registry still serves a damaged one. A registry keeps the
    /// first copy of a blob it stores (distribution does not overwrite a
    /// digest it has), so a blob damaged at rest outlives any push.
    fn still_damaged(&self, name: &str, reference: &oci_client::Reference, manifest: &[u8]) {
        let Ok(m) = serde_json::from_slice::<oci_client::manifest::OciImageManifest>(manifest)
        else {
            return;
        };
        for layer in &m.layers {
            if let Err(e) = self.registry.blob(reference, layer) {
                tracing::warn!(
                    "{name}: the registry still serves a damaged blob {} after the push ({e:#}); it keeps the first copy of a blob, so an admin must delete it (DELETE /v2/<name>/blobs/<digest>, or the registry's garbage-collect) before a push can mend the tag",
                    layer.digest
                );
            }
        }
    }
}

/// An output that cannot be shared (not a registry problem).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotShareable(String);

/// Refuses pulled files that are not exactly the outputs `built`
/// describes (and build.sh's `source-commit.<table>`), or that would land
/// outside the stage's products (its wrappers excepted) and the install
/// dir: a record can never write over anything else of the user's.
fn check_targets(
    env: &BuildEnv,
    c: &dyn Component,
    built: &Built,
    targets: &[PathBuf],
) -> Result<(), Damaged> {
    let record = env.work.source_commit(c.spec().table);
    let expected: BTreeSet<PathBuf> = c
        .output_files(built)
        .into_iter()
        .chain([record.clone()])
        .collect();
    let got: BTreeSet<PathBuf> = targets.iter().cloned().collect();
    if got.len() != targets.len() {
        return Err(Damaged("its record names a file twice".into()));
    }
    if got != expected {
        let show = |set: Vec<&PathBuf>| {
            set.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Damaged(format!(
            "its files are not the outputs it describes (missing: {}; not outputs: {})",
            show(expected.difference(&got).collect()),
            show(got.difference(&expected).collect())
        )));
    }
    let dir = env.work.stage(c.spec().name);
    let wrappers = dir.product(super::wrappers::DIR);
    let products: Vec<PathBuf> = c
        .products(&dir)
        .into_iter()
        .filter(|p| *p != wrappers)
        .collect();
    for t in targets {
        // Under the work dir: only the stage's own products (an install
        // dir that holds the work dir, `--install .` or `/`, gives no
        // licence there); elsewhere: only the install dir.
        let allowed = if t.starts_with(env.work.root()) {
            *t == record || products.iter().any(|p| t.starts_with(p))
        } else {
            t.starts_with(&env.install)
        };
        if !allowed {
            return Err(Damaged(format!(
                "it would write {}, outside {}'s products and the install dir",
                t.display(),
                c.spec().name
            )));
        }
    }
    Ok(())
}

/// Moves a pulled, checked file to its output path with its mode, and
/// records it as the stamp records outputs.
fn place(from: &Path, to: &Path, f: &RecordFile) -> anyhow::Result<OutputFile> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::rename(from, to) {
        // The install dir on another filesystem than the work dir: copy
        // beside the target, then rename there (still atomic).
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let dir = to.parent().unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            std::fs::copy(from, tmp.path())
                .with_context(|| format!("copying {} into place", to.display()))?;
            tmp.persist(to)
                .with_context(|| format!("moving {} into place", to.display()))?;
            std::fs::remove_file(from).ok();
        }
        other => other.with_context(|| format!("moving {} into place", to.display()))?,
    }
    // No set-id bits travel.
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(f.mode & 0o777))
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    let meta = std::fs::metadata(to).with_context(|| format!("reading {}", to.display()))?;
    Ok(OutputFile {
        path: to.to_path_buf(),
        size: meta.len(),
        mtime_ns: fingerprint::mtime_ns(&meta),
        // Checked against the layer's digest as it arrived.
        sha256: f.sha256.clone(),
    })
}

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn path_text(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

/// This box's work and install dirs.
fn roots(env: &BuildEnv) -> anyhow::Result<artifact::Roots> {
    Ok(artifact::Roots::new(
        &path_text(env.work.root())?,
        &path_text(&env.install)?,
    ))
}

/// The tag of a stage built from `inputs`: its key is the inputs that
/// mean the same on every machine.
fn tag(inputs: &Fingerprint) -> String {
    artifact::tag(&fingerprint::shared(inputs))
}

/// The recorded source facts of a stage's stamp, if it has them.
pub fn recorded_source(env: &BuildEnv, stage: &str) -> Option<SourceRecord> {
    fingerprint::read_stamp::<serde::de::IgnoredAny>(&env.work.stamp(stage))?.source
}
