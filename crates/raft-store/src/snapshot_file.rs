//! Snapshot data on disk: bounded files under `<data dir>/snapshots/`.
//!
//! openraft receives a snapshot by seeking its data to each chunk's offset and writing the chunk
//! there, and sends one by seeking and reading. Held in memory, that data would let any peer make
//! this node allocate whatever offset it names; so snapshot data lives in files, and a
//! [`SnapshotFile`] refuses every seek or write that would take it past [`MAX_SNAPSHOT_BYTES`].
//! A seek allocates nothing, and a hole left by one costs no disk either (files are sparse).
//!
//! The directory holds the current snapshot (`snap-*`, named by a record in RocksDB) and, while
//! they are in use, received spools (`recv-*`) and files being built, copied or migrated
//! (`build-*`, `copy-*`, `migrate-*`). Everything but the current snapshot is left over from a
//! run that stopped midway and is removed before this run touches the directory.

use std::fs::{File, OpenOptions};
use std::io::{self, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::StoreError;

/// The largest snapshot this node builds, accepts or sends, in bytes.
///
/// Every replica must hold the whole state machine anyway; the bound only stops a peer from
/// naming offsets (and so disk and time) far beyond any real state.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// Why an InstallSnapshot chunk is refused before it reaches openraft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotChunkError {
    #[error(
        "snapshot chunk at offset {offset} with {len} bytes would end past the snapshot bound of \
         {max} bytes (MAX_SNAPSHOT_BYTES)"
    )]
    PastBound { offset: u64, len: usize, max: u64 },
}

/// Checks that a snapshot chunk of `len` bytes at `offset` ends within [`MAX_SNAPSHOT_BYTES`].
///
/// Call it on every InstallSnapshot request before handing it to openraft: openraft treats a
/// storage error while receiving a chunk as fatal for the whole node, so the [`SnapshotFile`]'s
/// own refusal is a last line of defence, not the place to turn a bad peer away.
pub fn check_snapshot_chunk(offset: u64, len: usize) -> Result<(), SnapshotChunkError> {
    let end = u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len));
    match end {
        Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
        _ => Err(SnapshotChunkError::PastBound {
            offset,
            len,
            max: MAX_SNAPSHOT_BYTES,
        }),
    }
}

fn past_bound(offset: u64, len: usize) -> Option<io::Error> {
    check_snapshot_chunk(offset, len)
        .err()
        .map(|e| io::Error::new(io::ErrorKind::FileTooLarge, e))
}

/// Failures of snapshot files: the store's own errors, or the file system's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("snapshot file {op} failed at {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

/// The data of one snapshot, as openraft reads, writes and seeks it: a file that cannot grow
/// past [`MAX_SNAPSHOT_BYTES`].
///
/// All file I/O runs on tokio's blocking pool (it is a [`tokio::fs::File`] inside).
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    /// Where the next read or write lands. Tracked here because every seek is checked against
    /// the bound before the file moves, and tokio's file only knows its position after seeks.
    pos: u64,
    /// The file's length, so that a seek from the end can be checked too.
    len: u64,
    /// Whether a seek started by `start_seek` awaits `poll_complete`.
    seeking: bool,
    /// Set while the file is a spool this store created: removed unless installed.
    spool: Option<TempPath>,
}

impl SnapshotFile {
    /// Wraps `file`, positioned at its start and `len` bytes long.
    pub(crate) fn new(file: File, len: u64, spool: Option<TempPath>) -> Self {
        Self {
            file: tokio::fs::File::from_std(file),
            pos: 0,
            len,
            seeking: false,
            spool,
        }
    }

    /// How many bytes the snapshot holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the snapshot holds no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for buffered writes, then hands over the plain file and, if it is one, its spool.
    pub(crate) async fn into_parts(mut self) -> io::Result<(File, Option<TempPath>)> {
        // tokio reports a failed background write only to the next operation: flush to see it.
        self.file.flush().await?;
        Ok((self.file.into_std().await, self.spool))
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.file).poll_read(cx, buf))?;
        let read = buf.filled().len().saturating_sub(before);
        this.pos = this.pos.saturating_add(read as u64);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = past_bound(this.pos, buf.len()) {
            return Poll::Ready(Err(e));
        }
        let written = ready!(Pin::new(&mut this.file).poll_write(cx, buf))?;
        this.pos = this.pos.saturating_add(written as u64);
        this.len = this.len.max(this.pos);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match position {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => this.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => this.len.checked_add_signed(delta),
        }
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("snapshot seek to {position:?} leaves the range of byte offsets"),
            )
        })?;
        if let Some(e) = past_bound(target, 0) {
            return Err(e);
        }
        // An absolute target keeps tokio's own read-ahead bookkeeping out of the arithmetic.
        Pin::new(&mut this.file).start_seek(SeekFrom::Start(target))?;
        this.seeking = true;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let done = ready!(Pin::new(&mut this.file).poll_complete(cx));
        // Without a seek of ours in flight, tokio answers with the position of its last seek,
        // which reads and writes have since moved past.
        if !std::mem::take(&mut this.seeking) {
            return Poll::Ready(done.map(|_| this.pos));
        }
        let pos = done?;
        this.pos = pos;
        Poll::Ready(Ok(pos))
    }
}

