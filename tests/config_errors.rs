//! Every pin file error is refused before anything else happens, with a
//! message naming the file, line and column, and the key (issue: foundation).

use assert_cmd::Command;

struct Case {
    name: &'static str,
    text: &'static str,
    /// `file:line:col` expected in the message (file is always bad.toml).
    at: &'static str,
    /// Key path expected in the message.
    key: &'static str,
    /// Words from the explanation.
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown top-level table",
        text: "[qemuu]\nurl = \"file:///u\"\n",
        at: "1:2",
        key: "qemuu",
        says: "unknown field",
    },
    Case {
        name: "unknown key in a source",
        text: "[qemu]\nurl = \"file:///u\"\nbranch = \"b\"\nbrnach = \"c\"\n",
        at: "4:1",
        key: "qemu.brnach",
        says: "unknown field",
    },
    Case {
        name: "unknown key in a kernel table",
        text: "[kernel.host]\nurl = \"file:///u\"\nbranch = \"b\"\nconfigure-args = []\n",
        at: "4:1",
        key: "kernel.host.configure-args",
        says: "unknown field",
    },
    Case {
        name: "missing url",
        text: "[build]\n\n[ovmf]\nbranch = \"snp-latest\"\n",
        at: "3:1",
        key: "ovmf",
        says: "missing field `url`",
    },
    Case {
        name: "branch and tag",
        text: "[qemu]\nurl = \"file:///u\"\nbranch = \"a\"\ntag = \"v1\"\n",
        at: "4:7",
        key: "qemu.tag",
        says: "`tag` and `branch` are both set",
    },
    Case {
        name: "tag and commit",
        text: "[qemu]\nurl = \"file:///u\"\ncommit = \"abcdef1\"\ntag = \"v1\"\n",
        at: "4:7",
        key: "qemu.tag",
        says: "`tag` and `commit` are both set",
    },
    Case {
        name: "no ref at all",
        text: "[kernel.guest]\nurl = \"https://example.invalid/linux.git\"\n",
        at: "2:7",
        key: "kernel.guest",
        says: "no `branch`, `tag` or `commit`",
    },
    Case {
        name: "commit not hex",
        text: "[ovmf]\nurl = \"file:///u\"\ncommit = \"snp-latest\"\n",
        at: "3:10",
        key: "ovmf.commit",
        says: "7 to 40 hex digits",
    },
    Case {
        name: "commit too short",
        text: "[ovmf]\nurl = \"file:///u\"\ncommit = \"abc12\"\n",
        at: "3:10",
        key: "ovmf.commit",
        says: "7 to 40 hex digits",
    },
    Case {
        name: "commit too long",
        text: "[ovmf]\nurl = \"file:///u\"\ncommit = \"0123456789012345678901234567890123456789a\"\n",
        at: "3:10",
        key: "ovmf.commit",
        says: "7 to 40 hex digits",
    },
    Case {
        name: "empty url",
        text: "[qemu]\nurl = \"\"\nbranch = \"snp-latest\"\n",
        at: "2:7",
        key: "qemu.url",
        says: "URL is empty",
    },
    Case {
        name: "empty branch",
        text: "[qemu]\nurl = \"file:///u\"\nbranch = \"\"\n",
        at: "3:10",
        key: "qemu.branch",
        says: "it is empty",
    },
    Case {
        name: "shell characters in a branch",
        text: "[qemu]\nurl = \"file:///u\"\nbranch = \"x;rm -rf /\"\n",
        at: "3:10",
        key: "qemu.branch",
        says: "not a valid git ref name",
    },
    Case {
        name: "malformed TOML",
        text: "[qemu]\nurl = \"file:///u\"\nbranch = \"snp-latest\n",
        at: "3:21",
        key: "",
        says: "invalid TOML",
    },
    Case {
        name: "wrong type",
        text: "[ovmf]\nurl = \"file:///u\"\nbranch = \"b\"\njobs = \"two\"\n",
        at: "4:8",
        key: "ovmf.jobs",
        says: "invalid type",
    },
    Case {
        name: "bad package format",
        text: "[build]\npackage-format = \"zip\"\n",
        at: "2:18",
        key: "build.package-format",
        says: "unknown variant",
    },
    Case {
        name: "CONFIG_ prefix in an edit",
        text: "[kernel]\nenable = [\"CONFIG_KVM\"]\n",
        at: "2:11",
        key: "kernel.enable",
        says: "CONFIG_ prefix",
    },
    Case {
        name: "option edited twice",
        text: "[kernel]\nenable = [\"KVM\"]\nmodule = [\"KVM\"]\n",
        at: "3:11",
        key: "kernel.module",
        says: "edited twice",
    },
    Case {
        name: "allow-dropped names an option no list edits",
        text: "[kernel]\nallow-dropped = [\"NOT_EDITED\"]\n",
        at: "2:18",
        key: "kernel.allow-dropped",
        says: "not edited by any list",
    },
    Case {
        name: "set-val that is not a number",
        text: "[kernel]\nset-val = { RCU_EXP_CPU_STALL_TIMEOUT = \"soon\" }\n",
        at: "2:13",
        key: "kernel.set-val",
        says: "not an int or hex value",
    },
    Case {
        name: "relative url with ..",
        text: "[qemu]\nurl = \"../qemu.git\"\nbranch = \"b\"\n",
        at: "2:7",
        key: "qemu.url",
        says: "is a relative path",
    },
    Case {
        name: "bare relative url",
        text: "[ovmf]\nurl = \"edk2.git\"\nbranch = \"b\"\n",
        at: "2:7",
        key: "ovmf.url",
        says: "is a relative path",
    },
    Case {
        name: "patches outside the pin file's tree",
        text: "[qemu]\nurl = \"file:///u\"\nbranch = \"b\"\npatches = \"../../../../etc\"\n",
        at: "4:11",
        key: "qemu.patches",
        says: "outside the pin file's directory",
    },
];

