//! Hostile-input-safe layer application.
//!
//! Every layer is read twice: a first pass validates every entry (paths, types, limits) and
//! collects its whiteouts, which are applied to the layers below; the second pass applies the
//! entries. One state machine ([`apply_layers`]) drives two sinks: the disk (for a root
//! filesystem) and an in-memory tree (to find one entrypoint without writing anything else), so
//! both modes refuse exactly the same archives.
//!
//! Policy, chosen for clarity over leniency:
//! - entry paths are relative, normalized; `..` anywhere and absolute paths are refused;
//! - no entry, whiteout or hardlink may pass *through* a symlink or a non-directory (real image
//!   layers record real paths, so this refuses only crafted archives); symlinks themselves may
//!   point anywhere: they are never followed here, and inside the sandbox the tree is `/`;
//! - hardlinks must name a regular file already in the tree;
//! - device nodes, fifos and sparse files are refused;
//! - metadata records (GNU long names and links, PAX headers) are bounded by their declared
//!   size before a byte of them is read, and a name from a layer is shown in errors escaped
//!   and cut short ([`entries`]);
//! - setuid/setgid/sticky bits and group/other write bits are dropped; ownership is not kept
//!   (everything belongs to the extracting user).
//!
//! The disk sink writes only below a private temporary directory that no other process writes,
//! so checking each parent with `lstat` before acting cannot race with anything.

mod entries;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::shown_name;
use crate::{Limits, OciError};
use entries::{Budget, Item, for_each_entry, for_each_item};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A verified layer blob on disk.
#[derive(Debug, Clone)]
pub struct LayerFile {
    pub path: PathBuf,
    pub compression: Compression,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const MAX_SYMLINK_HOPS: usize = 40;

/// Extracts the whole root filesystem of `layers` (lowest first) into `dest`, which must not
/// exist yet. On error `dest` may hold a partial tree: callers extract into a temporary
/// directory and rename (as [`crate::Cache`] does).
pub fn extract_rootfs(layers: &[LayerFile], dest: &Path, limits: &Limits) -> Result<(), OciError> {
    fs::create_dir(dest).map_err(|e| OciError::io("creating rootfs dir", dest, e))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .map_err(|e| OciError::io("setting mode of", dest, e))?;
    let mut sink = DiskSink {
        root: dest.to_path_buf(),
    };
    apply_layers(layers, limits, &mut sink)
}

/// Extracts the single regular file at `path_in_image` (following in-image symlinks, never
/// above the image root) to `dest` (written to a temporary file beside it, then renamed).
pub fn extract_entrypoint(
    layers: &[LayerFile],
    path_in_image: &str,
    dest: &Path,
    limits: &Limits,
) -> Result<(), OciError> {
    let mut tree = MemSink::default();
    apply_layers(layers, limits, &mut tree)?;
    let (data, mode) = tree.resolve_file(path_in_image)?;
    let layer = &layers[data.layer];
    let parent = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".entrypoint-")
        .tempfile_in(parent)
        .map_err(|e| OciError::io("creating temp file in", parent, e))?;
    let mut found = false;
    for_each_entry(
        data.layer,
        layer,
        limits,
        &mut Budget::unlimited(),
        |index, _, entry| {
            if index == data.entry {
                let copied = io::copy(&mut entry.take(data.size), tmp.as_file_mut())
                    .map_err(|e| OciError::io("writing entrypoint", dest, e))?;
                if copied != data.size {
                    return Err(OciError::BadArchive {
                        layer: data.layer,
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "entrypoint data truncated",
                        ),
                    });
                }
                found = true;
            }
            Ok(())
        },
    )?;
    if !found {
        return Err(OciError::EntrypointNotFound(path_in_image.to_string()));
    }
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(sanitize_file_mode(mode)))
        .map_err(|e| OciError::io("setting mode of", dest, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| OciError::io("syncing", dest, e))?;
    tmp.persist(dest)
        .map_err(|e| OciError::io("renaming entrypoint to", dest, e.error))?;
    Ok(())
}

