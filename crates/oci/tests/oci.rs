//! Integration tests: real layers on disk, a real OCI layout, and a real registry
//! (Debian's `docker-registry`; skipped with a message when missing unless
//! GIG_REQUIRE_REGISTRY=1 or GIG_REQUIRE_SANDBOX=1).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gig_oci::testing::{BuiltImage, BuiltIndex, ImageBuilder, TestEntry, TestLayer, TestRegistry};
use gig_oci::{
    Cache, Digest, ImageRef, ImageSource, Limits, OciError, PullProgress, PulledImage,
    RegistryAuth, RegistryOptions, layout_digest, resolve_digest,
};

fn no_progress(_: PullProgress) {}

fn echo_image() -> BuiltImage {
    ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::dir("bin"),
            TestEntry::file("bin/echo-mcp", 0o755, b"#!echo v1\n".to_vec()),
            TestEntry::file("etc/motd", 0o644, b"hello\n".to_vec()),
        ]))
        .layer(TestLayer::zstd(vec![TestEntry::file(
            "opt/app/data.txt",
            0o644,
            b"zstd layer\n".to_vec(),
        )]))
        .layer(TestLayer::plain(vec![TestEntry::file(
            "opt/app/plain.txt",
            0o644,
            b"plain layer\n".to_vec(),
        )]))
        .entrypoint(&["/bin/echo-mcp"])
        .cmd(&["--stdio"])
        .env("PATH=/bin")
        .workdir("/opt/app")
        .user("65534")
        .build()
}

struct Fixture {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    cache: Cache,
}

impl Fixture {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }
    fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let cache = Cache::open_with_limits(dir.path().join("cache"), limits).unwrap();
        Self {
            _dir: dir,
            layout,
            cache,
        }
    }
    fn root(&self) -> &Path {
        self._dir.path()
    }
    /// Pulls `source` into this cache, anonymously and without watching progress.
    async fn pull(&self, source: &ImageSource) -> Result<PulledImage, OciError> {
        self.cache
            .pull(source, &RegistryAuth::Anonymous, &no_progress)
            .await
    }
    /// The image (or index) at `digest` in this fixture's layout.
    fn layout_source(&self, digest: &Digest) -> ImageSource {
        ImageSource::Layout {
            dir: self.layout.clone(),
            digest: digest.clone(),
        }
    }
    async fn pull_layout(&self, image: &BuiltImage) -> Result<PulledImage, OciError> {
        let digest = image.write_layout(&self.layout, "latest");
        self.pull(&self.layout_source(&digest)).await
    }
    /// `pulled`, asked for by `requested` (an index), is `amd` and its `/bin/s` is amd64's.
    async fn assert_amd64_picked(
        &self,
        pulled: &PulledImage,
        requested: &Digest,
        amd: &BuiltImage,
    ) {
        assert_eq!(&pulled.requested_digest, requested);
        assert_eq!(pulled.manifest_digest, amd.manifest_digest);
        let ep = self.cache.entrypoint(pulled, "/bin/s").await.unwrap();
        assert_eq!(std::fs::read(ep).unwrap(), b"amd");
    }
    /// Nothing at all is left under rootfs/ and entry/: a refusal changes nothing there, not
    /// even by an empty directory.
    fn assert_nothing_extracted(&self) {
        for sub in ["rootfs", "entry"] {
            let dir = self.cache.root().join(sub);
            let left: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "{sub}/ should be empty, has {left:?}");
        }
    }
}

