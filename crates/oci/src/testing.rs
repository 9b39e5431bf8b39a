//! Test support (feature `testing`): build OCI images from hand-written entries — including
//! hostile ones a normal tar writer refuses to produce — push them to a registry or write them as
//! an OCI layout, and run a real registry (Debian's `docker-registry`, CNCF distribution) on
//! loopback.
//!
//! Not for production: it panics on setup failures, as test helpers do.

// Test support only (the `testing` feature): it finds peers on PATH and reads test switches.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::json;

use crate::extract::Compression;
use crate::model::{DOCKER_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use crate::{Digest, RegistryAuth};

/// One tar entry of a test layer.
#[derive(Debug, Clone)]
pub enum TestEntry {
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    /// Hides `path` from lower layers (`<dir>/.wh.<name>`).
    Whiteout {
        path: String,
    },
    /// Hides everything lower layers had under `dir` (`<dir>/.wh..wh..opq`).
    Opaque {
        dir: String,
    },
    CharDevice {
        path: String,
        major: u32,
        minor: u32,
    },
    Fifo {
        path: String,
    },
    /// Written byte for byte, unchecked: for `../x`, `/abs` and other hostile names.
    Raw {
        path: Vec<u8>,
        kind: tar::EntryType,
        link: Vec<u8>,
        mode: u32,
        data: Vec<u8>,
    },
    /// A lone header claiming `size` bytes of data that never follow (a lying, truncated
    /// archive): the claim alone must trip the extractor's size limit.
    Oversized {
        path: String,
        size: u64,
    },
    /// A metadata record (GNU long name `L`, long link `K`, PAX `x` or `g`) that describes the
    /// next entry: its header claims `declared` bytes and `body` follows (padded to a block).
    /// With `declared` = `body.len()` it is a well-formed record; with more, a lying one.
    Record {
        kind: tar::EntryType,
        declared: u64,
        body: Vec<u8>,
    },
}

impl TestEntry {
    pub fn file(path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        Self::File {
            path: path.into(),
            mode,
            data: data.into(),
        }
    }
    pub fn dir(path: &str) -> Self {
        Self::Dir {
            path: path.into(),
            mode: 0o755,
        }
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        Self::Hardlink {
            path: path.into(),
            target: target.into(),
        }
    }
    pub fn whiteout(path: &str) -> Self {
        Self::Whiteout { path: path.into() }
    }
    pub fn opaque(dir: &str) -> Self {
        Self::Opaque { dir: dir.into() }
    }
    /// A well-formed GNU long-name record naming the next entry `path`.
    pub fn long_name(path: &str) -> Self {
        let mut body = path.as_bytes().to_vec();
        body.push(0);
        Self::Record {
            kind: tar::EntryType::GNULongName,
            declared: body.len() as u64,
            body,
        }
    }
    /// A well-formed PAX extended header with the given `key=value` records.
    pub fn pax(records: &[(&str, &[u8])]) -> Self {
        let mut body = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        Self::Record {
            kind: tar::EntryType::XHeader,
            declared: body.len() as u64,
            body,
        }
    }
    pub fn raw_file(path: &[u8], data: &[u8]) -> Self {
        Self::Raw {
            path: path.to_vec(),
            kind: tar::EntryType::Regular,
            link: Vec::new(),
            mode: 0o644,
            data: data.to_vec(),
        }
    }
}

/// A layer: entries and how the blob is compressed.
#[derive(Debug, Clone)]
pub struct TestLayer {
    pub entries: Vec<TestEntry>,
    pub compression: Compression,
}

impl TestLayer {
    pub fn gzip(entries: Vec<TestEntry>) -> Self {
        Self {
            entries,
            compression: Compression::Gzip,
        }
    }
    pub fn zstd(entries: Vec<TestEntry>) -> Self {
        Self {
            entries,
            compression: Compression::Zstd,
        }
    }
    pub fn plain(entries: Vec<TestEntry>) -> Self {
        Self {
            entries,
            compression: Compression::None,
        }
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            append(&mut builder, entry);
        }
        builder.into_inner().expect("finishing tar")
    }

    fn blob(&self) -> (Vec<u8>, &'static str) {
        let tar = self.tar();
        match self.compression {
            Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&tar).expect("gzip");
                (
                    enc.finish().expect("gzip"),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Compression::Zstd => (
                zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        }
    }
}

fn set_raw(field: &mut [u8], bytes: &[u8]) {
    assert!(bytes.len() <= field.len(), "raw tar name too long");
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
}

fn append(builder: &mut tar::Builder<Vec<u8>>, entry: &TestEntry) {
    let mut h = tar::Header::new_gnu();
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let (path, kind, link, mode, data): (Vec<u8>, tar::EntryType, Vec<u8>, u32, Vec<u8>) =
        match entry {
            TestEntry::File { path, mode, data } => (
                path.clone().into(),
                tar::EntryType::Regular,
                vec![],
                *mode,
                data.clone(),
            ),
            TestEntry::Dir { path, mode } => (
                path.clone().into(),
                tar::EntryType::Directory,
                vec![],
                *mode,
                vec![],
            ),
            TestEntry::Symlink { path, target } => (
                path.clone().into(),
                tar::EntryType::Symlink,
                target.clone().into(),
                0o777,
                vec![],
            ),
            TestEntry::Hardlink { path, target } => (
                path.clone().into(),
                tar::EntryType::Link,
                target.clone().into(),
                0o644,
                vec![],
            ),
            TestEntry::Whiteout { path } => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                (wh.into(), tar::EntryType::Regular, vec![], 0o644, vec![])
            }
            TestEntry::Opaque { dir } => (
                format!("{}/.wh..wh..opq", dir.trim_end_matches('/')).into(),
                tar::EntryType::Regular,
                vec![],
                0o644,
                vec![],
            ),
            TestEntry::CharDevice { path, major, minor } => {
                h.set_device_major(*major).expect("major");
                h.set_device_minor(*minor).expect("minor");
                (
                    path.clone().into(),
                    tar::EntryType::Char,
                    vec![],
                    0o666,
                    vec![],
                )
            }
            TestEntry::Fifo { path } => (
                path.clone().into(),
                tar::EntryType::Fifo,
                vec![],
                0o644,
                vec![],
            ),
            TestEntry::Raw {
                path,
                kind,
                link,
                mode,
                data,
            } => (path.clone(), *kind, link.clone(), *mode, data.clone()),
            TestEntry::Oversized { path, size } => {
                set_raw(&mut h.as_old_mut().name, path.as_bytes());
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(*size);
                h.set_cksum();
                // Only the header: the reader must refuse on the claimed size alone.
                builder.get_mut().extend_from_slice(h.as_bytes());
                return;
            }
            TestEntry::Record {
                kind,
                declared,
                body,
            } => {
                set_raw(&mut h.as_old_mut().name, b"././@LongLink");
                h.set_entry_type(*kind);
                h.set_mode(0o644);
                h.set_size(*declared);
                h.set_cksum();
                let out = builder.get_mut();
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(body);
                out.resize(out.len().next_multiple_of(512), 0);
                return;
            }
        };
    set_raw(&mut h.as_old_mut().name, &path);
    set_raw(&mut h.as_old_mut().linkname, &link);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_cksum();
    builder.append(&h, data.as_slice()).expect("tar append");
}

