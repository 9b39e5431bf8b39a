//! Fuzz target: layer extraction against hostile archives.
//!
//! The archives are built from mostly ordinary entries with hostile ones mixed in: `..` and
//! absolute paths, names far past the path limit (plain and as GNU long-name and PAX records),
//! symlinks to `/` and `..` with entries written through them, hardlinks, whiteouts, devices,
//! headers and metadata records that claim gigabytes, under small limits. Properties, whether
//! the extraction succeeds or is refused: nothing is written outside the destination; what is
//! inside respects every limit (entries, bytes, path length, no device, no setuid or
//! group/other-writable mode); no single allocation, and no peak of live memory, comes near
//! what a header claims; and the entrypoint mode writes its one file or nothing.

// A counting allocator is the only way to check "never allocates what a header claims"; it
// forwards every call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gig_fuzz::fuzz;
use gig_oci::testing::{TestEntry, TestLayer};
use gig_oci::{Compression, LayerFile, Limits, extract_entrypoint, extract_rootfs};
use proptest::prelude::*;

struct Counting;

thread_local! {
    // (counting on this thread, live bytes, peak live bytes, largest single request)
    static COUNT: Cell<(bool, usize, usize, usize)> = const { Cell::new((false, 0, 0, 0)) };
}

fn note(grow: usize, shrink: usize) {
    let _ = COUNT.try_with(|c| {
        let (on, live, peak, largest) = c.get();
        if on {
            let live = (live + grow).saturating_sub(shrink);
            c.set((on, live, peak.max(live), largest.max(grow)));
        }
    });
}

// SAFETY: every call is forwarded to `System` with the caller's arguments; the bookkeeping
// touches only a const-initialised thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        // SAFETY: `ptr` came from `System` with this layout (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size, layout.size());
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with (peak live bytes, largest single allocation) on this
/// thread while it ran.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    COUNT.with(|c| c.set((true, 0, 0, 0)));
    let out = f();
    let (_, _, peak, largest) = COUNT.with(|c| c.replace((false, 0, 0, 0)));
    (out, peak, largest)
}

/// Extraction buffers (tar blocks, the copy buffer, a decoder's window) and the bounded
/// metadata records fit well under this; a header claiming more than this is never believed.
const MEMORY_BOUND: usize = 4 << 20;

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => prop::sample::select(vec!["a", "b", "bin", "etc", "lib", ".wh.a", "x y"]).prop_map(String::from),
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just(String::new()),
        1 => (100usize..700).prop_map(|n| "n".repeat(n)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let rarely = || prop::bool::weighted(0.05);
    (
        rarely(),
        proptest::collection::vec(component(), 1..4),
        rarely(),
    )
        .prop_map(|(absolute, parts, trailing)| {
            let mut p = parts.join("/");
            if absolute {
                p.insert(0, '/');
            }
            if trailing {
                p.push('/');
            }
            p
        })
}

/// A name that fits a tar header's 100-byte field with a whiteout's `.wh..wh..opq` added
/// (longer ones come as long-name records).
fn header_path() -> impl Strategy<Value = String> {
    path().prop_map(|p| p.chars().take(86).collect())
}