/// Two single-layer images whose `/bin/s` says which platform was picked: linux/arm64 (gzip)
/// and linux/amd64 (its layer built by `amd64_layer`).
fn arm64_and_amd64(amd64_layer: fn(Vec<TestEntry>) -> TestLayer) -> (BuiltImage, BuiltImage) {
    let arm = ImageBuilder::new()
        .platform("linux", "arm64")
        .layer(TestLayer::gzip(vec![TestEntry::file(
            "bin/s",
            0o755,
            b"arm".to_vec(),
        )]))
        .build();
    let amd = ImageBuilder::new()
        .layer(amd64_layer(vec![TestEntry::file(
            "bin/s",
            0o755,
            b"amd".to_vec(),
        )]))
        .build();
    (arm, amd)
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn layout_source_pulls_and_extracts_rootfs_with_sanitized_modes() {
    let f = Fixture::new();
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::Dir {
                path: "tmp".into(),
                mode: 0o1777,
            },
            TestEntry::file("bin/suid", 0o4755, b"suid".to_vec()),
            TestEntry::file("bin/world-writable", 0o666, b"ww".to_vec()),
            TestEntry::symlink("bin/sh", "/bin/suid"),
            TestEntry::hardlink("bin/suid-link", "bin/suid"),
        ]))
        .entrypoint(&["/bin/suid"])
        .build();
    let pulled = f.pull_layout(&image).await.unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(pulled.config.entrypoint, vec!["/bin/suid"]);
    let root = f.cache.rootfs(&pulled).await.unwrap();
    assert_eq!(std::fs::read(root.join("bin/suid")).unwrap(), b"suid");
    assert_eq!(mode(&root.join("bin/suid")), 0o755, "setuid stripped");
    assert_eq!(
        mode(&root.join("bin/world-writable")),
        0o644,
        "g/o write stripped"
    );
    assert_eq!(mode(&root.join("tmp")), 0o755, "sticky and o+w stripped");
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/suid")
    );
    let a = std::fs::metadata(root.join("bin/suid")).unwrap();
    let b = std::fs::metadata(root.join("bin/suid-link")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink shares the inode");
    assert!(root.with_extension("done").exists(), "completion marker");
    // Second call: the same tree, not a new extraction.
    let again = f.cache.rootfs(&pulled).await.unwrap();
    assert_eq!(again, root);
}

#[tokio::test]
async fn interrupted_extraction_is_redone_not_trusted() {
    let f = Fixture::new();
    let pulled = f.pull_layout(&echo_image()).await.unwrap();
    // What a crash between the rename and the marker leaves: a tree without its marker.
    let dest = f
        .cache
        .root()
        .join("rootfs")
        .join(pulled.manifest_digest.hex());
    std::fs::create_dir_all(dest.join("bin")).unwrap();
    std::fs::write(dest.join("bin/echo-mcp"), b"half-written").unwrap();
    let root = f.cache.rootfs(&pulled).await.unwrap();
    assert_eq!(root, dest);
    assert_eq!(
        std::fs::read(root.join("bin/echo-mcp")).unwrap(),
        b"#!echo v1\n"
    );
    // A pull record whose blobs are gone is not trusted either: the image is pulled again.
    let layer = f.cache.blob_path(&pulled.layers[0].digest);
    std::fs::remove_file(&layer).unwrap();
    let again = f.pull_layout(&echo_image()).await.unwrap();
    assert_eq!(again, pulled);
    assert!(layer.is_file());
}

#[tokio::test]
async fn gzip_zstd_and_plain_layers_extract() {
    let f = Fixture::new();
    let pulled = f.pull_layout(&echo_image()).await.unwrap();
    assert_eq!(pulled.layers.len(), 3);
    assert_eq!(pulled.config.cmd, vec!["--stdio"]);
    assert_eq!(pulled.config.env, vec!["PATH=/bin"]);
    assert_eq!(pulled.config.workdir.as_deref(), Some("/opt/app"));
    assert_eq!(pulled.config.user.as_deref(), Some("65534"));
    let root = f.cache.rootfs(&pulled).await.unwrap();
    assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read(root.join("opt/app/data.txt")).unwrap(),
        b"zstd layer\n"
    );
    assert_eq!(
        std::fs::read(root.join("opt/app/plain.txt")).unwrap(),
        b"plain layer\n"
    );
}

#[tokio::test]
async fn entrypoint_follows_in_image_symlinks_and_is_cached() {
    let f = Fixture::new();
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::file("opt/app/server", 0o6755, b"real server".to_vec()),
            TestEntry::symlink("opt/app/current", "server"),
            TestEntry::symlink("usr/bin", "../opt/app"),
            TestEntry::symlink("bin", "/usr/bin"),
            TestEntry::file("unrelated", 0o644, b"x".to_vec()),
        ]))
        .build();
    let pulled = f.pull_layout(&image).await.unwrap();
    let path = f.cache.entrypoint(&pulled, "/bin/current").await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"real server");
    assert_eq!(mode(&path), 0o755);
    assert_eq!(path.file_name().unwrap(), "current");
    let again = f.cache.entrypoint(&pulled, "/bin/current").await.unwrap();
    assert_eq!(path, again);
    // Only the entrypoint was written, not the rootfs.
    assert!(dir_is_empty(&f.cache.root().join("rootfs")));
}

