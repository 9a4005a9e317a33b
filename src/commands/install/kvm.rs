//! `<root>/etc/modprobe.d/kvm.conf`: written atomically (0644); a
//! different existing file is first kept as `kvm.conf.bak-<UTC stamp>`;
//! an identical one is left alone.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::fsutil::{utc_stamp, write_atomic};

/// What happens to `<root>/etc/modprobe.d/kvm.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KvmAction {
    /// No file there: write ours.
    Create,
    /// A different file there: back it up, then write ours.
    Replace { backup: PathBuf },
    /// The file an earlier snp-build install wrote (its hash is in the
    /// record): rewritten without a backup, and the earlier install's
    /// backup (the admin's original) stays the one `uninstall` restores.
    Update,
    /// Already ours, byte for byte.
    Unchanged,
}

impl KvmAction {
    pub(super) fn name(&self) -> &'static str {
        match self {
            KvmAction::Create => "created",
            KvmAction::Replace { .. } => "replaced",
            KvmAction::Update => "updated",
            KvmAction::Unchanged => "unchanged",
        }
    }
}

/// What to do with `dest`; `earlier` is the SHA-256 of the kvm.conf an
/// earlier install wrote there (from its record), if any.
pub(super) fn plan_kvm_conf(
    dest: &Path,
    ours: &[u8],
    earlier: Option<&str>,
    now: std::time::SystemTime,
) -> anyhow::Result<KvmAction> {
    match std::fs::read(dest) {
        Ok(existing) if existing == ours => Ok(KvmAction::Unchanged),
        Ok(existing) if Some(crate::hash::sha256_hex(&existing).as_str()) == earlier => {
            Ok(KvmAction::Update)
        }
        Ok(_) => Ok(KvmAction::Replace {
            backup: backup_path(dest, now),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KvmAction::Create),
        Err(e) => Err(e).with_context(|| format!("reading {}", dest.display())),
    }
}

/// `<dest>.bak-<UTC stamp>`, with `-N` appended while that name is taken.
pub(super) fn backup_path(dest: &Path, now: std::time::SystemTime) -> PathBuf {
    let base = format!("{}.bak-{}", dest.display(), utc_stamp(now));
    let mut candidate = PathBuf::from(&base);
    let mut n = 0;
    while candidate.symlink_metadata().is_ok() {
        n += 1;
        candidate = PathBuf::from(format!("{base}-{n}"));
    }
    candidate
}

/// Backs up (when replacing) and writes kvm.conf, mode 0644.
pub(super) fn apply_kvm_conf(dest: &Path, ours: &[u8], action: &KvmAction) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match action {
        KvmAction::Unchanged => return Ok(()),
        KvmAction::Replace { backup } => {
            std::fs::copy(dest, backup).with_context(|| {
                format!("backing up {} to {}", dest.display(), backup.display())
            })?;
        }
        KvmAction::Create | KvmAction::Update => {}
    }
    write_atomic(dest, ours)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn backups_get_a_utc_stamp_and_a_counter_when_taken() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("kvm.conf");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_369_295);
        let first = backup_path(&dest, t);
        assert_eq!(first, dir.path().join("kvm.conf.bak-20261122T174135Z"));
        std::fs::write(&first, "x").unwrap();
        assert_eq!(
            backup_path(&dest, t),
            dir.path().join("kvm.conf.bak-20261122T174135Z-1")
        );
    }

    #[test]
    fn kvm_conf_plans() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("kvm.conf");
        let now = SystemTime::now();
        assert_eq!(
            plan_kvm_conf(&dest, b"a\n", None, now).unwrap(),
            KvmAction::Create
        );
        std::fs::write(&dest, "a\n").unwrap();
        assert_eq!(
            plan_kvm_conf(&dest, b"a\n", None, now).unwrap(),
            KvmAction::Unchanged
        );
        assert!(matches!(
            plan_kvm_conf(&dest, b"b\n", None, now).unwrap(),
            KvmAction::Replace { .. }
        ));
        // The file an earlier install wrote is updated without a backup.
        let earlier = crate::hash::sha256_hex(b"a\n");
        assert_eq!(
            plan_kvm_conf(&dest, b"b\n", Some(&earlier), now).unwrap(),
            KvmAction::Update
        );
    }
}
