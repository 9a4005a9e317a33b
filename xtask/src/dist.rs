//! `cargo xtask dist`: the release binary an admin copies to an EPYC host,
//! checked to need nothing there but the C library.
//!
//! A minimal Debian, Ubuntu or Fedora host has glibc and libgcc's unwinder
//! (both in every distribution's minimal set: Debian's `libc6` and
//! `libgcc-s1` are Priority: required) and nothing else we can count on:
//! no OpenSSL 3, and on Fedora a differently named zlib. So OpenSSL and
//! zlib are linked in statically (Cargo.toml), and this chore fails when
//! the ELF's `NEEDED` entries name anything outside [`ALLOWED`].

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

/// Builds the release binary, checks its dynamic dependencies against
/// [`ALLOWED`] and prints its path, size and `NEEDED` list.
pub fn run() -> Result<()> {
    let bin = crate::report::release_binary()?;
    let needed = needed_libraries(&bin)?;
    let size = std::fs::metadata(&bin)
        .with_context(|| format!("reading {}", bin.display()))?
        .len();
    println!("binary:  {}", bin.display());
    println!(
        "size:    {} bytes ({:.1} MiB)",
        size,
        size as f64 / 1048576.0
    );
    println!("needs:   {}", needed.join(", "));
    let extra: Vec<&String> = needed
        .iter()
        .filter(|n| !ALLOWED.contains(&n.as_str()))
        .collect();
    if !extra.is_empty() {
        bail!(
            "{} needs shared libraries a minimal host may lack: {} (allowed: {})",
            bin.display(),
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ALLOWED.join(", ")
        );
    }
    println!("ok:      only libc-family libraries (see xtask/src/dist.rs)");
    Ok(())
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
}
