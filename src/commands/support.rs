//! Can this stack launch an SEV-SNP guest, and with which initial VMSA:
//! the rules of [`crate::snp_support`] asked of the stages that have a
//! launch role (the host kernel, QEMU), three times over a build:
//!
//! - [`check_pins`], at load time: what the pins name (`tag v8.2.0`,
//!   `branch linux-6.10.y`), before anything is fetched;
//! - [`check_trees`], once fetched: what the trees say (`VERSION`, the
//!   kernel's `Makefile`), which catches a commit pin;
//! - [`release_choice`], when packaging: the VMSA mode from the versions
//!   the stages built, which every digest of the release assumes.
//!
//! A refusal is a usage error (exit 2) with every reason;
//! `--allow-unsupported` turns it into a warning.

use crate::config::pin::Rev;
use crate::error::UsageError;
use crate::snp_support::{self, Choice, Lineage, Side, Version};
use crate::source::Synced;
use crate::stage::{Component, Outcome, Stack};

/// The name a pin gives its revision (`v9.1.0`, `snp-latest`); a bare
/// commit has none.
fn rev_name(rev: &Rev) -> Option<&str> {
    match rev {
        Rev::Branch { name } | Rev::Tag { name } => Some(name),
        Rev::Commit { branch, .. } => branch.as_deref(),
    }
}

/// The lineage of a component's pin.
fn lineage_of(c: &dyn Component) -> Lineage {
    match c.source() {
        Some(s) => snp_support::lineage(&s.url.redacted(), rev_name(&s.rev)),
        None => Lineage::Fork,
    }
}

/// A component's side of the launch as its pin names it: the version is
/// known only from an upstream release name (a tag `v8.2.0`, a branch
/// `linux-6.12.y`).
fn pin_side(c: &dyn Component) -> Option<Side> {
    let role = c.spec().launch_role?;
    let source = c.source()?;
    let lineage = lineage_of(c);
    let version = rev_name(&source.rev)
        .filter(|_| lineage == Lineage::Upstream)
        .and_then(Version::find_in);
    Some(Side {
        role,
        lineage,
        version,
        from: format!("[{}] {}", c.spec().table, source.rev),
    })
}

/// Refuses (exit 2) the sides that cannot launch SNP, or warns with
/// `allow`.
fn refuse(sides: &[Side], allow: bool, when: &str) -> anyhow::Result<()> {
    let reasons: Vec<String> = sides.iter().filter_map(Side::unsupported).collect();
    if reasons.is_empty() {
        return Ok(());
    }
    if allow {
        for r in &reasons {
            tracing::warn!("{r} (going ahead: --allow-unsupported)");
        }
        return Ok(());
    }
    Err(UsageError::new(format!(
        "this stack cannot launch SEV-SNP guests ({when}):\n  {}",
        reasons.join("\n  ")
    ))
    .help("pin a newer upstream release (`snp-build init --stack upstream` writes one that can), or AMD's SNP branches; --allow-unsupported builds it anyway")
    .into())
}

/// At load time: the pins of the selected stages.
pub fn check_pins(components: &[&dyn Component], allow: bool) -> anyhow::Result<()> {
    let sides: Vec<Side> = components.iter().filter_map(|c| pin_side(*c)).collect();
    refuse(&sides, allow, "as pinned")
}

/// For `plan`, which builds nothing: what a build would refuse, as
/// warnings.
pub fn warn_pins(components: &[&dyn Component]) {
    for c in components {
        if let Some(reason) = pin_side(*c).as_ref().and_then(Side::unsupported) {
            tracing::warn!("{reason} (a build refuses this; --allow-unsupported builds it)");
        }
    }
}

/// Once fetched: what the trees say of themselves.
pub fn check_trees(
    components: &[&dyn Component],
    synced: &[Synced],
    allow: bool,
) -> anyhow::Result<()> {
    let mut sides = Vec::new();
    for c in components {
        let (Some(role), Some(s)) = (
            c.spec().launch_role,
            synced.iter().find(|s| s.source == c.spec().name),
        ) else {
            continue;
        };
        let version = snp_support::tree_version(role, &s.tree);
        sides.push(Side {
            role,
            lineage: lineage_of(*c),
            version,
            from: format!("its tree at {}", short(&s.sha)),
        });
    }
    refuse(&sides, allow, "as fetched")
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The VMSA mode of a release: from the host kernel and QEMU its stages
/// built (as they report their versions), the pins' lineage beside them.
pub fn release_choice(stack: &Stack, outcomes: &[Outcome]) -> Choice {
    let side = |role| {
        let c = stack
            .components()
            .find(|c| c.spec().launch_role == Some(role))?;
        let built = outcomes
            .iter()
            .find(|o| o.stage == c.spec().name)
            .and_then(|o| o.outputs.as_ref())?;
        let reported = c.launch_version(built)?;
        Some(Side {
            role,
            lineage: lineage_of(c),
            version: Version::find_in(&reported),
            from: "built".into(),
        })
    };
    let host = side(snp_support::Role::HostKernel);
    let qemu = side(snp_support::Role::Qemu);
    snp_support::choose(host.as_ref(), qemu.as_ref())
}
