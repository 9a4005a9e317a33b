//! The release of a build: each stage's files and manifest section, asked
//! of the stage itself, handed to [`crate::release`] as plain data.

use std::path::Path;

use super::ReleaseTarget;
use crate::release::{Part, Release, ReleaseFile, Section};
use crate::source::Synced;
use crate::stage::{BuildEnv, Outcome, Stack};

/// The release made from `outcomes` (the stages it packages, in build
/// order) of `stack`.
pub fn release_of<'a>(
    stack: &'a Stack,
    env: &'a BuildEnv,
    synced: &'a [Synced],
    outcomes: &[Outcome],
    lock_path: &'a Path,
    target: &'a ReleaseTarget,
) -> anyhow::Result<Release<'a>> {
    let mut parts = Vec::new();
    for o in outcomes {
        let (Some(c), Some(built)) = (stack.get(o.stage), &o.outputs) else {
            continue;
        };
        let mut files = c.release_files(built, env)?;
        // What a dirty build built differs from the pin by this diff.
        if let Some(dirty) = synced
            .iter()
            .find(|s| s.source == o.stage)
            .and_then(|s| s.dirty.as_ref())
        {
            files.push(ReleaseFile::new(
                format!("dirty/{}.diff", o.stage),
                &dirty.diff,
            ));
        }
        parts.push(Part {
            stage: o.stage,
            commit_file: env.work.source_commit(c.spec().table),
            files,
        });
    }
    let sections = stack
        .components()
        .map(|c| Section {
            key: c.spec().manifest,
            body: outcomes
                .iter()
                .find(|o| o.stage == c.spec().name)
                .and_then(|o| o.outputs.as_ref())
                .map(|built| c.manifest(built)),
        })
        .collect();
    Ok(Release {
        work: &env.work,
        parts,
        sections,
        synced,
        pin_text: &stack.redacted,
        lock_path,
        package_format: env.package_format,
        forced: env.force.forces(crate::release::STAGE),
        output: target.output.clone(),
        date: target.date.clone(),
        source_date_epoch: target.source_date_epoch,
        signer: target.signer.as_deref(),
        sign_key_id: target.sign_key_id.clone(),
        installer: target.installer.clone(),
        manifest_schema: crate::schema::to_bytes(&stack.manifest_schema()),
        launch: super::support::release_choice(stack, outcomes),
    })
}
