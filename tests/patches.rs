//! Patch series on top of the pins (issue: patches and config).

mod common;

use std::path::Path;

use common::*;

/// Makes commits on top of qemu's `snp-latest` in a scratch clone and
/// returns the clone (for format-patch).
fn local_changes(fx: &Path, dir: &Path) -> std::path::PathBuf {
    let clone = dir.join("work-qemu");
    clone_snp_latest(&fx.join("qemu.git"), &clone);
    for (n, (author, file, text)) in [
        ("Alice Dev <alice@example.com>", "VERSION", "9.1.0-snp1\n"),
        ("Bob Dev <bob@example.com>", "NOTES-A", "first\n"),
        ("Carol Dev <carol@example.com>", "NOTES-B", "second\n"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(clone.join(file), text).unwrap();
        git(&clone, &["add", file]);
        git(
            &clone,
            &[
                "commit",
                "-q",
                "--author",
                author,
                "--date",
                &format!("2024-03-0{} 12:00:00 +0100", n + 1),
                "-m",
                &format!("change {file}\n\nBecause {file} needs it."),
            ],
        );
    }
    clone
}

fn write_series(clone: &Path, patches: &Path) {
    std::fs::create_dir_all(patches).unwrap();
    let one = git(clone, &["format-patch", "--stdout", "HEAD~3..HEAD~2"]);
    std::fs::write(patches.join("0001-version.patch"), one + "\n").unwrap();
    let two = git(clone, &["format-patch", "--stdout", "HEAD~2..HEAD"]);
    std::fs::write(patches.join("0002-notes.patch"), two + "\n").unwrap();
}

#[test]
fn a_series_applies_as_commits_with_the_mail_authors_and_the_same_head_every_time() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    let clone = local_changes(fx, s.path());
    write_series(&clone, &s.path().join("patches/qemu"));

    let doc = s.run_ok(&["fetch", "qemu"]);
    let q = &doc["sources"][0];
    let pinned = rev_parse(&fx.join("qemu.git"), "snp-latest");
    assert_eq!(
        q["sha"],
        pinned.as_str(),
        "the pinned SHA stays the source's name"
    );
    let tree = s.tree("qemu");
    let log = git(
        &tree,
        &[
            "log",
            "--format=%an|%ae|%s|%ad",
            "--date=iso",
            &format!("{pinned}..HEAD"),
        ],
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[2]
            .starts_with("Alice Dev|alice@example.com|change VERSION|2024-03-01 12:00:00 +0100"),
        "{log}"
    );
    assert!(
        lines[1].starts_with("Bob Dev|bob@example.com|change NOTES-A"),
        "{log}"
    );
    assert!(
        lines[0].starts_with("Carol Dev|carol@example.com|change NOTES-B"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("NOTES-B")).unwrap(),
        "second\n"
    );
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    let head_sha = head(&tree);
    assert_eq!(q["patched_head"], head_sha.as_str());
    assert_eq!(rev_parse(&tree, "snp-build/patched"), head_sha);
    assert_eq!(q["patches"].as_array().unwrap().len(), 2);
    assert_eq!(q["series_hash"].as_str().unwrap().len(), 64);
    // The message body survives.
    assert!(
        git(&tree, &["log", "-1", "--format=%B", "HEAD~2"]).contains("Because VERSION needs it.")
    );

    // Another work dir, another run: the same patched HEAD.
    let other = Scratch::new(fx);
    write_series(&clone, &other.path().join("patches/qemu"));
    other.run_ok(&["fetch", "qemu"]);
    assert_eq!(head(&other.tree("qemu")), head_sha);
    // A no-op run keeps it.
    let again = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(again["sources"][0]["action"], "unchanged");
    assert_eq!(head(&tree), head_sha);

    // Removing the series brings the tree back to the pinned commit.
    std::fs::remove_dir_all(s.path().join("patches/qemu")).unwrap();
    s.run_ok(&["fetch", "qemu"]);
    assert_eq!(head(&tree), pinned);
}

