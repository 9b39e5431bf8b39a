//! Daemonless OCI image handling for installs: pull an image *by digest* from a registry or an OCI
//! image-layout directory, verify every byte against its digest while it streams, extract it safely
//! from hostile layers, and cache everything by content.
//!
//! This crate owns the bytes between "the signed index names `repo@sha256:…`" and "a file tree on
//! disk". It never trusts a registry, a layout directory or a layer: nothing lands in the cache
//! unless its digest matches, and extraction refuses anything that could write outside its target
//! (`..`, absolute paths, writes through symlinks, hardlinks out of the tree), device nodes and
//! fifos, and anything over [`Limits`]. It must never depend on the gateway or the API, and never
//! hold registry credentials beyond one pull.

#![forbid(unsafe_code)]

mod auth;
mod cache;
mod digest;
mod error;
mod extract;
mod fetch;
mod limits;
mod model;
mod reference;

#[cfg(feature = "testing")]
pub mod testing;

pub use auth::RegistryAuth;
pub use cache::{Cache, ImageSource, LayerInfo, PullProgress, PulledImage};
pub use digest::Digest;
pub use error::OciError;
pub use extract::{Compression, LayerFile, extract_entrypoint, extract_rootfs};
pub use fetch::{RegistryOptions, layout_digest, resolve_digest};
pub use limits::Limits;
pub use model::ImageConfig;
pub use reference::ImageRef;

#[cfg(test)]
mod tests;
