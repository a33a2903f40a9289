//! The fetch engine: lists a source, skips what is already complete, and writes the rest
//! with bounded parallel (ranged) reads streamed to disk.
//!
//! What a reader of the destination can rely on: a file under its final name is whole
//! (bytes go to `<name>.serval-partial` and are renamed once the size checks), and the
//! marker `.serval-model-complete`, written last, lists every file with its size and
//! version. A re-run whose listing matches the marker does nothing; an interrupted run
//! keeps the files it finished (journal `.serval-model-progress`) and fetches the rest.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::archive::{self, ArchiveKind};
use crate::error::StorageError;
use crate::progress::{Counter, ProgressStyle, Reporter};
use crate::source::{safe_relative, RemoteFile, Source};

pub(crate) const MARKER: &str = ".serval-model-complete";
const JOURNAL: &str = ".serval-model-progress";
const PARTIAL: &str = ".serval-partial";
/// Bytes gathered before each write to disk, per read in flight.
const WRITE_BUFFER: usize = 1 << 20;
/// How long a read may go without a byte before it counts as a lost connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Reads in flight at once, over all files.
    pub parallel: usize,
    /// Files larger than this are read as ranges of this size, in parallel.
    pub chunk_size: u64,
    /// Retries of one read after a transient error (a dropped connection, a 5xx).
    pub retries: u32,
    pub progress: ProgressStyle,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            parallel: 16,
            chunk_size: 16 << 20,
            retries: 5,
            progress: ProgressStyle::Quiet,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    pub files: usize,
    /// Files read this run; the rest were already complete.
    pub fetched_files: usize,
    /// Bytes of the model as listed.
    pub bytes: u64,
    /// Bytes read this run (0 when it was already complete).
    pub downloaded: u64,
    pub already_complete: bool,
    pub elapsed: Duration,
}

