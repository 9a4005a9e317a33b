//! The host's package manager, in one place: `apt-get` on Debian-like
//! hosts, `dnf` elsewhere. How its lists are refreshed and packages
//! installed, as argument vectors (shown as typed, run without a shell),
//! for the two things snp-build installs from a distribution:
//! - a build box's tools (`doctor --fix`, [`fix`]): the line the doctor
//!   prints, `apt-get install -y PKG...`, recommends included, as a person
//!   would type it (gcc's recommended libc6-dev is what compiles anything);
//! - a release's QEMU's libraries (`install`): without recommends or weak
//!   dependencies (`qemu-system-x86` with recommends brought a desktop).
//!
//! Guarantees:
//! - apt and dpkg never stop to ask (`DEBIAN_FRONTEND=noninteractive`).
//! - A failed refresh (offline, a mirror down) does not stop an install:
//!   the lists already on the system may do, and the install says what it
//!   could not get.
//! - Not root: through `sudo` when it is on `PATH` (apt's variable passed
//!   through sudo's reset environment); otherwise nothing is run and the
//!   error says to run the line as root. No `apt-get` or `dnf` on `PATH`
//!   (another distribution): nothing is run, and the error gives the line.

use std::path::Path;

use serde::Serialize;

use super::PackageFormat;
use crate::exec::Cmd;

/// The distro family whose package names and installer a fix uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    Debian,
    Fedora,
}

/// Whether an install takes the packages' recommends (weak dependencies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recommends {
    With,
    Without,
}

impl Distro {
    /// Debian-like (`ID` or `ID_LIKE` has `debian`), else Fedora naming.
    pub fn detect(os_release_path: &Path) -> Distro {
        if super::is_debian_like(&super::os_release(os_release_path)) {
            Distro::Debian
        } else {
            Distro::Fedora
        }
    }

    /// The family whose packages are in `format` (deb for anything but rpm).
    pub fn of_format(format: PackageFormat) -> Distro {
        match format {
            PackageFormat::Rpm => Distro::Fedora,
            _ => Distro::Debian,
        }
    }

