//! Reading one layer's tar entries: decompression under a cap, the metadata records that name
//! an entry (GNU long-name and long-link, PAX extended headers), and the validation of every
//! entry into an [`Item`].
//!
//! The `tar` crate, left to itself, reads each metadata record whole into memory before its
//! caller sees a byte, so a record claiming a gigabyte costs a gigabyte. We read the archive
//! raw instead and check each record's declared size against a bound before reading it: a
//! long-name or long-link record may hold one path at the path limit, a PAX header that plus
//! room for its usual small records.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{Compression, LayerFile, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::error::shown_name;
use crate::{Limits, OciError};

/// Tar overhead allowed per entry (header, metadata records and padding) on top of file data,
/// so the decompressed stream of a layer is bounded.
const TAR_OVERHEAD_PER_ENTRY: u64 = 1536;
/// Room in a PAX header beyond its `path` and `linkpath`: times, ids, names and a few xattrs.
const PAX_OTHER_RECORDS_BYTES: u64 = 64 << 10;

/// One validated tar entry.
#[derive(Debug)]
pub(super) enum Item {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Hardlink {
        target: PathBuf,
    },
    /// `.wh.<name>`: delete `<name>` from the layers below.
    Whiteout,
    /// `.wh..wh..opq`: empty the directory as seen from the layers below.
    Opaque,
}

/// Counts entries and bytes over all layers of one image.
pub(super) struct Budget {
    files: u64,
    bytes: u64,
    max_files: u64,
    max_bytes: u64,
}

impl Budget {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            files: 0,
            bytes: 0,
            max_files: limits.max_files,
            max_bytes: limits.max_total_bytes,
        }
    }

    /// Counts one more node of the tree: an entry, or a directory an entry's path implies.
    pub(super) fn add_file(&mut self) -> Result<(), OciError> {
        self.files += 1;
        if self.files > self.max_files {
            return Err(OciError::LimitExceeded {
                what: "file count",
                limit: self.max_files,
            });
        }
        Ok(())
    }

    pub(super) fn unlimited() -> Self {
        Self {
            files: 0,
            bytes: 0,
            max_files: u64::MAX,
            max_bytes: u64::MAX,
        }
    }
}

fn open_layer(layer: &LayerFile, cap: u64) -> Result<Box<dyn Read>, OciError> {
    let file =
        File::open(&layer.path).map_err(|e| OciError::io("opening layer", &layer.path, e))?;
    let reader = io::BufReader::new(file);
    let decoded: Box<dyn Read> = match layer.compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| OciError::io("opening zstd layer", &layer.path, e))?,
        ),
    };
    Ok(Box::new(CappedReader {
        inner: decoded,
        left: cap,
    }))
}