fn entry() -> impl Strategy<Value = TestEntry> {
    let path = header_path;
    let mode = prop::sample::select(vec![0o644u32, 0o755, 0o4755, 0o2777, 0o1777, 0o666]);
    prop_oneof![
        8 => (path(), mode, proptest::collection::vec(any::<u8>(), 0..2048))
            .prop_map(|(p, m, d)| TestEntry::file(&p, m, d)),
        4 => path().prop_map(|p| TestEntry::dir(&p)),
        3 => (path(), prop_oneof![path(), Just("/".to_owned()), Just("../../..".to_owned())])
            .prop_map(|(p, t)| TestEntry::symlink(&p, &t)),
        2 => (path(), path()).prop_map(|(p, t)| TestEntry::hardlink(&p, &t)),
        1 => path().prop_map(|p| TestEntry::whiteout(&p)),
        1 => path().prop_map(|p| TestEntry::opaque(&p)),
        1 => path().prop_map(|p| TestEntry::CharDevice { path: p, major: 1, minor: 3 }),
        1 => path().prop_map(|p| TestEntry::Fifo { path: p }),
        2 => (path(), 100usize..6000)
            .prop_map(|(p, n)| TestEntry::long_name(&format!("{p}/{}", "l".repeat(n)))),
        2 => (path(), path(), prop::sample::select(vec!["1", "99999999999", "x"]))
            .prop_map(|(p, l, size)| TestEntry::pax(&[
                ("path", p.as_bytes()), ("linkpath", l.as_bytes()), ("size", size.as_bytes()),
            ])),
        1 => (path(), 1u64 << 20..1u64 << 42)
            .prop_map(|(path, size)| TestEntry::Oversized { path, size }),
        1 => (
            prop::sample::select(vec![
                tar::EntryType::GNULongName,
                tar::EntryType::GNULongLink,
                tar::EntryType::XHeader,
                tar::EntryType::XGlobalHeader,
            ]),
            prop_oneof![0u64..8192, 1u64 << 20..1u64 << 40],
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(kind, declared, body)| TestEntry::Record { kind, declared, body }),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (1u64..64, 1024u64..16384, 32usize..1024).prop_map(|(files, bytes, path)| Limits {
        max_files: files,
        max_total_bytes: bytes,
        max_path_bytes: path,
        ..Limits::default()
    })
}

fn write_layers(dir: &Path, layers: &[(Vec<TestEntry>, bool)]) -> Vec<LayerFile> {
    layers
        .iter()
        .enumerate()
        .map(|(i, (entries, gzip))| {
            let tar = TestLayer::plain(entries.clone()).tar();
            let path = dir.join(format!("layer{i}"));
            let (bytes, compression) = if *gzip {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&tar).unwrap();
                (enc.finish().unwrap(), Compression::Gzip)
            } else {
                (tar, Compression::None)
            };
            std::fs::write(&path, bytes).unwrap();
            LayerFile { path, compression }
        })
        .collect()
}

/// Every path under `dir` (not following symlinks), relative to it, with its metadata.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<(std::path::PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let rel = rel.join(e.file_name());
        if meta.is_dir() {
            walk(&e.path(), &rel, out);
        }
        out.push((rel, meta));
    }
}

/// The files a test plants beside the destination, which no extraction may touch.
fn plant(outer: &Path) {
    std::fs::write(outer.join("victim"), b"untouched").unwrap();
    std::fs::create_dir(outer.join("sibling")).unwrap();
}