#[tokio::test]
async fn whiteouts_remove_lower_layer_files() {
    let f = Fixture::new();
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::file("a/gone", 0o644, b"1".to_vec()),
            TestEntry::file("a/kept", 0o644, b"2".to_vec()),
            TestEntry::file("b/old1", 0o644, b"3".to_vec()),
            TestEntry::file("b/sub/old2", 0o644, b"4".to_vec()),
            TestEntry::file("c/tree/file", 0o644, b"5".to_vec()),
        ]))
        .layer(TestLayer::zstd(vec![
            // The new file comes before the opaque marker: it must survive it.
            TestEntry::file("b/new", 0o644, b"6".to_vec()),
            TestEntry::opaque("b"),
            TestEntry::whiteout("a/gone"),
            TestEntry::whiteout("c"),
            TestEntry::whiteout("never/existed"),
        ]))
        .build();
    let pulled = f.pull_layout(&image).await.unwrap();
    let root = f.cache.rootfs(&pulled).await.unwrap();
    assert!(!root.join("a/gone").exists());
    assert!(root.join("a/kept").exists());
    assert!(!root.join("b/old1").exists());
    assert!(!root.join("b/sub").exists());
    assert_eq!(std::fs::read(root.join("b/new")).unwrap(), b"6");
    assert!(!root.join("c").exists());
    assert!(
        !root.join("a/.wh.gone").exists(),
        "markers are not extracted"
    );
    assert!(!root.join("b/.wh..wh..opq").exists());
    // The entrypoint view agrees.
    let err = f.cache.entrypoint(&pulled, "/a/gone").await.unwrap_err();
    assert!(matches!(err, OciError::EntrypointNotFound(_)), "{err}");
    let err = f.cache.entrypoint(&pulled, "/b/old1").await.unwrap_err();
    assert!(matches!(err, OciError::EntrypointNotFound(_)), "{err}");
    let ok = f.cache.entrypoint(&pulled, "/b/new").await.unwrap();
    assert_eq!(std::fs::read(ok).unwrap(), b"6");
}

/// Builds an image from hostile layers and checks both modes refuse it, extract nothing and
/// write nothing outside.
async fn assert_refused(
    layers: Vec<TestLayer>,
    entrypoint: &str,
    limits: Limits,
    check: impl Fn(&OciError) -> bool,
) {
    let f = Fixture::with_limits(limits);
    let mut builder = ImageBuilder::new();
    for l in layers {
        builder = builder.layer(l);
    }
    let pulled = f.pull_layout(&builder.build()).await.unwrap();
    let err = f.cache.rootfs(&pulled).await.unwrap_err();
    assert!(check(&err), "rootfs: unexpected error: {err}");
    let err = f.cache.entrypoint(&pulled, entrypoint).await.unwrap_err();
    assert!(check(&err), "entrypoint: unexpected error: {err}");
    f.assert_nothing_extracted();
    for outside in ["evil", "outside/evil", "cache/evil"] {
        assert!(!f.root().join(outside).exists(), "{outside} was written");
    }
    assert!(!Path::new("/evil-gig-oci-test").exists());
}

fn hostile(e: &OciError) -> bool {
    matches!(e, OciError::HostileEntry { .. })
}

#[tokio::test]
async fn refuses_dotdot_paths() {
    for path in [&b"../evil"[..], b"a/../../evil", b"./../../../evil"] {
        assert_refused(
            vec![TestLayer::gzip(vec![
                TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                TestEntry::raw_file(path, b"pwned"),
            ])],
            "/bin/server",
            Limits::default(),
            hostile,
        )
        .await;
    }
}

#[tokio::test]
async fn refuses_absolute_paths() {
    assert_refused(
        vec![TestLayer::plain(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::raw_file(b"/evil-gig-oci-test", b"pwned"),
        ])],
        "/bin/server",
        Limits::default(),
        hostile,
    )
    .await;
}

