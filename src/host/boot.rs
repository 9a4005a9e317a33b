//! Can the host boot a kernel release it has installed? Two things must
//! exist besides `/boot/vmlinuz-<kr>`, and neither is made by the kernel
//! package itself: its postinst only runs the hooks other packages put in
//! `/etc/kernel/postinst.d/` (initramfs-tools, dracut, grub).
//!
//! - **The initramfs**, when the kernel uses one (`CONFIG_BLK_DEV_INITRD=y`
//!   in `/boot/config-<kr>`, or no config to tell): `/boot/initrd.img-<kr>`
//!   (initramfs-tools) or `/boot/initramfs-<kr>.img` (dracut).
//! - **A boot loader entry**: `vmlinuz-<kr>` named in `/boot/grub/grub.cfg`
//!   or `/boot/grub2/grub.cfg`, or a Boot Loader Specification entry
//!   (systemd-boot, kernel-install, Fedora's grub) in `loader/entries/`
//!   under `/boot`, `/efi` or `/boot/efi`.
//!
//! Used after a live install and by `doctor --host --release DIR`; each
//! failing check names what is missing and the command that makes it.

use std::path::{Path, PathBuf};

use super::PackageFormat;
use super::doctor::{Check, Status};

/// The two checks for kernel release `kr` on the system under `root`.
pub fn check(root: &Path, kr: &str, format: PackageFormat) -> Vec<Check> {
    vec![
        initramfs_check(root, kr, format),
        loader_check(root, kr, format),
    ]
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Whether the kernel can use an initramfs: its config says so, or there
/// is no config to ask (then, as distributions' kernels do, it is assumed).
fn wants_initramfs(root: &Path, kr: &str) -> bool {
    match std::fs::read_to_string(under(root, &format!("/boot/config-{kr}"))) {
        Ok(config) => config
            .lines()
            .any(|l| l.trim() == "CONFIG_BLK_DEV_INITRD=y"),
        Err(_) => true,
    }
}

fn initramfs_check(root: &Path, kr: &str, format: PackageFormat) -> Check {
    let name = format!("initramfs for {kr}");
    if !wants_initramfs(root, kr) {
        return Check::new(name, Status::Ok, "not used (no CONFIG_BLK_DEV_INITRD)");
    }
    let candidates = [
        format!("/boot/initrd.img-{kr}"),
        format!("/boot/initramfs-{kr}.img"),
    ];
    if let Some(found) = candidates.iter().find(|c| under(root, c).is_file()) {
        return Check::new(name, Status::Ok, found.as_str());
    }
    let has = |tool: &str| under(root, &format!("/usr/sbin/{tool}")).exists();
    let help = match format {
        PackageFormat::Rpm if has("dracut") => format!("run: dracut --kver {kr}"),
        PackageFormat::Rpm => format!("run: dnf install dracut && dracut --kver {kr}"),
        _ if has("update-initramfs") => format!("run: update-initramfs -c -k {kr}"),
        _ => format!(
            "no initramfs generator is installed; run: apt-get install --no-install-recommends initramfs-tools && update-initramfs -c -k {kr}"
        ),
    };
    Check::new(name, Status::Missing, format!("no {}", candidates[0]))
        .needed("an initramfs image (the kernel has CONFIG_BLK_DEV_INITRD=y)")
        .help(help)
}

fn loader_check(root: &Path, kr: &str, format: PackageFormat) -> Check {
    let name = format!("boot loader entry for {kr}");
    let image = format!("vmlinuz-{kr}");
    let grub_cfgs = ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
    for cfg in grub_cfgs {
        if std::fs::read_to_string(under(root, cfg)).is_ok_and(|t| names(&t, &image)) {
            return Check::new(name, Status::Ok, cfg);
        }
    }
    for dir in [
        "/boot/loader/entries",
        "/efi/loader/entries",
        "/boot/efi/loader/entries",
    ] {
        let Ok(entries) = std::fs::read_dir(under(root, dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let stem = file.strip_suffix(".conf").unwrap_or(&file);
            let named = stem == kr || stem.ends_with(&format!("-{kr}"));
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let version = text
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["version", kr]);
            if named || version || names(&text, &image) {
                return Check::new(name, Status::Ok, format!("{dir}/{file}"));
            }
        }
    }
    let grub_cfg = grub_cfgs.iter().find(|c| under(root, c).is_file());
    let help = match (format, grub_cfg) {
        (PackageFormat::Rpm, _) => {
            format!("run: kernel-install add {kr} /boot/vmlinuz-{kr} (or grub2-mkconfig -o /boot/grub2/grub.cfg)")
        }
        (_, Some(_)) => "run: update-grub".to_string(),
        (_, None) => "no boot loader configuration was found (/boot/grub/grub.cfg, loader/entries): install one (apt-get install grub-efi-amd64, or grub-pc), then run: update-grub".to_string(),
    };
    Check::new(
        name,
        Status::Missing,
        match grub_cfg {
            Some(cfg) => format!("{cfg} does not name {image}"),
            None => "no grub.cfg and no loader entries".to_string(),
        },
    )
    .needed(format!("a boot entry for /boot/{image}"))
    .help(help)
}

/// Whether `text` names `image` as a whole word: `vmlinuz-6.1.0-snp` is
/// not named by `vmlinuz-6.1.0-snp-old`.
fn names(text: &str, image: &str) -> bool {
    let release_char = |c: char| c.is_ascii_alphanumeric() || "._+~-".contains(c);
    text.match_indices(image).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + image.len()..].chars().next();
        !before.is_some_and(release_char) && !after.is_some_and(release_char)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, abs: &str, text: &str) {
        let p = under(root, abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn an_entry_must_name_this_very_release() {
        assert!(names(
            "linux /boot/vmlinuz-6.1.0-snp root=x",
            "vmlinuz-6.1.0-snp"
        ));
        assert!(!names(
            "linux /boot/vmlinuz-6.1.0-snp-old root=x",
            "vmlinuz-6.1.0-snp"
        ));
        assert!(!names(
            "linux /boot/vmlinuz-6.1.0-snp+ root=x",
            "vmlinuz-6.1.0-snp"
        ));
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/boot/config-6.1.0-snp",
            "# CONFIG_BLK_DEV_INITRD is not set\n",
        );
        write(
            root.path(),
            "/boot/loader/entries/x-6.1.0-snp-old.conf",
            "version 6.1.0-snp-old\n",
        );
        let checks = check(root.path(), "6.1.0-snp", PackageFormat::Rpm);
        assert_eq!(checks[1].status, Status::Missing, "{checks:?}");
    }

    #[test]
    fn a_bare_host_misses_both_and_says_how_to_fix_them() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/boot/config-6.1.0-snp",
            "CONFIG_BLK_DEV_INITRD=y\n",
        );
        let checks = check(root.path(), "6.1.0-snp", PackageFormat::Deb);
        assert!(
            checks.iter().all(|c| c.status == Status::Missing),
            "{checks:?}"
        );
        assert!(
            checks[0]
                .help
                .as_ref()
                .unwrap()
                .contains("update-initramfs -c -k 6.1.0-snp")
        );
        assert!(checks[1].help.as_ref().unwrap().contains("update-grub"));
    }

    #[test]
    fn an_initrd_and_a_grub_entry_make_it_bootable() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/boot/config-6.1.0-snp",
            "CONFIG_BLK_DEV_INITRD=y\n",
        );
        write(root.path(), "/boot/initrd.img-6.1.0-snp", "");
        write(
            root.path(),
            "/boot/grub/grub.cfg",
            "linux /boot/vmlinuz-6.1.0-snp root=/dev/sda1\n",
        );
        let checks = check(root.path(), "6.1.0-snp", PackageFormat::Deb);
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        // A kernel without initramfs support needs none.
        write(
            root.path(),
            "/boot/config-6.1.0-tiny",
            "# CONFIG_BLK_DEV_INITRD is not set\n",
        );
        write(
            root.path(),
            "/boot/loader/entries/x-6.1.0-tiny.conf",
            "linux /vmlinuz-6.1.0-tiny\n",
        );
        let checks = check(root.path(), "6.1.0-tiny", PackageFormat::Rpm);
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
    }
}
