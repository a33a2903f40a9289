//! Unpacking `.tar`, `.tar.gz`/`.tgz` and `.zip` models so that no entry lands outside the
//! destination: absolute paths, `..` and links are refused before anything is written.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::source::safe_relative;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
}

impl ArchiveKind {
    /// By file name, as KServe decides.
    pub(crate) fn of(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if lower.ends_with(".tar") {
            Some(Self::Tar)
        } else if lower.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

/// Unpacks `archive` into `dest` (blocking; run it off the async threads).
pub(crate) fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
) -> Result<Vec<PathBuf>, StorageError> {
    match kind {
        ArchiveKind::Tar | ArchiveKind::TarGz => {
            let (name, reader) = open_tar(archive)?;
            walk_tar(reader, &name, None, Some(dest))
        }
        ArchiveKind::Zip => {
            let name = file_name(archive);
            let file = File::open(archive).map_err(|e| StorageError::io(archive, e))?;
            unpack_zip(file, &name, dest)
        }
    }
}

/// Checks an archive's entries without writing (so a refused tar leaves nothing behind).
pub(crate) fn check(archive: &Path, kind: ArchiveKind) -> Result<(), StorageError> {
    if kind == ArchiveKind::Zip {
        return Ok(()); // unpack_zip checks every name before writing.
    }
    let (name, reader) = open_tar(archive)?;
    walk_tar(reader, &name, None, None).map(|_| ())
}

/// Unpacks the entries of an image layer (a tar, gzipped or not) that lie under `subtree`
/// (`models/`, where modelcar images keep the model) into `dest`, without the prefix, over
/// the layers below it. `unpacked` holds the files (relative to `dest`) the layers below
/// wrote: the layer's whiteouts remove those they hide (`.wh.<name>` a file or a
/// directory, `.wh..wh..opq` what its directory held), and its own files are added.
/// Entries elsewhere in the image are skipped; links inside the subtree are refused, as in
/// any archive. Nothing that no layer wrote is ever removed.
pub(crate) fn unpack_layer(
    layer: &Path,
    subtree: &str,
    dest: &Path,
    unpacked: &mut BTreeSet<PathBuf>,
) -> Result<(), StorageError> {
    // Whiteouts hide the layers below, never this layer's own entries, wherever they lie in
    // the tar: so they are read and applied in a pass of their own, first.
    let (name, reader) = open_tar(layer)?;
    for whiteout in layer_whiteouts(reader, &name, subtree)? {
        hide(dest, unpacked, &whiteout)?;
    }
    let (name, reader) = open_tar(layer)?;
    for written in walk_tar(reader, &name, Some(subtree), Some(dest))? {
        if let Ok(relative) = written.strip_prefix(dest) {
            unpacked.insert(relative.to_path_buf());
        }
    }
    Ok(())
}

/// What one whiteout hides from the layers below, relative to the subtree.
#[derive(Debug, PartialEq)]
enum Whiteout {
    /// `.wh.<name>`: the file or the whole directory at this path.
    Entry(PathBuf),
    /// `.wh..wh..opq`: everything in this directory (the root when empty), which stays.
    Contents(PathBuf),
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

fn layer_whiteouts(
    reader: impl Read,
    name: &str,
    subtree: &str,
) -> Result<Vec<Whiteout>, StorageError> {
    let bad = |detail: String| StorageError::Archive {
        archive: name.to_string(),
        detail,
    };
    let mut whiteouts = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let Some(inside) = in_subtree(&raw, subtree) else {
            continue;
        };
        let (parent, file) = split_name(inside);
        if file == OPAQUE_WHITEOUT {
            let dir = if parent.is_empty() {
                PathBuf::new()
            } else {
                checked(parent, name)?
            };
            whiteouts.push(Whiteout::Contents(dir));
        } else if let Some(hidden) = file.strip_prefix(WHITEOUT_PREFIX) {
            let path = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            whiteouts.push(Whiteout::Entry(checked(&path, name)?));
        }
    }
    Ok(whiteouts)
}

/// An image entry's path inside `subtree` (`models/`), or `None` when it lies elsewhere.
fn in_subtree<'a>(raw: &'a str, subtree: &str) -> Option<&'a str> {
    raw.trim_start_matches("./")
        .trim_start_matches('/')
        .strip_prefix(subtree)
}

