//! Can the configured compiler launcher reach its servers? (`doctor`,
//! before a build.) distcc's hosts and icecream's local daemon are checked
//! by connecting to them; other launchers (ccache, sccache) need nothing.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::doctor::{Check, Status};

/// distccd's default port.
const DISTCC_PORT: u16 = 3632;

/// The checks for `launcher`.
pub fn checks(launcher: &str) -> Vec<Check> {
    match launcher {
        "distcc" => distcc_hosts().into_iter().map(reach).collect(),
        "icecc" => vec![icecc_daemon()],
        _ => Vec::new(),
    }
}

/// distcc's host list: `DISTCC_HOSTS`, else `~/.distcc/hosts`, else
/// `/etc/distcc/hosts` (distcc's own order); TCP hosts only (`localhost`
/// compiles here, zeroconf and ssh hosts are not checked).
fn distcc_hosts() -> Vec<String> {
    let text = std::env::var("DISTCC_HOSTS").ok().or_else(|| {
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".distcc/hosts"));
        home.into_iter()
            .chain([PathBuf::from("/etc/distcc/hosts")])
            .find_map(|p| std::fs::read_to_string(p).ok())
    });
    let Some(text) = text else {
        return vec![String::new()];
    };
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .filter(|h| !h.starts_with('-') && !h.starts_with('+') && !h.contains('@'))
        .map(|h| h.split(['/', ',']).next().unwrap_or(h).to_string())
        .filter(|h| h != "localhost")
        .collect();
    if hosts.is_empty() {
        // An empty list: every compile runs here, which is not what a
        // launcher was configured for.
        return vec![String::new()];
    }
    hosts
}

fn reach(host: String) -> Check {
    if host.is_empty() {
        return Check::new("distcc hosts", Status::Failed, "none configured")
            .needed("compiler-launcher = \"distcc\"")
            .help(
                "set DISTCC_HOSTS (e.g. \"buildfarm1/8 buildfarm2/8\") or write ~/.distcc/hosts",
            );
    }
    let addr = if host.contains(':') {
        host.clone()
    } else {
        format!("{host}:{DISTCC_PORT}")
    };
    let result = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
        .and_then(|a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(3)).map_err(|e| e.to_string())
        });
    let check = format!("distcc host {addr}");
    match result {
        Ok(_) => {
            Check::new(check, Status::Ok, "reachable").needed("compiler-launcher = \"distcc\"")
        }
        Err(e) => Check::new(check, Status::Failed, format!("unreachable: {e}"))
            .needed("compiler-launcher = \"distcc\"")
            .help("start distccd there (--allow this machine), or fix DISTCC_HOSTS"),
    }
}

/// icecream compiles through the local `iceccd`, which finds the
/// scheduler: its socket must answer.
fn icecc_daemon() -> Check {
    let sockets = [
        PathBuf::from("/var/run/icecc/iceccd.socket"),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".iceccd.socket"))
            .unwrap_or_default(),
    ];
    let found = sockets
        .iter()
        .find(|s| std::os::unix::net::UnixStream::connect(s).is_ok());
    match found {
        Some(s) => Check::new("icecc daemon", Status::Ok, s.display().to_string())
            .needed("compiler-launcher = \"icecc\""),
        None => Check::new("icecc daemon", Status::Failed, "no iceccd answers")
            .needed("compiler-launcher = \"icecc\"")
            .help("start iceccd (it finds the scheduler, or give it -s SCHEDULER)"),
    }
}
