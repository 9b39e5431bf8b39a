//! Tag → digest resolution against an OCI registry.
//!
//! The pin is the digest of whatever the tag points to — for a multi-platform image that is the
//! index (manifest list) itself, so the signed index covers every platform's manifest and the
//! installer picks linux/amd64 from content it can verify. The digest is computed here from the
//! manifest bytes the registry served, and must agree with the registry's `Docker-Content-Digest`.

use std::fs;

use anyhow::{Context, Result, anyhow, bail};
use gig_registry_schema::ImageRef;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::RegistryArgs;

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

fn auth(args: &RegistryArgs) -> Result<RegistryAuth> {
    let password = match (&args.password_env, &args.password_file) {
        (Some(_), Some(_)) => bail!("give --password-env or --password-file, not both"),
        (Some(var), None) => Some(Zeroizing::new(
            std::env::var(var).with_context(|| format!("--password-env {var}: not set"))?,
        )),
        (None, Some(path)) => {
            let text = Zeroizing::new(
                fs::read_to_string(path)
                    .with_context(|| format!("cannot read password file {}", path.display()))?,
            );
            Some(Zeroizing::new(
                text.lines().next().unwrap_or_default().to_owned(),
            ))
        }
        (None, None) => None,
    };
    match (&args.username, password) {
        (None, None) => Ok(RegistryAuth::Anonymous),
        (Some(user), Some(pw)) => Ok(RegistryAuth::Basic(user.clone(), pw.to_string())),
        (Some(_), None) => bail!("--username needs --password-env VAR or --password-file FILE"),
        (None, Some(_)) => bail!("a registry password needs --username"),
    }
}

/// Returns `image` pinned: kept as is if it already has a digest, else resolved now.
pub async fn pin(image: &str, args: &RegistryArgs) -> Result<ImageRef> {
    if image.contains('@') {
        return image.parse().map_err(|e: String| anyhow!(e));
    }
    let reference: Reference = image
        .parse()
        .with_context(|| format!("invalid image reference {image:?}"))?;
    let registry = reference.registry().to_owned();
    let protocol = if args.insecure_registry {
        ClientProtocol::HttpsExcept(vec![registry.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        ..Default::default()
    });
    let (body, served_digest) = client
        .pull_manifest_raw(&reference, &auth(args)?, MANIFEST_TYPES)
        .await
        .with_context(|| format!("cannot fetch the manifest of {image} from {registry}"))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    if served_digest != digest {
        bail!("{registry} says {image} is {served_digest} but served content hashing to {digest}");
    }
    let tag = reference.tag().unwrap_or("latest");
    let pinned = format!("{registry}/{}:{tag}@{digest}", reference.repository());
    pinned.parse().map_err(|e: String| anyhow!(e))
}