/// Builds a single-platform image.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<TestLayer>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    os: String,
    architecture: String,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self {
            layers: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            os: "linux".into(),
            architecture: "amd64".into(),
        }
    }
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn layer(mut self, layer: TestLayer) -> Self {
        self.layers.push(layer);
        self
    }
    pub fn entrypoint(mut self, argv: &[&str]) -> Self {
        self.entrypoint = argv.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn cmd(mut self, argv: &[&str]) -> Self {
        self.cmd = argv.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn env(mut self, var: &str) -> Self {
        self.env.push(var.to_string());
        self
    }
    pub fn workdir(mut self, dir: &str) -> Self {
        self.workdir = Some(dir.into());
        self
    }
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }

    pub fn build(&self) -> BuiltImage {
        let layers: Vec<(Digest, &'static str, Vec<u8>)> = self
            .layers
            .iter()
            .map(|l| {
                let (blob, media_type) = l.blob();
                (Digest::of(&blob), media_type, blob)
            })
            .collect();
        let diff_ids: Vec<String> = self
            .layers
            .iter()
            .map(|l| Digest::of(&l.tar()).to_string())
            .collect();
        let mut config = serde_json::Map::new();
        config.insert("Entrypoint".into(), json!(self.entrypoint));
        config.insert("Cmd".into(), json!(self.cmd));
        config.insert("Env".into(), json!(self.env));
        if let Some(w) = &self.workdir {
            config.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &self.user {
            config.insert("User".into(), json!(u));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .expect("config json");
        let config_digest = Digest::of(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len() },
            "layers": layers.iter().map(|(d, mt, b)| json!({
                "mediaType": mt, "digest": d.to_string(), "size": b.len()
            })).collect::<Vec<_>>(),
        }))
        .expect("manifest json");
        BuiltImage {
            manifest_digest: Digest::of(&manifest),
            manifest,
            config_digest,
            config,
            layers,
            os: self.os.clone(),
            architecture: self.architecture.clone(),
        }
    }
}