#[tokio::test]
async fn refuses_writes_through_symlinks_in_same_and_lower_layer() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    // Same layer: symlink to / (and to a real outside dir), then a file through it.
    for link_target in ["/", target.as_str()] {
        assert_refused(
            vec![TestLayer::gzip(vec![
                TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                TestEntry::symlink("link", link_target),
                TestEntry::file("link/evil", 0o644, b"pwned".to_vec()),
            ])],
            "/bin/server",
            Limits::default(),
            hostile,
        )
        .await;
    }
    // Lower layer plants the symlink, upper layer writes through it.
    assert_refused(
        vec![
            TestLayer::gzip(vec![
                TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                TestEntry::symlink("link", &target),
            ]),
            TestLayer::zstd(vec![TestEntry::file("link/evil", 0o644, b"pwned".to_vec())]),
        ],
        "/bin/server",
        Limits::default(),
        hostile,
    )
    .await;
    // A whiteout through a symlink would delete outside.
    std::fs::write(outside.path().join("victim"), b"keep").unwrap();
    assert_refused(
        vec![
            TestLayer::gzip(vec![
                TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                TestEntry::symlink("link", &target),
            ]),
            TestLayer::gzip(vec![TestEntry::whiteout("link/victim")]),
        ],
        "/bin/server",
        Limits::default(),
        hostile,
    )
    .await;
    assert!(outside.path().join("victim").exists());
    assert!(!outside.path().join("evil").exists());
}

#[tokio::test]
async fn refuses_hardlinks_out_of_the_tree() {
    for target in [
        &b"../../../../etc/passwd"[..],
        b"/etc/passwd",
        b"missing/file",
    ] {
        assert_refused(
            vec![TestLayer::gzip(vec![
                TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                TestEntry::Raw {
                    path: b"bin/passwd".to_vec(),
                    kind: tar::EntryType::Link,
                    link: target.to_vec(),
                    mode: 0o644,
                    data: vec![],
                },
            ])],
            "/bin/server",
            Limits::default(),
            hostile,
        )
        .await;
    }
    // A hardlink to a symlink that points outside is refused too.
    assert_refused(
        vec![TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::symlink("passwd-link", "/etc/passwd"),
            TestEntry::hardlink("bin/passwd", "passwd-link"),
        ])],
        "/bin/server",
        Limits::default(),
        hostile,
    )
    .await;
}

#[tokio::test]
async fn refuses_device_nodes_and_fifos() {
    for entry in [
        TestEntry::CharDevice {
            path: "dev/mem".into(),
            major: 1,
            minor: 1,
        },
        TestEntry::Fifo {
            path: "run/fifo".into(),
        },
    ] {
        assert_refused(
            vec![TestLayer::gzip(vec![
                TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                entry,
            ])],
            "/bin/server",
            Limits::default(),
            hostile,
        )
        .await;
    }
}

#[tokio::test]
async fn tar_bombs_stop_at_the_limits() {
    let many: Vec<TestEntry> = (0..50)
        .map(|i| TestEntry::file(&format!("f/{i}"), 0o644, b"x".to_vec()))
        .collect();
    assert_refused(
        vec![TestLayer::gzip(many)],
        "/f/1",
        Limits {
            max_files: 20,
            ..Limits::default()
        },
        |e| {
            matches!(
                e,
                OciError::LimitExceeded {
                    what: "file count",
                    ..
                }
            )
        },
    )
    .await;
    // A header claiming 1 TiB: refused on the claim, before any byte is written.
    assert_refused(
        vec![TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::Oversized {
                path: "huge".into(),
                size: 1 << 40,
            },
        ])],
        "/bin/server",
        Limits::default(),
        |e| matches!(e, OciError::LimitExceeded { .. }),
    )
    .await;
    // Real data over the total-size limit, spread over layers.
    let big = vec![0u8; 64 * 1024];
    assert_refused(
        vec![
            TestLayer::zstd(vec![TestEntry::file("a", 0o644, big.clone())]),
            TestLayer::zstd(vec![TestEntry::file("b", 0o644, big)]),
        ],
        "/a",
        Limits {
            max_total_bytes: 100 * 1024,
            ..Limits::default()
        },
        |e| matches!(e, OciError::LimitExceeded { .. }),
    )
    .await;
}

/// A hostile name or record must cost a line in an error, never its own size.
fn short_hostile(e: &OciError) -> bool {
    hostile(e) && e.to_string().len() < 300
}