/// A file in the snapshot directory that is removed when dropped, unless it was made the
/// current snapshot with [`TempPath::persist`].
#[derive(Debug)]
pub(crate) struct TempPath {
    /// `None` once persisted or removed.
    path: Option<PathBuf>,
    /// Unique within the directory; the persisted name is derived from it.
    id: String,
}

impl TempPath {
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Renames the file to its final name in `dir` and makes the rename durable.
    pub(crate) fn persist(mut self, dir: &SnapshotDir) -> Result<String, SnapshotError> {
        let name = format!("snap-{}", self.id);
        let to = dir.path.join(&name);
        if let Some(from) = self.path.as_deref() {
            std::fs::rename(from, &to).map_err(io_err("rename", from))?;
            self.path = None;
        }
        dir.sync()?;
        Ok(name)
    }

    /// Removes the file now; for code already off the async runtime.
    pub(crate) fn remove_now(mut self) {
        if let Some(path) = self.path.take() {
            remove_quietly(&path);
        }
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        // A spool abandoned by openraft is dropped on the async runtime, which must not block.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || remove_quietly(&path));
            }
            Err(_) => remove_quietly(&path),
        }
    }
}

pub(crate) fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove snapshot file"),
    }
}

/// The `snapshots/` directory of a store.
#[derive(Debug)]
pub(crate) struct SnapshotDir {
    path: PathBuf,
    /// Whether this run has prepared the directory (created it, removed leftovers). Held while
    /// the current snapshot changes, so that a build and an install racing each other can
    /// neither delete the file the other just made current nor have a reader open a deleted one.
    prepared: Mutex<bool>,
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl SnapshotDir {
    /// Names the directory; nothing touches the disk until [`SnapshotDir::ensure`].
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            prepared: Mutex::new(false),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, bool> {
        // The guarded state is on disk and crash-consistent by itself; a panic while holding
        // the lock leaves nothing worse than a crash would.
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the directory (0700) if it is missing, and narrows its mode if it is not.
    pub(crate) fn ensure(&self) -> Result<(), SnapshotError> {
        match std::fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err("set mode of", &self.path))
            }
            Err(e) => Err(io_err("create", &self.path)(e)),
        }
    }

    /// Creates a new, empty file (0600) for reading and writing.
    pub(crate) fn create_temp(&self, prefix: &str) -> Result<(File, TempPath), SnapshotError> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        // The process id keeps a name unique even against a current snapshot of an earlier run.
        let id = format!("{}-{ms}-{n}", std::process::id());
        let path = self.path.join(format!("{prefix}-{id}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok((
            file,
            TempPath {
                path: Some(path),
                id,
            },
        ))
    }

    /// Whether `temp` lives in this directory (and so may be renamed into place).
    pub(crate) fn holds(&self, temp: &TempPath) -> bool {
        temp.path().and_then(Path::parent) == Some(self.path.as_path())
    }

    /// Removes every file but `keep`; returns how many it removed.
    pub(crate) fn sweep(&self, keep: Option<&str>) -> Result<usize, SnapshotError> {
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.path).map_err(io_err("list", &self.path))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.path))?;
            if keep.is_some_and(|keep| entry.file_name() == keep) {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                // Not ours to judge (a directory someone put here): leave it and say so.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove leftover snapshot file")
                }
            }
        }
        Ok(removed)
    }

    /// Makes renames and removals in the directory durable.
    pub(crate) fn sync(&self) -> Result<(), SnapshotError> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err("sync", &self.path))
    }
}

/// A writer that refuses to take its output past [`MAX_SNAPSHOT_BYTES`].
#[derive(Debug)]
pub(crate) struct BoundedWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> BoundedWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }
}

