//! Layer extraction (`gig_oci::extract_rootfs`, `extract_entrypoint`) of a hostile tar layer.
//!
//! Input: knobs (limits, where to cut the bytes into two layers, which entrypoint to ask
//! for), then the uncompressed tar bytes. Properties, whether the extraction succeeds or is
//! refused: nothing is written outside the destination (a planted file and directory beside it
//! are untouched and nothing else appears there); what is inside respects every limit
//! (entries, file bytes, path length, only files, directories and symlinks, no setuid, setgid,
//! sticky or group/other write bits); the entrypoint mode writes its one regular file within
//! the byte limit, or nothing. Memory: run with `-rss_limit_mb` (the make target does).

#![no_main]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gig_fuzz_cov::Knobs;
use gig_oci::{Compression, LayerFile, Limits, extract_entrypoint, extract_rootfs};
use libfuzzer_sys::fuzz_target;

const ENTRYPOINTS: [&str; 6] = [
    "/bin/a",
    "bin/a",
    "/a/b/c",
    "/usr/bin/server",
    "/x/../bin/a",
    "a",
];

fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
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

fn plant(outer: &Path) {
    std::fs::create_dir(outer).unwrap();
    std::fs::write(outer.join("victim"), b"untouched").unwrap();
    std::fs::create_dir(outer.join("sibling")).unwrap();
}

fn untouched(outer: &Path, dest: &str) {
    let mut names: Vec<String> = std::fs::read_dir(outer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != dest)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sibling", "victim"],
        "something was written beside {dest}"
    );
    assert_eq!(std::fs::read(outer.join("victim")).unwrap(), b"untouched");
    assert!(
        std::fs::read_dir(outer.join("sibling"))
            .unwrap()
            .next()
            .is_none()
    );
}

fuzz_target!(|data: &[u8]| {
    let mut knobs = Knobs::new(data);
    let limits = Limits {
        max_files: knobs.in_range(1, 64) as u64,
        max_total_bytes: 1024 * knobs.in_range(1, 16) as u64,
        max_path_bytes: 32 * knobs.in_range(1, 32),
        ..Limits::default()
    };
    // 0: one layer; n: the bytes cut into two layers after n - 1 tar blocks.
    let cut = knobs.byte() % 16;
    let entrypoint = ENTRYPOINTS[knobs.in_range(0, ENTRYPOINTS.len() - 1)];
    let tar = knobs.rest();

    let tmp = tempfile::tempdir().unwrap();
    let pieces: Vec<&[u8]> = match usize::from(cut).checked_sub(1).map(|blocks| blocks * 512) {
        Some(at) if at <= tar.len() => vec![&tar[..at], &tar[at..]],
        _ => vec![tar],
    };
    let layers: Vec<LayerFile> = pieces
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let path = tmp.path().join(format!("layer{i}"));
            std::fs::write(&path, bytes).unwrap();
            LayerFile {
                path,
                compression: Compression::None,
            }
        })
        .collect();

    let outer = tmp.path().join("outer");
    plant(&outer);
    let root = outer.join("root");
    let result = extract_rootfs(&layers, &root, &limits);
    untouched(&outer, "root");
    let mut found = Vec::new();
    walk(&root, Path::new(""), &mut found);
    assert!(
        found.len() as u64 <= limits.max_files,
        "{} entries",
        found.len()
    );
    let mut bytes = 0;
    for (rel, meta) in &found {
        let ft = meta.file_type();
        assert!(
            ft.is_file() || ft.is_dir() || ft.is_symlink(),
            "{rel:?} is a special file"
        );
        assert!(
            rel.as_os_str().len() <= limits.max_path_bytes,
            "{rel:?} is too long"
        );
        if !ft.is_symlink() {
            let mode = meta.permissions().mode();
            assert_eq!(mode & 0o7022, 0, "{rel:?} has mode {mode:o}");
        }
        if ft.is_file() {
            bytes += meta.len();
        }
    }
    assert!(bytes <= limits.max_total_bytes, "{bytes} bytes extracted");
    if result.is_ok() {
        assert!(root.is_dir());
    }

    let outer = tmp.path().join("outer2");
    plant(&outer);
    let dest = outer.join("entry");
    let result = extract_entrypoint(&layers, entrypoint, &dest, &limits);
    untouched(&outer, "entry");
    match result {
        Ok(()) => {
            let meta = std::fs::symlink_metadata(&dest).unwrap();
            assert!(meta.is_file());
            assert!(meta.len() <= limits.max_total_bytes);
        }
        Err(_) => assert!(
            std::fs::symlink_metadata(&dest).is_err(),
            "a refused entrypoint left {dest:?}"
        ),
    }
});
