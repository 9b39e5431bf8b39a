//! Tag → digest resolution against an OCI registry.
//!
//! The pin is the digest of whatever the tag points to — for a multi-platform image that is the
//! index (manifest list) itself, so the signed index covers every platform's manifest and the
//! installer picks linux/amd64 from content it can verify. gig-oci computes the digest from the
//! manifest bytes the registry served, never from a header.

// `--password-env NAME` reads the variable the operator named, by design.
#![allow(clippy::disallowed_methods)]

use std::fs;

use anyhow::{Context, Result, anyhow, bail};
use gig_oci::{RegistryAuth, RegistryOptions};
use gig_registry_schema::ImageRef;
use zeroize::Zeroizing;

use crate::RegistryArgs;

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
        (Some(user), Some(pw)) => Ok(RegistryAuth::basic(user.clone(), pw.to_string())),
        (Some(_), None) => bail!("--username needs --password-env VAR or --password-file FILE"),
        (None, Some(_)) => bail!("a registry password needs --username"),
    }
}

/// Returns `image` pinned: kept as is if it already has a digest, else resolved now.
pub async fn pin(image: &str, args: &RegistryArgs) -> Result<ImageRef> {
    if image.contains('@') {
        return image.parse().map_err(|e: String| anyhow!(e));
    }
    let options = RegistryOptions {
        // gig-oci honours plain HTTP only for loopback registries.
        plain_http: args.insecure_registry,
        ..Default::default()
    };
    let digest = gig_oci::resolve_digest(image, &auth(args)?, &options)
        .await
        .with_context(|| format!("cannot resolve {image} to a digest"))?;
    let pinned = if image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
    {
        format!("{image}@{digest}")
    } else {
        format!("{image}:latest@{digest}")
    };
    pinned.parse().map_err(|e: String| anyhow!(e))
}