impl<W: Write> Write for BoundedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = past_bound(self.written, buf.len()) {
            return Err(e);
        }
        let n = self.inner.write(buf)?;
        self.written = self.written.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use openraft::network::snapshot_transport::Streaming;
    use openraft::raft::InstallSnapshotRequest;
    use openraft::{SnapshotMeta, Vote};
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use super::*;
    use crate::TypeConfig;

    fn assert_snapshot_data<T>()
    where
        T: AsyncRead + AsyncWrite + AsyncSeek + Unpin + Send + Sync + 'static,
    {
    }

    #[test]
    fn snapshot_file_meets_openraft_bounds() {
        assert_snapshot_data::<SnapshotFile>();
    }

    fn spool() -> (tempfile::TempDir, SnapshotDir, SnapshotFile, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::new(root.path().join("snapshots"));
        dir.ensure().unwrap();
        let (file, temp) = dir.create_temp("recv").unwrap();
        let path = temp.path().unwrap().to_path_buf();
        (root, dir, SnapshotFile::new(file, 0, Some(temp)), path)
    }

    /// Peak resident memory of this process, where Linux reports it.
    fn peak_rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    #[test]
    fn a_chunk_past_the_bound_is_refused() {
        let err = check_snapshot_chunk(1 << 40, 1).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("offset 1099511627776"), "{message}");
        assert!(
            message.contains(&MAX_SNAPSHOT_BYTES.to_string()),
            "{message}"
        );
        assert!(check_snapshot_chunk(1 << 40, 0).is_err());
        assert!(check_snapshot_chunk(u64::MAX, 1).is_err());
        assert!(check_snapshot_chunk(MAX_SNAPSHOT_BYTES, 1).is_err());
        assert!(check_snapshot_chunk(MAX_SNAPSHOT_BYTES - 10, 11).is_err());
        assert!(check_snapshot_chunk(0, 0).is_ok());
        assert!(check_snapshot_chunk(MAX_SNAPSHOT_BYTES - 10, 10).is_ok());
        assert!(check_snapshot_chunk(MAX_SNAPSHOT_BYTES, 0).is_ok());
    }

    #[tokio::test]
    async fn a_seek_past_the_bound_is_refused_and_moves_nothing() {
        let (_root, _dir, mut file, path) = spool();
        file.write_all(b"abc").await.unwrap();
        for to in [
            SeekFrom::Start(1 << 40),
            SeekFrom::Start(MAX_SNAPSHOT_BYTES + 1),
            SeekFrom::Current(i64::MAX),
            SeekFrom::Current(-4),
            SeekFrom::End(1 << 40),
        ] {
            let err = file.seek(to).await.unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::FileTooLarge | io::ErrorKind::InvalidInput
                ),
                "{to:?}: {err}"
            );
            assert_eq!(file.stream_position().await.unwrap(), 3, "{to:?}");
        }
        // The file still works where it was.
        file.write_all(b"d").await.unwrap();
        file.seek(SeekFrom::Start(0)).await.unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"abcd");
        file.flush().await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_write_past_the_bound_is_refused_and_allocates_nothing() {
        let (_root, _dir, mut file, path) = spool();
        let peak_before = peak_rss_bytes();

        file.seek(SeekFrom::Start(MAX_SNAPSHOT_BYTES - 4))
            .await
            .unwrap();
        let err = file.write_all(b"12345").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("MAX_SNAPSHOT_BYTES"), "{err}");
        // Up to the bound is fine, and only the written bytes take room.
        file.write_all(b"1234").await.unwrap();
        assert!(file.write_all(b"5").await.is_err());
        file.flush().await.unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), MAX_SNAPSHOT_BYTES);
        assert!(
            meta.blocks() * 512 < 16 << 20,
            "{} bytes on disk",
            meta.blocks() * 512
        );
        assert_eq!(
            file.seek(SeekFrom::End(0)).await.unwrap(),
            MAX_SNAPSHOT_BYTES
        );

        if let (Some(before), Some(after)) = (peak_before, peak_rss_bytes()) {
            // A buffer grown to the offset would have added a whole GiB.
            assert!(
                after.saturating_sub(before) < 256 << 20,
                "peak memory grew by {} bytes",
                after - before
            );
        }
    }

    /// openraft's own receiver, fed the chunk that used to cost a TiB of memory, now gets an
    /// error back (which is why the coordinator must refuse such a chunk first).
    #[tokio::test]
    async fn openraft_receiving_a_chunk_at_offset_2_40_gets_an_error() {
        let (_root, _dir, file, path) = spool();
        let mut streaming = Streaming::<TypeConfig>::new("s1".into(), Box::new(file));
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: Default::default(),
                snapshot_id: "s1".into(),
            },
            offset: 1 << 40,
            data: vec![7; 16],
            done: false,
        };
        assert!(streaming.receive(req).await.is_err());
        let mut file = streaming.into_snapshot_data();
        file.flush().await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_spool_is_removed() {
        let (_root, _dir, mut file, path) = spool();
        file.write_all(b"partial").await.unwrap();
        drop(file);
        for _ in 0..200 {
            if !path.exists() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} is still there", path.display());
    }

    #[test]
    fn files_are_0600_in_a_0700_directory() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("snapshots");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = SnapshotDir::new(path.clone());
        dir.ensure().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        let (_file, temp) = dir.create_temp("recv").unwrap();
        let mode = std::fs::metadata(temp.path().unwrap()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        let name = temp.persist(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(path.join(&name)).unwrap().mode() & 0o777,
            0o600
        );
        std::fs::write(path.join("recv-stale"), b"x").unwrap();
        assert_eq!(dir.sweep(Some(&name)).unwrap(), 1);
        let left: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(name)]);
    }

    #[test]
    fn the_bounded_writer_stops_at_the_bound() {
        let mut w = BoundedWriter::new(io::sink());
        w.write_all(&[0; 1024]).unwrap();
        assert_eq!(w.written(), 1024);
        w.written = MAX_SNAPSHOT_BYTES - 1;
        assert!(w.write_all(&[0; 2]).is_err());
        w.write_all(&[0]).unwrap();
        assert!(w.write_all(&[0]).is_err());
    }
}
