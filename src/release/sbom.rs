//! `sbom.cdx.json`: what went into a release, as a CycloneDX 1.5 SBOM
//! (written with the `cyclonedx-bom` crate).
//!
//! It lists one component per source (URL with credentials redacted, full
//! SHA, pin, licence where the tree declares one), with its patches (file
//! name, SHA-256) and every submodule (URL, SHA, licence where its tree
//! declares one) nested inside; each
//! release file with its SHA-256 (kernel configs included); and the build
//! tools' versions from the stages' stamps. Deterministic: the serial
//! number is derived from the content and the timestamp is the release's
//! `SOURCE_DATE_EPOCH`.

use cyclonedx_bom::external_models::date_time::DateTime;
use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::spdx::SpdxExpression;
use cyclonedx_bom::external_models::uri::Uri;
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::code::{Commit, Commits, Diff, Patch, PatchClassification, Patches};
use cyclonedx_bom::models::component::{Classification, Component, Components, Pedigree};
use cyclonedx_bom::models::external_reference::{
    ExternalReference, ExternalReferenceType, ExternalReferences,
};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::Tools;

use super::facts::BuildFacts;
use crate::hash::sha256_hex;

/// Its name in the release.
pub const FILE: &str = "sbom.cdx.json";

/// The SBOM's bytes.
pub fn render(f: &BuildFacts<'_>) -> anyhow::Result<Vec<u8>> {
    let mut components: Vec<Component> = f.sources.iter().map(source_component).collect();
    components.extend(f.artifacts.iter().map(|(rel, sha)| {
        let mut c = Component::new(Classification::File, rel, "", Some(format!("file:{rel}")));
        c.version = None;
        c.hashes = Some(sha256(sha));
        c
    }));

    let mut release = Component::new(
        Classification::Application,
        f.release,
        f.date,
        Some(format!("release:{}", f.release)),
    );
    release.description = Some(NormalizedString::new(
        "AMD SEV-SNP host and guest stack built by snp-build",
    ));
    let mut tools: Vec<Component> = vec![Component::new(
        Classification::Application,
        "snp-build",
        env!("CARGO_PKG_VERSION"),
        Some("tool:snp-build".into()),
    )];
    tools.extend(
        f.tools
            .iter()
            .filter(|(name, _)| *name != "snp-build")
            .map(|(name, version)| {
                Component::new(
                    Classification::Application,
                    name,
                    version,
                    Some(format!("tool:{name}")),
                )
            }),
    );
    let metadata = Metadata {
        timestamp: Some(
            DateTime::try_from(f.timestamp_rfc3339())
                .map_err(|e| anyhow::anyhow!("the SBOM timestamp: {e}"))?,
        ),
        tools: Some(Tools::Object {
            services: None,
            components: Some(Components(tools)),
        }),
        authors: None,
        component: Some(release),
        manufacture: None,
        supplier: None,
        licenses: None,
        properties: None,
        lifecycles: None,
    };

    let mut bom = Bom {
        serial_number: None,
        metadata: Some(metadata),
        components: Some(Components(components)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    // The same content gives the same serial number (a v4-shaped UUID from
    // the SHA-256 of the document without it), never a random one.
    let mut unnumbered = Vec::new();
    bom.clone()
        .output_as_json_v1_5(&mut unnumbered)
        .map_err(|e| anyhow::anyhow!("writing the SBOM: {e}"))?;
    bom.serial_number = Some(
        UrnUuid::new(uuid_from(&sha256_hex(&unnumbered)))
            .map_err(|e| anyhow::anyhow!("the SBOM serial number: {e:?}"))?,
    );
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)
        .map_err(|e| anyhow::anyhow!("writing the SBOM: {e}"))?;
    out.push(b'\n');
    Ok(out)
}

/// `urn:uuid:` with the layout of a version 4, variant 1 UUID, from hex.
fn uuid_from(hex: &str) -> String {
    let h = hex.as_bytes();
    let s = |a: usize, b: usize| std::str::from_utf8(&h[a..b]).unwrap_or("0");
    format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        s(0, 8),
        s(8, 12),
        s(13, 16),
        s(17, 20),
        s(20, 32)
    )
}