/// A path's directory (empty at the top) and file name.
fn split_name(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Removes the unpacked files a whiteout hides, and the directories that leaves empty
/// inside what it hides.
fn hide(
    dest: &Path,
    unpacked: &mut BTreeSet<PathBuf>,
    whiteout: &Whiteout,
) -> Result<(), StorageError> {
    let (under, keep_dir) = match whiteout {
        Whiteout::Entry(path) => (path, false),
        Whiteout::Contents(dir) => (dir, true),
    };
    let hidden: Vec<PathBuf> = unpacked
        .iter()
        .filter(|file| file.starts_with(under))
        .cloned()
        .collect();
    for file in hidden {
        let path = dest.join(&file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&path, e)),
        }
        unpacked.remove(&file);
        // Directories emptied inside what is hidden go too; the hidden directory itself
        // only for a whole-entry whiteout.
        let mut dir = file.parent();
        while let Some(d) = dir {
            if d.as_os_str().is_empty() || !d.starts_with(under) || (keep_dir && d == under) {
                break;
            }
            if std::fs::remove_dir(dest.join(d)).is_err() {
                break; // not empty (or not ours to judge)
            }
            dir = d.parent();
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A tar file's name and a reader of its entries, gunzipped when it starts as gzip does.
fn open_tar(path: &Path) -> Result<(String, Box<dyn Read>), StorageError> {
    let mut file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut magic = [0u8; 2];
    let gzipped = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok((file_name(path), reader))
}

/// Walks a tar's entries, refusing links and entries that would leave the destination,
/// and writes them into `dest` when one is given (else only checks). With a `subtree`
/// (an image layer), only entries under it are taken, without the prefix, and whiteouts
/// are skipped. Returns the files written.
fn walk_tar(
    reader: impl Read,
    name: &str,
    subtree: Option<&str>,
    dest: Option<&Path>,
) -> Result<Vec<PathBuf>, StorageError> {
    let bad = |detail: String| StorageError::Archive {
        archive: name.to_string(),
        detail,
    };
    let mut archive = tar::Archive::new(reader);
    let mut written = Vec::new();
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue; // pax metadata (`git archive` writes one), not a file
        }
        let inside = match subtree {
            None => raw.as_str(),
            Some(prefix) => {
                let Some(inside) = in_subtree(&raw, prefix) else {
                    continue;
                };
                if split_name(inside).1.starts_with(WHITEOUT_PREFIX) {
                    continue; // applied before the layer's files, by `unpack_layer`
                }
                inside
            }
        };
        if inside.trim_start_matches("./").trim_matches('/').is_empty() && kind.is_dir() {
            continue;
        }
        if !(kind.is_dir() || kind.is_file()) {
            // Links could point anywhere; a model needs none.
            return Err(StorageError::UnsafeEntry {
                archive: name.to_string(),
                entry: raw,
            });
        }
        let relative = checked(inside, name)?;
        let Some(dest) = dest else { continue };
        let target = dest.join(&relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| StorageError::io(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        let mut out = File::create(&target).map_err(|e| StorageError::io(&target, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| StorageError::io(&target, e))?;
        written.push(target);
    }
    Ok(written)
}

fn unpack_zip(file: File, name: &str, dest: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let bad = |detail: String| StorageError::Archive {
        archive: name.to_string(),
        detail,
    };
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    // Check every name first, so a refused archive writes nothing.
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        if entry.is_symlink() {
            return Err(StorageError::UnsafeEntry {
                archive: name.to_string(),
                entry: entry.name().to_string(),
            });
        }
        if !entry.is_dir() {
            checked(entry.name(), name)?;
        }
    }
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        let relative = checked(entry.name(), name)?;
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        let mut out = File::create(&target).map_err(|e| StorageError::io(&target, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| StorageError::io(&target, e))?;
        written.push(target);
    }
    Ok(written)
}

fn checked(raw: &str, archive: &str) -> Result<PathBuf, StorageError> {
    safe_relative(raw).ok_or_else(|| StorageError::UnsafeEntry {
        archive: archive.to_string(),
        entry: raw.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz_with(dir: &Path, entries: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("model.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // set_path refuses `..`; write the raw name as an attacker would.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn a_tar_unpacks_inside_and_an_escaping_entry_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let good = tar_gz_with(
            dir.path(),
            &[("model/weights.bin", b"abc"), ("config.json", b"{}")],
        );
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        check(&good, ArchiveKind::TarGz).unwrap();
        unpack(&good, ArchiveKind::TarGz, &dest).unwrap();
        assert_eq!(
            std::fs::read(dest.join("model/weights.bin")).unwrap(),
            b"abc"
        );

        let evil_dir = dir.path().join("evil");
        std::fs::create_dir(&evil_dir).unwrap();
        let evil = tar_gz_with(&evil_dir, &[("ok.txt", b"1"), ("../escaped.txt", b"2")]);
        let err = check(&evil, ArchiveKind::TarGz).unwrap_err().to_string();
        assert!(
            err.contains("../escaped.txt") && err.contains("outside"),
            "{err}"
        );
        assert!(!dir.path().join("escaped.txt").exists());
    }

    fn layer(dir: &Path, n: usize, entries: &[(&str, &[u8])]) -> PathBuf {
        let at = dir.join(format!("layer-{n}"));
        std::fs::create_dir(&at).unwrap();
        tar_gz_with(&at, entries)
    }

    fn files_in(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if path.is_dir() {
                    found.push(format!("{name}/"));
                    dirs.push(path);
                } else {
                    found.push(name);
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn a_layers_whiteouts_hide_what_the_layers_below_wrote_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("users-own.txt"), "not from any layer").unwrap();
        let lower = layer(
            dir.path(),
            0,
            &[
                ("models/model.bin", b"weights"),
                ("models/stale.bin", b"old"),
                ("models/old/gone.txt", b"1"),
                ("models/old/deep/gone.txt", b"2"),
                ("models/shards/a", b"a"),
                ("models/shards/b", b"b"),
                ("etc/hostname", b"outside the subtree"),
            ],
        );
        // The opaque marker comes after this layer's own file in its directory: order in
        // the tar must not matter.
        let upper = layer(
            dir.path(),
            1,
            &[
                ("models/old/new.txt", b"3"),
                ("models/old/.wh..wh..opq", b""),
                ("models/.wh.stale.bin", b""),
                ("models/.wh.shards", b""),
                ("models/.wh.users-own.txt", b""),
                ("models/.wh.never-written", b""),
            ],
        );
        let mut unpacked = BTreeSet::new();
        unpack_layer(&lower, "models/", &dest, &mut unpacked).unwrap();
        unpack_layer(&upper, "models/", &dest, &mut unpacked).unwrap();
        assert_eq!(
            files_in(&dest),
            ["model.bin", "old/", "old/new.txt", "users-own.txt"]
        );
        let names: Vec<String> = unpacked
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["model.bin", "old/new.txt"]);

        let evil = layer(dir.path(), 2, &[("models/.wh...", b"")]);
        let err = unpack_layer(&evil, "models/", &dest, &mut unpacked)
            .unwrap_err()
            .to_string();
        assert!(err.contains(".."), "{err}");
    }
}