#[tokio::test]
async fn oversized_metadata_records_are_refused_before_they_are_read() {
    use std::time::{Duration, Instant};
    let kinds = [
        tar::EntryType::GNULongName,
        tar::EntryType::GNULongLink,
        tar::EntryType::XHeader,
    ];
    for kind in kinds {
        // A header claiming 1 GiB with a few KiB behind it (the 1 MB layer that took an install
        // to 4 GB), and an honest 8 MiB record of NULs (refused after 17 s, with 33 MB of
        // escaped NULs on stderr). Both are refused on the claim, before a byte is buffered.
        for (declared, body) in [
            (1u64 << 30, vec![b'a'; 4096]),
            (8 << 20, vec![0u8; 8 << 20]),
        ] {
            let started = Instant::now();
            assert_refused(
                vec![TestLayer::gzip(vec![
                    TestEntry::file("bin/server", 0o755, b"s".to_vec()),
                    TestEntry::Record {
                        kind,
                        declared,
                        body,
                    },
                    TestEntry::file("victim", 0o644, b"v".to_vec()),
                ])],
                "/bin/server",
                Limits::default(),
                |e| short_hostile(e) && e.to_string().contains("over the limit"),
            )
            .await;
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{kind:?} of {declared} bytes took {:?}",
                started.elapsed()
            );
        }
    }
    // Two long-name records for one entry: which one names it is ambiguous.
    assert_refused(
        vec![TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::long_name("a"),
            TestEntry::long_name("b"),
            TestEntry::file("x", 0o644, b"v".to_vec()),
        ])],
        "/bin/server",
        Limits::default(),
        short_hostile,
    )
    .await;
    // A PAX global header is not applied by any tar reader the same way: refused.
    assert_refused(
        vec![TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::Record {
                kind: tar::EntryType::XGlobalHeader,
                declared: 1 << 30,
                body: Vec::new(),
            },
        ])],
        "/bin/server",
        Limits::default(),
        short_hostile,
    )
    .await;
}

#[tokio::test]
async fn hostile_long_names_are_quoted_short() {
    // A 3000-byte name of NULs and escape sequences that climbs out: refused, quoted in a line.
    let mut name = "\u{1b}[2J\0".repeat(500);
    name.push_str("/../../evil");
    assert_refused(
        vec![TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::long_name(&name),
            TestEntry::file("placeholder", 0o644, b"pwned".to_vec()),
        ])],
        "/bin/server",
        Limits::default(),
        |e| {
            let text = e.to_string();
            short_hostile(e) && !text.contains('\u{1b}') && !text.contains('\0')
        },
    )
    .await;
    // A PAX size that disagrees with the header's: two readers would split the archive apart.
    assert_refused(
        vec![TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, b"s".to_vec()),
            TestEntry::pax(&[("size", b"0")]),
            TestEntry::file("x", 0o644, b"smuggled header here".to_vec()),
        ])],
        "/bin/server",
        Limits::default(),
        |e| short_hostile(e) && e.to_string().contains("PAX size"),
    )
    .await;
}

