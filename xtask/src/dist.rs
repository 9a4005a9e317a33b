//! `cargo xtask dist`: the release binary an admin copies to an EPYC host,
//! checked to need nothing there but the C library.
//!
//! A minimal Debian, Ubuntu or Fedora host has glibc and libgcc's unwinder
//! (both in every distribution's minimal set: Debian's `libc6` and
//! `libgcc-s1` are Priority: required) and nothing else we can count on:
//! no OpenSSL 3, and on Fedora a differently named zlib. So OpenSSL and
//! zlib are linked in statically (Cargo.toml), and this chore fails when
//! the ELF's `NEEDED` entries name anything outside [`crate::elf::ALLOWED`].
//!
//! Then it packages that binary as `target/debian/snp-build_<version>_amd64.deb`
//! (under `CARGO_TARGET_DIR` when set; see [`crate::deb`]), whose
//! `Depends:` are the packages of those same libraries.

use anyhow::{Context, Result, bail};

use crate::elf::{ALLOWED, OLDEST_GLIBC, needed_libraries, newest_glibc};

/// Builds the release binary, checks its dynamic dependencies against
/// [`crate::elf::ALLOWED`] and the glibc symbol versions it needs against
/// [`OLDEST_GLIBC`], prints its path, size and `NEEDED` list, then
/// builds the .deb from it and prints the package's path.
pub fn run() -> Result<()> {
    let bin = crate::report::release_binary()?;
    let needed = needed_libraries(&bin)?;
    let glibc = newest_glibc(&bin)?;
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
    println!("glibc:   needs {}.{} or later", glibc.0, glibc.1);
    if glibc > OLDEST_GLIBC {
        bail!(
            "{} needs glibc {}.{}, newer than the oldest supported host's {}.{} (Ubuntu 22.04): build on an older distribution",
            bin.display(),
            glibc.0,
            glibc.1,
            OLDEST_GLIBC.0,
            OLDEST_GLIBC.1
        );
    }
    println!(
        "ok:      only libc-family libraries, glibc <= {}.{} (see xtask/src/elf.rs)",
        OLDEST_GLIBC.0, OLDEST_GLIBC.1
    );
    let deb = crate::deb::build(&bin, &crate::report::target_dir().join("debian"))?;
    let size = std::fs::metadata(&deb)
        .with_context(|| format!("reading {}", deb.display()))?
        .len();
    println!(
        "deb:     {} ({:.1} MiB)",
        deb.display(),
        size as f64 / 1048576.0
    );
    Ok(())
}
