//! Signed releases, their SBOM and provenance, checked by `snp-build
//! verify`, `snp-build install` and the release's `install.sh` (issue:
//! signed releases with an SBOM and build provenance).
//!
//! Real parts: fixture builds through the binary, Debian's `minisign`
//! (installed by `.ci/install-deps`) checking our signatures, and the
//! CycloneDX 1.5 JSON schema vendored in `tests/schema/`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const DATE: &str = "2026-11-29";
const RELEASE: &str = "snp-release-2026-11-29";

/// A scratch dir with a key pair (`k.key`, `k.key.pub`) and a signed
/// release in `out/`.
struct Signed {
    s: Scratch,
    summary: Value,
}

impl Signed {
    fn build() -> Signed {
        let s = Scratch::new(shared_fixtures());
        let keygen = s.run(&["keygen", "-o", "k.key", "--no-password"]);
        assert_eq!(keygen.code, 0, "{}", keygen.stderr);
        // With the installer, which install.sh checks and runs.
        let r = s.run_env(
            &[(INSTALLER_ENV, installer().as_os_str())],
            &[
                "--package",
                "--output",
                "out",
                "--date",
                DATE,
                "--sign",
                "k.key",
                "-j2",
                "--json",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let summary = r.json();
        Signed { s, summary }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.s.path().join(rel)
    }

    fn release(&self) -> PathBuf {
        self.path("out").join(RELEASE)
    }

    fn public(&self) -> PathBuf {
        self.path("k.key.pub")
    }

    /// The release's `SOURCE_DATE_EPOCH`, from its manifest.
    fn epoch(&self) -> u64 {
        let m: Value =
            serde_json::from_slice(&std::fs::read(self.release().join("manifest.json")).unwrap())
                .unwrap();
        m["source_date_epoch"].as_u64().unwrap()
    }

    /// Signs `release`'s SHA256SUMS again with the trusted key, under
    /// `comment`: what the key's holder could sign for something else.
    fn resign(&self, release: &Path, comment: &str) {
        let signer = snp_build::signing::Signer::load(&self.path("k.key")).unwrap();
        let sums = std::fs::read(release.join("SHA256SUMS")).unwrap();
        let sig = signer.sign(&sums, comment).unwrap();
        std::fs::write(release.join("SHA256SUMS.minisig"), sig).unwrap();
    }

    /// `verify`, `install --root` and `install.sh --root` with the trusted
    /// key: each exits 8 naming `says`, and writes nothing.
    fn assert_refused_by_all(&self, release: &Path, says: &[&str]) {
        let what = release.display();
        let root = self.path("refused-root");
        let r = snp_build(
            Path::new("."),
            &[
                os("verify"),
                release.as_os_str(),
                os("--trusted-key"),
                self.public().as_os_str(),
            ],
        );
        assert_eq!(r.code, 8, "verify {what}: {}", r.stderr);
        for s in says {
            assert!(
                r.stderr.contains(s),
                "verify {what}: no {s:?} in {}",
                r.stderr
            );
        }
        let r = self.install(release, &root);
        assert_eq!(r.code, 8, "install {what}: {}", r.stderr);
        for s in says.iter().chain(&["nothing was changed"]) {
            assert!(
                r.stderr.contains(s),
                "install {what}: no {s:?} in {}",
                r.stderr
            );
        }
        assert!(!root.exists(), "install {what} wrote {}", root.display());
        if release.is_dir() {
            let r = install_sh(
                release,
                &[
                    os("--root"),
                    root.as_os_str(),
                    os("--trusted-key"),
                    self.public().as_os_str(),
                ],
            );
            assert_eq!(r.code, 8, "install.sh {what}: {}{}", r.stdout, r.stderr);
            for s in says {
                assert!(
                    r.stderr.contains(s),
                    "install.sh {what}: no {s:?} in {}",
                    r.stderr
                );
            }
            assert!(!root.exists(), "install.sh {what} wrote {}", root.display());
        }
    }

    /// `snp-build install RELEASE --root ROOT --trusted-key k.key.pub`.
    fn install(&self, release: &Path, root: &Path) -> Run {
        snp_build(
            Path::new("."),
            &[
                os("install"),
                release.as_os_str(),
                os("--root"),
                root.as_os_str(),
                os("--trusted-key"),
                self.public().as_os_str(),
            ],
        )
    }

    /// A copy of the release to tamper with.
    fn copy(&self, name: &str) -> PathBuf {
        self.copy_as(name, RELEASE)
    }

    /// A copy of the release under another name, in the directory `name`.
    fn copy_as(&self, name: &str, release: &str) -> PathBuf {
        let to = self.path(name).join(release);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let out = Command::new("cp")
            .arg("-a")
            .arg(self.release())
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        to
    }
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

fn install_sh(release: &Path, args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new("bash")
        .arg(release.join("install.sh"))
        .args(args)
        .output()
        .unwrap();
    Run::from(out)
}

fn minisign_verify(release: &Path, public: &Path) -> std::process::Output {
    Command::new("minisign")
        .current_dir(release)
        .args(["-Vm", "SHA256SUMS", "-p"])
        .arg(public)
        .output()
        .expect("Debian's minisign is not installed: run .ci/install-deps")
}

fn sums(release: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(release.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            let (h, p) = l.split_once("  ").unwrap();
            (p.to_string(), h.to_string())
        })
        .collect()
}

fn write_sums(release: &Path, sums: &BTreeMap<String, String>) {
    let text: String = sums.iter().map(|(p, h)| format!("{h}  {p}\n")).collect();
    std::fs::write(release.join("SHA256SUMS"), text).unwrap();
}

#[test]
fn a_signed_release_verifies_with_debian_minisign_and_installs_with_its_key() {
    let k = Signed::build();
    let release = k.release();
    assert_eq!(
        k.summary["release"]["signed_by"].as_str().map(str::len),
        Some(16),
        "{}",
        k.summary["release"]
    );
    // The signature is the one file SHA256SUMS does not list.
    let listed = sums(&release);
    assert!(release.join("SHA256SUMS.minisig").is_file());
    assert!(!listed.contains_key("SHA256SUMS.minisig"));
    for doc in ["sbom.cdx.json", "provenance.json"] {
        assert!(
            listed.contains_key(doc),
            "{doc} is covered by the signature"
        );
    }
    // Debian's minisign accepts it; the trusted comment is fixed.
    let out = minisign_verify(&release, &k.public());
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "Trusted comment: release:{RELEASE} source_date_epoch:{} manifest_sha256:{}\n",
            k.epoch(),
            sha256_file(&release.join("manifest.json"))
        )),
        "{said}"
    );

    // verify: the directory and the tarball (not unpacked).
    let tarball = k.path("out").join(format!("{RELEASE}.tar.gz"));
    for target in [&release, &tarball] {
        let r = snp_build(
            Path::new("."),
            &[
                os("verify"),
                target.as_os_str(),
                os("--trusted-key"),
                k.public().as_os_str(),
                os("--json"),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = r.json();
        assert_eq!(v["trusted"], true, "{v}");
        assert_eq!(v["documents"][0], "sbom.cdx.json");
        assert_eq!(v["documents"][1], "provenance.json");
    }

    // install into a root that does not exist yet, with the key.
    let root = k.path("staging/does/not/exist");
    let r = k.install(&release, &root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("signed by"), "{}", r.stderr);
    assert!(root.join("etc/modprobe.d/kvm.conf").is_file());

    // install.sh: with the key, and with the key installed on the target.
    let sh_root = k.path("sh-root/new");
    let r = install_sh(
        &release,
        &[
            os("--dry-run"),
            os("--root"),
            sh_root.as_os_str(),
            os("--trusted-key"),
            k.public().as_os_str(),
        ],
    );
    // The launcher checked the signature with minisign, then the release's
    // snp-build checked it all again, and says so.
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("signed by"), "{}", r.stderr);
    assert!(r.stderr.contains("[dry-run] would"), "{}", r.stderr);
    assert!(!sh_root.exists(), "a dry run changes nothing");
    let r = install_sh(&release, &[os("--root"), sh_root.as_os_str()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(sh_root.join("etc/modprobe.d/kvm.conf").is_file());
    assert!(r.stderr.contains("not checked"), "{}", r.stderr);

    // The host's policy: a key in <root>/etc/snp-build/trusted-keys, or
    // `[install] trusted-keys` in <root>/etc/snp-build/config.toml.
    let policy_root = k.path("policy-root");
    std::fs::create_dir_all(policy_root.join("etc/snp-build/trusted-keys")).unwrap();
    std::fs::copy(
        k.public(),
        policy_root.join("etc/snp-build/trusted-keys/nightly.pub"),
    )
    .unwrap();
    let r = snp_build(
        Path::new("."),
        &[
            os("install"),
            release.as_os_str(),
            os("--root"),
            policy_root.as_os_str(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nightly.pub"), "{}", r.stderr);
}

/// Each forgery is refused by `snp-build install`, `install.sh` and
/// `snp-build verify`, and nothing is written to the target.
#[test]
fn each_forgery_is_refused_with_nothing_written() {
    let k = Signed::build();
    let other = k.s.run(&["keygen", "-o", "other.key", "--no-password"]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    type Tamper = fn(&Signed, &Path);
    let cases: &[(&str, Tamper, &str)] = &[
        (
            "unsigned",
            |_, r| std::fs::remove_file(r.join("SHA256SUMS.minisig")).unwrap(),
            "unsigned",
        ),
        (
            "signed by another key",
            |k, r| {
                let mut cmd = assert_cmd::Command::cargo_bin("snp-build").unwrap();
                // Sign the same SHA256SUMS with the other key, through a
                // second release build (the signature is all we take).
                let out = cmd
                    .current_dir(k.s.path())
                    .env(INSTALLER_ENV, installer())
                    .args([
                        "--package",
                        "--output",
                        "other-out",
                        "--date",
                        DATE,
                        "--sign",
                        "other.key",
                        "--config",
                        "stable-commits.toml",
                        "--work-dir",
                        "build",
                    ])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                std::fs::copy(
                    k.path("other-out").join(RELEASE).join("SHA256SUMS.minisig"),
                    r.join("SHA256SUMS.minisig"),
                )
                .unwrap();
            },
            "not a trusted key",
        ),
        (
            "a file changed together with a matching SHA256SUMS line",
            |_, r| {
                let conf = r.join("kvm.conf");
                std::fs::write(&conf, "options kvm_amd sev-snp=0\n").unwrap();
                let mut s = sums(r);
                s.insert("kvm.conf".into(), sha256_file(&conf));
                write_sums(r, &s);
            },
            "does not match SHA256SUMS",
        ),
        (
            "manifest.json changed together with its SHA256SUMS line",
            |_, r| {
                let manifest = r.join("manifest.json");
                let text = std::fs::read_to_string(&manifest).unwrap();
                let renamed = text.replace(RELEASE, "snp-release-2030-01-01");
                assert_ne!(text, renamed);
                std::fs::write(&manifest, renamed).unwrap();
                let mut s = sums(r);
                s.insert("manifest.json".into(), sha256_file(&manifest));
                write_sums(r, &s);
            },
            "does not match SHA256SUMS",
        ),
        (
            "a changed SHA256SUMS",
            |_, r| {
                let mut s = sums(r);
                s.remove("libvirt-sev.xml");
                std::fs::remove_file(r.join("libvirt-sev.xml")).unwrap();
                write_sums(r, &s);
            },
            "does not match SHA256SUMS",
        ),
    ];
    for (i, (what, tamper, says)) in cases.iter().enumerate() {
        let release = k.copy(&format!("case{i}"));
        tamper(&k, &release);
        let root = k.path(&format!("root{i}"));
        let r = k.install(&release, &root);
        assert_ne!(r.code, 0, "{what}: install accepted it");
        assert!(r.stderr.contains(says), "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("nothing was changed"),
            "{what}: {}",
            r.stderr
        );
        assert!(!root.exists(), "{what}: install wrote {}", root.display());

        let r = install_sh(
            &release,
            &[
                os("--root"),
                root.as_os_str(),
                os("--trusted-key"),
                k.public().as_os_str(),
            ],
        );
        assert_eq!(r.code, 8, "{what}: install.sh: {}{}", r.stdout, r.stderr);
        assert!(
            !root.exists(),
            "{what}: install.sh wrote {}",
            root.display()
        );

        let r = snp_build(
            Path::new("."),
            &[
                os("verify"),
                release.as_os_str(),
                os("--trusted-key"),
                k.public().as_os_str(),
            ],
        );
        assert_ne!(r.code, 0, "{what}: verify passed it");
        assert!(r.stderr.contains(says), "{what}: verify: {}", r.stderr);
    }

    // Without --trusted-key, a key installed on the target is the policy.
    let release = k.copy("policy");
    std::fs::remove_file(release.join("SHA256SUMS.minisig")).unwrap();
    let root = k.path("policy-root");
    std::fs::create_dir_all(root.join("etc/snp-build/trusted-keys")).unwrap();
    std::fs::copy(k.public(), root.join("etc/snp-build/trusted-keys/k.pub")).unwrap();
    let r = snp_build(
        Path::new("."),
        &[
            os("install"),
            release.as_os_str(),
            os("--root"),
            root.as_os_str(),
        ],
    );
    assert_ne!(
        r.code, 0,
        "an unsigned release installed under a key policy"
    );
    assert!(r.stderr.contains("unsigned"), "{}", r.stderr);
    assert!(!root.join("etc/modprobe.d").exists());
    let r = install_sh(&release, &[os("--root"), root.as_os_str()]);
    assert_eq!(r.code, 8, "{}{}", r.stdout, r.stderr);
}

/// The SBOM and the provenance describe exactly what SHA256SUMS lists;
/// `verify` refuses either once it disagrees.
#[test]
fn sbom_and_provenance_match_sha256sums() {
    let fx = shared_fixtures();
    let s = Scratch::new(fx);
    // A patch on qemu, so the SBOM has one to list.
    let clone = s.path().join("qemu-clone");
    clone_snp_latest(&fx.join("qemu.git"), &clone);
    std::fs::write(clone.join("NOTES"), "a local change\n").unwrap();
    git(&clone, &["add", "NOTES"]);
    git(&clone, &["commit", "-q", "-m", "add NOTES"]);
    std::fs::create_dir_all(s.path().join("patches/qemu")).unwrap();
    std::fs::write(
        s.path().join("patches/qemu/0001-notes.patch"),
        git(&clone, &["format-patch", "--stdout", "HEAD~1..HEAD"]) + "\n",
    )
    .unwrap();
    // The release carries an installer (any file will do here): it is a
    // release file like the others, in SHA256SUMS, the SBOM and the
    // provenance.
    let installer = s.path().join("an-snp-build");
    std::fs::write(&installer, "#!/bin/sh\necho stand-in\n").unwrap();
    let r = s.run_env(
        &[(INSTALLER_ENV, installer.as_os_str())],
        &["--package", "--output", "out", "--date", DATE, "-j2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let release = s.path().join("out").join(RELEASE);
    assert_eq!(
        sums(&release).get("bin/snp-build"),
        Some(&sha256_file(&installer)),
        "bin/snp-build is not in SHA256SUMS with its hash"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(release.join("manifest.json")).unwrap()).unwrap();
    let sbom: Value =
        serde_json::from_slice(&std::fs::read(release.join("sbom.cdx.json")).unwrap()).unwrap();

    // Valid CycloneDX 1.5.
    let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema/cyclonedx-1.5");
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(schema_dir.join(name)).unwrap()).unwrap()
    };
    // Offline: the schema's $refs resolve to the vendored files only.
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json",
            read("spdx.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .add(
            "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json",
            read("jsf-0.82.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let validator = jsonschema::options()
        .with_registry(&registry)
        .offline()
        .build(&read("bom-1.5.SNAPSHOT.schema.json"))
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sbom)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(sbom["specVersion"], "1.5");
    // The validator does judge: a component without its type fails.
    let mut broken = sbom.clone();
    broken["components"][0]
        .as_object_mut()
        .unwrap()
        .remove("type");
    assert!(!validator.is_valid(&broken));

    let components = sbom["components"].as_array().unwrap();
    let by_ref = |r: &str| components.iter().find(|c| c["bom-ref"] == r);
    assert!(
        by_ref("file:bin/snp-build").is_some(),
        "the installer is not in the SBOM"
    );
    // Each source at its full SHA, with its URL and declared licence.
    for (source, license) in [
        ("qemu", "GPL-2.0-only"),
        ("ovmf", "BSD-2-Clause-Patent"),
        ("kernel-host", "GPL-2.0 WITH Linux-syscall-note"),
    ] {
        let c = by_ref(&format!("source:{source}")).unwrap_or_else(|| panic!("{source}"));
        assert_eq!(c["version"], manifest["sources"][source]["sha"], "{source}");
        assert_eq!(
            c["externalReferences"][0]["url"],
            manifest["sources"][source]["url"]
        );
        assert_eq!(c["licenses"][0]["expression"], license, "{source}");
    }
    // The fixture edk2 submodule, with its SHA and URL.
    let ovmf = by_ref("source:ovmf").unwrap();
    let submodules = manifest["sources"]["ovmf"]["submodules"]
        .as_object()
        .unwrap();
    assert!(!submodules.is_empty());
    for (path, sha) in submodules {
        let sm = ovmf["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == path.as_str())
            .unwrap_or_else(|| panic!("submodule {path} not in the SBOM"));
        assert_eq!(&sm["version"], sha);
        assert!(
            sm["externalReferences"][0]["url"]
                .as_str()
                .unwrap()
                .ends_with("ovmf-brotli.git")
        );
        // brotli's LICENSE is the MIT text, with no SPDX line.
        assert_eq!(sm["licenses"][0]["expression"], "MIT", "{path}");
    }
    // Every patch with its hash.
    let qemu = by_ref("source:qemu").unwrap();
    for p in manifest["sources"]["qemu"]["patches"].as_array().unwrap() {
        let pc = qemu["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == p["file"])
            .unwrap_or_else(|| panic!("patch {} not in the SBOM", p["file"]));
        assert_eq!(pc["hashes"][0]["content"], p["sha256"]);
    }
    // Build tools from the stamps.
    let tools = sbom["metadata"]["tools"]["components"].as_array().unwrap();
    assert!(tools.iter().any(|t| t["name"] == "gcc"), "{tools:?}");

    // Provenance: subjects are SHA256SUMS but for the SBOM and itself.
    let prov: Value =
        serde_json::from_slice(&std::fs::read(release.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(prov["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    let subjects: BTreeMap<String, String> = prov["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["digest"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut listed = sums(&release);
    listed.remove("sbom.cdx.json");
    listed.remove("provenance.json");
    assert_eq!(subjects, listed);
    let params = &prov["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(
        params["pinFile"]["digest"]["sha256"],
        sha256_file(&release.join("source-config")).as_str()
    );
    assert_eq!(
        params["lock"]["digest"]["sha256"],
        sha256_file(&release.join("stable-commits.lock")).as_str()
    );
    assert_eq!(
        prov["predicate"]["runDetails"]["builder"]["version"]["snp-build"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        !serde_json::to_string(&prov).unwrap().contains("On\""),
        "no start or finish time"
    );
    // Every URI is one: it parses, and as written (the url crate would
    // percent-encode a space, so a parse alone proves little). The
    // sources' are `git+<url>@<commit>`; the pin is an annotation.
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let mut uris: Vec<String> = deps
        .iter()
        .filter_map(|d| d["uri"].as_str().map(String::from))
        .collect();
    let qemu_dep = deps.iter().find(|d| d["name"] == "qemu").unwrap();
    assert_eq!(
        qemu_dep["uri"],
        format!(
            "git+{}@{}",
            manifest["sources"]["qemu"]["url"].as_str().unwrap(),
            manifest["sources"]["qemu"]["sha"].as_str().unwrap()
        )
    );
    assert_eq!(
        qemu_dep["annotations"]["pin"],
        manifest["sources"]["qemu"]["pin"]
    );
    fn sbom_urls(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("url", Value::String(u)) => out.push(u.clone()),
                        _ => sbom_urls(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| sbom_urls(v, out)),
            _ => {}
        }
    }
    let mut from_sbom = Vec::new();
    sbom_urls(&sbom["components"], &mut from_sbom);
    // Patch diffs are named by file, a relative reference.
    from_sbom.retain(|u| !u.ends_with(".patch"));
    assert!(from_sbom.len() >= 4, "{from_sbom:?}");
    uris.extend(from_sbom);
    assert!(uris.len() >= 8, "{uris:?}");
    for u in &uris {
        let parsed = url::Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"));
        assert_eq!(parsed.as_str(), u, "not a URI as written");
    }

    // An SBOM that disagrees is refused by verify, even with SHA256SUMS
    // made to match it.
    let bad = s.path().join("bad").join(RELEASE);
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&release)
            .arg(&bad)
            .status()
            .unwrap()
            .success()
    );
    let text = std::fs::read_to_string(bad.join("sbom.cdx.json")).unwrap();
    let kvm = sums(&bad)["kvm.conf"].clone();
    std::fs::write(
        bad.join("sbom.cdx.json"),
        text.replace(&kvm, &"0".repeat(64)),
    )
    .unwrap();
    let mut s2 = sums(&bad);
    s2.insert(
        "sbom.cdx.json".into(),
        sha256_file(&bad.join("sbom.cdx.json")),
    );
    write_sums(&bad, &s2);
    let r = snp_build(Path::new("."), &[os("verify"), bad.as_os_str()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("sbom.cdx.json gives kvm.conf the digest"),
        "{}",
        r.stderr
    );
}

/// Two signed builds give tarballs identical in every member but the
/// signature (minisign adds random noise); the signing key never reaches
/// source-config, the manifest or the release's fingerprint.
#[test]
fn signed_builds_differ_only_in_the_signature_and_the_key_stays_out() {
    let s = Scratch::new(shared_fixtures());
    assert_eq!(s.run(&["keygen", "-o", "k.key", "--no-password"]).code, 0);
    // The key from the pin file's [release] table this time.
    let pins = std::fs::read_to_string(s.pins()).unwrap();
    std::fs::write(
        s.pins(),
        format!("{pins}\n[release]\nsigning-key = \"k.key\"\n"),
    )
    .unwrap();
    let a = s.run_ok(&["--package", "--output", "a", "--date", DATE, "-j2"]);
    s.run_ok(&["--package", "--output", "b", "--date", DATE, "-j2"]);
    assert!(a["release"]["signed_by"].is_string(), "{}", a["release"]);
    let members = |tarball: &str| -> BTreeMap<String, Vec<u8>> {
        let f = std::fs::File::open(s.path().join(tarball)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
                (name, bytes)
            })
            .collect()
    };
    let tar_a = members(&format!("a/{RELEASE}.tar.gz"));
    let tar_b = members(&format!("b/{RELEASE}.tar.gz"));
    assert_eq!(
        tar_a.keys().collect::<Vec<_>>(),
        tar_b.keys().collect::<Vec<_>>()
    );
    let differing: Vec<&String> = tar_a
        .iter()
        .filter(|(name, bytes)| tar_b[*name] != **bytes)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        differing,
        [&format!("{RELEASE}/SHA256SUMS.minisig")],
        "only the signature differs"
    );
    let source_config =
        String::from_utf8_lossy(&tar_a[&format!("{RELEASE}/source-config")]).into_owned();
    assert!(
        !source_config.contains("k.key"),
        "the key path reached source-config:\n{source_config}"
    );
    let manifest =
        String::from_utf8_lossy(&tar_a[&format!("{RELEASE}/manifest.json")]).into_owned();
    assert!(!manifest.contains("k.key"));

    // Unsigned again: the release is made again, without a signature.
    std::fs::write(s.pins(), &pins).unwrap();
    let c = s.run_ok(&["--package", "--output", "a", "--date", DATE, "-j2"]);
    assert!(c["release"]["signed_by"].is_null(), "{}", c["release"]);
    assert!(
        !s.path()
            .join("a")
            .join(RELEASE)
            .join("SHA256SUMS.minisig")
            .exists()
    );

    // A key that cannot be opened stops the build before any work.
    let r = s.run_env(
        &[("SNP_BUILD_SIGNING_KEY", os("missing.key"))],
        &["--package", "--output", "c", "--date", DATE],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing.key"), "{}", r.stderr);
    assert!(!s.path().join("c").exists());
}

/// An encrypted key: its password comes from SNP_BUILD_SIGNING_PASSWORD,
/// never from the command line, and without it and a terminal the build
/// stops before any work, saying what to do.
#[test]
fn an_encrypted_key_takes_its_password_from_the_environment() {
    let s = Scratch::new(shared_fixtures());
    let pw = os("correct horse");
    let r = s.run_env(
        &[("SNP_BUILD_SIGNING_PASSWORD", pw)],
        &["keygen", "-o", "enc.key"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read_to_string(s.path().join("enc.key"))
            .unwrap()
            .contains("snp-build secret key")
    );
    // No password, no terminal (stdin is not one here).
    let r = s.run(&["qemu", "--package", "--output", "o", "--sign", "enc.key"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("SNP_BUILD_SIGNING_PASSWORD"),
        "{}",
        r.stderr
    );
    assert!(!s.work().join("qemu").exists(), "nothing was fetched");
    // A wrong one.
    let r = s.run_env(
        &[("SNP_BUILD_SIGNING_PASSWORD", os("wrong"))],
        &["qemu", "--package", "--output", "o", "--sign", "enc.key"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("correct horse"));
    // The right one.
    let r = s.run_env(
        &[("SNP_BUILD_SIGNING_PASSWORD", pw)],
        &[
            "qemu",
            "--package",
            "--output",
            "o",
            "--date",
            DATE,
            "--sign",
            "enc.key",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let release = s.path().join("o").join(RELEASE);
    let out = minisign_verify(&release, &s.path().join("enc.key.pub"));
    assert!(out.status.success(), "{out:?}");
    assert!(!r.stderr.contains("correct horse"));
}

/// `[release]` in any TOML form leaves no key behind in `source-config`,
/// and what remains is still a valid pin file.
#[test]
fn every_form_of_the_release_table_is_cut_from_source_config() {
    use snp_build::config::{Origin, PinFile};
    let base = std::fs::read_to_string(shared_fixtures().join("stable-commits.toml")).unwrap();
    for (form, tail) in [
        ("table", "\n[release]\nsigning-key = \"k.key\" # ours\n"),
        ("dotted", "\nrelease.signing-key = \"k.key\"\n"),
        ("inline", "\nrelease = { signing-key = \"k.key\" }\n"),
        ("crlf", "\r\n[release]\r\nsigning-key = \"k.key\"\r\n"),
    ] {
        // A dotted or inline key must come before the first table.
        let text = if form == "dotted" || form == "inline" {
            format!("{}{base}", tail.trim_start())
        } else {
            format!("{base}{tail}")
        };
        let file = PinFile::new(text, Origin::Embedded, shared_fixtures().to_path_buf());
        let stack = snp_build::stage::Registry::standard()
            .configure(file)
            .unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(
            stack.build.signing_key,
            Some(shared_fixtures().join("k.key")),
            "{form}"
        );
        assert!(
            !stack.redacted.contains("k.key") && !stack.redacted.contains("ours"),
            "{form}: {}",
            stack.redacted
        );
        let again = PinFile::new(
            stack.redacted.clone(),
            Origin::Embedded,
            shared_fixtures().to_path_buf(),
        );
        let reread = snp_build::stage::Registry::standard()
            .configure(again)
            .unwrap_or_else(|e| panic!("{form}: source-config no longer parses: {e}"));
        assert_eq!(reread.build.signing_key, None, "{form}");
    }
}

/// Tarballs that `tar -xzf` would unpack differently from what was
/// checked, or with modes SHA256SUMS cannot vouch for, are refused by
/// `verify` and by `install`.
/// A tarball of the release directory `dir` as snp-build writes one
/// (root, 0644/0755) with `top` as its one top directory, at `to`, with
/// `edit` applied to the builder before it is finished.
fn tar_gz(dir: &Path, top: &str, to: &Path, edit: &dyn Fn(&mut tar::Builder<Vec<u8>>)) {
    let mut b = tar::Builder::new(Vec::new());
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = Path::new(top).join(entry.path().strip_prefix(dir).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        if entry.file_type().is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, &rel, std::io::empty()).unwrap();
        } else {
            let bytes = std::fs::read(entry.path()).unwrap();
            let exec =
                std::os::unix::fs::PermissionsExt::mode(&entry.metadata().unwrap().permissions())
                    & 0o111
                    != 0;
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(bytes.len() as u64);
            b.append_data(&mut h, &rel, bytes.as_slice()).unwrap();
        }
    }
    edit(&mut b);
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, gz.finish().unwrap()).unwrap();
}

#[test]
fn tarball_tricks_are_refused() {
    let k = Signed::build();
    let release = k.release();
    // Each in a directory of its own, under the release's name (a trusted
    // signature is refused under another).
    let tarball = |name: &str, edit: &dyn Fn(&mut tar::Builder<Vec<u8>>)| -> PathBuf {
        let path = k.path(name).join(format!("{RELEASE}.tar.gz"));
        tar_gz(&release, RELEASE, &path, edit);
        path
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, rel: &str, mode: u32, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, format!("{RELEASE}/{rel}"), bytes)
            .unwrap();
    };
    // An entry as a hostile tool writes it: the tar crate's own setters
    // refuse `..` and absolute names, so the header's bytes are set here.
    let raw = |b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str| {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(0o644);
        let bytes: &[u8] = if kind.is_file() { b"evil\n" } else { b"" };
        h.set_size(bytes.len() as u64);
        h.set_cksum();
        b.append(&h, bytes).unwrap();
    };
    // Every trick is a verification failure: exit 8 from `verify` and
    // from `install` (which unpacks first), nothing written.
    let check = |path: &Path, says: &str| {
        let r = snp_build(
            Path::new("."),
            &[
                os("verify"),
                path.as_os_str(),
                os("--trusted-key"),
                k.public().as_os_str(),
            ],
        );
        assert_eq!(r.code, 8, "verify {}: {}", path.display(), r.stderr);
        assert!(r.stderr.contains(says), "verify: {}", r.stderr);
        let root = k.path("trick-root");
        let r = k.install(path, &root);
        assert_eq!(r.code, 8, "install {}: {}", path.display(), r.stderr);
        assert!(
            r.stderr.contains(says) && r.stderr.contains("nothing was changed"),
            "install: {}",
            r.stderr
        );
        assert!(!root.exists());
    };

    // The plain copy passes: the tricks below are what fails.
    let plain = tarball("plain.tar.gz", &|_| {});
    let r = snp_build(
        Path::new("."),
        &[
            os("verify"),
            plain.as_os_str(),
            os("--trusted-key"),
            k.public().as_os_str(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // A second gzip member after the archive (tar -xzf unpacks it too).
    let appended = k.path("appended").join(format!("{RELEASE}.tar.gz"));
    std::fs::create_dir_all(appended.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(&plain).unwrap();
    let mut extra = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(9);
    extra
        .append_data(&mut h, format!("{RELEASE}/kvm.conf"), &b"evil=1\n\n\n"[..9])
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &extra.into_inner().unwrap()).unwrap();
    bytes.extend(gz.finish().unwrap());
    std::fs::write(&appended, bytes).unwrap();
    check(&appended, "data follows the end of the tar archive");

    // A setuid file, and one path twice.
    let setuid = tarball("setuid.tar.gz", &|b| {
        file(b, "extra-tool", 0o4755, b"#!/bin/sh\n")
    });
    check(&setuid, "has mode 4755");
    let twice = tarball("twice.tar.gz", &|b| file(b, "kvm.conf", 0o644, b"evil\n"));
    let r = snp_build(Path::new("."), &[os("verify"), twice.as_os_str()]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("kvm.conf appears twice"), "{}", r.stderr);

    // A path climbing out, an absolute path, a symlink pointing out.
    let up = tarball("up.tar.gz", &|b| {
        raw(
            b,
            &format!("{RELEASE}/../../snp-evil"),
            tar::EntryType::Regular,
            "",
        )
    });
    check(&up, "holds `..`");
    let absolute = tarball("absolute.tar.gz", &|b| {
        raw(b, "/tmp/snp-evil", tar::EntryType::Regular, "")
    });
    check(&absolute, "is an absolute path");
    let link = tarball("link.tar.gz", &|b| {
        raw(
            b,
            &format!("{RELEASE}/evil"),
            tar::EntryType::Symlink,
            "../../../etc/passwd",
        )
    });
    check(&link, "a release holds only files and directories");
    assert!(!Path::new("/tmp/snp-evil").exists());
}

/// A signature vouches for the release its trusted comment names (issue
/// 25: a signed `snp-release-2024-05-01` copied to `snp-release-2026-12-04`
/// passed for a new release). Under another directory, tarball or top
/// directory name, `verify`, `install` and `install.sh` refuse it with
/// exit 8, naming both names; renamed back, it is accepted again.
#[test]
fn a_renamed_release_is_refused() {
    let k = Signed::build();
    const NEW: &str = "snp-release-2026-12-04";
    let renamed = k.copy_as("renamed", NEW);
    let signed_for = format!("for {RELEASE}");
    k.assert_refused_by_all(
        &renamed,
        &[&signed_for, &format!("the directory is named {NEW}")],
    );

    // The tarball made from the renamed directory; the genuine tarball
    // renamed; and the right file name around a renamed top directory.
    let made = k.path("made").join(format!("{NEW}.tar.gz"));
    tar_gz(&renamed, NEW, &made, &|_| {});
    let moved = k.path("moved").join(format!("{NEW}.tar.gz"));
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::copy(k.path("out").join(format!("{RELEASE}.tar.gz")), &moved).unwrap();
    let top = k.path("top").join(format!("{RELEASE}.tar.gz"));
    tar_gz(&renamed, NEW, &top, &|_| {});
    for (tarball, says) in [
        (&made, format!("the tarball is named {NEW}.tar.gz")),
        (&moved, format!("the tarball is named {NEW}.tar.gz")),
        (&top, format!("the tarball's top directory is named {NEW}")),
    ] {
        k.assert_refused_by_all(tarball, &[&signed_for, &says]);
    }

    // Under its own name again, the same files are accepted.
    let back = k.path("back").join(RELEASE);
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    std::fs::rename(&renamed, &back).unwrap();
    let r = snp_build(
        Path::new("."),
        &[
            os("verify"),
            back.as_os_str(),
            os("--trusted-key"),
            k.public().as_os_str(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The manifest is bound too: a signature by the trusted key whose comment
/// names another manifest digest, a manifest naming another release, or
/// no release at all is refused by all three; a comment from before
/// `manifest_sha256` (name only) is still accepted.
#[test]
fn a_manifest_that_disagrees_with_the_signature_is_refused() {
    let k = Signed::build();
    let epoch = k.epoch();

    // Another manifest's digest in the comment.
    let release = k.copy("other-digest");
    let zeros = "0".repeat(64);
    k.resign(
        &release,
        &format!("release:{RELEASE} source_date_epoch:{epoch} manifest_sha256:{zeros}"),
    );
    let actual = sha256_file(&release.join("manifest.json"));
    k.assert_refused_by_all(
        &release,
        &[&format!(
            "its manifest.json has SHA-256 {actual}, the signature names {zeros}"
        )],
    );

    // A manifest naming another release, signed with its own digest (and
    // SHA256SUMS updated): the name inside it must be the signed one too.
    let release = k.copy("other-name");
    let manifest = release.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            &format!("\"release\": \"{RELEASE}\""),
            "\"release\": \"snp-release-2026-12-04\"",
        ),
    )
    .unwrap();
    let digest = sha256_file(&manifest);
    let mut s = sums(&release);
    s.insert("manifest.json".into(), digest.clone());
    write_sums(&release, &s);
    k.resign(
        &release,
        &format!("release:{RELEASE} source_date_epoch:{epoch} manifest_sha256:{digest}"),
    );
    k.assert_refused_by_all(
        &release,
        &[&format!(
            "for {RELEASE}, but its manifest.json names the release snp-release-2026-12-04"
        )],
    );

    // A comment that names no release: not a release signature.
    let release = k.copy("no-name");
    k.resign(&release, &format!("source_date_epoch:{epoch}"));
    k.assert_refused_by_all(&release, &["names no release"]);

    // Signed before the manifest's digest was in the comment: the name
    // still counts (SHA256SUMS covers the manifest).
    let release = k.copy("older-comment");
    k.resign(
        &release,
        &format!("release:{RELEASE} source_date_epoch:{epoch}"),
    );
    let r = snp_build(
        Path::new("."),
        &[
            os("verify"),
            release.as_os_str(),
            os("--trusted-key"),
            k.public().as_os_str(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let root = k.path("older-root");
    let r = install_sh(
        &release,
        &[
            os("--dry-run"),
            os("--root"),
            root.as_os_str(),
            os("--trusted-key"),
            k.public().as_os_str(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let renamed = k.copy_as("older-renamed", "snp-release-2026-12-04");
    k.resign(
        &renamed,
        &format!("release:{RELEASE} source_date_epoch:{epoch}"),
    );
    k.assert_refused_by_all(&renamed, &["the directory is named snp-release-2026-12-04"]);
}
