//! Where a segment's bytes go: an opendal writer (object stores), or for a new file in a
//! local folder a file of Ferry's own.
//!
//! Why not opendal's local writer: it writes through a `tokio::fs::File`, which copies each
//! write into a buffer of its own and keeps that buffer (up to 2 MiB) for the file's
//! lifetime. With one open segment per partition that is the partition's last write held
//! per partition: a raw backup of 6,000 partitions (0.26 GB) peaked at 344 MiB, the same
//! backup with segments rolled at 20 KiB at 170 MiB. Here each write hands its `Bytes` to a
//! blocking thread that writes them and lets them go.
//!
//! Same staging as opendal's: written under the folder's `.ferry-tmp/` (cleared by the
//! sink on start), synced, then renamed into place on close, so a crash never leaves a
//! half-written segment under its real name.

use bytes::Bytes;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment object being written.
pub(super) enum SegmentWriter {
    /// Through opendal (object stores; an existing local file appended to in place).
    Opendal(opendal::Writer),
    /// A new file in a local folder.
    Local(LocalFile),
}

impl SegmentWriter {
    /// Writes `bytes` at the end.
    pub(super) async fn write(&mut self, bytes: Bytes) -> std::result::Result<(), opendal::Error> {
        match self {
            SegmentWriter::Opendal(w) => w.write(bytes).await,
            SegmentWriter::Local(f) => f.write(bytes).await.map_err(io_error("writing")),
        }
    }

    /// Completes the object under its name.
    pub(super) async fn close(&mut self) -> std::result::Result<(), opendal::Error> {
        match self {
            SegmentWriter::Opendal(w) => w.close().await.map(|_| ()),
            SegmentWriter::Local(f) => f.close().await.map_err(io_error("closing")),
        }
    }

    /// Drops what was written (the object never appears under its name).
    pub(super) async fn abort(&mut self) -> std::result::Result<(), opendal::Error> {
        match self {
            SegmentWriter::Opendal(w) => w.abort().await,
            SegmentWriter::Local(f) => f.abort().await.map_err(io_error("removing")),
        }
    }
}

/// An I/O error as a storage error (so it is classified and reported as opendal's are).
fn io_error(doing: &'static str) -> impl Fn(std::io::Error) -> opendal::Error {
    move |e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => opendal::ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => opendal::ErrorKind::PermissionDenied,
            _ => opendal::ErrorKind::Unexpected,
        };
        opendal::Error::new(kind, format!("{doing} a local segment file")).set_source(e)
    }
}

/// A new local file staged in `.ferry-tmp/`, renamed to `target` on close.
pub(super) struct LocalFile {
    file: Arc<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl LocalFile {
    /// Creates the staging file for `key` under `root` (its `.ferry-tmp/` exists once the
    /// storage was opened for writing; it is made here too if not).
    /// Fails with the I/O error as an opendal one, for the caller to name the object and
    /// classify it ([`ferry_core::storage::Storage::fail`]).
    pub(super) async fn create(
        root: &Path,
        key: &str,
    ) -> std::result::Result<LocalFile, opendal::Error> {
        let tmp_dir = root.join(ferry_core::storage::TMP_DIR);
        let temp = tmp_dir.join(format!("{:032x}.segment", rand::random::<u128>()));
        let target = root.join(key);
        let (file, temp) = blocking(move || {
            std::fs::create_dir_all(&tmp_dir)?;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            Ok((f, temp))
        })
        .await
        .map_err(io_error("creating"))?;
        Ok(LocalFile {
            file: Arc::new(file),
            temp,
            target,
        })
    }

    async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let file = self.file.clone();
        blocking(move || (&*file).write_all(&bytes)).await
    }

    async fn close(&mut self) -> std::io::Result<()> {
        let (file, temp, target) = (self.file.clone(), self.temp.clone(), self.target.clone());
        blocking(move || {
            file.sync_all()?;
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::rename(&temp, &target)
        })
        .await
    }

    async fn abort(&mut self) -> std::io::Result<()> {
        let temp = self.temp.clone();
        blocking(move || match std::fs::remove_file(&temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }
}

/// Runs file I/O on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_file_appears_under_its_name_only_when_closed() {
        let dir = tempfile::tempdir().expect("dir");
        let key = "topics/t/0/00000000000000000000.log";
        let mut f = SegmentWriter::Local(LocalFile::create(dir.path(), key).await.expect("create"));
        f.write(Bytes::from_static(b"abc")).await.expect("write");
        f.write(Bytes::from_static(b"def")).await.expect("write");
        assert!(
            !dir.path().join(key).exists(),
            "not under its name before close"
        );
        f.close().await.expect("close");
        assert_eq!(
            std::fs::read(dir.path().join(key)).expect("read"),
            b"abcdef"
        );
        let staged = std::fs::read_dir(dir.path().join(ferry_core::storage::TMP_DIR))
            .expect("tmp")
            .count();
        assert_eq!(staged, 0, "nothing left in .ferry-tmp");

        let other = "topics/t/0/00000000000000000006.log";
        let mut g =
            SegmentWriter::Local(LocalFile::create(dir.path(), other).await.expect("create"));
        g.write(Bytes::from_static(b"xyz")).await.expect("write");
        g.abort().await.expect("abort");
        assert!(!dir.path().join(other).exists());
        let staged = std::fs::read_dir(dir.path().join(ferry_core::storage::TMP_DIR))
            .expect("tmp")
            .count();
        assert_eq!(staged, 0, "an aborted file is removed");
    }
}
