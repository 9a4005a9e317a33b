//! The shared stage cache (issue 17) against a real registry: Debian's
//! `docker-registry` (CNCF distribution 2.8) on loopback, read back by a
//! second client (`curl`, `skopeo`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const ALL: [&str; 4] = ["qemu", "ovmf", "kernel-guest", "kernel-host"];
const PASSWORD: &str = "s3cr3t-pw";

/// Adds `[cache]` to the scratch's pin file.
fn cache_in_pins(s: &Scratch, remote: &str, mode: &str) {
    let mut text = std::fs::read_to_string(s.pins()).unwrap();
    text.push_str(&format!(
        "\n[cache]\nremote = \"{remote}\"\nmode = \"{mode}\"\ninsecure = true\n"
    ));
    std::fs::write(s.pins(), text).unwrap();
}

/// Runs snp-build with no machine config but the scratch's own
/// (`<scratch>/xdg/snp-build/config.toml`, if written) and `env`.
fn run_isolated(s: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Run {
    let xdg = s.path().join("xdg");
    let mut all: Vec<(&str, &std::ffi::OsStr)> = vec![("XDG_CONFIG_HOME", xdg.as_os_str())];
    all.extend(env.iter().map(|(k, v)| (*k, std::ffi::OsStr::new(*v))));
    s.run_env(&all, args)
}

fn run_json(s: &Scratch, env: &[(&str, &str)], args: &[&str]) -> (Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let r = run_isolated(s, env, &all);
    assert_eq!(r.code, 0, "snp-build {args:?} failed:\n{}", r.stderr);
    (r.json(), r.stderr)
}

fn statuses(doc: &Value) -> Vec<(String, String)> {
    doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all(status: &str) -> Vec<(String, String)> {
    ALL.iter()
        .map(|s| (s.to_string(), status.to_string()))
        .collect()
}

fn curl(url: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-f",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            url,
        ])
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// The one tag of `repo` and its manifest, read with curl.
fn oci_manifest(reg: &OciRegistry, repo: &str) -> (String, Value) {
    let (ok, tags) = curl(&format!(
        "http://127.0.0.1:{}/v2/{repo}/tags/list",
        reg.port
    ));
    assert!(ok, "no tags for {repo}");
    let tags: Value = serde_json::from_str(&tags).unwrap();
    let tag = tags["tags"][0].as_str().unwrap().to_string();
    let (ok, m) = curl(&format!(
        "http://127.0.0.1:{}/v2/{repo}/manifests/{tag}",
        reg.port
    ));
    assert!(ok);
    (tag, serde_json::from_str(&m).unwrap())
}

/// Puts `manifest` as `repo:tag` with curl (a second client, as a
/// careless or hostile one would).
fn put_manifest(reg: &OciRegistry, repo: &str, tag: &str, manifest: &Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-f",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &manifest.to_string(),
            &format!("http://127.0.0.1:{}/v2/{repo}/manifests/{tag}", reg.port),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tarball_sha(doc: &Value) -> String {
    doc["release"]["tarball_sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_second_box_pulls_every_stage_fetches_no_tree_and_makes_the_same_tarball() {
    let reg = OciRegistry::start(false);
    let remote = reg.remote("team/snp");
    // Box A: the nightly, its [cache] in the pin file, read-write.
    let a = Scratch::new(shared_fixtures());
    cache_in_pins(&a, &remote, "read-write");
    let (doc_a, err_a) = run_json(&a, &[], PACKAGE);
    assert_eq!(statuses(&doc_a), all("ok"));
    assert_eq!(err_a.matches(": pushed to oci://").count(), 4, "{err_a}");

    // A second client reads the artifact: the layout is standard OCI.
    let (tag, m) = oci_manifest(&reg, "team/snp/qemu");
    assert!(tag.starts_with("fp-") && tag.len() == 67, "{tag}");
    assert_eq!(m["artifactType"], "application/vnd.snp-build.stage.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["annotations"]["dev.snp-build.stage"], "qemu");
    let fp: Value = serde_json::from_str(
        m["annotations"]["dev.snp-build.fingerprint"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(fp["sha"], m["annotations"]["dev.snp-build.source-sha"]);
    assert!(
        fp.get("install").is_none(),
        "the install dir is no shared input"
    );
    assert!(fp["os"].as_str().unwrap().ends_with(std::env::consts::ARCH));
    let titles: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(titles[0], "record.json");
    assert!(
        titles.contains(&"install/bin/qemu-system-x86_64"),
        "{titles:?}"
    );
    let skopeo = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://127.0.0.1:{}/team/snp/qemu:{tag}", reg.port),
        ])
        .output()
        .expect("skopeo: run .ci/install-deps");
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    let raw: Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    assert_eq!(raw, m);

    // Box B: another path, the same pins and lock, [cache] read-only in
    // its machine config (not its pin file).
    let b = Scratch::new(shared_fixtures());
    std::fs::copy(
        a.path().join("stable-commits.lock"),
        b.path().join("stable-commits.lock"),
    )
    .unwrap();
    let machine = b.path().join("xdg/snp-build");
    std::fs::create_dir_all(&machine).unwrap();
    std::fs::write(
        machine.join("config.toml"),
        format!("[cache]\nremote = \"{remote}\"\ninsecure = true\n"),
    )
    .unwrap();
    let plan = run_isolated(&b, &[], &["plan", "--package", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan = plan.json();
    for name in ALL {
        let p = stage(&plan, name);
        assert_eq!(p["action"], "pull", "{p}");
        assert!(p["reasons"].to_string().contains(":fp-"), "{p}");
    }
    let (doc_b, err_b) = run_json(&b, &[], PACKAGE);
    assert_eq!(statuses(&doc_b), all("pulled"), "{err_b}");
    assert!(err_b.contains("pulled from oci://"), "{err_b}");
    assert!(
        !err_b.contains("pushed"),
        "read-only never pushes:\n{err_b}"
    );
    for name in ALL {
        assert!(!b.tree(name).exists(), "{name}'s tree was fetched");
        let st = stage(&doc_b, name);
        assert!(st["reasons"][0].to_string().contains("pulled from"));
        assert_eq!(st["pulled"]["from"], remote.as_str());
        assert!(st["pulled"]["tag"].as_str().unwrap().starts_with("fp-"));
        assert!(st["pulled"]["bytes"].as_u64().unwrap() > 0);
    }
    for s in doc_b["sources"].as_array().unwrap() {
        assert_eq!(s["action"], "recorded", "{s}");
    }
    assert_eq!(tarball_sha(&doc_b), tarball_sha(&doc_a));
    // Again on B: nothing runs, still no tree, the same release.
    let (again, _) = run_json(&b, &[], PACKAGE);
    assert_eq!(statuses(&again), all("skipped"));
    assert!(!b.tree("qemu").exists());
    assert_eq!(tarball_sha(&again), tarball_sha(&doc_a));
}

#[test]
fn basic_auth_given_pushes_and_pulls_missing_warns_and_builds() {
    let reg = OciRegistry::start(true);
    let remote = reg.remote("snp");
    let a = Scratch::new(shared_fixtures());
    cache_in_pins(&a, &remote, "read-write");
    let creds = [
        ("SNP_BUILD_CACHE_USER", "user"),
        ("SNP_BUILD_CACHE_PASSWORD", PASSWORD),
    ];
    let (doc, err) = run_json(&a, &creds, &["qemu", "-j2"]);
    assert_eq!(stage(&doc, "qemu")["status"], "ok");
    assert!(err.contains("qemu: pushed to"), "{err}");
    assert!(!err.contains(PASSWORD) && !doc.to_string().contains(PASSWORD));

    // No credentials: a warning that names the registry, and a build.
    let b = Scratch::new(shared_fixtures());
    cache_in_pins(&b, &remote, "read-only");
    let (doc, err) = run_json(&b, &[], &["qemu", "-j2"]);
    assert_eq!(stage(&doc, "qemu")["status"], "ok", "{err}");
    assert!(err.contains("not authorized"), "{err}");
    assert!(err.contains("no credentials were given"), "{err}");
    assert!(err.contains(&remote), "{err}");

    // Wrong ones are named as wrong, not as missing (and never shown).
    let wrong = [
        ("SNP_BUILD_CACHE_USER", "user"),
        ("SNP_BUILD_CACHE_PASSWORD", "not-the-password"),
    ];
    let d = Scratch::new(shared_fixtures());
    cache_in_pins(&d, &remote, "read-only");
    let (doc, err) = run_json(&d, &wrong, &["qemu", "-j2"]);
    assert_eq!(stage(&doc, "qemu")["status"], "ok", "{err}");
    assert!(
        err.contains(
            "refused the credentials from SNP_BUILD_CACHE_USER and SNP_BUILD_CACHE_PASSWORD"
        ),
        "{err}"
    );
    assert!(!err.contains("no credentials were given"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    // docker's config.json gives them.
    let c = Scratch::new(shared_fixtures());
    cache_in_pins(&c, &remote, "read-only");
    let docker = c.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64_encode(format!("user:{PASSWORD}").as_bytes());
    std::fs::write(
        docker.join("config.json"),
        format!(
            "{{\"auths\":{{\"127.0.0.1:{}\":{{\"auth\":\"{auth}\"}}}}}}",
            reg.port
        ),
    )
    .unwrap();
    let (doc, err) = run_json(
        &c,
        &[("DOCKER_CONFIG", docker.to_str().unwrap())],
        &["qemu"],
    );
    assert_eq!(stage(&doc, "qemu")["status"], "pulled", "{err}");
    assert!(!err.contains(PASSWORD));
}

/// Standard base64, for docker's `auth` field.
fn base64_encode(bytes: &[u8]) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_registry_that_is_down_warns_once_and_builds_unless_required() {
    let port = free_port();
    let remote = format!("oci://127.0.0.1:{port}/snp");
    let s = Scratch::new(shared_fixtures());
    cache_in_pins(&s, &remote, "read-write");
    let (doc, err) = run_json(&s, &[], &["-j2"]);
    assert_eq!(statuses(&doc), all("ok"));
    assert_eq!(err.matches("the cache remote oci://").count(), 1, "{err}");
    assert!(err.contains("not asked again"), "{err}");
    let r = run_isolated(&s, &[], &["--force", "--cache-remote-required", "qemu"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--cache-remote-required"), "{}", r.stderr);
    assert!(r.stderr.contains(&remote), "{}", r.stderr);
    // --no-cache-remote: not asked at all.
    let r = run_isolated(&s, &[], &["--force=qemu", "--no-cache-remote", "qemu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("cache remote"), "{}", r.stderr);
}

#[test]
fn read_only_never_pushes() {
    let reg = OciRegistry::start(false);
    let s = Scratch::new(shared_fixtures());
    cache_in_pins(&s, &reg.remote("snp"), "read-only");
    let (doc, err) = run_json(&s, &[], &["qemu"]);
    assert_eq!(stage(&doc, "qemu")["status"], "ok");
    assert!(err.contains("not in the cache"), "{err}");
    let (_, catalog) = curl(&format!("http://127.0.0.1:{}/v2/_catalog", reg.port));
    assert_eq!(
        serde_json::from_str::<Value>(&catalog).unwrap()["repositories"],
        serde_json::json!([])
    );
}

/// A registry with qemu pushed by a read-write box; its tag and manifest.
fn pushed_qemu() -> (OciRegistry, String, Value) {
    let reg = OciRegistry::start(false);
    let a = Scratch::new(shared_fixtures());
    cache_in_pins(&a, &reg.remote("snp"), "read-write");
    run_json(&a, &[], &["qemu"]);
    let (tag, m) = oci_manifest(&reg, "snp/qemu");
    (reg, tag, m)
}

/// The first file layer's digest.
fn file_layer(m: &Value) -> String {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.snp-build.file.v1")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A box pulling qemu from `reg` in `mode`: refused (a warning naming the
/// tag and `why`), so built.
fn refused_and_built(reg: &OciRegistry, tag: &str, mode: &str, why: &str) -> String {
    let b = Scratch::new(shared_fixtures());
    cache_in_pins(&b, &reg.remote("snp"), mode);
    let (doc, err) = run_json(&b, &[], &["qemu"]);
    assert_eq!(stage(&doc, "qemu")["status"], "ok", "{err}");
    assert!(
        err.contains(&format!("refused {}/qemu:{tag}", reg.remote("snp"))),
        "{err}"
    );
    assert!(err.contains(why), "wanted {why:?}:\n{err}");
    err
}

#[test]
fn a_corrupted_blob_is_refused_and_built_and_the_push_says_it_persists() {
    let (reg, tag, m) = pushed_qemu();
    let blob = reg.blob_file(&file_layer(&m));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let err = refused_and_built(&reg, &tag, "read-write", "Invalid digest");
    // Re-pushed; distribution keeps the first copy of a digest, and the
    // push says so rather than claiming the tag mended.
    assert!(err.contains("qemu: pushed to"), "{err}");
    assert!(err.contains("still serves a damaged blob"), "{err}");
}

#[test]
fn a_truncated_blob_is_refused_and_built() {
    let (reg, tag, m) = pushed_qemu();
    let blob = reg.blob_file(&file_layer(&m));
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
    refused_and_built(&reg, &tag, "read-only", "Invalid digest");
}

#[test]
fn a_manifest_missing_a_layer_is_refused_built_and_mended_in_read_write_mode() {
    let (reg, tag, mut m) = pushed_qemu();
    let gone = file_layer(&m);
    m["layers"]
        .as_array_mut()
        .unwrap()
        .retain(|l| l["digest"] != gone.as_str());
    put_manifest(&reg, "snp/qemu", &tag, &m);
    let err = refused_and_built(&reg, &tag, "read-write", "missing the layer");
    assert!(err.contains("qemu: pushed to"), "{err}");
    // Mended: the next box pulls it.
    let c = Scratch::new(shared_fixtures());
    cache_in_pins(&c, &reg.remote("snp"), "read-only");
    let (doc, err) = run_json(&c, &[], &["qemu"]);
    assert_eq!(stage(&doc, "qemu")["status"], "pulled", "{err}");
}

#[test]
fn an_artifact_whose_annotations_disagree_is_refused_and_built() {
    let (reg, tag, mut m) = pushed_qemu();
    let notes = &mut m["annotations"];
    let mut fp: Value =
        serde_json::from_str(notes["dev.snp-build.fingerprint"].as_str().unwrap()).unwrap();
    fp["target-list"] = "i386-softmmu".into();
    notes["dev.snp-build.fingerprint"] = fp.to_string().into();
    put_manifest(&reg, "snp/qemu", &tag, &m);
    refused_and_built(&reg, &tag, "read-only", "target-list changed");
}

#[test]
fn cache_settings_stay_out_of_the_release() {
    // One pin file with a [cache] table (written as people write it), one
    // without: the same source-config.
    let with = Scratch::new(shared_fixtures());
    let mut text = std::fs::read_to_string(with.pins()).unwrap();
    text.push_str(
        "\n[ cache ] # the team's registry\nremote = \"oci://127.0.0.1:1/nowhere\"\nmode = \"read-only\"\n",
    );
    std::fs::write(with.pins(), text).unwrap();
    let without = Scratch::new(shared_fixtures());
    let source_config = |s: &Scratch| {
        let (doc, _) = run_json(
            s,
            &[],
            &[
                "--no-cache-remote",
                "--package",
                "--output",
                "out",
                "--date",
                "2026-11-29",
            ],
        );
        let release = doc["release"]["path"].as_str().unwrap().to_string();
        (
            std::fs::read_to_string(Path::new(&release).join("source-config")).unwrap(),
            tarball_sha(&doc),
        )
    };
    let (a, tar_a) = source_config(&with);
    let (b, tar_b) = source_config(&without);
    assert!(!a.contains("cache") && !a.contains("nowhere"), "{a}");
    assert_eq!(a, b);
    assert_eq!(tar_a, tar_b);
}

/// Uploads `bytes` as a blob of `repo` with curl; its digest.
fn push_blob(reg: &OciRegistry, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", snp_build::hash::sha256_hex(bytes));
    let out = Command::new("curl")
        .args(["-s", "-i", "-X", "POST"])
        .arg(format!(
            "http://127.0.0.1:{}/v2/{repo}/blobs/uploads/",
            reg.port
        ))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap_or_else(|| panic!("no upload location:\n{head}"))
        .trim()
        .to_string();
    let location = if location.starts_with('/') {
        format!("http://127.0.0.1:{}{location}", reg.port)
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let body = std::env::temp_dir().join(format!("blob-{}", &digest[7..23]));
    std::fs::write(&body, bytes).unwrap();
    let put = Command::new("curl")
        .args([
            "-s",
            "-f",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("{location}{sep}digest={digest}"))
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stdout)
    );
    digest
}

/// Re-tags qemu with a crafted record: a file the user has
/// (`work/saved-diffs/precious.diff`, set-uid, reusing a pushed blob)
/// added; with `drop_binary`, the QEMU binary's file dropped (its summary
/// still names it, so the release would read a file never delivered);
/// with `in_summary`, the user's file also listed as an installed output.
/// Then a box pulls it (with `args`) and must refuse it, leaving the
/// user's file alone.
fn crafted_record_is_refused(drop_binary: bool, in_summary: bool, args: &[&str], why: &str) {
    let (reg, tag, mut m) = pushed_qemu();
    let record_type = "application/vnd.snp-build.stage.record.v1+json";
    let layers = m["layers"].as_array().unwrap().clone();
    let record_layer = layers
        .iter()
        .find(|l| l["mediaType"] == record_type)
        .unwrap();
    let (ok, text) = curl(&format!(
        "http://127.0.0.1:{}/v2/snp/qemu/blobs/{}",
        reg.port,
        record_layer["digest"].as_str().unwrap()
    ));
    assert!(ok);
    let mut record: Value = serde_json::from_str(&text).unwrap();
    let files = record["files"].as_array().unwrap().clone();
    let binary = "install/bin/qemu-system-x86_64";
    let mut evil = files.iter().find(|f| f["path"] != binary).unwrap().clone();
    evil["path"] = "work/saved-diffs/precious.diff".into();
    evil["mode"] = 0o4755.into();
    let mut new_files: Vec<Value> = files
        .into_iter()
        .filter(|f| !drop_binary || f["path"] != binary)
        .collect();
    new_files.push(evil.clone());
    record["files"] = Value::Array(new_files);
    if in_summary {
        record["summary"]["installed"]
            .as_array_mut()
            .unwrap()
            .push("@WORK_DIR@/saved-diffs/precious.diff".into());
    }
    let bytes = serde_json::to_vec(&record).unwrap();
    let digest = push_blob(&reg, "snp/qemu", &bytes);
    let mut new_layers: Vec<Value> = layers
        .into_iter()
        .filter(|l| !drop_binary || l["annotations"]["org.opencontainers.image.title"] != binary)
        .map(|mut l| {
            if l["mediaType"] == record_type {
                l["digest"] = digest.clone().into();
                l["size"] = bytes.len().into();
            }
            l
        })
        .collect();
    let evil_digest = format!("sha256:{}", evil["sha256"].as_str().unwrap());
    let mut evil_layer = new_layers
        .iter()
        .find(|l| l["digest"] == evil_digest.as_str())
        .unwrap()
        .clone();
    evil_layer["annotations"]["org.opencontainers.image.title"] = evil["path"].clone();
    new_layers.push(evil_layer);
    m["layers"] = Value::Array(new_layers);
    put_manifest(&reg, "snp/qemu", &tag, &m);

    let b = Scratch::new(shared_fixtures());
    cache_in_pins(&b, &reg.remote("snp"), "read-only");
    let precious = b.work().join("saved-diffs/precious.diff");
    std::fs::create_dir_all(precious.parent().unwrap()).unwrap();
    std::fs::write(&precious, "my hand edit\n").unwrap();
    let mut all = vec!["qemu"];
    all.extend_from_slice(args);
    let (doc, err) = run_json(&b, &[], &all);
    assert_eq!(stage(&doc, "qemu")["status"], "ok", "{err}");
    assert!(
        err.contains(&format!("refused {}/qemu:{tag}", reg.remote("snp"))),
        "{err}"
    );
    assert!(err.contains(why), "wanted {why:?}:\n{err}");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "my hand edit\n"
    );
}

#[test]
fn a_record_that_would_write_over_the_users_files_is_refused_and_nothing_is_touched() {
    crafted_record_is_refused(true, false, &[], "not the outputs it describes");
}

#[test]
fn a_record_naming_the_users_file_as_an_output_is_refused_even_when_the_install_dir_holds_the_work_dir()
 {
    // `--install .`: the work dir (`build`) lies inside the install dir,
    // which must not make the user's files fair game.
    crafted_record_is_refused(false, true, &["--install", "."], "outside qemu's products");
}

#[test]
fn locked_is_checked_before_anything_is_pulled() {
    let reg = OciRegistry::start(false);
    let a = Scratch::new(shared_fixtures());
    cache_in_pins(&a, &reg.remote("snp"), "read-write");
    // A's own lock: qemu's entry only.
    std::fs::remove_file(a.path().join("stable-commits.lock")).ok();
    run_json(&a, &[], &["qemu"]);
    let b = Scratch::new(shared_fixtures());
    cache_in_pins(&b, &reg.remote("snp"), "read-only");
    std::fs::copy(
        a.path().join("stable-commits.lock"),
        b.path().join("stable-commits.lock"),
    )
    .unwrap();
    let r = run_isolated(&b, &[], &["--locked", "qemu", "ovmf"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ovmf"), "{}", r.stderr);
    assert!(!r.stderr.contains("pulled"), "{}", r.stderr);
    assert!(!b.path().join("usr/local/bin/qemu-system-x86_64").exists());
}

#[test]
fn a_blob_deleted_from_the_registry_is_damage_and_a_read_write_box_mends_the_tag() {
    // What an admin does about a blob damaged at rest: delete it.
    let (reg, tag, m) = pushed_qemu();
    let blob = reg.blob_file(&file_layer(&m));
    std::fs::remove_dir_all(blob.parent().unwrap()).unwrap();
    let err = refused_and_built(&reg, &tag, "read-write", "not in the registry");
    assert!(err.contains("qemu: pushed to"), "{err}");
    assert!(!err.contains("still serves a damaged blob"), "{err}");
    let c = Scratch::new(shared_fixtures());
    cache_in_pins(&c, &reg.remote("snp"), "read-only");
    let (doc, err) = run_json(&c, &[], &["qemu"]);
    assert_eq!(stage(&doc, "qemu")["status"], "pulled", "{err}");
}

/// A compiler launcher named `snp-test-cc`, found on the PATH this
/// returns: the same name (so the same fingerprint) on every box, but
/// `extra` flags change the bytes it makes, as a non-reproducible build
/// would.
fn launcher_on_path(s: &Scratch, extra: &str) -> String {
    let dir = s.path().join("launcher-bin");
    std::fs::create_dir_all(&dir).unwrap();
    script(
        &dir.join("snp-test-cc"),
        &format!("#!/bin/sh\nexec \"$@\" {extra}\n"),
    );
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}

#[test]
fn a_tag_is_written_once_and_other_bytes_for_it_are_named_not_pushed() {
    let reg = OciRegistry::start(false);
    let remote = reg.remote("snp");
    let a = Scratch::new(shared_fixtures());
    cache_in_pins(&a, &remote, "read-write");
    let text = std::fs::read_to_string(a.pins()).unwrap();
    std::fs::write(
        a.pins(),
        format!("[build]\ncompiler-launcher = \"snp-test-cc\"\n\n{text}"),
    )
    .unwrap();
    let path_a = launcher_on_path(&a, "");
    let (_, err) = run_json(&a, &[("PATH", &path_a)], &["qemu"]);
    assert!(err.contains("qemu: pushed to"), "{err}");
    let (tag, first) = oci_manifest(&reg, "snp/qemu");

    // Another read-write box, the same pins, a forced build (no pull) of
    // other bytes: the first copy stays, and the files are named.
    let c = Scratch::new(shared_fixtures());
    std::fs::copy(a.pins(), c.pins()).unwrap();
    std::fs::copy(
        a.path().join("stable-commits.lock"),
        c.path().join("stable-commits.lock"),
    )
    .unwrap();
    let path_c = launcher_on_path(&c, "-O0 -fno-ident");
    let (_, err) = run_json(&c, &[("PATH", &path_c)], &["qemu", "--force=qemu"]);
    assert!(err.contains("not reproducible"), "{err}");
    assert!(err.contains("install/bin/qemu-system-x86_64"), "{err}");
    assert!(!err.contains("qemu: pushed to"), "{err}");
    assert_eq!(oci_manifest(&reg, "snp/qemu"), (tag.clone(), first.clone()));

    // The same bytes again (built afresh: the last objects were -O0):
    // nothing to push, nothing replaced.
    let path_c = launcher_on_path(&c, "");
    let (_, err) = run_json(
        &c,
        &[("PATH", &path_c)],
        &["qemu", "--force=qemu", "--clean"],
    );
    assert!(err.contains("already holds these bytes"), "{err}");
    assert_eq!(oci_manifest(&reg, "snp/qemu"), (tag, first));

    // A dirty build is never pushed (its fingerprint differs, and it is
    // not shareable at all).
    let configure = c.tree("qemu").join("configure");
    let original = std::fs::read_to_string(&configure).unwrap();
    std::fs::write(&configure, format!("{original}\n# local\n")).unwrap();
    let (_, err) = run_json(
        &c,
        &[("PATH", &path_c)],
        &["qemu", "--force=qemu", "--allow-dirty"],
    );
    assert!(!err.contains("pushed to"), "{err}");
    let (_, tags) = curl(&format!(
        "http://127.0.0.1:{}/v2/snp/qemu/tags/list",
        reg.port
    ));
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["tags"].as_array().unwrap().len(), 1, "{tags}");
}