/// Drops setuid/setgid/sticky and group/other write.
fn sanitize_file_mode(mode: u32) -> u32 {
    mode & 0o755
}

fn sanitize_dir_mode(mode: u32) -> u32 {
    (mode & 0o755) | 0o700
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// Where layers are applied. Every method acts on a path whose ancestors the caller has checked
/// to be real directories.
trait Sink {
    fn kind(&self, path: &Path) -> Result<Option<NodeKind>, OciError>;
    fn remove(&mut self, path: &Path) -> Result<(), OciError>;
    fn clear_dir(&mut self, path: &Path) -> Result<(), OciError>;
    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<(), OciError>;
    fn set_dir_mode(&mut self, path: &Path, mode: u32) -> Result<(), OciError>;
    fn write_file(
        &mut self,
        path: &Path,
        mode: u32,
        data: DataRef,
        content: &mut dyn Read,
    ) -> Result<(), OciError>;
    fn symlink(&mut self, path: &Path, target: &[u8]) -> Result<(), OciError>;
    fn hardlink(&mut self, path: &Path, target: &Path) -> Result<(), OciError>;
}

/// Where a file's bytes live: entry `entry` of layer `layer`.
#[derive(Debug, Clone, Copy)]
struct DataRef {
    layer: usize,
    entry: usize,
    size: u64,
}

fn apply_layers(
    layers: &[LayerFile],
    limits: &Limits,
    sink: &mut dyn Sink,
) -> Result<(), OciError> {
    if layers.len() > limits.max_layers {
        return Err(OciError::LimitExceeded {
            what: "layer count",
            limit: limits.max_layers as u64,
        });
    }
    let mut budget = Budget::new(limits);
    for (li, layer) in layers.iter().enumerate() {
        // Pass 1: validate everything, count it, and collect the whiteouts.
        let mut whiteouts = Vec::new();
        for_each_item(li, layer, limits, &mut budget, |_, path, item, _| {
            match item {
                Item::Whiteout => {
                    let name =
                        &path.file_name().unwrap_or_default().as_bytes()[WHITEOUT_PREFIX.len()..];
                    let target = path.with_file_name(std::ffi::OsStr::from_bytes(name));
                    whiteouts.push((path.to_path_buf(), target, false));
                }
                Item::Opaque => {
                    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
                    whiteouts.push((path.to_path_buf(), dir, true));
                }
                _ => {}
            }
            Ok(())
        })?;
        for (entry_path, target, opaque) in &whiteouts {
            let hostile = |reason: String| OciError::HostileEntry {
                layer: li,
                path: shown_name(entry_path.as_os_str().as_bytes()),
                reason,
            };
            // A whiteout under a missing directory has nothing to hide.
            if !parents_are_dirs(sink, target, false).map_err(hostile)? {
                continue;
            }
            match (sink.kind(target)?, opaque) {
                (Some(NodeKind::Dir), true) => sink.clear_dir(target)?,
                (Some(_), true) if target.as_os_str().is_empty() => sink.clear_dir(target)?,
                (Some(_), false) => sink.remove(target)?,
                _ => {}
            }
        }
        // Pass 2: apply. Files were already counted in pass 1.
        for_each_item(
            li,
            layer,
            limits,
            &mut Budget::unlimited(),
            |index, path, item, entry| {
                let hostile = |reason: String| OciError::HostileEntry {
                    layer: li,
                    path: shown_name(path.as_os_str().as_bytes()),
                    reason,
                };
                if matches!(item, Item::Whiteout | Item::Opaque) {
                    return Ok(());
                }
                if path.as_os_str().is_empty() {
                    if let Item::Dir { mode } = item {
                        sink.set_dir_mode(path, *mode)?;
                    }
                    return Ok(());
                }
                charge_missing_parents(sink, path, &mut budget)?;
                parents_are_dirs(sink, path, true).map_err(&hostile)?;
                let existing = sink.kind(path)?;
                if let Item::Dir { mode } = item {
                    if existing == Some(NodeKind::Dir) {
                        return sink.set_dir_mode(path, *mode);
                    }
                    if existing.is_some() {
                        sink.remove(path)?;
                    }
                    return sink.mkdir(path, *mode);
                }
                if let Item::Hardlink { target } = item {
                    if target == path {
                        return Err(hostile("hardlink to itself".into()));
                    }
                    let ok = parents_are_dirs(sink, target, false).map_err(&hostile)?;
                    if !ok || sink.kind(target)? != Some(NodeKind::File) {
                        return Err(hostile(format!(
                            "hardlink target \"{}\" is not a regular file in the image",
                            shown_name(target.as_os_str().as_bytes())
                        )));
                    }
                }
                if existing.is_some() {
                    sink.remove(path)?;
                }
                match item {
                    Item::File { mode, size } => sink.write_file(
                        path,
                        *mode,
                        DataRef {
                            layer: li,
                            entry: index,
                            size: *size,
                        },
                        entry,
                    ),
                    Item::Symlink { target } => sink.symlink(path, target),
                    Item::Hardlink { target } => sink.hardlink(path, target),
                    _ => Ok(()),
                }
            },
        )?;
    }
    Ok(())
}

/// Counts the directories [`parents_are_dirs`] is about to create for `path` against the file
/// limit. Pass 1 counts entries; an entry `a/a/.../a` also implies one directory per missing
/// ancestor, so without this one entry made up to `max_path_bytes / 2` directories (found by
/// the `oci/layer_extraction` fuzz target).
fn charge_missing_parents(
    sink: &dyn Sink,
    path: &Path,
    budget: &mut Budget,
) -> Result<(), OciError> {
    let components: Vec<_> = path.components().collect();
    let parents = components.len().saturating_sub(1);
    let mut prefix = PathBuf::new();
    for (i, c) in components.iter().take(parents).enumerate() {
        prefix.push(c);
        match sink.kind(&prefix)? {
            Some(NodeKind::Dir) => {}
            // Not a directory: `parents_are_dirs` refuses the entry.
            Some(_) => return Ok(()),
            // Missing, and so is every ancestor below it.
            None => {
                for _ in i..parents {
                    budget.add_file()?;
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Checks that every ancestor of `path` is a real directory (never a symlink or a file).
/// With `create`, missing ancestors are made; without, returns `Ok(false)` at the first one.
fn parents_are_dirs(sink: &mut dyn Sink, path: &Path, create: bool) -> Result<bool, String> {
    let mut prefix = PathBuf::new();
    let components: Vec<_> = path.components().collect();
    for c in components.iter().take(components.len().saturating_sub(1)) {
        prefix.push(c);
        match sink.kind(&prefix).map_err(|e| e.to_string())? {
            Some(NodeKind::Dir) => {}
            Some(NodeKind::Symlink) => {
                return Err(format!(
                    "path goes through symlink \"{}\"",
                    shown_name(prefix.as_os_str().as_bytes())
                ));
            }
            Some(_) => {
                return Err(format!(
                    "parent \"{}\" is not a directory",
                    shown_name(prefix.as_os_str().as_bytes())
                ));
            }
            None if create => sink.mkdir(&prefix, 0o755).map_err(|e| e.to_string())?,
            None => return Ok(false),
        }
    }
    Ok(true)
}

struct DiskSink {
    root: PathBuf,
}

impl Sink for DiskSink {
    fn kind(&self, path: &Path) -> Result<Option<NodeKind>, OciError> {
        let full = self.root.join(path);
        match fs::symlink_metadata(&full) {
            Ok(m) => {
                let t = m.file_type();
                Ok(Some(if t.is_dir() {
                    NodeKind::Dir
                } else if t.is_symlink() {
                    NodeKind::Symlink
                } else if t.is_file() {
                    NodeKind::File
                } else {
                    NodeKind::Other
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(OciError::io("inspecting", full, e)),
        }
    }

    fn remove(&mut self, path: &Path) -> Result<(), OciError> {
        let full = self.root.join(path);
        // remove_dir_all does not follow symlinks.
        let result = if self.kind(path)? == Some(NodeKind::Dir) {
            fs::remove_dir_all(&full)
        } else {
            fs::remove_file(&full)
        };
        result.map_err(|e| OciError::io("removing", full, e))
    }

    fn clear_dir(&mut self, path: &Path) -> Result<(), OciError> {
        let full = self.root.join(path);
        let entries = fs::read_dir(&full).map_err(|e| OciError::io("reading dir", &full, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| OciError::io("reading dir", &full, e))?;
            self.remove(&path.join(entry.file_name()))?;
        }
        Ok(())
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<(), OciError> {
        let full = self.root.join(path);
        fs::create_dir(&full).map_err(|e| OciError::io("creating dir", &full, e))?;
        self.set_dir_mode(path, mode)
    }

    fn set_dir_mode(&mut self, path: &Path, mode: u32) -> Result<(), OciError> {
        let full = self.root.join(path);
        fs::set_permissions(&full, fs::Permissions::from_mode(sanitize_dir_mode(mode)))
            .map_err(|e| OciError::io("setting mode of", full, e))
    }

    fn write_file(
        &mut self,
        path: &Path,
        mode: u32,
        data: DataRef,
        content: &mut dyn Read,
    ) -> Result<(), OciError> {
        let full = self.root.join(path);
        // create_new (O_EXCL) never writes through a symlink or into another file's inode.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&full)
            .map_err(|e| OciError::io("creating file", &full, e))?;
        let copied = io::copy(&mut content.take(data.size), &mut file)
            .map_err(|e| OciError::io("writing file", &full, e))?;
        if copied != data.size {
            return Err(OciError::BadArchive {
                layer: data.layer,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "file data truncated"),
            });
        }
        file.flush()
            .map_err(|e| OciError::io("writing file", &full, e))?;
        file.set_permissions(fs::Permissions::from_mode(sanitize_file_mode(mode)))
            .map_err(|e| OciError::io("setting mode of", full, e))
    }

    fn symlink(&mut self, path: &Path, target: &[u8]) -> Result<(), OciError> {
        let full = self.root.join(path);
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &full)
            .map_err(|e| OciError::io("creating symlink", full, e))
    }

    fn hardlink(&mut self, path: &Path, target: &Path) -> Result<(), OciError> {
        let full = self.root.join(path);
        // link(2) does not follow a symlink target; the caller checked it is a regular file.
        fs::hard_link(self.root.join(target), &full)
            .map_err(|e| OciError::io("creating hardlink", full, e))
    }
}

#[derive(Debug, Clone)]
enum MemNode {
    Dir,
    File { data: DataRef, mode: u32 },
    Symlink(Vec<u8>),
}

/// The merged view of an image's layers, holding where each file's bytes are, not the bytes.
#[derive(Default)]
struct MemSink {
    nodes: BTreeMap<PathBuf, MemNode>,
}

impl MemSink {
    fn descendants(&self, path: &Path) -> Vec<PathBuf> {
        // Paths order component-wise, so a directory's descendants follow it contiguously.
        self.nodes
            .range(path.to_path_buf()..)
            .map(|(p, _)| p)
            .skip_while(|p| p.as_path() == path)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect()
    }

    /// Resolves `path_in_image` through in-image symlinks to a regular file. A symlink's `..`
    /// that would climb above the image root is an escape and refused, not clamped.
    fn resolve_file(&self, path_in_image: &str) -> Result<(DataRef, u32), OciError> {
        let not_found = || OciError::EntrypointNotFound(path_in_image.to_string());
        // (component, came from a symlink target), in reverse so `pop` yields them in order.
        let mut pending: Vec<(Vec<u8>, Option<PathBuf>)> = split_rev(path_in_image.as_bytes())
            .into_iter()
            .map(|c| (c, None))
            .collect();
        let mut current = PathBuf::new();
        let mut hops = 0;
        while let Some((component, link)) = pending.pop() {
            match component.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if !current.pop()
                        && let Some(link) = link
                    {
                        return Err(OciError::EntrypointEscapes {
                            path: path_in_image.to_string(),
                            link: shown_name(link.as_os_str().as_bytes()),
                        });
                    }
                    continue;
                }
                _ => {}
            }
            let next = current.join(std::ffi::OsStr::from_bytes(&component));
            match self.nodes.get(&next) {
                None => return Err(not_found()),
                Some(MemNode::Dir) => current = next,
                Some(MemNode::File { data, mode }) => {
                    if pending.iter().any(|(c, _)| !c.is_empty() && c != b".") {
                        return Err(not_found());
                    }
                    return Ok((*data, *mode));
                }
                Some(MemNode::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(OciError::SymlinkLoop(path_in_image.to_string()));
                    }
                    if target.first() == Some(&b'/') {
                        current = PathBuf::new();
                    }
                    pending.extend(
                        split_rev(target)
                            .into_iter()
                            .map(|c| (c, Some(next.clone()))),
                    );
                }
            }
        }
        Err(OciError::EntrypointNotRegular {
            path: path_in_image.to_string(),
            kind: "directory",
        })
    }
}

/// Path components in reverse, so `pop` yields them in order.
fn split_rev(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect()
}

impl Sink for MemSink {
    fn kind(&self, path: &Path) -> Result<Option<NodeKind>, OciError> {
        if path.as_os_str().is_empty() {
            return Ok(Some(NodeKind::Dir));
        }
        Ok(self.nodes.get(path).map(|n| match n {
            MemNode::Dir => NodeKind::Dir,
            MemNode::File { .. } => NodeKind::File,
            MemNode::Symlink(_) => NodeKind::Symlink,
        }))
    }

    fn remove(&mut self, path: &Path) -> Result<(), OciError> {
        for p in self.descendants(path) {
            self.nodes.remove(&p);
        }
        self.nodes.remove(path);
        Ok(())
    }

    fn clear_dir(&mut self, path: &Path) -> Result<(), OciError> {
        if path.as_os_str().is_empty() {
            self.nodes.clear();
            return Ok(());
        }
        for p in self.descendants(path) {
            self.nodes.remove(&p);
        }
        Ok(())
    }

    fn mkdir(&mut self, path: &Path, _mode: u32) -> Result<(), OciError> {
        self.nodes.insert(path.to_path_buf(), MemNode::Dir);
        Ok(())
    }

    fn set_dir_mode(&mut self, _path: &Path, _mode: u32) -> Result<(), OciError> {
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &Path,
        mode: u32,
        data: DataRef,
        _content: &mut dyn Read,
    ) -> Result<(), OciError> {
        self.nodes
            .insert(path.to_path_buf(), MemNode::File { data, mode });
        Ok(())
    }

    fn symlink(&mut self, path: &Path, target: &[u8]) -> Result<(), OciError> {
        self.nodes
            .insert(path.to_path_buf(), MemNode::Symlink(target.to_vec()));
        Ok(())
    }

    fn hardlink(&mut self, path: &Path, target: &Path) -> Result<(), OciError> {
        // A hardlink shares the target's bytes as they are now.
        let node = self.nodes.get(target).cloned().ok_or_else(|| {
            OciError::EntrypointNotFound(shown_name(target.as_os_str().as_bytes()))
        })?;
        self.nodes.insert(path.to_path_buf(), node);
        Ok(())
    }
}