impl FetchReport {
    /// A fetch that found every file of `listing` already in place.
    pub(crate) fn already_complete(listing: &[RemoteFile], started: Instant) -> Self {
        Self {
            files: listing.len(),
            fetched_files: 0,
            bytes: listing.iter().filter_map(|f| f.size).sum(),
            downloaded: 0,
            already_complete: true,
            elapsed: started.elapsed(),
        }
    }
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Marker {
    pub(crate) files: Vec<RemoteFile>,
    /// The files were archives (or image layers), unpacked and removed.
    pub(crate) unpacked: bool,
    /// The files the unpacking wrote, relative to the destination: what a re-fetch of a
    /// changed archive or image removes when the new one no longer holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) unpacked_files: Vec<String>,
}

/// Fetches everything `source` lists into `dest`; `label` names it in progress lines.
pub async fn fetch(
    source: Arc<dyn Source>,
    label: &str,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FetchReport, StorageError> {
    let started = Instant::now();
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| StorageError::io(dest, e))?;
    let listing = with_retries(options.retries, || source.list()).await?;
    for file in &listing {
        if safe_relative(&file.path).is_none() {
            return Err(StorageError::UnsafeEntry {
                archive: label.to_string(),
                entry: file.path.clone(),
            });
        }
    }
    let bytes: u64 = listing.iter().filter_map(|f| f.size).sum();
    let unpack = match listing.as_slice() {
        [one] if source.unpacks_archives() => ArchiveKind::of(&one.path),
        _ => None,
    };

    let marker = read_marker(dest).await;
    if let Some(marker) = &marker {
        if marker.files == listing && (marker.unpacked || all_present(dest, &listing).await) {
            return Ok(FetchReport::already_complete(&listing, started));
        }
    }
    remove_if_present(&dest.join(MARKER)).await?;
    let unpacked_before = marker
        .as_ref()
        .map(|m| m.unpacked_files.clone())
        .unwrap_or_default();

    // Files finished by an interrupted run, or unchanged since the last complete one, stay.
    let mut journal = read_journal(dest).await;
    if let Some(marker) = marker.filter(|m| !m.unpacked) {
        journal.extend(marker.files);
    }
    let mut todo = Vec::new();
    for file in &listing {
        let finished = journal.contains(file) && size_matches(dest, file).await;
        if !finished {
            todo.push(file.clone());
        }
    }
    let needed: u64 = todo.iter().filter_map(|f| f.size).sum();
    check_free_space(dest, needed)?;

    let counter = Counter::default();
    let reporter = Reporter::start(options.progress, label.to_string(), needed, counter.clone());
    let result = download_all(&source, dest, &todo, options, &counter).await;
    drop(reporter);
    if let Err(error) = result {
        for file in &todo {
            let _ = tokio::fs::remove_file(partial_path(dest, file)).await;
        }
        return Err(match error {
            StorageError::NoSpace { path, .. } => StorageError::NoSpace {
                path,
                needed: needed.saturating_sub(counter.get()),
            },
            other => other,
        });
    }

    remove_unlisted(dest, &journal, &listing).await?;
    let mut unpacked_files = Vec::new();
    if let (Some(kind), [file]) = (unpack, listing.as_slice()) {
        let archive_path = final_path(dest, file);
        let into = dest.to_path_buf();
        let written = tokio::task::spawn_blocking(move || {
            archive::check(&archive_path, kind)?;
            let written = archive::unpack(&archive_path, kind, &into)?;
            std::fs::remove_file(&archive_path).map_err(|e| StorageError::io(&archive_path, e))?;
            Ok::<_, StorageError>(written)
        })
        .await
        .map_err(|e| StorageError::io(dest, std::io::Error::other(e)))??;
        unpacked_files = relative_names(dest, written);
    }
    let mut kept: HashSet<&str> = listing.iter().map(|f| f.path.as_str()).collect();
    kept.extend(unpacked_files.iter().map(String::as_str));
    remove_unpacked_before(dest, &unpacked_before, &kept).await?;

    write_marker(
        dest,
        &Marker {
            files: listing.clone(),
            unpacked: unpack.is_some(),
            unpacked_files,
        },
    )
    .await?;
    remove_if_present(&dest.join(JOURNAL)).await?;
    Ok(FetchReport {
        files: listing.len(),
        fetched_files: todo.len(),
        bytes,
        downloaded: counter.get(),
        already_complete: false,
        elapsed: started.elapsed(),
    })
}

/// Removes the files an earlier run wrote that the source no longer lists (an object
/// deleted upstream), and the directories that leaves empty, so that a re-fetched model is
/// what the source holds now. Files the fetch never wrote stay.
async fn remove_unlisted(
    dest: &Path,
    earlier: &[RemoteFile],
    listing: &[RemoteFile],
) -> Result<(), StorageError> {
    let listed: HashSet<&str> = listing.iter().map(|f| f.path.as_str()).collect();
    for file in earlier {
        // The journal and marker are files in the destination: trust no path in them.
        if listed.contains(file.path.as_str()) || safe_relative(&file.path).is_none() {
            continue;
        }
        remove_with_empty_parents(dest, &final_path(dest, file)).await?;
    }
    Ok(())
}

/// Removes the files an earlier unpacking wrote that are not `kept` (an entry the changed
/// archive or image no longer holds), and the directories that leaves empty.
pub(crate) async fn remove_unpacked_before(
    dest: &Path,
    earlier: &[String],
    kept: &HashSet<&str>,
) -> Result<(), StorageError> {
    for name in earlier {
        if kept.contains(name.as_str()) {
            continue;
        }
        // The marker is a file in the destination: trust no path in it.
        if let Some(relative) = safe_relative(name) {
            remove_with_empty_parents(dest, &dest.join(relative)).await?;
        }
    }
    Ok(())
}

async fn remove_with_empty_parents(dest: &Path, path: &Path) -> Result<(), StorageError> {
    remove_if_present(path).await?;
    let mut dir = path.parent();
    while let Some(parent) = dir.filter(|d| *d != dest && d.starts_with(dest)) {
        if tokio::fs::remove_dir(parent).await.is_err() {
            break;
        }
        dir = parent.parent();
    }
    Ok(())
}

/// Paths under `dest`, as names relative to it with `/` between components.
fn relative_names(dest: &Path, paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    paths
        .into_iter()
        .filter_map(|path| path.strip_prefix(dest).ok().map(path_name))
        .collect()
}

/// A relative path as a name with `/` between components, as markers keep them.
pub(crate) fn path_name(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// One read: a whole file, or a range of it.
struct Chunk {
    file: usize,
    range: Option<Range<u64>>,
}

async fn download_all(
    source: &Arc<dyn Source>,
    dest: &Path,
    files: &[RemoteFile],
    options: &FetchOptions,
    counter: &Counter,
) -> Result<(), StorageError> {
    let ranged = source.ranged();
    let chunk_size = options.chunk_size.max(1);
    let mut chunks = Vec::new();
    let mut remaining = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let partial = partial_path(dest, file);
        if let Some(parent) = partial.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StorageError::io(parent, e))?;
        }
        let handle = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| StorageError::io(&partial, e))?;
        let before = chunks.len();
        match file.size {
            Some(size) if ranged && size > chunk_size => {
                handle
                    .set_len(size)
                    .await
                    .map_err(|e| StorageError::io(&partial, e))?;
                let mut start = 0;
                while start < size {
                    let end = (start + chunk_size).min(size);
                    chunks.push(Chunk {
                        file: index,
                        range: Some(start..end),
                    });
                    start = end;
                }
            }
            _ => chunks.push(Chunk {
                file: index,
                range: None,
            }),
        }
        remaining.push(AtomicUsize::new(chunks.len() - before));
    }

    let files: Arc<Vec<RemoteFile>> = Arc::new(files.to_vec());
    let limit = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut tasks = JoinSet::new();
    let mut chunks = chunks.into_iter();
    let mut journal = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dest.join(JOURNAL))
        .await
        .map_err(|e| StorageError::io(dest.join(JOURNAL), e))?;
    loop {
        // Keep at most `parallel` reads in flight; spawn more as permits free up.
        while limit.available_permits() > 0 {
            let Some(chunk) = chunks.next() else { break };
            let permit = limit.clone().try_acquire_owned().map_err(|_| {
                StorageError::io(dest, std::io::Error::other("download slots closed"))
            })?;
            let source = source.clone();
            let files = files.clone();
            let partial = partial_path(dest, &files[chunk.file]);
            let counter = counter.clone();
            let retries = options.retries;
            tasks.spawn(async move {
                let file = &files[chunk.file];
                let result =
                    read_chunk(&*source, file, chunk.range, &partial, &counter, retries).await;
                drop(permit);
                result.map(|()| chunk.file)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let index = match joined {
            Ok(Ok(index)) => index,
            Ok(Err(error)) => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return Err(error);
            }
            Err(join) => {
                tasks.abort_all();
                return Err(StorageError::io(dest, std::io::Error::other(join)));
            }
        };
        if remaining[index].fetch_sub(1, Ordering::AcqRel) == 1 {
            let file = &files[index];
            finish_file(dest, file).await?;
            let mut line = serde_json::to_vec(file).unwrap_or_default();
            line.push(b'\n');
            journal
                .write_all(&line)
                .await
                .map_err(|e| StorageError::io(dest.join(JOURNAL), e))?;
        }
    }
    journal
        .flush()
        .await
        .map_err(|e| StorageError::io(dest.join(JOURNAL), e))
}

/// Reads one chunk into its place in the partial file, resuming a range after a
/// transient error where the source allows it.
async fn read_chunk(
    source: &dyn Source,
    file: &RemoteFile,
    range: Option<Range<u64>>,
    partial: &Path,
    counter: &Counter,
    retries: u32,
) -> Result<(), StorageError> {
    let mut written = 0u64;
    let mut attempt = 0u32;
    loop {
        let result = read_once(source, file, range.clone(), partial, counter, &mut written).await;
        match result {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() && attempt < retries => {
                attempt += 1;
                let wait = Duration::from_millis(250 << attempt.min(5));
                tracing::warn!("{error}; retrying in {wait:?} ({attempt} of {retries})");
                tokio::time::sleep(wait).await;
                if range.is_none() {
                    // Without ranges the read starts over from the first byte.
                    counter.sub(written);
                    written = 0;
                }
            }
            Err(error) => return Err(error),
        }
    }
}

async fn read_once(
    source: &dyn Source,
    file: &RemoteFile,
    range: Option<Range<u64>>,
    partial: &Path,
    counter: &Counter,
    written: &mut u64,
) -> Result<(), StorageError> {
    let io = |e| StorageError::io(partial, e);
    let out = tokio::fs::OpenOptions::new()
        .write(true)
        .open(partial)
        .await
        .map_err(io)?;
    let (start, request) = match &range {
        Some(range) => (
            range.start + *written,
            Some(range.start + *written..range.end),
        ),
        None => {
            out.set_len(0).await.map_err(io)?;
            (0, None)
        }
    };
    let expected = match (&range, file.size) {
        (Some(range), _) => Some(range.end - range.start),
        (None, size) => size,
    };
    if request.as_ref().is_some_and(|r| r.is_empty()) {
        return Ok(());
    }
    let mut stream = source.read(file, request).await?;
    // What the buffer accepted is written even when the stream fails, so `written` is
    // always what is on disk and a retry resumes at the right byte.
    let mut out = PositionedWriter::new(out.into_std().await, start, partial);
    let streamed = async {
        loop {
            // A server that stops sending but keeps the connection is a lost connection.
            let next = tokio::time::timeout(IDLE_TIMEOUT, stream.next())
                .await
                .map_err(|_| StorageError::Remote {
                    what: file.path.clone(),
                    detail: format!("no data for {} s", IDLE_TIMEOUT.as_secs()),
                    transient: true,
                })?;
            let Some(bytes) = next else { break };
            let bytes = bytes?;
            if expected.is_some_and(|e| *written + bytes.len() as u64 > e) {
                return Err(StorageError::Remote {
                    what: file.path.clone(),
                    detail: format!(
                        "the server sent more than the {} bytes asked for",
                        expected.unwrap_or(0)
                    ),
                    transient: false,
                });
            }
            out.write(&bytes).await?;
            *written += bytes.len() as u64;
            counter.add(bytes.len() as u64);
        }
        Ok::<(), StorageError>(())
    }
    .await;
    out.flush().await?;
    streamed?;
    match expected {
        Some(expected) if *written != expected => Err(StorageError::Remote {
            what: file.path.clone(),
            detail: format!("connection closed after {} of {expected} bytes", *written),
            transient: true,
        }),
        _ => Ok(()),
    }
}

/// Writes at a file position from a buffer of its own, a megabyte at a time, on a blocking
/// thread: servers send small frames, and this is the one copy between the network's
/// buffers and the kernel's (`tokio::fs::File` would add another).
struct PositionedWriter {
    file: std::sync::Arc<std::fs::File>,
    offset: u64,
    buffer: Vec<u8>,
    path: PathBuf,
}

impl PositionedWriter {
    fn new(file: std::fs::File, offset: u64, path: &Path) -> Self {
        Self {
            file: std::sync::Arc::new(file),
            offset,
            buffer: Vec::with_capacity(WRITE_BUFFER + (64 << 10)),
            path: path.to_path_buf(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let buffer = std::mem::take(&mut self.buffer);
        let offset = self.offset;
        let (mut buffer, result) = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let result = file.write_all_at(&buffer, offset);
            (buffer, result)
        })
        .await
        .map_err(|e| StorageError::io(&self.path, std::io::Error::other(e)))?;
        result.map_err(|e| StorageError::io(&self.path, e))?;
        self.offset += buffer.len() as u64;
        buffer.clear();
        self.buffer = buffer;
        Ok(())
    }
}

pub(crate) async fn with_retries<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(error) if error.is_transient() && tries < retries => {
                tries += 1;
                let wait = Duration::from_millis(250 << tries.min(5));
                tracing::warn!("{error}; retrying in {wait:?} ({tries} of {retries})");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Checks the size and gives the file its final name.
async fn finish_file(dest: &Path, file: &RemoteFile) -> Result<(), StorageError> {
    let partial = partial_path(dest, file);
    let target = final_path(dest, file);
    if let Some(size) = file.size {
        let actual = tokio::fs::metadata(&partial)
            .await
            .map_err(|e| StorageError::io(&partial, e))?
            .len();
        if actual != size {
            return Err(StorageError::Remote {
                what: file.path.clone(),
                detail: format!("got {actual} bytes, the source lists {size}"),
                transient: false,
            });
        }
    }
    tokio::fs::rename(&partial, &target)
        .await
        .map_err(|e| StorageError::io(&target, e))
}

fn final_path(dest: &Path, file: &RemoteFile) -> PathBuf {
    dest.join(safe_relative(&file.path).unwrap_or_default())
}

fn partial_path(dest: &Path, file: &RemoteFile) -> PathBuf {
    let mut name = final_path(dest, file).into_os_string();
    name.push(PARTIAL);
    PathBuf::from(name)
}

async fn size_matches(dest: &Path, file: &RemoteFile) -> bool {
    match tokio::fs::metadata(final_path(dest, file)).await {
        Ok(meta) => meta.is_file() && file.size.is_none_or(|size| meta.len() == size),
        Err(_) => false,
    }
}

async fn all_present(dest: &Path, files: &[RemoteFile]) -> bool {
    for file in files {
        if !size_matches(dest, file).await {
            return false;
        }
    }
    true
}

pub(crate) async fn read_marker(dest: &Path) -> Option<Marker> {
    let bytes = tokio::fs::read(dest.join(MARKER)).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(crate) async fn write_marker(dest: &Path, marker: &Marker) -> Result<(), StorageError> {
    let path = dest.join(MARKER);
    let temp = dest.join(format!("{MARKER}{PARTIAL}"));
    let bytes = serde_json::to_vec_pretty(marker).unwrap_or_default();
    tokio::fs::write(&temp, bytes)
        .await
        .map_err(|e| StorageError::io(&temp, e))?;
    tokio::fs::rename(&temp, &path)
        .await
        .map_err(|e| StorageError::io(&path, e))
}

async fn read_journal(dest: &Path) -> Vec<RemoteFile> {
    let Ok(text) = tokio::fs::read_to_string(dest.join(JOURNAL)).await else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

pub(crate) async fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(path, e)),
        _ => Ok(()),
    }
}

/// Refuses at once when the destination cannot hold what is left to fetch.
fn check_free_space(dest: &Path, needed: u64) -> Result<(), StorageError> {
    let Ok(stat) = nix::sys::statvfs::statvfs(dest) else {
        return Ok(());
    };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    if needed > free {
        return Err(StorageError::NoSpace {
            path: dest.to_path_buf(),
            needed,
        });
    }
    Ok(())
}