#[tokio::test]
async fn long_names_and_pax_records_within_the_limits_extract() {
    let f = Fixture::new();
    let deep = format!("{}/file", "d".repeat(250));
    // Far past the 100 bytes a ustar header holds, in names the filesystem takes.
    let longest = format!("{}/x", vec!["e".repeat(200); 5].join("/"));
    let pax_dir = format!("{}/pax", "p".repeat(180));
    let image = ImageBuilder::new()
        .layer(TestLayer::zstd(vec![
            TestEntry::long_name(&deep),
            TestEntry::file("placeholder", 0o644, b"deep".to_vec()),
            TestEntry::long_name(&longest),
            TestEntry::file("placeholder", 0o644, b"longest".to_vec()),
            TestEntry::pax(&[
                ("path", pax_dir.as_bytes()),
                ("mtime", b"1700000000.5"),
                ("size", b"3"),
            ]),
            TestEntry::file("placeholder", 0o644, b"pax".to_vec()),
            TestEntry::pax(&[("linkpath", format!("../{deep}").as_bytes())]),
            TestEntry::symlink("link", "placeholder"),
        ]))
        .build();
    let pulled = f.pull_layout(&image).await.unwrap();
    let root = f.cache.rootfs(&pulled).await.unwrap();
    assert_eq!(std::fs::read(root.join(&deep)).unwrap(), b"deep");
    assert_eq!(std::fs::read(root.join(&longest)).unwrap(), b"longest");
    assert_eq!(std::fs::read(root.join(&pax_dir)).unwrap(), b"pax");
    assert!(!root.join("placeholder").exists());
    assert_eq!(
        std::fs::read_link(root.join("link")).unwrap(),
        Path::new(&format!("../{deep}"))
    );
    let entry = f
        .cache
        .entrypoint(&pulled, &format!("/{deep}"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(entry).unwrap(), b"deep");
}

#[tokio::test]
async fn entrypoint_missing_or_escaping_is_refused() {
    let f = Fixture::new();
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::file("bin/real", 0o755, b"r".to_vec()),
            TestEntry::symlink("bin/escape", "../../../../etc/passwd"),
            TestEntry::symlink("bin/sub-escape", "real/../../../x"),
            TestEntry::symlink("bin/loop", "loop"),
            TestEntry::dir("bin/dir"),
        ]))
        .build();
    let pulled = f.pull_layout(&image).await.unwrap();
    let err = f
        .cache
        .entrypoint(&pulled, "/bin/missing")
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::EntrypointNotFound(_)), "{err}");
    let err = f
        .cache
        .entrypoint(&pulled, "/bin/escape")
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::EntrypointEscapes { .. }), "{err}");
    let err = f.cache.entrypoint(&pulled, "/bin/loop").await.unwrap_err();
    assert!(matches!(err, OciError::SymlinkLoop(_)), "{err}");
    let err = f.cache.entrypoint(&pulled, "/bin/dir").await.unwrap_err();
    assert!(
        matches!(err, OciError::EntrypointNotRegular { .. }),
        "{err}"
    );
    let err = f
        .cache
        .entrypoint(&pulled, "/bin/sub-escape")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OciError::EntrypointNotFound(_) | OciError::EntrypointEscapes { .. }
        ),
        "{err}"
    );
    f.assert_nothing_extracted();
}

#[tokio::test]
async fn tampered_layout_blob_is_refused_and_nothing_cached() {
    let f = Fixture::new();
    let image = echo_image();
    let digest = image.write_layout(&f.layout, "latest");
    let (layer_digest, _, _) = &image.layers[1];
    let blob = f.layout.join("blobs/sha256").join(layer_digest.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len() - 1;
    bytes[n] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let err = f.pull(&f.layout_source(&digest)).await.unwrap_err();
    assert!(
        matches!(&err, OciError::DigestMismatch { expected, .. } if expected == layer_digest),
        "{err}"
    );
    assert!(!f.cache.blob_path(layer_digest).exists());
    assert!(
        dir_is_empty(&f.cache.root().join("images")),
        "no pull record"
    );
    assert_eq!(layout_digest(&f.layout, "latest").unwrap(), digest);
}

#[tokio::test]
async fn layout_index_picks_linux_amd64() {
    let f = Fixture::new();
    let (arm, amd) = arm64_and_amd64(TestLayer::gzip);
    let index = BuiltIndex::new(vec![arm, amd.clone()], false);
    let digest = index.write_layout(&f.layout, "multi");
    let pulled = f.pull(&f.layout_source(&digest)).await.unwrap();
    f.assert_amd64_picked(&pulled, &digest, &amd).await;
}

// ---- against a real registry ----

/// The test registry speaks plain HTTP.
fn plain_http() -> RegistryOptions {
    RegistryOptions {
        plain_http: true,
        ..Default::default()
    }
}

fn registry_source(reg: &TestRegistry, repo: &str, digest: &Digest) -> ImageSource {
    ImageSource::Registry {
        image: ImageRef::parse(&format!("{}/{repo}@{digest}", reg.host())).unwrap(),
        options: plain_http(),
    }
}

/// What `repo:tag` on the test registry resolves to.
async fn resolved(reg: &TestRegistry, repo_tag: &str, auth: &RegistryAuth) -> Digest {
    let image = format!("{}/{repo_tag}", reg.host());
    resolve_digest(&image, auth, &plain_http()).await.unwrap()
}

#[tokio::test]
async fn registry_pull_by_digest_anonymous_with_progress() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let image = echo_image();
    let digest = image
        .push(reg.host(), "echo", Some("v1"), &RegistryAuth::Anonymous)
        .await;
    let f = Fixture::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress = move |p: PullProgress| sink.lock().unwrap().push(p);
    let pulled = f
        .cache
        .pull(
            &registry_source(&reg, "echo", &digest),
            &RegistryAuth::Anonymous,
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.config.entrypoint, vec!["/bin/echo-mcp"]);
    let events = events.lock().unwrap().clone();
    let last = events.last().unwrap();
    assert_eq!((last.layer, last.layers), (3, 3));
    assert_eq!(last.bytes_done, last.bytes_total);
    assert!(!last.cached);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done)
    );
    let ep = f.cache.entrypoint(&pulled, "/bin/echo-mcp").await.unwrap();
    assert_eq!(std::fs::read(ep).unwrap(), b"#!echo v1\n");
    // resolve_digest finds the pushed digest from the tag.
    assert_eq!(
        resolved(&reg, "echo:v1", &RegistryAuth::Anonymous).await,
        digest
    );
}