fn untouched(outer: &Path, dest: &str) -> Result<(), TestCaseError> {
    let mut names: Vec<String> = std::fs::read_dir(outer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.retain(|n| n != dest);
    prop_assert_eq!(names, vec!["sibling".to_owned(), "victim".to_owned()]);
    prop_assert_eq!(std::fs::read(outer.join("victim")).unwrap(), b"untouched");
    prop_assert!(
        std::fs::read_dir(outer.join("sibling"))
            .unwrap()
            .next()
            .is_none()
    );
    Ok(())
}

#[test]
fn fuzz_layer_extraction() {
    let layers = proptest::collection::vec(
        (
            proptest::collection::vec(entry(), 0..10),
            prop::bool::weighted(0.2),
        ),
        1..3,
    );
    let strategy = (layers, limits(), path());
    fuzz(
        "oci/layer_extraction",
        file!(),
        1000,
        strategy,
        |(layers, limits, entrypoint)| {
            let tmp = tempfile::tempdir().unwrap();
            let files = write_layers(tmp.path(), &layers);

            let outer = tmp.path().join("outer");
            std::fs::create_dir(&outer).unwrap();
            plant(&outer);
            let root = outer.join("root");
            let (result, peak, largest) = measured(|| extract_rootfs(&files, &root, &limits));
            prop_assert!(
                largest <= MEMORY_BOUND,
                "one allocation of {} bytes",
                largest
            );
            prop_assert!(peak <= MEMORY_BOUND, "peak of {} live bytes", peak);
            untouched(&outer, "root")?;
            let mut found = Vec::new();
            walk(&root, Path::new(""), &mut found);
            prop_assert!(
                found.len() as u64 <= limits.max_files,
                "{} entries",
                found.len()
            );
            let mut bytes = 0;
            for (rel, meta) in &found {
                let ft = meta.file_type();
                prop_assert!(ft.is_file() || ft.is_dir() || ft.is_symlink(), "{:?}", rel);
                prop_assert!(rel.as_os_str().len() <= limits.max_path_bytes, "{:?}", rel);
                if !ft.is_symlink() {
                    let mode = meta.permissions().mode();
                    prop_assert_eq!(mode & 0o7022, 0, "{:?} has mode {:o}", rel, mode);
                }
                if ft.is_file() {
                    bytes += meta.len();
                }
            }
            prop_assert!(bytes <= limits.max_total_bytes, "{} bytes", bytes);
            if result.is_ok() {
                // Within the limits, the archive is applied, not silently dropped.
                prop_assert!(root.is_dir());
            }

            // The entrypoint mode: one regular file at `dest`, or nothing at all.
            let outer = tmp.path().join("outer2");
            std::fs::create_dir(&outer).unwrap();
            plant(&outer);
            let dest = outer.join("entry");
            let (result, peak, largest) =
                measured(|| extract_entrypoint(&files, &entrypoint, &dest, &limits));
            prop_assert!(
                largest <= MEMORY_BOUND && peak <= MEMORY_BOUND,
                "{} / {}",
                largest,
                peak
            );
            untouched(&outer, "entry")?;
            match result {
                Ok(()) => {
                    let meta = std::fs::symlink_metadata(&dest).unwrap();
                    prop_assert!(meta.is_file());
                    prop_assert!(meta.len() <= limits.max_total_bytes);
                }
                Err(_) => prop_assert!(!dest.exists() && std::fs::symlink_metadata(&dest).is_err()),
            }
            Ok(())
        },
    );
}

/// Found by `fuzz_layer_extraction` (its shrunk input is in `fuzz.proptest-regressions`): the
/// file limit counted tar entries but not the parent directories an entry's path implies, so
/// one entry `a/a/…/a` made up to `max_path_bytes / 2` directories; with the default limits a
/// layer could create about 2 000 times `max_files` inodes.
#[test]
fn implied_parent_directories_count_against_the_file_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = |files| Limits {
        max_files: files,
        ..Limits::default()
    };
    // The shrunk case: one entry, three directories, a limit of one.
    let files = write_layers(tmp.path(), &[(vec![TestEntry::dir("a/a/a")], false)]);
    let err = extract_rootfs(&files, &tmp.path().join("one"), &limits(1)).unwrap_err();
    assert!(err.to_string().contains("file count"), "{err}");
    extract_rootfs(&files, &tmp.path().join("three"), &limits(3)).unwrap();

    // The amplification: 4 entries 1 000 directories deep against a limit of 100.
    let deep = |top: &str| {
        let path = format!("{top}/{}", vec!["d"; 999].join("/"));
        vec![TestEntry::long_name(&path), TestEntry::dir("placeholder")]
    };
    let entries: Vec<TestEntry> = ["p", "q", "r", "s"].iter().flat_map(|t| deep(t)).collect();
    let files = write_layers(tmp.path(), &[(entries, false)]);
    let root = tmp.path().join("deep");
    let err = extract_rootfs(&files, &root, &limits(100)).unwrap_err();
    assert!(err.to_string().contains("file count"), "{err}");
    let mut found = Vec::new();
    walk(&root, Path::new(""), &mut found);
    assert!(found.len() <= 100, "{} directories on disk", found.len());
    let err = extract_entrypoint(&files, "/p/d", &tmp.path().join("entry"), &limits(100));
    assert!(err.unwrap_err().to_string().contains("file count"));
}