fn run_case(case: &Case, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, case.text).unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(args)
        .arg("--config")
        .arg("bad.toml")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {stderr}", case.name);
    let at = format!("bad.toml:{}:", case.at);
    assert!(
        stderr.contains(&at),
        "{}: expected {at} in\n{stderr}",
        case.name
    );
    if !case.key.is_empty() {
        let key = format!("`{}`", case.key);
        assert!(
            stderr.contains(&key),
            "{}: expected {key} in\n{stderr}",
            case.name
        );
    }
    assert!(
        stderr.contains(case.says),
        "{}: expected {:?} in\n{stderr}",
        case.name,
        case.says
    );
    assert!(
        stderr.contains("help:") || case.key.is_empty(),
        "{}: no help in\n{stderr}",
        case.name
    );
    assert!(
        out.stdout.is_empty(),
        "{}: stdout must stay clean",
        case.name
    );
}

#[test]
fn each_config_error_names_file_line_column_and_key() {
    for case in CASES {
        run_case(case, &["config"]);
    }
}

#[test]
fn commands_not_yet_implemented_still_validate_the_config_first() {
    // `plan` is not implemented yet (exit 3), but a bad file is exit 2.
    for command in [
        &["plan"][..],
        &["fetch"],
        &["update"],
        &["doctor"],
        &["clean"],
        &[],
    ] {
        run_case(&CASES[1], command);
    }
}

#[test]
fn commit_with_branch_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.toml"),
        "[qemu]\nurl = \"file:///x\"\nbranch = \"snp-latest\"\ncommit = \"ABCDEF1234\"\n",
    )
    .unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["config", "--json", "--config", "ok.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["config"]["qemu"]["branch"], "snp-latest");
}

#[test]
fn a_missing_pin_file_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["plan", "--config", "nope.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_placeholder_in_set_str_is_a_config_error() {
    let case = Case {
        name: "unknown placeholder",
        text: "[kernel]\nset-str = { LOCALVERSION = \"-snp-{flavour}\" }\n",
        at: "2:13",
        key: "kernel.set-str",
        says: "{flavour}",
    };
    run_case(&case, &["config"]);
}

/// Runs `config` on `text` written as `dir/pins.toml`.
fn config_in(dir: &std::path::Path, text: &str) -> std::process::Output {
    std::fs::write(dir.join("pins.toml"), text).unwrap();
    Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir)
        .args(["config", "--config", "pins.toml"])
        .output()
        .unwrap()
}

#[test]
fn urls_that_are_not_relative_paths_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "/srv/git/qemu.git",
        "file:///srv/git/qemu.git",
        "https://gitlab.com/qemu-project/qemu.git",
        "ssh://git@example.com/qemu.git",
        "git://127.0.0.1:9418/qemu.git",
        "git@github.com:AMDESE/qemu.git",
    ] {
        let out = config_in(
            dir.path(),
            &format!("[qemu]\nurl = {url:?}\nbranch = \"b\"\n"),
        );
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_patch_dir_is_judged_where_its_symlinks_lead() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("series/qemu")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("series"), dir.path().join("in")).unwrap();
    let pin = |patches: &str| {
        format!("[qemu]\nurl = \"file:///u\"\nbranch = \"b\"\npatches = {patches:?}\n")
    };

    // A link in the tree that leads out: refused, naming the key.
    let out = config_in(dir.path(), &pin("out"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pins.toml:4:11") && stderr.contains("`qemu.patches`"),
        "{stderr}"
    );
    // An absolute path outside: refused too.
    let out = config_in(dir.path(), &pin(&outside.path().display().to_string()));
    assert_eq!(out.status.code(), Some(2));
    // Links that stay in the tree, a `..` that comes back, an absolute path
    // inside, and a directory not made yet: fine.
    let inside = dir.path().join("series/qemu").display().to_string();
    for ok in [
        "in/qemu",
        "series/../series/qemu",
        "not-yet",
        inside.as_str(),
    ] {
        let out = config_in(dir.path(), &pin(ok));
        assert!(
            out.status.success(),
            "{ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_error_of_a_file_is_named_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[qemu]\nurl = \"../qemu.git\"\nbranch = \"b\"\n\n\
                [ovmf]\nurl = \"file:///u\"\nbranch = \"b\"\nbrnach = \"c\"\n\n\
                [kernel.host]\nurl = \"file:///u\"\nbranch = \"b\"\npatches = \"../../../../etc\"\n";
    let out = config_in(dir.path(), text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pins.toml: 3 errors"), "{stderr}");
    let mut last = 0;
    for (at, key) in [
        ("pins.toml:2:7:", "`qemu.url`"),
        ("pins.toml:8:1:", "`ovmf.brnach`"),
        ("pins.toml:13:11:", "`kernel.host.patches`"),
    ] {
        let found = stderr.find(&format!("{at} {key}"));
        assert!(
            found.is_some_and(|i| i > last),
            "{at} {key} in order in\n{stderr}"
        );
        last = found.unwrap();
    }
    assert_eq!(stderr.matches("help:").count(), 3, "{stderr}");
}

#[test]
fn a_tables_pin_and_knobs_are_both_judged() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_in(
        dir.path(),
        "[ovmf]\nurl = \"edk2.git\"\nbranch = \"b\"\ntoolchain = \"GCC 5\"\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pins.toml:2:7: `ovmf.url`")
            && stderr.contains("pins.toml:4:13: `ovmf.toolchain`"),
        "{stderr}"
    );
}