    pub fn package(self, tool: &crate::tools::Tool) -> &'static str {
        match self {
            Distro::Debian => tool.debian,
            Distro::Fedora => tool.fedora,
        }
    }

    /// Refreshes the package lists.
    pub fn refresh_command(self) -> Vec<String> {
        match self {
            Distro::Debian => words(&["apt-get", "update"]),
            Distro::Fedora => words(&["dnf", "makecache"]),
        }
    }

    /// Installs `packages`, without asking.
    pub fn install_words(self, packages: &[String], recommends: Recommends) -> Vec<String> {
        let mut install = match (self, recommends) {
            (Distro::Debian, Recommends::With) => words(&["apt-get", "install", "-y"]),
            (Distro::Debian, Recommends::Without) => {
                words(&["apt-get", "install", "-y", "--no-install-recommends"])
            }
            (Distro::Fedora, Recommends::With) => words(&["dnf", "install", "-y"]),
            (Distro::Fedora, Recommends::Without) => {
                words(&["dnf", "install", "-y", "--setopt=install_weak_deps=False"])
            }
        };
        install.extend(packages.iter().cloned());
        install
    }

    /// The one line that installs `packages` as a person would type it:
    /// what the doctor prints and `doctor --fix` runs.
    pub fn install_command(self, packages: &[String]) -> String {
        self.install_words(packages, Recommends::With).join(" ")
    }
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// A package manager command from its argument vector (installs and
/// removals alike), run from `/`.
pub fn command(words: &[String]) -> Cmd {
    Cmd::new(&words[0], Path::new("/"))
        .args(&words[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
}

/// What `doctor --fix` did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Fix {
    /// The packages it set out to install (none: nothing was missing that
    /// a package provides).
    pub packages: Vec<String>,
    /// The command lines it ran, in order.
    pub commands: Vec<String>,
    /// Why the install did not complete, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Installs `packages` with the host's package manager, as root or
/// through `sudo`: the package lists refreshed, then the doctor's install
/// line. Never fails: what went wrong is in [`Fix::error`], and the
/// checks run again afterwards say what is still missing.
pub fn fix(distro: Distro, packages: &[String]) -> Fix {
    let mut done = Fix {
        packages: packages.to_vec(),
        commands: Vec::new(),
        error: None,
    };
    if packages.is_empty() {
        return done;
    }
    let install = distro.install_words(packages, Recommends::With);
    let line = install.join(" ");
    if !on_path(&install[0]) {
        done.error = Some(format!(
            "no `{}` on PATH (snp-build installs with apt-get on Debian-like hosts, dnf elsewhere); install the packages with this host's package manager: {line}",
            install[0]
        ));
        return done;
    }
    let (root, sudo) = (rustix::process::geteuid().is_root(), on_path("sudo"));
    let (refresh, install) = match (
        as_root(&distro.refresh_command(), root, sudo),
        as_root(&install, root, sudo),
    ) {
        (Ok(refresh), Ok(install)) => (refresh, install),
        (Err(why), _) | (_, Err(why)) => {
            done.error = Some(format!("{why}; as root, run: {line}"));
            return done;
        }
    };
    tracing::info!("installing what is missing: {}", install.join(" "));
    done.commands = vec![refresh.join(" "), install.join(" ")];
    if let Err(e) = refresh_and_install(&refresh, &install) {
        tracing::warn!("{e:#}");
        done.error = Some(format!("{e:#}"));
    }
    done
}

/// `words` as root runs them: unchanged for root; for anyone else through
/// `sudo`, which resets the environment, so apt's
/// `DEBIAN_FRONTEND=noninteractive` goes as sudo's own `VAR=value`
/// argument; without sudo, why it cannot be done.
fn as_root(words: &[String], root: bool, sudo: bool) -> Result<Vec<String>, &'static str> {
    match (root, sudo) {
        (true, _) => Ok(words.to_vec()),
        (false, true) => Ok(["sudo", "DEBIAN_FRONTEND=noninteractive"]
            .map(String::from)
            .into_iter()
            .chain(words.iter().cloned())
            .collect()),
        (false, false) => Err("installing packages needs root, and sudo is not installed"),
    }
}

/// Refreshes the package lists, then installs. A failed refresh (offline,
/// a mirror down) is not yet a failure: the lists already there may do,
/// and the install says what it could not get. Both print on stderr.
pub fn refresh_and_install(refresh: &[String], install: &[String]) -> anyhow::Result<()> {
    if let Err(e) = crate::exec::run_to_stderr(&command(refresh)) {
        tracing::warn!("{e:#}; installing from the package lists already on this system");
    }
    crate::exec::run_to_stderr(&command(install))
}

fn on_path(program: &str) -> bool {
    crate::tools::probe::ProbeEnv::system()
        .find_program(program)
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(w: &[&str]) -> Vec<String> {
        words(w)
    }

    #[test]
    fn debian_and_fedora_lines() {
        let pkgs = list(&["nasm", "acpica-tools"]);
        assert_eq!(
            Distro::Debian.install_command(&pkgs),
            "apt-get install -y nasm acpica-tools"
        );
        assert_eq!(
            Distro::Fedora.install_command(&pkgs),
            "dnf install -y nasm acpica-tools"
        );
        assert_eq!(
            Distro::Debian.install_words(&pkgs[..1], Recommends::Without),
            list(&[
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "nasm"
            ])
        );
        assert_eq!(
            Distro::Fedora.install_words(&pkgs[..1], Recommends::Without),
            list(&[
                "dnf",
                "install",
                "-y",
                "--setopt=install_weak_deps=False",
                "nasm"
            ])
        );
        assert_eq!(
            Distro::Debian.refresh_command(),
            list(&["apt-get", "update"])
        );
        assert_eq!(
            Distro::Fedora.refresh_command(),
            list(&["dnf", "makecache"])
        );
        assert_eq!(Distro::of_format(PackageFormat::Rpm), Distro::Fedora);
        assert_eq!(Distro::of_format(PackageFormat::Deb), Distro::Debian);
    }

    #[test]
    fn root_runs_directly_others_through_sudo_keeping_apt_quiet() {
        let update = list(&["apt-get", "update"]);
        assert_eq!(as_root(&update, true, true), Ok(update.clone()));
        assert_eq!(
            as_root(&update, false, true),
            Ok(list(&[
                "sudo",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "update"
            ]))
        );
        assert!(as_root(&update, false, false).unwrap_err().contains("root"));
    }

    #[test]
    fn nothing_missing_runs_nothing() {
        let f = fix(Distro::Debian, &[]);
        assert!(f.commands.is_empty() && f.error.is_none());
    }

    #[test]
    fn apt_never_asks() {
        let c = command(&list(&["apt-get", "update"]));
        assert_eq!(c.env["DEBIAN_FRONTEND"], "noninteractive");
        assert_eq!(c.display(), "apt-get update");
    }
}
