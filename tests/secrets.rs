//! A credential in a pin URL never leaves memory: not on stderr, not in the
//! `--json` summary, the logs, the locks, the work dir, the release or a
//! tree's `.git/config` (issue: a release that says exactly what it is).

mod common;

use std::path::Path;

use common::*;

const PASSWORD: &str = "hunter2-pin-secret";
const TOKEN: &str = "tok-0123456789abcdef";

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

fn set_qemu_url(s: &Scratch, url: &str) {
    let text = std::fs::read_to_string(s.pins()).unwrap();
    let start = text.find("[qemu]").unwrap();
    let line = start + text[start..].find("url = ").unwrap();
    let end = line + text[line..].find('\n').unwrap();
    std::fs::write(
        s.pins(),
        format!("{}url = \"{url}\"{}", &text[..line], &text[end..]),
    )
    .unwrap();
}

#[test]
fn a_password_in_a_git_url_is_written_nowhere() {
    let fx = shared_fixtures();
    let daemon = Daemon::start(fx);
    let s = Scratch::new(fx);
    let at = format!("127.0.0.1:{}/qemu.git", daemon.port);
    set_qemu_url(&s, &format!("git://snp:{PASSWORD}@{at}"));
    let r = s.run(&[PACKAGE, &["--json"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains(PASSWORD), "{}", r.stderr);
    assert!(!r.stdout.contains(PASSWORD), "{}", r.stdout);
    assert!(
        r.stderr.contains("carries a password or a token")
            && r.stderr.contains("credential helper"),
        "{}",
        r.stderr
    );
    // Not in the work dir (logs, stamps, trees, stores), the release or
    // the tarball, nor in the lock beside the pin file.
    for dir in [s.work(), s.path().join("out")] {
        let found = files_holding(&dir, PASSWORD);
        assert!(found.is_empty(), "the password is in {found:?}");
    }
    let lock = std::fs::read_to_string(s.path().join("stable-commits.lock")).unwrap();
    assert!(!lock.contains(PASSWORD), "{lock}");
    // What is shown is redacted; the tree's remote has no user-info.
    let doc = r.json();
    let release = Path::new(doc["release"]["path"].as_str().unwrap());
    let manifest = release_manifest(release);
    assert_eq!(
        manifest["sources"]["qemu"]["url"],
        format!("git://snp:***@{at}")
    );
    let source_config = std::fs::read_to_string(release.join("source-config")).unwrap();
    assert!(
        source_config.contains(&format!("url = \"git://snp:***@{at}\"")),
        "{source_config}"
    );
    let git_config = std::fs::read_to_string(s.tree("qemu").join(".git/config")).unwrap();
    assert!(
        git_config.contains(&format!("url = git://{at}")),
        "{git_config}"
    );

    // A new password is the same pin: the lock matches, nothing rebuilds.
    set_qemu_url(&s, &format!("git://snp:another-{PASSWORD}@{at}"));
    let plan = s.run_ok(&["plan", "qemu"]);
    assert_eq!(plan["stages"][0]["action"], "skip", "{plan}");
}

#[test]
fn credentials_in_an_https_url_are_not_printed_when_it_fails() {
    let s = Scratch::new(shared_fixtures());
    // A closed port: the fetch fails, and its error names the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (url, shown) in [
        (
            format!("https://snp:{PASSWORD}@127.0.0.1:{port}/qemu.git"),
            format!("https://snp:***@127.0.0.1:{port}/qemu.git"),
        ),
        (
            format!("https://127.0.0.1:{port}/qemu.git?private_token={TOKEN}"),
            format!("https://127.0.0.1:{port}/qemu.git?private_token=***"),
        ),
    ] {
        set_qemu_url(&s, &url);
        let r = s.run(&["fetch", "qemu", "--json"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        for secret in [PASSWORD, TOKEN] {
            assert!(!r.stderr.contains(secret), "{}", r.stderr);
            assert!(!r.stdout.contains(secret), "{}", r.stdout);
            let found = files_holding(&s.work(), secret);
            assert!(found.is_empty(), "{secret} is in {found:?}");
        }
        assert!(
            r.stderr.contains(&format!("cannot fetch from {shown}")),
            "{}",
            r.stderr
        );
        // `config` shows it redacted too.
        let config = s.run(&["config"]);
        assert!(!config.stdout.contains(PASSWORD) && !config.stdout.contains(TOKEN));
    }
}
