//! `snp-build clean` removes build outputs under the work dir only.

mod common;

use common::*;

#[test]
fn clean_removes_outputs_keeps_trees_and_user_work_and_never_leaves_the_work_dir() {
    let s = Scratch::new(shared_fixtures());
    s.run_ok(&["-j2"]);
    let tree = s.tree("kernel-host");
    assert!(tree.join("vmlinux").exists(), "a build product in the tree");
    std::fs::write(tree.join("my-notes.txt"), "mine\n").unwrap();
    // A moved-aside tree holding user work, as recovery leaves it.
    let aside = s.work().join("qemu/src.broken-20261122T000000Z");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::write(aside.join("work.c"), "precious\n").unwrap();
    let head_before = head(&tree);

    let r = s.run(&["clean"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!s.work().join("state").exists() && !s.work().join("logs").exists());
    assert!(!s.work().join("kernel-host/packages").exists());
    assert!(!s.work().join("source-commit.qemu").exists());
    assert!(
        !tree.join("vmlinux").exists(),
        "ignored build products are removed"
    );
    assert!(
        tree.join("my-notes.txt").exists(),
        "untracked files that are not ignored stay"
    );
    assert_eq!(head(&tree), head_before);
    assert_eq!(git(&tree, &["status", "--porcelain"]), "?? my-notes.txt");
    assert!(aside.join("work.c").exists(), "moved-aside trees stay");
    assert!(r.stderr.contains("clean --broken"), "{}", r.stderr);
    assert!(
        s.path().join("usr/local/bin/qemu-system-x86_64").exists(),
        "nothing outside the work dir"
    );

    // The user's file makes the tree differ from its pin: a build stops
    // (exit 7) naming it, until it goes.
    let r = s.run(&["-j2"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("my-notes.txt"), "{}", r.stderr);
    std::fs::remove_file(tree.join("my-notes.txt")).unwrap();

    // The next build reruns everything.
    let doc = s.run_ok(&["-j2"]);
    assert!(
        doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|st| st["status"] == "ok")
    );

    let r = s.run(&["clean", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!tree.exists() && !s.work().join("git").exists());
    assert!(aside.join("work.c").exists());
    assert!(
        s.path().join("stable-commits.lock").exists(),
        "the lock stays"
    );

    let r = s.run(&["clean", "--broken", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&aside.display().to_string()),
        "listed first: {}",
        r.stderr
    );
    assert!(!aside.exists());
    assert!(
        r.json()["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == &aside.display().to_string())
    );
}