/// A built image: every blob in memory.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// (digest, media type, blob)
    pub layers: Vec<(Digest, &'static str, Vec<u8>)>,
    pub os: String,
    pub architecture: String,
}

/// A multi-platform image index over several images.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    pub index: Vec<u8>,
    pub digest: Digest,
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// An index in Docker manifest-list form (`docker` = true) or OCI form.
    pub fn new(images: Vec<BuiltImage>, docker: bool) -> Self {
        let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": images.iter().map(|i| json!({
                "mediaType": OCI_MANIFEST,
                "digest": i.manifest_digest.to_string(),
                "size": i.manifest.len(),
                "platform": { "os": i.os, "architecture": i.architecture },
            })).collect::<Vec<_>>(),
        }))
        .expect("index json");
        Self {
            digest: Digest::of(&index),
            index,
            images,
        }
    }
}

/// What gets published: plain blobs, then manifests (children before the top one).
struct Publication<'a> {
    blobs: Vec<(&'a Digest, &'a [u8])>,
    manifests: Vec<(&'a Digest, &'static str, &'a [u8])>,
}

impl BuiltImage {
    fn publication(&self) -> Publication<'_> {
        let mut blobs = vec![(&self.config_digest, self.config.as_slice())];
        blobs.extend(self.layers.iter().map(|(d, _, b)| (d, b.as_slice())));
        Publication {
            blobs,
            manifests: vec![(&self.manifest_digest, OCI_MANIFEST, &self.manifest)],
        }
    }

    /// Pushes to a plain-HTTP (loopback) registry; tags the manifest if `tag` is given.
    /// Returns the manifest digest.
    pub async fn push(
        &self,
        registry: &str,
        repo: &str,
        tag: Option<&str>,
        auth: &RegistryAuth,
    ) -> Digest {
        push(self.publication(), registry, repo, tag, auth).await;
        self.manifest_digest.clone()
    }

    /// Writes an OCI image layout at `dir` with the image tagged `tag`. Returns the manifest digest.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> Digest {
        write_layout(self.publication(), dir, tag, self.manifest.len());
        self.manifest_digest.clone()
    }
}

impl BuiltIndex {
    fn publication(&self) -> Publication<'_> {
        let mut p = Publication {
            blobs: vec![],
            manifests: vec![],
        };
        for image in &self.images {
            let ip = image.publication();
            p.blobs.extend(ip.blobs);
            p.manifests.extend(ip.manifests);
        }
        let media_type = if self
            .index
            .windows(DOCKER_LIST.len())
            .any(|w| w == DOCKER_LIST.as_bytes())
        {
            DOCKER_LIST
        } else {
            OCI_INDEX
        };
        p.manifests.push((&self.digest, media_type, &self.index));
        p
    }

    pub async fn push(
        &self,
        registry: &str,
        repo: &str,
        tag: Option<&str>,
        auth: &RegistryAuth,
    ) -> Digest {
        push(self.publication(), registry, repo, tag, auth).await;
        self.digest.clone()
    }

    pub fn write_layout(&self, dir: &Path, tag: &str) -> Digest {
        write_layout(self.publication(), dir, tag, self.index.len());
        self.digest.clone()
    }
}