#[test]
fn a_conflicting_patch_names_patch_file_and_hunk_and_leaves_the_pinned_tree_clean() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    let dir = s.path().join("patches/qemu");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n\
From: Dana Dev <dana@example.com>\n\
Date: Mon, 4 Mar 2024 12:00:00 +0000\n\
Subject: [PATCH] bump version\n\
\n\
---\n\
 VERSION | 2 +-\n\
\n\
diff --git a/VERSION b/VERSION\n\
--- a/VERSION\n\
+++ b/VERSION\n\
@@ -1 +1 @@\n\
-1.0.0-not-what-upstream-has\n\
+9.9.9\n\
-- \n\
2.39.2\n";
    std::fs::write(dir.join("0001-bump.patch"), bad).unwrap();
    let r = s.run(&["fetch", "qemu"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for needle in [
        "0001-bump.patch",
        "patch 1",
        "bump version",
        "VERSION",
        "@@ -1 +1 @@",
    ] {
        assert!(
            r.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            r.stderr
        );
    }
    let tree = s.tree("qemu");
    let pinned = rev_parse(&fx.join("qemu.git"), "snp-latest");
    assert_eq!(head(&tree), pinned);
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");

    // Fix the patch against what upstream really has, and run again.
    let upstream_version = std::fs::read_to_string(tree.join("VERSION")).unwrap();
    let fixed = bad.replace(
        "-1.0.0-not-what-upstream-has\n",
        &format!("-{upstream_version}"),
    );
    std::fs::write(dir.join("0001-bump.patch"), fixed).unwrap();
    s.run_ok(&["fetch", "qemu"]);
    assert_eq!(
        std::fs::read_to_string(tree.join("VERSION")).unwrap(),
        "9.9.9\n"
    );
    assert_eq!(
        git(&tree, &["log", "-1", "--format=%an %s"]),
        "Dana Dev bump version"
    );
}

#[test]
fn plain_unified_diffs_apply_too() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    s.run_ok(&["fetch", "qemu"]);
    let tree = s.tree("qemu");
    let old = std::fs::read_to_string(tree.join("VERSION")).unwrap();
    let diff = format!(
        "Some words before the diff.\n--- a/VERSION\t2024-01-01\n+++ b/VERSION\t2024-01-02\n@@ -1 +1 @@\n-{old}+1.2.3\n"
    );
    let dir = s.path().join("patches/qemu");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001-plain.patch"), diff).unwrap();
    s.run_ok(&["fetch", "qemu"]);
    assert_eq!(
        std::fs::read_to_string(tree.join("VERSION")).unwrap(),
        "1.2.3\n"
    );
    assert_eq!(
        git(&tree, &["log", "-1", "--format=%an %s"]),
        "snp-build Apply 0001-plain.patch"
    );
}

#[test]
fn a_non_patch_file_or_an_empty_patch_is_refused_before_fetching() {
    let fx = shared_fixtures();
    for (name, content, says) in [
        ("notes.txt", "hello\n", "`notes.txt` is not a patch file"),
        ("0001-empty.patch", "", "is empty"),
        (
            "0001-words.patch",
            "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] nothing\n\njust words\n",
            "is empty",
        ),
    ] {
        let s = Scratch::new(fx);
        let dir = s.path().join("patches/qemu");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), content).unwrap();
        let r = s.run(&["fetch", "qemu"]);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{name}: {}", r.stderr);
        assert!(r.stderr.contains("patches/qemu"), "{name}: {}", r.stderr);
        assert!(!s.tree("qemu").exists(), "{name}: nothing may be fetched");
    }
}

#[test]
fn a_source_table_may_name_its_patch_directory() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    let clone = local_changes(fx, s.path());
    write_series(&clone, &s.path().join("carried/qemu-fixes"));
    s.edit_pins(
        "branch = \"snp-latest\"",
        "branch = \"snp-latest\"\npatches = \"carried/qemu-fixes\"",
    );
    let doc = s.run_ok(&["fetch", "qemu"]);
    assert_eq!(doc["sources"][0]["patches"].as_array().unwrap().len(), 2);
}
