//! The registry: OCI distribution through `oci-client` (no hand-written
//! HTTP), run on a small tokio runtime of its own so the rest of the
//! program stays synchronous.
//!
//! Credentials, first found wins (never printed or written):
//! 1. `SNP_BUILD_CACHE_TOKEN`: a bearer token, sent as is;
//! 2. `SNP_BUILD_CACHE_USER` and `SNP_BUILD_CACHE_PASSWORD`: basic auth
//!    (or, when the registry asks for a token, the token server's login);
//! 3. docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker/`), its
//!    `auths` or credential helpers, through `docker_credential`;
//! 4. anonymous.

use std::path::Path;

use anyhow::Context;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::AsyncWriteExt;

use super::{Damaged, Unreachable};
use crate::config::cache::CachePolicy;

/// One registry, as the cache policy names it.
pub struct Registry {
    client: Client,
    runtime: tokio::runtime::Runtime,
    auth: RegistryAuth,
    /// Where the credentials came from (`None`: anonymous), so a refusal
    /// says whether they were missing or wrong.
    auth_from: Option<&'static str>,
    registry: String,
    namespace: String,
}

/// What a manifest lookup found.
pub enum Found {
    /// The tag's manifest (raw bytes, as the registry stored them).
    Manifest(Vec<u8>),
    /// No such tag (or repository) in the registry.
    Missing,
}

impl Registry {
    pub fn new(policy: &CachePolicy) -> anyhow::Result<Registry> {
        let config = ClientConfig {
            protocol: if policy.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(policy.timeout),
            read_timeout: Some(policy.timeout),
            user_agent: concat!("snp-build/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the registry client's runtime")?;
        let (auth, auth_from) = credentials(&policy.remote.registry);
        Ok(Registry {
            client: Client::new(config),
            runtime,
            auth,
            auth_from,
            registry: policy.remote.registry.clone(),
            namespace: policy.remote.namespace.clone(),
        })
    }

    /// `HOST/NAMESPACE/REPO:TAG`.
    pub fn reference(&self, repo: &str, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            format!("{}/{repo}", self.namespace),
            tag.to_string(),
        )
    }

    /// The manifest tagged `reference`, if there is one.
    pub fn manifest(&self, reference: &Reference) -> anyhow::Result<Found> {
        let got = self.runtime.block_on(async {
            self.client
                .pull_manifest_raw(reference, &self.auth, &[OCI_IMAGE_MEDIA_TYPE])
                .await
        });
        match got {
            Ok((bytes, _digest)) => Ok(Found::Manifest(bytes.to_vec())),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().all(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
                    )
                }) =>
            {
                Ok(Found::Missing)
            }
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(Found::Missing),
            Err(e) => Err(explain(e, self.auth_from)),
        }
    }

    /// The blob `desc` into memory, its digest checked by the client.
    pub fn blob(&self, reference: &Reference, desc: &OciDescriptor) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(desc.size.max(0) as usize);
        self.runtime
            .block_on(async { self.client.pull_blob(reference, desc, &mut out).await })
            .map_err(|e| explain_blob(e, self.auth_from))?;
        check_size(desc, out.len() as u64)?;
        Ok(out)
    }

    /// The blob `desc` into the file `path` (streamed; its digest checked
    /// by the client as it arrives, its size here).
    pub fn blob_to_file(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        path: &Path,
    ) -> anyhow::Result<()> {
        self.runtime
            .block_on(async {
                let mut file = tokio::fs::File::create(path).await?;
                self.client.pull_blob(reference, desc, &mut file).await?;
                file.flush().await?;
                Ok::<_, OciDistributionError>(())
            })
            .map_err(|e| explain_blob(e, self.auth_from))?;
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        check_size(desc, len)
    }

    /// Pushes `data` as the blob `digest`, unless the registry has it (and
    /// `again` is false).
    pub fn push_blob(
        &self,
        reference: &Reference,
        data: Vec<u8>,
        digest: &str,
        again: bool,
    ) -> anyhow::Result<()> {
        self.runtime
            .block_on(async {
                self.client
                    .auth(reference, &self.auth, RegistryOperation::Push)
                    .await?;
                if !again && self.client.blob_exists(reference, digest).await? {
                    return Ok(());
                }
                self.client
                    .push_blob(reference, data, digest)
                    .await
                    .map(|_| ())
            })
            .map_err(|e| explain(e, self.auth_from))
    }

    /// Tags `manifest` (raw bytes) as `reference`.
    pub fn push_manifest(&self, reference: &Reference, manifest: Vec<u8>) -> anyhow::Result<()> {
        self.runtime
            .block_on(async {
                self.client
                    .push_manifest_raw(
                        reference,
                        manifest,
                        OCI_IMAGE_MEDIA_TYPE.parse().expect("a valid header value"),
                    )
                    .await
            })
            .map(|_| ())
            .map_err(|e| explain(e, self.auth_from))
    }
}

