//! `gig-devimage`: packs one executable into a one-layer OCI image at `/srv/<name>`, writes it
//! into an OCI image layout and/or pushes it to a loopback registry, and prints the manifest
//! digest (what a signed index pins). A development tool for `make run` and the end-to-end
//! tests, built on gig-oci's test image builder; production images come from real build
//! pipelines.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use gig_oci::testing::{ImageBuilder, TestEntry, TestLayer};

#[derive(Parser)]
struct Args {
    /// The executable to pack.
    #[arg(long)]
    file: PathBuf,
    /// Its name in the image: it lands at /srv/NAME.
    #[arg(long)]
    name: String,
    /// Write (or add to) an OCI image layout here, tagged NAME.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Push to a loopback registry: HOST:PORT/REPO:TAG (plain HTTP).
    #[arg(long)]
    push: Option<String>,
    /// Also add HOST_PATH at IMAGE_PATH (repeatable): e.g. the shared libraries a dynamically
    /// linked server needs, for an image installed whole (`extract: rootfs`).
    #[arg(long = "add", value_name = "HOST_PATH:IMAGE_PATH")]
    add: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("--name must be letters, digits, '-' or '_'");
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let entrypoint = format!("/srv/{}", args.name);
    let mut entries = vec![
        TestEntry::dir("srv"),
        TestEntry::file(&entrypoint[1..], 0o755, bytes),
    ];
    let mut dirs = std::collections::BTreeSet::from(["srv".to_string()]);
    for item in &args.add {
        let (host, inside) = item
            .split_once(':')
            .context("--add wants HOST_PATH:IMAGE_PATH")?;
        let inside = inside.trim_start_matches('/');
        let mut parent = std::path::Path::new(inside).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.display().to_string());
            parent = p.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                entries.push(TestEntry::dir(&dir));
            }
        }
        let data = std::fs::read(host).with_context(|| format!("reading {host}"))?;
        entries.push(TestEntry::file(inside, 0o755, data));
    }
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(entries))
        .entrypoint(&[&entrypoint])
        .build();
    if let Some(dir) = &args.layout {
        std::fs::create_dir_all(dir)?;
        image.write_layout(dir, &args.name);
    }
    if let Some(target) = &args.push {
        let (host, rest) = target
            .split_once('/')
            .context("--push wants HOST:PORT/REPO:TAG")?;
        let (repo, tag) = rest
            .rsplit_once(':')
            .context("--push wants HOST:PORT/REPO:TAG")?;
        image
            .push(host, repo, Some(tag), &gig_oci::RegistryAuth::Anonymous)
            .await;
    }
    println!("{}", image.manifest_digest);
    Ok(())
}