/// Fails (rather than truncating) once a decompressed stream passes its cap.
struct CappedReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(
                "decompressed layer exceeds the image size limit",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The metadata records seen since the last entry; they describe the next one.
#[derive(Default)]
struct Records {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// What the records and the header together say an entry is called and links to.
struct Names {
    path: Vec<u8>,
    link: Option<Vec<u8>>,
}

/// A GNU long-name/long-link value ends with one NUL, which is not part of the name.
fn without_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// Resolves an entry's names as GNU tar and the `tar` crate do: a GNU record first, then PAX
/// `path`/`linkpath`, then the header. PAX `size` must agree with the header (two parsers
/// disagreeing on where an entry ends is how archives are made to look different to each),
/// and PAX sparse files are refused like GNU ones.
fn names(records: Records, header: &tar::Header, size: u64) -> Result<Names, String> {
    let mut pax_path = None;
    let mut pax_link = None;
    if let Some(pax) = &records.pax {
        for ext in tar::PaxExtensions::new(pax) {
            let ext = ext.map_err(|_| "malformed PAX header".to_string())?;
            match ext.key_bytes() {
                b"path" => pax_path = Some(ext.value_bytes().to_vec()),
                b"linkpath" => pax_link = Some(ext.value_bytes().to_vec()),
                b"size" => {
                    let pax_size = ext
                        .value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or("malformed PAX size")?;
                    if pax_size != size {
                        return Err(format!(
                            "PAX size {pax_size} disagrees with the header's {size}"
                        ));
                    }
                }
                key if key.starts_with(b"GNU.sparse.") => {
                    return Err("sparse files are not supported".into());
                }
                _ => {}
            }
        }
    }
    let path = match (records.long_name, pax_path) {
        (Some(long), _) => without_nul(long),
        (None, Some(pax)) => pax,
        (None, None) => header.path_bytes().into_owned(),
    };
    let link = match (records.long_link, pax_link) {
        (Some(long), _) => Some(without_nul(long)),
        (None, Some(pax)) => Some(pax),
        (None, None) => header.link_name_bytes().map(|l| l.into_owned()),
    };
    Ok(Names { path, link })
}

/// Walks the entries of one layer, validating each, and calls `f(entry_index, path, item)`.
pub(super) fn for_each_entry(
    layer_index: usize,
    layer: &LayerFile,
    limits: &Limits,
    budget: &mut Budget,
    mut f: impl FnMut(usize, &Path, &mut dyn Read) -> Result<(), OciError>,
) -> Result<(), OciError> {
    for_each_item(
        layer_index,
        layer,
        limits,
        budget,
        |index, path, _item, entry| f(index, path, entry),
    )
}

/// Long on purpose: each entry of a hostile layer passes every check in this loop, in this
/// order, before any of its bytes is read; one body keeps that order visible.
pub(super) fn for_each_item(
    layer_index: usize,
    layer: &LayerFile,
    limits: &Limits,
    budget: &mut Budget,
    mut f: impl FnMut(usize, &Path, &Item, &mut dyn Read) -> Result<(), OciError>,
) -> Result<(), OciError> {
    let bad_archive = |source: io::Error| OciError::BadArchive {
        layer: layer_index,
        source,
    };
    let cap = limits
        .max_total_bytes
        .saturating_add(limits.max_files.saturating_mul(TAR_OVERHEAD_PER_ENTRY))
        .saturating_add(1 << 20);
    let max_name_record = limits.max_path_bytes as u64 + 1;
    let max_pax_record = PAX_OTHER_RECORDS_BYTES.saturating_add(2 * limits.max_path_bytes as u64);
    let mut archive = tar::Archive::new(open_layer(layer, cap)?);
    let mut records = Records::default();
    // Raw: metadata records come to us as entries, so we bound them before reading them.
    let entries = archive.entries().map_err(bad_archive)?.raw(true);
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(bad_archive)?;
        let header = entry.header();
        let kind = header.entry_type();
        let hostile = |path: &[u8], reason: &str| OciError::HostileEntry {
            layer: layer_index,
            path: shown_name(path),
            reason: reason.to_string(),
        };
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let record = if !recognized {
            None
        } else if kind.is_gnu_longname() {
            Some((&mut records.long_name, max_name_record, "GNU long-name"))
        } else if kind.is_gnu_longlink() {
            Some((&mut records.long_link, max_name_record, "GNU long-link"))
        } else if kind.is_pax_local_extensions() {
            Some((&mut records.pax, max_pax_record, "PAX"))
        } else {
            None
        };
        if let Some((slot, bound, what)) = record {
            let declared = entry.size();
            let name = header.path_bytes().into_owned();
            if slot.is_some() {
                return Err(hostile(&name, &format!("two {what} records for one entry")));
            }
            if declared > bound {
                return Err(hostile(
                    &name,
                    &format!("{what} record of {declared} bytes is over the limit of {bound}"),
                ));
            }
            // Within the bound, so this allocation is too.
            let mut value = Vec::with_capacity(declared as usize);
            (&mut entry)
                .take(declared)
                .read_to_end(&mut value)
                .map_err(bad_archive)?;
            if value.len() as u64 != declared {
                return Err(bad_archive(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{what} record truncated"),
                )));
            }
            *slot = Some(value);
            continue;
        }
        if kind.is_pax_global_extensions() {
            let name = header.path_bytes().into_owned();
            return Err(hostile(&name, "PAX global headers are not supported"));
        }
        budget.add_file()?;
        let header_path = header.path_bytes().into_owned();
        let Names {
            path: raw_path,
            link,
        } = names(std::mem::take(&mut records), header, entry.size())
            .map_err(|reason| hostile(&header_path, &reason))?;
        let hostile = |reason: &str| hostile(&raw_path, reason);
        if raw_path.len() > limits.max_path_bytes {
            return Err(hostile("path too long"));
        }
        let path = normalize(&raw_path).map_err(hostile)?;
        let mode = header.mode().map_err(bad_archive)?;
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let item = if name.starts_with(WHITEOUT_PREFIX) {
            if name == OPAQUE_MARKER {
                Item::Opaque
            } else if name.starts_with(b".wh..wh.") {
                return Err(hostile("unsupported AUFS metadata whiteout"));
            } else {
                let target = &name[WHITEOUT_PREFIX.len()..];
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(hostile("whiteout names no file"));
                }
                Item::Whiteout
            }
        } else {
            match kind {
                tar::EntryType::Directory => Item::Dir { mode },
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    budget.bytes = budget.bytes.saturating_add(size);
                    if budget.bytes > budget.max_bytes {
                        return Err(OciError::LimitExceeded {
                            what: "total uncompressed size (bytes)",
                            limit: budget.max_bytes,
                        });
                    }
                    Item::File { mode, size }
                }
                tar::EntryType::Symlink => {
                    let target = link.ok_or_else(|| hostile("symlink without a target"))?;
                    if target.is_empty() || target.len() > limits.max_path_bytes {
                        return Err(hostile("symlink target empty or too long"));
                    }
                    Item::Symlink { target }
                }
                tar::EntryType::Link => {
                    let target = link.ok_or_else(|| hostile("hardlink without a target"))?;
                    if target.len() > limits.max_path_bytes {
                        return Err(hostile("hardlink target too long"));
                    }
                    let target = normalize(&target)
                        .map_err(|r| hostile(&format!("hardlink target: {r}")))?;
                    if target.as_os_str().is_empty() {
                        return Err(hostile("hardlink to the root"));
                    }
                    Item::Hardlink { target }
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(hostile("device nodes are not allowed"));
                }
                tar::EntryType::Fifo => return Err(hostile("fifos are not allowed")),
                tar::EntryType::GNUSparse => return Err(hostile("sparse files are not supported")),
                other => return Err(hostile(&format!("unsupported entry type {other:?}"))),
            }
        };
        if path.as_os_str().is_empty() && !matches!(item, Item::Dir { .. }) {
            return Err(hostile("only a directory may name the root"));
        }
        f(index, &path, &item, &mut entry)?;
    }
    if !records.is_empty() {
        return Err(bad_archive(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "metadata records at the end of the archive describe no entry",
        )));
    }
    Ok(())
}

/// A relative path of normal components, or a reason to refuse it.
fn normalize(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL in path");
    }
    let mut out = PathBuf::new();
    for component in Path::new(std::ffi::OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}