async fn push(
    p: Publication<'_>,
    registry: &str,
    repo: &str,
    tag: Option<&str>,
    auth: &RegistryAuth,
) {
    crate::fetch::ensure_tls_provider();
    let client = Client::try_from(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
    .expect("oci client");
    let auth = auth.to_client();
    let reference =
        Reference::with_tag(registry.into(), repo.into(), tag.unwrap_or("latest").into());
    client
        .auth(&reference, &auth, RegistryOperation::Push)
        .await
        .expect("registry auth for push");
    for (digest, bytes) in p.blobs {
        client
            .push_blob(&reference, bytes.to_vec(), &digest.to_string())
            .await
            .unwrap_or_else(|e| panic!("pushing blob {digest}: {e}"));
    }
    let last = p.manifests.len() - 1;
    for (i, (digest, media_type, bytes)) in p.manifests.into_iter().enumerate() {
        let target = match tag {
            Some(tag) if i == last => Reference::with_tag(registry.into(), repo.into(), tag.into()),
            _ => Reference::with_digest(registry.into(), repo.into(), digest.to_string()),
        };
        client
            .push_manifest_raw(
                &target,
                bytes.to_vec(),
                http::HeaderValue::from_static(media_type),
            )
            .await
            .unwrap_or_else(|e| panic!("pushing manifest {digest}: {e}"));
    }
}

fn write_layout(p: Publication<'_>, dir: &Path, tag: &str, top_size: usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    for (digest, bytes) in &p.blobs {
        std::fs::write(blobs.join(digest.hex()), bytes).expect("layout blob");
    }
    for (digest, _, bytes) in &p.manifests {
        std::fs::write(blobs.join(digest.hex()), bytes).expect("layout manifest");
    }
    let (top, media_type, _) = p.manifests.last().expect("a manifest");
    // Several images may share one layout: keep the other tags' entries.
    let mut manifests: Vec<serde_json::Value> = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    manifests.push(json!({
        "mediaType": if *media_type == DOCKER_LIST { OCI_INDEX } else { media_type },
        "digest": top.to_string(),
        "size": top_size,
        "annotations": { "org.opencontainers.image.ref.name": tag },
    }));
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
}

/// True when the environment demands real peers (CI): a missing registry is then a failure,
/// not a skip. Honours `GIG_REQUIRE_REGISTRY=1` and the project-wide `GIG_REQUIRE_SANDBOX=1`.
pub fn registry_required() -> bool {
    ["GIG_REQUIRE_REGISTRY", "GIG_REQUIRE_SANDBOX"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

const REGISTRY_BIN: &str = "docker-registry";

/// A real registry (CNCF distribution, Debian's `docker-registry`) on a free loopback port,
/// storing into a temp dir, killed (by PID) on drop.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    host: String,
    dir: tempfile::TempDir,
    token: Option<TokenServer>,
}

#[derive(Debug, Clone, Copy)]
enum TestAuth<'a> {
    None,
    Basic(&'a str, &'a str),
    Token(&'a str, &'a str),
}

impl TestRegistry {
    /// Starts an anonymous registry, or returns `None` (after saying why) when `docker-registry`
    /// is not installed and [`registry_required`] is false. Panics when it is required.
    pub fn start() -> Option<Self> {
        Self::start_inner(TestAuth::None)
    }

    /// Like [`TestRegistry::start`], with bearer-token auth (`auth.token`): a token server on a
    /// loopback thread takes `user`/`password` over HTTP basic and issues ES256 JWTs signed by a
    /// fresh key whose certificate is the registry's root bundle (made with `openssl`).
    pub fn start_with_token_auth(user: &str, password: &str) -> Option<Self> {
        Self::start_inner(TestAuth::Token(user, password))
    }

    /// Tokens the token server has issued (0 without token auth).
    pub fn tokens_issued(&self) -> usize {
        self.token
            .as_ref()
            .map_or(0, |t| t.issued.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Like [`TestRegistry::start`], with HTTP basic auth (`htpasswd -Bbn`, apache2-utils).
    pub fn start_with_basic_auth(user: &str, password: &str) -> Option<Self> {
        Self::start_inner(TestAuth::Basic(user, password))
    }

    fn start_inner(auth: TestAuth<'_>) -> Option<Self> {
        let have = |bin: &str| {
            std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(bin).is_file()))
        };
        let mut missing: Vec<&str> = vec![];
        if !have(REGISTRY_BIN) {
            missing.push("docker-registry (apt-get install -y docker-registry)");
        }
        if matches!(auth, TestAuth::Basic(..)) && !have("htpasswd") {
            missing.push("htpasswd (apt-get install -y apache2-utils)");
        }
        if matches!(auth, TestAuth::Token(..)) && !have("openssl") {
            missing.push("openssl (apt-get install -y openssl)");
        }
        if !missing.is_empty() {
            let msg = format!("test registry unavailable: missing {}", missing.join(", "));
            if registry_required() {
                panic!("{msg} (GIG_REQUIRE_REGISTRY/GIG_REQUIRE_SANDBOX=1)");
            }
            eprintln!("SKIP: {msg}");
            return None;
        }
        Some(Self::spawn(auth))
    }

