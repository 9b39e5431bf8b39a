use std::fmt;
use std::str::FromStr;

use crate::{Digest, OciError};

/// An image named by registry, repository and digest: what the signed index pins. A tag alone is
/// refused, since a tag can be moved under us; a `name:tag@digest` form keeps only the digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    digest: Digest,
}

impl ImageRef {
    /// Parses `registry[:port]/repo/path@sha256:<hex>`. The registry must be explicit (contain a
    /// `.` or a `:` or be `localhost`): no silent default registry.
    pub fn parse(reference: &str) -> Result<Self, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        let Some((name, digest)) = reference.rsplit_once('@') else {
            return Err(bad("no @sha256:<digest>; installs pull by digest only"));
        };
        let digest = Digest::parse(digest)?;
        let (registry, repository) = split_name(name).map_err(|r| bad(&r))?;
        // A tag next to the digest is informational only.
        let repository = match repository.rsplit_once(':') {
            Some((repo, tag)) if valid_tag(tag) => repo.to_string(),
            Some(_) => return Err(bad("malformed tag")),
            None => repository.to_string(),
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        Ok(Self {
            registry: registry.to_string(),
            repository,
            digest,
        })
    }

    pub fn new(registry: &str, repository: &str, digest: Digest) -> Result<Self, OciError> {
        Self::parse(&format!("{registry}/{repository}@{digest}"))
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub(crate) fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest,
            ..self.clone()
        }
    }

    pub(crate) fn to_client(&self) -> oci_client::Reference {
        oci_client::Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            self.digest.to_string(),
        )
    }
}

/// A `registry/repo:tag` reference, for resolving a tag to the digest an index will pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagRef {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl TagRef {
    pub fn parse(reference: &str) -> Result<Self, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.contains('@') {
            return Err(bad("already has a digest"));
        }
        let (registry, rest) = split_name(reference).map_err(|r| bad(&r))?;
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) if valid_tag(tag) => (repo, tag),
            Some(_) => return Err(bad("malformed tag")),
            None => (rest, "latest"),
        };
        validate_repository(repository).map_err(|r| bad(&r))?;
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }

    pub fn to_client(&self) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            self.tag.clone(),
        )
    }
}

fn split_name(name: &str) -> Result<(&str, &str), String> {
    let (registry, repository) = name
        .split_once('/')
        .ok_or("no registry host; write it out, e.g. 127.0.0.1:5000/repo@sha256:…")?;
    let explicit = registry.contains('.') || registry.contains(':') || registry == "localhost";
    if !explicit {
        return Err(format!(
            "{registry:?} is not a registry host; the registry must be explicit"
        ));
    }
    let host_ok = registry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(format!("invalid registry host {registry:?}"));
    }
    Ok((registry, repository))
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.contains('/')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate_repository(repo: &str) -> Result<(), String> {
    let ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid repository name {repo:?}"))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ImageRef {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, OciError> {
        Self::parse(s)
    }
}