#[tokio::test]
async fn registry_basic_auth_and_wrong_password() {
    let Some(reg) = TestRegistry::start_with_basic_auth("alice", "s3cret") else {
        return;
    };
    let good = RegistryAuth::basic("alice", "s3cret");
    let digest = echo_image()
        .push(reg.host(), "private/echo", None, &good)
        .await;
    let source = registry_source(&reg, "private/echo", &digest);
    for bad in [
        RegistryAuth::basic("alice", "wrong"),
        RegistryAuth::Anonymous,
    ] {
        let f = Fixture::new();
        let err = f.cache.pull(&source, &bad, &no_progress).await.unwrap_err();
        assert!(
            matches!(err, OciError::Unauthorized { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("private/echo"), "{err}");
        assert!(dir_is_empty(&f.cache.root().join("images")));
    }
    let f = Fixture::new();
    let pulled = f.cache.pull(&source, &good, &no_progress).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);
}

#[tokio::test]
async fn registry_bearer_token_auth() {
    let Some(reg) = TestRegistry::start_with_token_auth("bob", "t0ken-pw") else {
        return;
    };
    let good = RegistryAuth::basic("bob", "t0ken-pw");
    let digest = echo_image()
        .push(reg.host(), "tok/echo", Some("v1"), &good)
        .await;
    let issued_for_push = reg.tokens_issued();
    assert!(issued_for_push > 0, "push went through the token server");
    let source = registry_source(&reg, "tok/echo", &digest);
    for bad in [RegistryAuth::basic("bob", "wrong"), RegistryAuth::Anonymous] {
        let f = Fixture::new();
        let err = f.cache.pull(&source, &bad, &no_progress).await.unwrap_err();
        assert!(
            matches!(err, OciError::Unauthorized { .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        reg.tokens_issued(),
        issued_for_push,
        "no token for bad credentials"
    );
    let f = Fixture::new();
    let pulled = f.cache.pull(&source, &good, &no_progress).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert!(
        reg.tokens_issued() > issued_for_push,
        "pull used a bearer token"
    );
    let ep = f.cache.entrypoint(&pulled, "/bin/echo-mcp").await.unwrap();
    assert_eq!(std::fs::read(ep).unwrap(), b"#!echo v1\n");
    assert_eq!(resolved(&reg, "tok/echo:v1", &good).await, digest);
}

#[tokio::test]
async fn registry_manifest_list_picks_linux_amd64() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let (arm, amd) = arm64_and_amd64(TestLayer::zstd);
    for docker in [true, false] {
        let index = BuiltIndex::new(vec![arm.clone(), amd.clone()], docker);
        let digest = index
            .push(
                reg.host(),
                "multi",
                Some("latest"),
                &RegistryAuth::Anonymous,
            )
            .await;
        let f = Fixture::new();
        let source = registry_source(&reg, "multi", &digest);
        let pulled = f.pull(&source).await.unwrap();
        f.assert_amd64_picked(&pulled, &digest, &amd).await;
    }
}

#[tokio::test]
async fn registry_tampered_manifest_config_or_layer_is_refused() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    // Distinct images so each tampering hits its own blob.
    let make = |tag: &str| {
        ImageBuilder::new()
            .layer(TestLayer::gzip(vec![TestEntry::file(
                "bin/s",
                0o755,
                tag.as_bytes().to_vec(),
            )]))
            .env(&format!("WHICH={tag}"))
            .build()
    };
    let cases: Vec<(&str, BuiltImage)> = vec![
        ("manifest", make("manifest")),
        ("config", make("config")),
        ("layer", make("layer")),
    ];
    for (what, image) in cases {
        let digest = image
            .push(reg.host(), what, None, &RegistryAuth::Anonymous)
            .await;
        let target = match what {
            "manifest" => image.manifest_digest.clone(),
            "config" => image.config_digest.clone(),
            _ => image.layers[0].0.clone(),
        };
        if what == "manifest" {
            // Keep the JSON valid (the registry parses manifests): change one size digit.
            let path = reg.blob_data_path(&target);
            let text = std::fs::read_to_string(&path).unwrap();
            let at = text.find("\"size\":").unwrap() + 7;
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'9' {
                b'8'
            } else {
                bytes[at] + 1
            };
            std::fs::write(&path, bytes).unwrap();
        } else {
            reg.tamper(&target);
        }
        let f = Fixture::new();
        let err = f
            .pull(&registry_source(&reg, what, &digest))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OciError::DigestMismatch { expected, .. } if *expected == target),
            "{what}: {err}"
        );
        assert!(
            !f.cache.blob_path(&target).exists(),
            "{what}: tampered blob stored"
        );
        assert!(
            dir_is_empty(&f.cache.root().join("images")),
            "{what}: pull recorded"
        );
    }
}