    fn spawn(auth: TestAuth<'_>) -> Self {
        let dir = tempfile::tempdir().expect("registry temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            storage.display()
        );
        let mut token = None;
        if let TestAuth::Token(user, password) = auth {
            let (server, bundle) = TokenServer::start(dir.path(), user, password);
            config.push_str(&format!(
                "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    \
                 issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                server.addr,
                bundle.display()
            ));
            token = Some(server);
        }
        if let TestAuth::Basic(user, password) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("running htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: gig-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut registry = Self {
            child,
            host,
            dir,
            token,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(&self.host) {
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut resp = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut resp).is_ok()
                    && resp.starts_with("HTTP/1.")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not come up on {}:\n{}",
            self.host,
            self.log()
        );
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps a blob's (or manifest's) bytes: tamper with it here.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .join("data")
    }

    /// Flips one byte of a stored blob, keeping its size.
    pub fn tamper(&self, digest: &Digest) {
        let path = self.blob_data_path(digest);
        let mut bytes = std::fs::read(&path).expect("reading stored blob");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, bytes).expect("writing stored blob");
    }

    /// The registry's combined log (access log lines included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines for requests whose request line contains `needle`
    /// (e.g. `"GET /v2/echo/blobs/`).
    pub fn requests(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\" ") && l.contains(" HTTP/1.1\""))
            .filter(|l| l.contains(needle))
            .count()
    }

    /// All access-log lines, by request line, for debugging.
    pub fn request_summary(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for line in self.log().lines() {
            if let Some(start) = line.find("\"GET ").or_else(|| line.find("\"HEAD "))
                && let Some(end) = line[start + 1..].find('"')
            {
                *out.entry(line[start + 1..start + 1 + end].to_string())
                    .or_default() += 1;
            }
        }
        out
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal token server for distribution's `auth.token`: checks HTTP basic credentials and
/// issues ES256 JWTs whose `x5c` certificate is the registry's `rootcertbundle`. It runs on a
/// thread in the test process and stops on drop.
#[derive(Debug)]
struct TokenServer {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const TOKEN_SERVICE: &str = "gig-test-registry";
const TOKEN_ISSUER: &str = "gig-test-issuer";

impl TokenServer {
    /// Makes the key and certificate with `openssl` in `dir`; returns the server and the PEM
    /// bundle path for the registry config.
    fn start(dir: &Path, user: &str, password: &str) -> (Self, PathBuf) {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("running openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "token-key.pem",
        ]);
        run(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "token-key.pem",
            "-outform",
            "DER",
            "-out",
            "token-key.p8",
        ]);
        run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "token-key.pem",
            "-subj",
            "/CN=gig-test-token",
            "-days",
            "2",
            "-out",
            "token-cert.pem",
        ]);
        run(&[
            "x509",
            "-in",
            "token-cert.pem",
            "-outform",
            "DER",
            "-out",
            "token-cert.der",
        ]);
        let pkcs8 = std::fs::read(dir.join("token-key.p8")).expect("token key");
        let cert_der = std::fs::read(dir.join("token-cert.der")).expect("token cert");
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &rng,
        )
        .expect("token key pair");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("token server bind");
        let addr = listener.local_addr().expect("token server addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        use base64::Engine as _;
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let x5c = base64::engine::general_purpose::STANDARD.encode(&cert_der);
        let user = user.to_string();
        let (stop2, issued2) = (stop.clone(), issued.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&buf);
                let authorized = request.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == expected_auth
                    })
                });
                let response = if authorized {
                    issued2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let target = request.split_whitespace().nth(1).unwrap_or("");
                    let jwt = sign_token(&key, &rng, &x5c, &user, &scopes(target));
                    let body =
                        json!({ "token": jwt, "access_token": jwt, "expires_in": 300 }).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    let body =
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = conn.write_all(response.as_bytes());
            }
        });
        (
            Self {
                addr,
                stop,
                issued,
                thread: Some(thread),
            },
            dir.join("token-cert.pem"),
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `repository:<name>:<actions>` scopes from a `/token?scope=…&service=…` request target.
fn scopes(target: &str) -> Vec<serde_json::Value> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .filter_map(|(_, v)| {
            let v = percent_decode(v);
            let mut parts = v.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sign_token(
    key: &ring::signature::EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
    x5c: &str,
    user: &str,
    access: &[serde_json::Value],
) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [x5c] });
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": user,
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = key
        .sign(rng, signing_input.as_bytes())
        .expect("signing token");
    format!("{signing_input}.{}", b64.encode(signature.as_ref()))
}
