//! Build only what was pinned: a tree that differs from its pinned commit
//! stops the build (exit 7) unless `--discard-changes` or `--allow-dirty`
//! (issue: a release that says exactly what it is).

mod common;

use common::*;

/// Where a build's `--json` says `source`'s discarded edits were saved.
fn saved_diff(doc: &serde_json::Value, source: &str) -> String {
    doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|src| src["source"] == source)
        .unwrap()["saved_diff"]
        .as_str()
        .unwrap()
        .to_string()
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = PACKAGE.to_vec();
    all.extend_from_slice(extra);
    all
}

#[test]
fn a_hand_edit_stops_every_build_until_discarded_or_allowed() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(PACKAGE);
    let tree = s.tree("qemu");
    let configure = tree.join("configure");
    let original = std::fs::read_to_string(&configure).unwrap();
    std::fs::write(&configure, format!("{original}\n# my local fix\n")).unwrap();
    std::fs::write(tree.join("NOTES.local"), "scratch\n").unwrap();

    // The plan says so before any build: this stage and the release stop.
    let doc = s.run_ok(&["plan", "--package"]);
    assert_eq!(stage(&doc, "qemu")["action"], "stop", "{doc}");
    let why = stage(&doc, "qemu")["reasons"][0].as_str().unwrap();
    assert!(
        why.contains("differs from its pin")
            && why.contains("configure")
            && why.contains("NOTES.local")
            && why.contains("exit 7"),
        "{why}"
    );
    assert_eq!(stage(&doc, "release")["action"], "stop", "{doc}");
    assert_eq!(stage(&doc, "ovmf")["action"], "skip", "{doc}");
    // --dry-run with --allow-dirty: it would build it as it is.
    let doc = s.run_ok(&args(&["--dry-run", "--allow-dirty"]));
    assert_eq!(stage(&doc, "qemu")["action"], "run", "{doc}");

    // Nothing changed upstream: the edit is still caught, forced or not.
    for extra in [&[][..], &["--force=qemu"], &["--force"]] {
        let r = s.run(&args(extra));
        assert_eq!(r.code, 7, "{extra:?}: {}", r.stderr);
        for needle in [
            "configure",
            "NOTES.local",
            "differs from its pinned commit",
            "--allow-dirty",
        ] {
            assert!(
                r.stderr.contains(needle),
                "{extra:?}: no {needle:?} in {}",
                r.stderr
            );
        }
    }
    assert!(
        std::fs::read_to_string(&configure)
            .unwrap()
            .contains("my local fix")
    );

    // --allow-dirty builds it, and the release says so.
    let doc = s.run_ok(&args(&["--allow-dirty"]));
    let qemu = doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["stage"] == "qemu")
        .unwrap();
    assert_eq!(qemu["status"], "ok", "{doc}");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let manifest = release_manifest(&release);
    let source = &manifest["sources"]["qemu"];
    assert_eq!(source["dirty"], true, "{source}");
    assert!(
        source["short_sha"].as_str().unwrap().ends_with("-dirty"),
        "{source}"
    );
    let diff = std::fs::read(release.join("dirty/qemu.diff")).unwrap();
    assert!(String::from_utf8_lossy(&diff).contains("+# my local fix"));
    let sha = sha256_hex(&diff);
    assert_eq!(source["dirty_diff_sha256"], sha.as_str());
    assert!(
        std::fs::read_to_string(release.join("source-commit.qemu"))
            .unwrap()
            .trim()
            .ends_with("-dirty")
    );
    // Other sources stay as they were.
    assert!(manifest["sources"]["ovmf"].get("dirty").is_none());

    // --discard-changes saves the diff, resets the tree, and builds clean.
    let r = s.run(&args(&["--discard-changes", "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    let saved = saved_diff(&doc, "qemu");
    let saved = std::fs::read_to_string(saved).unwrap();
    assert!(
        saved.contains("+# my local fix") && saved.contains("NOTES.local"),
        "{saved}"
    );
    assert_eq!(std::fs::read_to_string(&configure).unwrap(), original);
    assert!(!tree.join("NOTES.local").exists());
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    assert!(!release.join("dirty").exists());
    // And a clean tree builds as before.
    let again = s.run_ok(PACKAGE);
    assert_eq!(again["release"]["status"], "skipped", "{again}");
}

#[test]
fn a_dirty_kernel_is_named_dirty_in_its_package_and_localversion() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["kernel", "guest"]);
    let tree = s.tree("kernel-guest");
    let makefile = tree.join("Makefile");
    let text = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(&makefile, format!("{text}\n# a local change\n")).unwrap();
    let doc = s.run_ok(&[
        "kernel",
        "guest",
        "--allow-dirty",
        "--package",
        "--output",
        "out",
        "--date",
        "2026-11-29",
    ]);
    let sha = head(&tree);
    let named = format!("-snp-guest-{}-dirty", &sha[..12]);
    let outputs = &stage(&doc, "kernel-guest")["outputs"];
    assert_eq!(outputs["localversion"], named, "{outputs}");
    let image = outputs["image"].as_str().unwrap();
    assert!(image.contains(&named), "{image}");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let packages: Vec<String> = std::fs::read_dir(release.join("linux/guest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(packages.iter().all(|p| p.contains(&named)), "{packages:?}");
}

const BROTLI: &str = xtask::fixtures::OVMF_SUBMODULE_PATH;

fn ovmf(extra: &[&'static str]) -> Vec<&'static str> {
    let mut all = vec![
        "ovmf",
        "--package",
        "--output",
        "out",
        "--date",
        "2026-11-29",
    ];
    all.extend_from_slice(extra);
    all
}

#[test]
fn an_edit_inside_a_submodule_is_caught_kept_in_the_diff_and_discarded() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&ovmf(&[]));
    let file = s.tree("ovmf").join(BROTLI).join("c/dec/decode.c");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{original}\n/* my local fix */\n")).unwrap();
    let shown = format!("{BROTLI}/c/dec/decode.c");

    // Refused, forced or not, naming the file inside the submodule.
    for extra in [&[][..], &["--force=ovmf"]] {
        let r = s.run(&ovmf(extra));
        assert_eq!(r.code, 7, "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(&shown), "{extra:?}: {}", r.stderr);
    }

    // --allow-dirty: the diff holds the change itself, with its path from
    // the top of the tree, not `Subproject commit ...-dirty`.
    let doc = s.run_ok(&ovmf(&["--allow-dirty"]));
    let m = manifest_of(&doc);
    assert_eq!(m["sources"]["ovmf"]["dirty"], true, "{m}");
    let release = std::path::PathBuf::from(doc["release"]["path"].as_str().unwrap());
    let diff = std::fs::read_to_string(release.join("dirty/ovmf.diff")).unwrap();
    assert!(diff.contains("+/* my local fix */"), "{diff}");
    assert!(diff.contains(&format!("b/{shown}")), "{diff}");
    assert!(!diff.contains("Subproject commit"), "{diff}");

    // --discard-changes saves that diff, puts the submodule back, and the
    // build that follows is clean.
    let r = s.run(&ovmf(&["--discard-changes", "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    let saved = saved_diff(&doc, "ovmf");
    assert!(
        std::fs::read_to_string(saved)
            .unwrap()
            .contains("+/* my local fix */")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert_eq!(
        git(&s.tree("ovmf").join(BROTLI), &["status", "--porcelain"]),
        ""
    );
    assert!(manifest_of(&doc)["sources"]["ovmf"].get("dirty").is_none());
}

#[test]
fn a_submodule_moved_off_its_recorded_commit_is_put_back_but_never_over_edits() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["ovmf"]);
    let sub = s.tree("ovmf").join(BROTLI);
    let pinned = head(&sub);
    // Moved with nothing edited: the pin decides, the sync moves it back.
    git(&sub, &["checkout", "-q", "HEAD~1"]);
    s.run_ok(&["ovmf"]);
    assert_eq!(head(&sub), pinned);
    // Moved and edited: moving it back would overwrite the edit.
    git(&sub, &["checkout", "-q", "HEAD~1"]);
    let readme = sub.join("README.md");
    std::fs::write(&readme, "my notes\n").unwrap();
    let r = s.run(&["ovmf", "--force=ovmf"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{BROTLI}/README.md")),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "my notes\n");
    let doc = s.run_ok(&["ovmf", "--force=ovmf", "--discard-changes"]);
    assert_eq!(head(&sub), pinned);
    let saved = doc["sources"][0]["saved_diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        std::fs::read_to_string(saved)
            .unwrap()
            .contains("+my notes"),
        "{doc}"
    );
}

/// A same-size edit the index's stat data does not show, as git's "racy
/// git" case: the index entry is given the edited file's stat data (as a
/// write within the index's own second leaves it), or marked
/// `--assume-unchanged`. `git status` says clean; the hash says otherwise.
#[test]
fn a_racy_edit_the_stat_cache_misses_is_caught_by_hash() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["qemu"]);
    let tree = s.tree("qemu");
    let file = tree.join("configure");
    let original = std::fs::read(&file).unwrap();
    let mut edited = original.clone();
    let at = edited
        .iter()
        .rposition(|b| b.is_ascii_alphanumeric())
        .unwrap();
    edited[at] = if edited[at] == b'x' { b'y' } else { b'x' };

    // 1. The index believes the edited file is the committed one: its old
    // mtime is put back, and the entry carries the file's stat data.
    let old_mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, &edited).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    {
        let repo = git2::Repository::open(&tree).unwrap();
        let mut index = repo.index().unwrap();
        let mut entry = index
            .get_path(std::path::Path::new("configure"), 0)
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&file).unwrap();
        entry.mtime = git2::IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32);
        entry.ctime = git2::IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32);
        entry.ino = meta.ino() as u32;
        entry.file_size = meta.size() as u32;
        index.add(&entry).unwrap();
        index.write().unwrap();
    }
    assert_eq!(
        git(&tree, &["status", "--porcelain"]),
        "",
        "the stat cache is fooled"
    );
    let r = s.run(&["qemu", "--force=qemu"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("configure"), "{}", r.stderr);
    // --discard-changes puts the committed bytes back, proven by hash.
    s.run_ok(&["qemu", "--force=qemu", "--discard-changes", "--clean"]);
    assert_eq!(std::fs::read(&file).unwrap(), original);

    // 2. --assume-unchanged hides it from git status too.
    std::fs::write(&file, &edited).unwrap();
    git(&tree, &["update-index", "--assume-unchanged", "configure"]);
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    let r = s.run(&["qemu", "--force=qemu"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let doc = s.run_ok(&["qemu", "--force=qemu", "--allow-dirty"]);
    let qemu = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|src| src["source"] == "qemu")
        .unwrap()
        .clone();
    assert!(
        qemu["dirty"]["files"].to_string().contains("configure"),
        "{qemu}"
    );
    s.run_ok(&["qemu", "--force=qemu", "--discard-changes"]);
    assert_eq!(std::fs::read(&file).unwrap(), original);

    // A no-op builds nothing, so it may trust the stat cache: it does not
    // hash the tree (nothing is written to the index).
    let index = tree.join(".git/index");
    let before = std::fs::metadata(&index).unwrap().modified().unwrap();
    s.run_ok(&["qemu"]);
    assert_eq!(
        std::fs::metadata(&index).unwrap().modified().unwrap(),
        before
    );
}
