//! What a built binary needs from its host, read from its ELF (binutils'
//! `readelf`): the shared libraries it names and the newest glibc symbol
//! version it imports, against what a minimal host has. `cargo xtask dist`
//! checks the release binary with it, and the .deb ([`crate::deb`]) takes
//! its `Depends:` from the same facts.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// Shared libraries the binary may need: glibc's own (libc, libm, the
/// dynamic loader, and the pre-2.34 split-outs libpthread, libdl, librt,
/// which are part of the same package) and libgcc_s, Rust's unwinder.
pub const ALLOWED: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "libgcc_s.so.1",
];

/// The oldest glibc among the hosts the binary must start on: Ubuntu
/// 22.04's 2.35 (Debian 12 has 2.36, Ubuntu 24.04 2.39, Fedora 39+ 2.38+).
pub const OLDEST_GLIBC: (u32, u32) = (2, 35);

/// The newest `GLIBC_x.y` symbol version the binary imports (`readelf
/// --dyn-syms`): the oldest glibc it starts with.
pub fn newest_glibc(bin: &Path) -> Result<(u32, u32)> {
    let out = Command::new("readelf")
        .args(["--dyn-syms", "--wide"])
        .arg(bin)
        .output()
        .context("running readelf (Debian: binutils)")?;
    if !out.status.success() {
        bail!("readelf --dyn-syms {} failed", bin.display());
    }
    Ok(parse_glibc(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_glibc(text: &str) -> (u32, u32) {
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
            Some((major, minor))
        })
        .max()
        .unwrap_or((0, 0))
}

/// The `NEEDED` entries of an ELF file's dynamic section (`readelf -d`),
/// which are what the loader must find; `ldd` would add what those need
/// in turn, on this machine.
pub fn needed_libraries(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(bin)
        .output()
        .context("running readelf (Debian: binutils)")?;
    if !out.status.success() {
        bail!(
            "readelf -d {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_needed(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_needed(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l[start..].find(']')? + start;
            Some(l[start..end].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn needed_entries_are_read_from_readelf_output() {
        let text = " 0x0000000000000001 (NEEDED)             Shared library: [libssl.so.3]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000000c (INIT)               0x5000\n";
        assert_eq!(super::parse_needed(text), ["libssl.so.3", "libc.so.6"]);
    }

    #[test]
    fn the_newest_glibc_version_is_found() {
        let text = "  1: 0 0 FUNC GLOBAL DEFAULT UND memcpy@GLIBC_2.14 (2)\n  2: 0 0 FUNC GLOBAL DEFAULT UND statx@GLIBC_2.28 (3)\n  3: 0 0 FUNC GLOBAL DEFAULT UND __libc_start_main@GLIBC_2.34 (4)\n  4: 0 0 FUNC GLOBAL DEFAULT UND x@GLIBC_2.2.5 (5)\n";
        assert_eq!(super::parse_glibc(text), (2, 34));
    }
}
