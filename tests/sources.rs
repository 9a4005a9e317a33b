//! Sources: fetch, lock, update, recovery (issue: sources), against the
//! fixture upstreams through the real binary.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn source<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc}"))
}

fn total_received(doc: &Value) -> u64 {
    doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["received_objects"].as_u64().unwrap())
        .sum()
}

#[test]
fn fresh_fetch_of_all_four_then_a_second_fetch_transfers_nothing() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    let first = s.run_ok(&["fetch"]);
    for (name, bare, branch) in [
        ("kernel-host", "linux.git", "snp-host-latest"),
        ("kernel-guest", "linux.git", "snp-guest-latest"),
        ("qemu", "qemu.git", "snp-latest"),
        ("ovmf", "ovmf.git", "snp-latest"),
    ] {
        let want = rev_parse(&fx.join(bare), branch);
        assert_eq!(source(&first, name)["sha"], want.as_str(), "{name}");
        assert_eq!(source(&first, name)["action"], "cloned");
        assert_eq!(head(&s.tree(name)), want, "{name} HEAD");
        // build.sh's remote, with the pinned URL.
        let url = git(&s.tree(name), &["remote", "get-url", "current"]);
        assert!(url.ends_with(bare), "{name}: {url}");
        // Clean checkout.
        assert_eq!(git(&s.tree(name), &["status", "--porcelain"]), "", "{name}");
    }
    // OVMF's submodule is checked out at the recorded commit; the lock has it.
    let ovmf = source(&first, "ovmf");
    let subs = ovmf["submodules"].as_object().unwrap();
    assert_eq!(subs.len(), 1, "{ovmf}");
    let (path, sha) = subs.iter().next().unwrap();
    assert_eq!(head(&s.tree("ovmf").join(path)), sha.as_str().unwrap());
    let lock = std::fs::read_to_string(s.path().join("stable-commits.lock")).unwrap();
    assert!(lock.contains(sha.as_str().unwrap()), "{lock}");

    let lock_before = lock;
    let second = s.run_ok(&["fetch"]);
    assert_eq!(total_received(&second), 0, "{second}");
    for name in ["kernel-host", "kernel-guest", "qemu", "ovmf"] {
        assert_eq!(source(&second, name)["action"], "unchanged", "{name}");
        assert_eq!(source(&second, name)["sha"], source(&first, name)["sha"]);
    }
    let lock_after = std::fs::read_to_string(s.path().join("stable-commits.lock")).unwrap();
    assert_eq!(lock_before, lock_after);
}