fn check_size(desc: &OciDescriptor, got: u64) -> anyhow::Result<()> {
    if desc.size < 0 || got != desc.size as u64 {
        return Err(Damaged(format!(
            "blob {} is {got} bytes, its descriptor says {} (truncated or damaged)",
            desc.digest, desc.size
        ))
        .into());
    }
    Ok(())
}

/// A blob pull's error: a blob the manifest names but the registry does
/// not have (deleted, say, after a warning about a damaged one) is the
/// artifact's damage, not the registry being down, so the tag gets built
/// and pushed again.
fn explain_blob(e: OciDistributionError, auth_from: Option<&str>) -> anyhow::Error {
    let missing = match &e {
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::BlobUnknown)),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    };
    if missing {
        return Damaged(format!(
            "a blob it names is not in the registry ({})",
            words(e, auth_from)
        ))
        .into();
    }
    explain(e, auth_from)
}

/// The registry's error, in words a user can act on (a request error's
/// source chain says refused, timed out or TLS): a blob whose digest is
/// wrong is [`Damaged`], a local write error is itself, anything else
/// [`Unreachable`].
fn explain(e: OciDistributionError, auth_from: Option<&str>) -> anyhow::Error {
    match e {
        OciDistributionError::DigestError(d) => Damaged(d.to_string()).into(),
        // Writing a pulled blob here: a local problem, not the registry's.
        OciDistributionError::IoError(io) => {
            anyhow::Error::new(io).context("writing a pulled blob")
        }
        other => Unreachable(words(other, auth_from)).into(),
    }
}

fn words(e: OciDistributionError, auth_from: Option<&str>) -> String {
    match (e, auth_from) {
        (OciDistributionError::UnauthorizedError { url }, None) => format!(
            "not authorized ({url}): no credentials were given; give them with `docker login`, or SNP_BUILD_CACHE_USER and SNP_BUILD_CACHE_PASSWORD"
        ),
        (OciDistributionError::UnauthorizedError { url }, Some(from)) => format!(
            "not authorized ({url}): the registry refused the credentials from {from}: check them (user, password or token), and that they may read (and, read-write, push to) this repository"
        ),
        (OciDistributionError::RequestError(e), _) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            if e.is_timeout() {
                text.push_str(" (timed out; [cache] timeout sets the limit)");
            }
            text
        }
        (other, _) => other.to_string(),
    }
}

/// The credentials for `registry` (see the module doc), and where they
/// came from.
fn credentials(registry: &str) -> (RegistryAuth, Option<&'static str>) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("SNP_BUILD_CACHE_TOKEN") {
        return (RegistryAuth::Bearer(token), Some("SNP_BUILD_CACHE_TOKEN"));
    }
    if let (Some(user), Some(password)) =
        (var("SNP_BUILD_CACHE_USER"), var("SNP_BUILD_CACHE_PASSWORD"))
    {
        return (
            RegistryAuth::Basic(user, password),
            Some("SNP_BUILD_CACHE_USER and SNP_BUILD_CACHE_PASSWORD"),
        );
    }
    let auth = match docker_credential::get_credential(registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
            return (RegistryAuth::Basic(u, p), Some("docker's config.json"));
        }
        // An identity token is an OAuth refresh token for a token server,
        // which oci-client cannot exchange: say so, and go anonymous.
        Ok(docker_credential::DockerCredential::IdentityToken(_)) => {
            tracing::warn!(
                "{registry}: docker's config.json holds an identity token, which snp-build cannot use; set SNP_BUILD_CACHE_USER and SNP_BUILD_CACHE_PASSWORD (or SNP_BUILD_CACHE_TOKEN)"
            );
            RegistryAuth::Anonymous
        }
        Err(e) => {
            tracing::debug!("no docker credentials for {registry} ({e}): anonymous");
            RegistryAuth::Anonymous
        }
    };
    (auth, None)
}
