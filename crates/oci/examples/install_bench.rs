//! Install time of a ~5 MB image, uncached vs cached: pull by digest from a real loopback
//! registry (Debian's `docker-registry`), verify, and extract the entrypoint and the rootfs.
//!
//! `cargo run --release -p gig-oci --features testing --example install_bench`

use std::time::{Duration, Instant};

use gig_oci::testing::{ImageBuilder, TestEntry, TestLayer, TestRegistry};
use gig_oci::{Cache, ImageRef, ImageSource, RegistryAuth, RegistryOptions};

const RUNS: usize = 7;

/// Incompressible bytes (xorshift), so the layer blob really is ~`len` bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let Some(reg) = TestRegistry::start() else {
        eprintln!("docker-registry is not installed: apt-get install -y docker-registry");
        std::process::exit(1);
    };
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::file("bin/server", 0o755, noise(3 << 20, 1)),
            TestEntry::file("lib/libdata.so", 0o644, noise(1 << 20, 2)),
        ]))
        .layer(TestLayer::zstd(vec![TestEntry::file(
            "share/assets.bin",
            0o644,
            noise(1 << 20, 3),
        )]))
        .entrypoint(&["/bin/server"])
        .build();
    let blob_bytes: usize = image.layers.iter().map(|(_, _, b)| b.len()).sum();
    let digest = image
        .push(reg.host(), "bench", None, &RegistryAuth::Anonymous)
        .await;
    let source = ImageSource::Registry {
        image: ImageRef::parse(&format!("{}/bench@{digest}", reg.host())).unwrap(),
        options: RegistryOptions {
            plain_http: true,
            ..Default::default()
        },
    };
    let auth = RegistryAuth::Anonymous;
    let (mut cold_entry, mut cold_rootfs, mut warm_entry, mut warm_rootfs) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        for (rootfs, cold, warm) in [
            (false, &mut cold_entry, &mut warm_entry),
            (true, &mut cold_rootfs, &mut warm_rootfs),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let cache = Cache::open(dir.path()).unwrap();
            for times in [&mut *cold, &mut *warm] {
                let start = Instant::now();
                let pulled = cache.pull(&source, &auth, &|_| {}).await.unwrap();
                if rootfs {
                    cache.rootfs(&pulled).await.unwrap();
                } else {
                    cache.entrypoint(&pulled, "/bin/server").await.unwrap();
                }
                times.push(start.elapsed());
            }
        }
    }
    println!(
        "image: {:.1} MiB in {} layer blobs; median of {RUNS} runs",
        blob_bytes as f64 / (1 << 20) as f64,
        image.layers.len()
    );
    println!(
        "install (pull + verify + entrypoint), uncached: {:?}",
        median(cold_entry)
    );
    println!(
        "install (pull + verify + entrypoint), cached:   {:?}",
        median(warm_entry)
    );
    println!(
        "install (pull + verify + rootfs),     uncached: {:?}",
        median(cold_rootfs)
    );
    println!(
        "install (pull + verify + rootfs),     cached:   {:?}",
        median(warm_rootfs)
    );
}