fn sha256(hex: &str) -> Hashes {
    Hashes(vec![Hash {
        alg: HashAlgorithm::SHA_256,
        content: HashValue(hex.to_string()),
    }])
}

fn vcs(url: &str) -> ExternalReferences {
    ExternalReferences(vec![ExternalReference::new(
        ExternalReferenceType::Vcs,
        Uri::new(url),
    )])
}

fn licenses(spdx: &str) -> Licenses {
    Licenses(vec![LicenseChoice::Expression(SpdxExpression::new(spdx))])
}

fn property(name: &str, value: &str) -> Property {
    Property::new(format!("snp-build:{name}"), value)
}

fn source_component(s: &super::facts::SourceFacts<'_>) -> Component {
    let synced = s.synced;
    let name = synced.source;
    let mut c = Component::new(
        Classification::Application,
        name,
        &synced.sha,
        Some(format!("source:{name}")),
    );
    c.description = Some(NormalizedString::new(&format!(
        "{} at {} ({})",
        synced.url, synced.pin, synced.sha
    )));
    c.external_references = s.uri.as_deref().map(vcs);
    c.licenses = s.license.as_deref().map(licenses);
    let mut props = vec![property("pin", &synced.pin), property("sha", &synced.sha)];
    if let Some(h) = &synced.patched_head {
        props.push(property("patched-head", h));
    }
    if let Some(h) = &synced.series_hash {
        props.push(property("patch-series-sha256", h));
    }
    if let Some(d) = &synced.dirty {
        props.push(property("dirty-diff-sha256", &d.diff_sha256));
    }
    c.properties = Some(Properties(props));

    let mut nested = Vec::new();
    for (path, sha) in &synced.submodules {
        let mut sm = Component::new(
            Classification::Library,
            path,
            sha,
            Some(format!("source:{name}/{path}")),
        );
        if let Some(url) = s.submodule_urls.get(path) {
            sm.external_references = Some(vcs(url));
        }
        sm.licenses = s.submodule_licenses.get(path).map(|l| licenses(l));
        sm.properties = Some(Properties(vec![property("submodule-of", name)]));
        nested.push(sm);
    }
    for p in &synced.patches {
        let mut pc = Component::new(
            Classification::File,
            &p.file,
            "",
            Some(format!("patch:{name}/{}", p.file)),
        );
        pc.version = None;
        pc.hashes = Some(sha256(&p.sha256));
        pc.properties = Some(Properties(vec![property("patch-of", name)]));
        nested.push(pc);
    }
    if !nested.is_empty() {
        c.components = Some(Components(nested));
    }
    c.pedigree = Some(Pedigree {
        ancestors: None,
        descendants: None,
        variants: None,
        commits: Some(Commits(vec![Commit {
            uid: Some(NormalizedString::new(&synced.sha)),
            url: s.uri.as_deref().map(Uri::new),
            author: None,
            committer: None,
            message: None,
        }])),
        patches: (!synced.patches.is_empty()).then(|| {
            Patches(
                synced
                    .patches
                    .iter()
                    .map(|p| Patch {
                        patch_type: PatchClassification::Unofficial,
                        diff: Some(Diff {
                            text: None,
                            url: Some(Uri::new(&p.file)),
                        }),
                        resolves: None,
                    })
                    .collect(),
            )
        }),
        notes: None,
    });
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn serial_numbers_look_like_uuids() {
        let u = super::uuid_from(&crate::hash::sha256_hex(b"x"));
        assert!(
            cyclonedx_bom::models::bom::UrnUuid::new(u.clone()).is_ok(),
            "{u}"
        );
    }
}