#[tokio::test]
async fn registry_cached_pull_makes_no_requests() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let digest = echo_image()
        .push(reg.host(), "echo", None, &RegistryAuth::Anonymous)
        .await;
    let f = Fixture::new();
    let source = registry_source(&reg, "echo", &digest);
    let first = f.pull(&source).await.unwrap();
    let before = reg.requests(" /v2/");
    assert!(before > 0, "the first pull went to the registry");
    let cached = Arc::new(Mutex::new(false));
    let seen = cached.clone();
    let second = f
        .cache
        .pull(
            &source,
            &RegistryAuth::Anonymous,
            &move |p: PullProgress| *seen.lock().unwrap() = p.cached,
        )
        .await
        .unwrap();
    assert_eq!(first, second);
    assert!(*cached.lock().unwrap(), "progress says cached");
    // A new Cache on the same root (another process, in effect) is served from disk as well.
    let reopened = Cache::open(f.cache.root()).unwrap();
    reopened
        .pull(&source, &RegistryAuth::Anonymous, &no_progress)
        .await
        .unwrap();
    assert_eq!(reg.requests(" /v2/"), before, "{:?}", reg.request_summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_concurrent_pulls_download_once() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let image = echo_image();
    let digest = image
        .push(reg.host(), "echo", None, &RegistryAuth::Anonymous)
        .await;
    let f = Fixture::new();
    // Two Cache handles on one root: clones share in-process locks; the separately opened one
    // only shares the file locks, as another process would.
    let other = Cache::open(f.cache.root()).unwrap();
    let source = registry_source(&reg, "echo", &digest);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let cache = if i % 2 == 0 {
            f.cache.clone()
        } else {
            other.clone()
        };
        let source = source.clone();
        tasks.push(tokio::spawn(async move {
            let pulled = cache
                .pull(&source, &RegistryAuth::Anonymous, &no_progress)
                .await
                .unwrap();
            cache.rootfs(&pulled).await.unwrap()
        }));
    }
    let mut roots = Vec::new();
    for t in tasks {
        roots.push(t.await.unwrap());
    }
    assert!(roots.windows(2).all(|w| w[0] == w[1]));
    for (layer, _, _) in &image.layers {
        let gets = reg.requests(&format!("GET /v2/echo/blobs/{layer}"));
        assert_eq!(gets, 1, "layer {layer} downloaded {gets} times");
    }
    let manifest_gets = reg.requests(&format!("GET /v2/echo/manifests/{digest}"));
    assert_eq!(manifest_gets, 1, "{:?}", reg.request_summary());
}