/// Every path under `tree` (not `.git`) with what it is: a symlink and its
/// target, an executable file, a file, or a directory.
fn shape(tree: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut v: Vec<String> = walkdir::WalkDir::new(tree)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .flatten()
        .map(|e| {
            let rel = e.path().strip_prefix(tree).unwrap().display().to_string();
            let meta = e.path().symlink_metadata().unwrap();
            if meta.file_type().is_symlink() {
                format!(
                    "{rel} -> {}",
                    std::fs::read_link(e.path()).unwrap().display()
                )
            } else if meta.is_dir() {
                format!("{rel}/")
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                let bytes = std::fs::read(e.path()).unwrap();
                format!("{rel} {} {}", if exec { "x" } else { "-" }, bytes.len())
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_new_tree_is_what_git_checks_out_and_its_index_needs_no_rehash() {
    // snp-build writes a new tree's files with every core and its index
    // from what it wrote (src/source/checkout.rs).
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    s.run_ok(&["fetch"]);
    for (name, bare, branch) in [
        ("kernel-host", "linux.git", "snp-host-latest"),
        ("qemu", "qemu.git", "snp-latest"),
        ("ovmf", "ovmf.git", "snp-latest"),
    ] {
        let tree = s.tree(name);
        let theirs = s.path().join(format!("git-{name}"));
        let out = std::process::Command::new("git")
            .args(["clone", "-q", "--branch", branch])
            .arg(fx.join(bare))
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        // Same files, modes, symlinks and (for OVMF) submodule directory;
        // what is inside the submodule, snp-build checks out after (git
        // clone without --recurse-submodules leaves it empty).
        let sub = "MdeModulePkg/Library/BrotliCustomDecompressLib/brotli/";
        let ours: Vec<String> = shape(&tree)
            .into_iter()
            .filter(|p| !p.starts_with(sub) || p.len() == sub.len())
            .collect();
        assert_eq!(ours, shape(&theirs), "{name}");
        assert_eq!(
            git(&tree, &["ls-files", "--stage"]),
            git(&theirs, &["ls-files", "--stage"]),
            "{name}"
        );
        // The index's stat data matches the files: git sees nothing to
        // refresh (diff-files compares stat data only).
        assert_eq!(git(&tree, &["diff-files", "--name-only"]), "", "{name}");
    }
    let link = s.tree("kernel-host").join("scripts/include-prefixes/x86");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(
        std::fs::metadata(s.tree("qemu").join("configure"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o100 != 0)
            .unwrap()
    );
}

#[test]
fn the_lock_holds_a_moving_branch_until_update() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    let first = s.run_ok(&["fetch", "qemu"]);
    let locked = source(&first, "qemu")["sha"].as_str().unwrap().to_string();

    let moved = upstream_commit(&fx.join("qemu.git"), "snp-latest", "NEWS", "moved\n", None);
    let again = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(
        source(&again, "qemu")["sha"],
        locked.as_str(),
        "the lock must hold"
    );
    assert_eq!(head(&s.tree("qemu")), locked);

    let r = s.run(&["update", "qemu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("qemu: {} -> {}", &locked[..12], &moved[..12])),
        "update must print old -> new:\n{}",
        r.stderr
    );
    assert_eq!(head(&s.tree("qemu")), moved);
    let lock = std::fs::read_to_string(s.path().join("stable-commits.lock")).unwrap();
    assert!(lock.contains(&moved) && !lock.contains(&locked), "{lock}");
}

#[test]
fn a_force_push_and_a_changed_url_are_followed() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    s.run_ok(&["fetch", "qemu"]);

    // History rewritten upstream: the branch no longer contains the old tip.
    let rewritten = upstream_commit(
        &fx.join("qemu.git"),
        "snp-latest",
        "REWRITE",
        "x\n",
        Some("HEAD~1"),
    );
    s.run_ok(&["update", "qemu"]);
    assert_eq!(head(&s.tree("qemu")), rewritten);

    // A new URL (a mirror with one more commit): the lock entry is invalid,
    // the pin is resolved again, and `current` points at the new URL.
    let mirror = root.path().join("mirror-qemu.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            fx.join("qemu.git").to_str().unwrap(),
            mirror.to_str().unwrap(),
        ],
    );
    let newer = upstream_commit(&mirror, "snp-latest", "MIRROR", "m\n", None);
    let old_url = format!(
        "file://{}",
        std::fs::canonicalize(fx.join("qemu.git"))
            .unwrap()
            .display()
    );
    let new_url = format!("file://{}", mirror.display());
    s.edit_pins(
        &format!("url = \"{old_url}\""),
        &format!("url = \"{new_url}\""),
    );
    let doc = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(source(&doc, "qemu")["sha"], newer.as_str());
    assert_eq!(head(&s.tree("qemu")), newer);
    assert_eq!(
        git(&s.tree("qemu"), &["remote", "get-url", "current"]),
        new_url
    );
}

#[test]
fn locked_fails_without_a_matching_lock_and_passes_with_one() {
    let s = Scratch::new(shared_fixtures());
    let r = s.run(&["fetch", "--locked", "qemu"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("snp-build update"), "{}", r.stderr);
    assert!(!s.tree("qemu").exists(), "nothing may be fetched");
    s.run_ok(&["fetch", "qemu"]);
    s.run_ok(&["fetch", "--locked", "qemu"]);
    // A changed pin invalidates its entry only.
    s.edit_pins("branch = \"snp-latest\"", "branch = \"master\"");
    let r = s.run(&["fetch", "--locked", "qemu"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
}

#[test]
fn bad_refs_and_unreachable_urls_name_source_url_and_ref_and_keep_the_tree() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["fetch", "qemu"]);
    let before = head(&s.tree("qemu"));

    s.edit_pins("branch = \"snp-latest\"", "branch = \"no-such-branch\"");
    let r = s.run(&["fetch", "qemu"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("qemu") && r.stderr.contains("`no-such-branch` does not exist"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("qemu.git"), "{}", r.stderr);
    assert_eq!(head(&s.tree("qemu")), before);

    s.edit_pins("branch = \"no-such-branch\"", "tag = \"no-such-tag\"");
    let r = s.run(&["fetch", "qemu"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("tag `no-such-tag` does not exist"),
        "{}",
        r.stderr
    );

    s.edit_pins(
        "tag = \"no-such-tag\"",
        "commit = \"0123456789abcdef0123456789abcdef01234567\"",
    );
    let r = s.run(&["fetch", "qemu"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("commit 0123456789abcdef0123456789abcdef01234567 does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(head(&s.tree("qemu")), before);

    let text = std::fs::read_to_string(s.pins()).unwrap();
    let url_line = text
        .lines()
        .find(|l| l.contains("qemu.git"))
        .unwrap()
        .to_string();
    s.edit_pins(&url_line, "url = \"file:///nonexistent/qemu.git\"");
    let r = s.run(&["fetch", "qemu"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("cannot fetch from file:///nonexistent/qemu.git"),
        "{}",
        r.stderr
    );
    assert_eq!(head(&s.tree("qemu")), before);
}

#[test]
fn https_urls_reach_the_network_layer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[qemu]\nurl = \"https://127.0.0.1:1/qemu.git\"\nbranch = \"snp-latest\"\n",
    )
    .unwrap();
    let out = assert_cmd::Command::cargo_bin("snp-build")
        .unwrap()
        .current_dir(dir.path())
        .args(["fetch", "--config", "p.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("https://127.0.0.1:1/qemu.git"), "{stderr}");
    assert!(
        !stderr.contains("unsupported URL protocol") && !stderr.contains("TLS"),
        "https support is missing: {stderr}"
    );
    assert!(
        stderr.contains("connect"),
        "expected a connection error: {stderr}"
    );
}

#[test]
fn commit_and_tag_pins() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    let bare = fx.join("qemu.git");
    let tip = rev_parse(&bare, "snp-latest");
    let parent = rev_parse(&bare, "snp-latest~1");

    // A commit below the tip of its branch, abbreviated.
    s.edit_pins(
        "branch = \"snp-latest\"",
        &format!("branch = \"snp-latest\"\ncommit = \"{}\"", &parent[..10]),
    );
    let doc = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(source(&doc, "qemu")["sha"], parent.as_str());
    assert_eq!(head(&s.tree("qemu")), parent);

    // A commit that is not on the branch.
    let other = rev_parse(&fx.join("linux.git"), "snp-host-latest");
    s.edit_pins(
        &format!("commit = \"{}\"", &parent[..10]),
        &format!("commit = \"{other}\""),
    );
    let r = s.run(&["fetch", "qemu"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("does not exist") || r.stderr.contains("is not on branch"),
        "{}",
        r.stderr
    );

    // A commit alone, full SHA.
    let s = Scratch::new(fx);
    s.edit_pins("branch = \"snp-latest\"", &format!("commit = \"{tip}\""));
    let doc = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(source(&doc, "qemu")["sha"], tip.as_str());

    // A tag (the fixture tags nothing: make one in a private upstream).
    let root = tempfile::tempdir().unwrap();
    let own = own_fixtures(root.path());
    git(
        &own.join("qemu.git"),
        &["tag", "-a", "-m", "release", "v9.1.0-snp", "snp-latest~1"],
    );
    let s = Scratch::new(&own);
    s.edit_pins("branch = \"snp-latest\"", "tag = \"v9.1.0-snp\"");
    let doc = s.run_ok(&["fetch", "qemu"]);
    let tagged = rev_parse(&own.join("qemu.git"), "v9.1.0-snp^{commit}");
    assert_eq!(source(&doc, "qemu")["sha"], tagged.as_str());
    assert_eq!(head(&s.tree("qemu")), tagged);
}

#[test]
fn hand_edits_stop_a_checkout_unless_discarded_with_a_saved_diff() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    s.run_ok(&["fetch", "qemu"]);
    let tree = s.tree("qemu");
    let file = git(&tree, &["ls-files", "configure"]);
    assert_eq!(file, "configure");
    let original = std::fs::read_to_string(tree.join("configure")).unwrap();
    std::fs::write(
        tree.join("configure"),
        format!("{original}\n# my local fix\n"),
    )
    .unwrap();

    let moved = upstream_commit(
        &fx.join("qemu.git"),
        "snp-latest",
        "configure",
        "#!/bin/sh\necho new\n",
        None,
    );
    let r = s.run(&["update", "qemu"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(
        r.stderr.contains("configure"),
        "names the file: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("patches/qemu/") && r.stderr.contains("--discard-changes"),
        "{}",
        r.stderr
    );
    assert!(
        std::fs::read_to_string(tree.join("configure"))
            .unwrap()
            .contains("my local fix")
    );

    // The refused update did not move the lock; a plain fetch keeps the
    // locked commit and the edit.
    s.run_ok(&["fetch", "qemu"]);
    assert!(
        std::fs::read_to_string(tree.join("configure"))
            .unwrap()
            .contains("my local fix")
    );
    // Discarding saves the diff first.
    let r = s.run(&["update", "qemu", "--discard-changes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    let diff = source(&doc, "qemu")["saved_diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        r.stderr.contains(&diff),
        "the diff path is printed: {}",
        r.stderr
    );
    assert!(
        std::fs::read_to_string(&diff)
            .unwrap()
            .contains("+# my local fix")
    );
    assert_eq!(head(&tree), moved);
}

/// A corruption of the tree, recovered by the next fetch.
fn recovers(corrupt: impl Fn(&Path), with_edit: bool) {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["fetch", "qemu"]);
    let tree = s.tree("qemu");
    let want = head(&tree);
    if with_edit {
        std::fs::write(tree.join("configure"), "#!/bin/sh\n# precious local work\n").unwrap();
    }
    corrupt(&tree);
    let r = s.run(&["fetch", "qemu", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning"),
        "says what was broken: {}",
        r.stderr
    );
    assert_eq!(head(&tree), want);
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    let asides: Vec<_> = std::fs::read_dir(s.work().join("qemu"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("src.broken-"))
        .collect();
    if with_edit {
        assert_eq!(asides.len(), 1, "moved aside once: {}", r.stderr);
        let kept = std::fs::read_to_string(asides[0].path().join("configure")).unwrap();
        assert!(kept.contains("precious local work"));
        assert!(
            r.stderr.contains(&asides[0].path().display().to_string()),
            "{}",
            r.stderr
        );
    }
    // And the next run is a quiet no-op.
    let again = s.run(&["fetch", "qemu"]);
    assert_eq!(again.code, 0);
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
}

fn truncate_head(tree: &Path) {
    std::fs::write(tree.join(".git/HEAD"), "").unwrap();
}

fn corrupt_index(tree: &Path) {
    std::fs::write(tree.join(".git/index"), b"DIRC garbage, not an index").unwrap();
}

#[test]
fn recovers_a_truncated_head() {
    recovers(truncate_head, false);
}

#[test]
fn recovers_a_corrupt_index() {
    recovers(corrupt_index, false);
}

#[test]
fn recovers_a_leftover_index_lock() {
    recovers(
        |t| std::fs::write(t.join(".git/index.lock"), "").unwrap(),
        false,
    );
}

#[test]
fn a_broken_tree_with_local_changes_is_moved_aside_not_deleted() {
    recovers(corrupt_index, true);
    recovers(truncate_head, true);
}

#[test]
fn recovers_a_half_finished_clone() {
    // A clone killed before its checkout: an empty repository in place,
    // and a temporary clone directory left behind.
    recovers(
        |t| {
            std::fs::remove_dir_all(t).unwrap();
            std::fs::create_dir_all(t).unwrap();
            git(t, &["init", "-q"]);
            std::fs::create_dir_all(t.parent().unwrap().join(".src.tmp-99999/.git")).unwrap();
        },
        false,
    );
}

#[test]
fn recovers_an_interrupted_checkout() {
    recovers(
        |t| std::fs::write(t.join(".git/snp-build-checkout"), "deadbeef").unwrap(),
        false,
    );
}

#[test]
fn recovers_deleted_pack_files_in_the_object_store() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["fetch", "qemu"]);
    let want = head(&s.tree("qemu"));
    let packs = s.work().join("git/qemu.git/objects/pack");
    let mut removed = 0;
    for e in std::fs::read_dir(&packs).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
        removed += 1;
    }
    assert!(removed > 0, "the store keeps its objects in packs");
    let doc = s.run_ok(&["fetch", "qemu"]);
    assert!(source(&doc, "qemu")["received_objects"].as_u64().unwrap() > 0);
    assert_eq!(head(&s.tree("qemu")), want);
    assert_eq!(git(&s.tree("qemu"), &["status", "--porcelain"]), "");
    git(&s.tree("qemu"), &["fsck", "--no-dangling"]);
}

#[test]
fn recovers_a_removed_submodule_checkout() {
    let s = Scratch::new(shared_fixtures());
    let doc = s.run_ok(&["fetch", "ovmf"]);
    let (path, sha) = first_submodule(&doc, "ovmf");
    let sub = s.tree("ovmf").join(&path);
    std::fs::remove_dir_all(&sub).unwrap();
    s.run_ok(&["fetch", "ovmf"]);
    assert_eq!(head(&sub), sha);
    assert_eq!(git(&s.tree("ovmf"), &["status", "--porcelain"]), "");
}

#[test]
fn recovers_a_lost_submodule_git_dir() {
    let s = Scratch::new(shared_fixtures());
    let doc = s.run_ok(&["fetch", "ovmf"]);
    let (path, sha) = first_submodule(&doc, "ovmf");
    std::fs::remove_dir_all(s.tree("ovmf").join(".git/modules")).unwrap();
    // The next run and `fetch ovmf` repair it on their own: the tree, whose
    // submodule can no longer tell its own edits, is moved aside (never
    // deleted) and checked out again.
    let r = s.run(&["fetch", "ovmf"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("has lost its git dir") && r.stderr.contains("moved aside"),
        "{}",
        r.stderr
    );
    assert_eq!(head(&s.tree("ovmf").join(&path)), sha);
    assert_eq!(git(&s.tree("ovmf"), &["status", "--porcelain"]), "");
    let asides = std::fs::read_dir(s.work().join("ovmf"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("src.broken-"))
        .count();
    assert_eq!(asides, 1);
    let again = s.run(&["fetch", "ovmf"]);
    assert_eq!(again.code, 0);
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
}

#[test]
fn follows_a_submodule_url_changed_upstream() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let s = Scratch::new(&fx);
    let doc = s.run_ok(&["fetch", "ovmf"]);
    let path = source(&doc, "ovmf")["submodules"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();

    // Upstream moves the submodule to a new home with a new commit, and
    // points .gitmodules there (as edk2 did with subhook).
    let old_sub = git(
        &fx.join("ovmf.git"),
        &[
            "config",
            "--blob",
            "snp-latest:.gitmodules",
            "--get-regexp",
            "url",
        ],
    );
    let old_sub_url = old_sub.split_whitespace().nth(1).unwrap().to_string();
    let moved_home = root.path().join("moved-submodule.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &old_sub_url,
            moved_home.to_str().unwrap(),
        ],
    );
    let sub_branch = git(&moved_home, &["symbolic-ref", "--short", "HEAD"]);
    let new_sub_sha = upstream_commit(&moved_home, &sub_branch, "MOVED", "new home\n", None);
    let new_url = format!("file://{}", moved_home.display());

    let work = root.path().join("edit-ovmf");
    clone_snp_latest(&fx.join("ovmf.git"), &work);
    git(&work, &["submodule", "set-url", &path, &new_url]);
    git(&work, &["submodule", "update", "--init", "-q"]);
    let sub_dir = work.join(&path);
    git(&sub_dir, &["fetch", "-q", "origin"]);
    git(&sub_dir, &["checkout", "-q", &new_sub_sha]);
    git(&work, &["add", ".gitmodules", &path]);
    git(&work, &["commit", "-q", "-m", "move the submodule"]);
    git(&work, &["push", "-q", "origin", "snp-latest"]);

    let doc = s.run_ok(&["update", "ovmf"]);
    assert_eq!(
        source(&doc, "ovmf")["submodules"][&path],
        new_sub_sha.as_str()
    );
    let sub = s.tree("ovmf").join(&path);
    assert_eq!(head(&sub), new_sub_sha);
    assert_eq!(git(&sub, &["remote", "get-url", "origin"]), new_url);
}

#[test]
fn the_two_kernels_share_one_object_store() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["fetch", "kernel"]);
    let store = s.work().join("git/linux.git/objects");
    for k in ["kernel-host", "kernel-guest"] {
        let alt = std::fs::read_to_string(s.tree(k).join(".git/objects/info/alternates")).unwrap();
        assert_eq!(alt.trim(), store.display().to_string(), "{k}");
        // The tree keeps no objects of its own.
        let own = s.tree(k).join(".git/objects/pack");
        assert_eq!(std::fs::read_dir(own).unwrap().count(), 0, "{k}");
    }
}

/// Apparent size of everything under `path`.
fn disk_usage(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .sum()
}

#[test]
fn kernels_fetched_over_git_daemon_are_shallow_and_small() {
    let fx = shared_fixtures();
    let daemon = Daemon::start(fx);
    let s = Scratch::new(fx);
    let local = format!(
        "file://{}",
        std::fs::canonicalize(fx.join("linux.git"))
            .unwrap()
            .display()
    );
    let served = format!("git://127.0.0.1:{}/linux.git", daemon.port);
    let text = std::fs::read_to_string(s.pins())
        .unwrap()
        .replace(&local, &served);
    std::fs::write(s.pins(), text).unwrap();

    let doc = s.run_ok(&["fetch", "kernel"]);
    for k in ["kernel-host", "kernel-guest"] {
        assert_eq!(
            source(&doc, k)["sha"],
            rev_parse(
                &fx.join("linux.git"),
                if k == "kernel-host" {
                    "snp-host-latest"
                } else {
                    "snp-guest-latest"
                }
            )
            .as_str()
        );
        // Depth 1: the tree knows it is shallow and has one commit.
        assert!(
            s.tree(k).join(".git/shallow").exists(),
            "{k} is not shallow"
        );
        assert_eq!(
            git(&s.tree(k), &["rev-list", "--count", "HEAD"]),
            "1",
            "{k}"
        );
        assert_eq!(git(&s.tree(k), &["status", "--porcelain"]), "");
    }
    assert!(s.work().join("git/linux.git/shallow").exists());
    let ours = disk_usage(&s.work().join("git/linux.git"))
        + disk_usage(&s.tree("kernel-host"))
        + disk_usage(&s.tree("kernel-guest"));

    // build.sh: a full clone, then `cp -r` for the second kernel.
    let theirs_dir = tempfile::tempdir().unwrap();
    git(theirs_dir.path(), &["clone", "-q", &served, "host"]);
    let one = disk_usage(&theirs_dir.path().join("host"));
    let theirs = 2 * one;
    assert!(
        ours * 3 <= theirs,
        "both kernel trees take {ours} bytes; git clone + cp -r takes {theirs}"
    );

    // A second fetch over the daemon transfers nothing.
    let again = s.run_ok(&["fetch", "kernel"]);
    assert_eq!(total_received(&again), 0);
}

/// The first submodule a fetch summary records for `name`: (path, SHA).
fn first_submodule(doc: &serde_json::Value, name: &str) -> (String, String) {
    let subs = source(doc, name)["submodules"].as_object().unwrap();
    let (path, sha) = subs.iter().next().unwrap();
    (path.clone(), sha.as_str().unwrap().to_string())
}

/// A build (not only `fetch`) recovers a broken tree: the check before
/// the fetch (which stages need no tree) leaves an unreadable tree to the
/// fetch's recovery instead of failing on it.
#[test]
fn a_build_recovers_a_broken_tree() {
    for corrupt in [truncate_head as fn(&Path), corrupt_index] {
        let s = Scratch::new(shared_fixtures());
        s.run_ok(&["fetch", "qemu"]);
        let tree = s.tree("qemu");
        let want = head(&tree);
        corrupt(&tree);
        let r = s.run(&["qemu", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(stage(&r.json(), "qemu")["status"], "ok");
        assert_eq!(head(&tree), want);
    }
}

/// A git server on loopback that accepts connections and never answers
/// (as one stalled behind a dead proxy): libgit2 calls no callback, so
/// only the signal handler can stop the fetch.
#[test]
fn ctrl_c_stops_a_fetch_from_a_stalling_server_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn); // open, silent
        }
    });
    let s = Scratch::new(shared_fixtures());
    let text = std::fs::read_to_string(s.pins()).unwrap();
    let qemu = text
        .lines()
        .find(|l| l.starts_with("url = ") && l.contains("qemu.git"))
        .unwrap()
        .to_string();
    s.edit_pins(&qemu, &format!("url = \"git://127.0.0.1:{port}/qemu.git\""));
    let mut child = s.spawn(&["fetch", "qemu"]);
    // Wait until it is stuck on the server.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "it did not stall");
    let sent = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(10),
            "still running 10 s after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("callback returned"), "{stderr}");
    assert!(!stderr.contains("proxy settings"), "{stderr}");
    // Nothing half-made stands: the next run (a cut network aside) starts
    // clean, with no lock held by the dead process.
    let again = s.run(&["fetch", "ovmf"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
}

/// A tag force-moved upstream (issue 25): a plain fetch keeps the locked
/// commit without asking upstream, `--locked` lists the tag and refuses
/// the move (in an existing and in a fresh work dir), and `update`
/// follows it: the store's and the tree's tag move, and the run says so.
#[test]
fn a_tag_moved_upstream_is_refused_by_locked_and_followed_by_update() {
    let root = tempfile::tempdir().unwrap();
    let fx = own_fixtures(root.path());
    let bare = fx.join("qemu.git");
    git(
        &bare,
        &["tag", "-a", "-m", "release", "snp-tag", "snp-latest~1"],
    );
    let s = Scratch::new(&fx);
    s.edit_pins("branch = \"snp-latest\"", "tag = \"snp-tag\"");
    let first = s.run_ok(&["fetch", "qemu"]);
    let old = rev_parse(&bare, "snp-tag^{commit}");
    assert_eq!(source(&first, "qemu")["sha"], old.as_str());

    // The tag is moved to a new commit.
    let new = upstream_commit(&bare, "snp-latest", "NEWS", "moved\n", None);
    git(
        &bare,
        &["tag", "-f", "-a", "-m", "re-release", "snp-tag", &new],
    );

    // A plain fetch: the lock holds, upstream is not asked.
    let again = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(source(&again, "qemu")["sha"], old.as_str());
    assert_eq!(head(&s.tree("qemu")), old);

    // --locked asks, and refuses the move, in this work dir and a fresh one.
    let refused = |r: &Run| {
        assert_eq!(r.code, 5, "{}", r.stderr);
        for want in [
            "tag snp-tag moved upstream",
            &old[..12],
            &new[..12],
            "snp-build update qemu",
        ] {
            assert!(r.stderr.contains(want), "wants {want:?}:\n{}", r.stderr);
        }
    };
    refused(&s.run(&["fetch", "--locked", "qemu"]));
    // A build asks before anything is pulled, fetched or built.
    refused(&s.run(&["--locked", "qemu"]));
    assert_eq!(head(&s.tree("qemu")), old, "a refusal moves nothing");
    let lock = std::fs::read_to_string(s.path().join("stable-commits.lock")).unwrap();
    std::fs::rename(s.work(), s.path().join("old-build")).unwrap();
    refused(&s.run(&["fetch", "--locked", "qemu"]));
    assert!(!s.tree("qemu").exists(), "nothing may be checked out");
    std::fs::remove_dir_all(s.work()).unwrap();
    std::fs::rename(s.path().join("old-build"), s.work()).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.path().join("stable-commits.lock")).unwrap(),
        lock
    );

    // update follows the tag, says so, and moves the local tags.
    let r = s.run(&["update", "qemu", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "qemu: tag snp-tag moved upstream: {} -> {}",
            &old[..12],
            &new[..12]
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("qemu: {} -> {}", &old[..12], &new[..12])),
        "{}",
        r.stderr
    );
    assert_eq!(source(&r.json(), "qemu")["sha"], new.as_str());
    assert_eq!(head(&s.tree("qemu")), new);
    assert_eq!(rev_parse(&s.tree("qemu"), "snp-tag^{commit}"), new);
    assert_eq!(
        rev_parse(
            &s.work().join("git/qemu.git"),
            "refs/snp/qemu/tags/snp-tag^{commit}"
        ),
        new
    );
    // And now --locked agrees.
    s.run_ok(&["fetch", "--locked", "qemu"]);

    // Moved back to a commit the store already has: nothing to fetch,
    // and still followed.
    git(&bare, &["tag", "-f", "-a", "-m", "back", "snp-tag", &old]);
    let r = s.run(&["update", "qemu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "tag snp-tag moved upstream: {} -> {}",
            &new[..12],
            &old[..12]
        )),
        "{}",
        r.stderr
    );
    assert_eq!(head(&s.tree("qemu")), old);
    assert_eq!(rev_parse(&s.tree("qemu"), "snp-tag^{commit}"), old);
}
