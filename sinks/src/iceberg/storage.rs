//! The Iceberg tables' file IO through Ferry's own storage: the warehouse may be any
//! location Ferry writes backups to (a folder, S3, GCS, Azure), with the same URIs and
//! credentials, and only one opendal (iceberg's own `iceberg-storage-opendal` would bring a
//! second, older one).
//!
//! Iceberg names files by absolute location (`s3://bucket/wh/ns/t/data/x.parquet`,
//! `file:/tmp/wh/ns/t/metadata/v1.json`); [`FerryStorage`] maps a location under its
//! warehouse to a key of the [`Storage`] opened on the warehouse URI, and refuses any
//! other (a table whose files live elsewhere is not Ferry's to write).

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::Storage;
use futures::stream::BoxStream;
use futures::StreamExt;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage as IcebergStorage,
    StorageConfig, StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// The location Iceberg sees for a warehouse URI: the URI without its query string (the
/// S3 endpoint, region and credentials stay Ferry's), `file:` paths made absolute.
pub fn warehouse_location(uri: &str) -> ferry_core::Result<String> {
    let parsed = ferry_core::storage::StorageUri::parse(uri)?;
    if parsed.scheme == "file" {
        let path = std::path::absolute(&parsed.path).map_err(|e| {
            ferry_core::Error::config(format!("cannot resolve local path '{}': {e}", parsed.path))
        })?;
        return Ok(format!(
            "file://{}",
            path.to_string_lossy().trim_end_matches('/')
        ));
    }
    let base = uri.split('?').next().unwrap_or(uri);
    Ok(base.trim_end_matches('/').to_string())
}

/// Whether an Iceberg location (a table's) lies under the warehouse a Ferry URI names.
pub fn is_under_warehouse(warehouse_uri: &str, location: &str) -> ferry_core::Result<bool> {
    let root = normalize(&warehouse_location(warehouse_uri)?);
    let location = normalize(location);
    Ok(location
        .strip_prefix(root.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Factory of [`FerryStorage`] for a catalog (the catalog asks it for the file IO of its
/// tables).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FerryStorageFactory {
    /// The warehouse as a Ferry storage URI (query string included).
    pub warehouse_uri: String,
}

#[typetag::serde]
impl StorageFactory for FerryStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn IcebergStorage>> {
        Ok(Arc::new(FerryStorage::new(self.warehouse_uri.clone())?))
    }
}

/// Iceberg's storage over a Ferry [`Storage`] rooted at the warehouse.
#[derive(Debug, Serialize, Deserialize)]
pub struct FerryStorage {
    warehouse_uri: String,
    /// Opened from `warehouse_uri` on first use (also after deserializing).
    #[serde(skip)]
    storage: OnceLock<(Storage, String)>,
}

fn io_error(context: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unexpected, context).with_source(e)
}

impl FerryStorage {
    /// Storage of the warehouse a Ferry URI names.
    pub fn new(warehouse_uri: String) -> Result<Self> {
        let s = FerryStorage {
            warehouse_uri,
            storage: OnceLock::new(),
        };
        s.opened()?;
        Ok(s)
    }

    /// The storage and the location prefix Iceberg uses for its root.
    fn opened(&self) -> Result<&(Storage, String)> {
        if let Some(s) = self.storage.get() {
            return Ok(s);
        }
        let location = warehouse_location(&self.warehouse_uri)
            .map_err(|e| io_error(format!("warehouse {}", self.warehouse_uri), e))?;
        let storage = Storage::from_uri(&self.warehouse_uri)
            .map_err(|e| io_error(format!("warehouse {location}"), e))?;
        Ok(self.storage.get_or_init(|| (storage, location)))
    }

    /// The key under the warehouse of an Iceberg location.
    fn key(&self, path: &str) -> Result<String> {
        let (_, root) = self.opened()?;
        let normalized = normalize(path);
        let root = normalize(root);
        match normalized.strip_prefix(root.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                Ok(rest.trim_start_matches('/').to_string())
            }
            _ => Err(Error::new(
                ErrorKind::DataInvalid,
                format!("{path} is outside the warehouse {root}: Ferry writes tables only under the warehouse it is given"),
            )),
        }
    }

    fn operator(&self) -> Result<&opendal::Operator> {
        let (storage, _) = self.opened()?;
        storage
            .operator()
            .map_err(|e| io_error(format!("warehouse {}", storage), e))
    }
}

/// `file:/x`, `file:///x` and `/x` are one location.
fn normalize(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("file:") {
        return format!("file:///{}", rest.trim_start_matches('/'));
    }
    if path.starts_with('/') {
        return format!("file:///{}", path.trim_start_matches('/'));
    }
    path.to_string()
}

#[async_trait]
#[typetag::serde]
impl IcebergStorage for FerryStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let key = self.key(path)?;
        self.operator()?
            .exists(&key)
            .await
            .map_err(|e| io_error(format!("checking {path}"), e))
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let key = self.key(path)?;
        let meta = self
            .operator()?
            .stat(&key)
            .await
            .map_err(|e| io_error(format!("stat {path}"), e))?;
        Ok(FileMetadata {
            size: meta.content_length(),
        })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        let buf = self
            .operator()?
            .read(&key)
            .await
            .map_err(|e| io_error(format!("reading {path}"), e))?;
        Ok(buf.to_bytes())
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let key = self.key(path)?;
        let reader = self
            .operator()?
            .reader(&key)
            .await
            .map_err(|e| io_error(format!("opening {path}"), e))?;
        Ok(Box::new(Reader {
            reader,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let key = self.key(path)?;
        self.operator()?
            .write(&key, bs)
            .await
            .map(|_| ())
            .map_err(|e| io_error(format!("writing {path}"), e))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let key = self.key(path)?;
        let writer = self
            .operator()?
            .writer(&key)
            .await
            .map_err(|e| io_error(format!("opening {path} to write"), e))?;
        Ok(Box::new(Writer {
            writer,
            path: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        self.operator()?
            .delete(&key)
            .await
            .map_err(|e| io_error(format!("deleting {path}"), e))
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let mut key = self.key(path)?;
        if !key.ends_with('/') {
            key.push('/');
        }
        self.operator()?
            .delete_with(&key)
            .recursive(true)
            .await
            .map_err(|e| io_error(format!("deleting {path}"), e))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(
            Arc::new(self.clone_handle()),
            path.to_string(),
        ))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(
            Arc::new(self.clone_handle()),
            path.to_string(),
        ))
    }
}

impl FerryStorage {
    /// Another handle on the same storage (cheap: the operator is shared).
    fn clone_handle(&self) -> FerryStorage {
        let storage = OnceLock::new();
        if let Some(s) = self.storage.get() {
            let _ = storage.set(s.clone());
        }
        FerryStorage {
            warehouse_uri: self.warehouse_uri.clone(),
            storage,
        }
    }
}

struct Reader {
    reader: opendal::Reader,
    path: String,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        let buf = self
            .reader
            .read(range)
            .await
            .map_err(|e| io_error(format!("reading {}", self.path), e))?;
        Ok(buf.to_bytes())
    }
}

struct Writer {
    writer: opendal::Writer,
    path: String,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.writer
            .write(bs)
            .await
            .map_err(|e| io_error(format!("writing {}", self.path), e))
    }

    async fn close(&mut self) -> Result<()> {
        self.writer
            .close()
            .await
            .map(|_| ())
            .map_err(|e| io_error(format!("closing {}", self.path), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_locations_in_any_spelling_map_to_one_key() {
        let dir = std::env::temp_dir().join("ferry-iceberg-storage-test");
        let uri = format!("file://{}", dir.display());
        let s = FerryStorage::new(uri).expect("storage");
        let p = dir.display().to_string();
        for loc in [
            format!("file://{p}/ns/t/metadata/v1.json"),
            format!("file:{p}/ns/t/metadata/v1.json"),
            format!("{p}/ns/t/metadata/v1.json"),
        ] {
            assert_eq!(s.key(&loc).expect("key"), "ns/t/metadata/v1.json", "{loc}");
        }
    }

    #[test]
    fn locations_outside_the_warehouse_are_refused() {
        let s = FerryStorage::new("file:///tmp/ferry-wh".into()).expect("storage");
        let err = s.key("file:///tmp/ferry-wh2/x").expect_err("outside");
        assert!(err.to_string().contains("outside the warehouse"), "{err}");
        assert!(s.key("s3://b/ferry-wh/x").is_err());
    }

    #[test]
    fn table_locations_under_the_warehouse_in_any_spelling() {
        let wh = "file:///tmp/ferry-wh";
        for loc in [
            "file:///tmp/ferry-wh/ns/t",
            "file:/tmp/ferry-wh/ns/t",
            "/tmp/ferry-wh/ns/t",
        ] {
            assert!(is_under_warehouse(wh, loc).expect("check"), "{loc}");
        }
        for loc in [
            "file:///tmp/ferry-wh2/ns/t",
            "/var/lib/wh/ns/t",
            "s3://b/tmp/ferry-wh/t",
        ] {
            assert!(!is_under_warehouse(wh, loc).expect("check"), "{loc}");
        }
        assert!(is_under_warehouse("s3://lake/wh?region=x", "s3://lake/wh/ns/t").expect("check"));
    }

    #[test]
    fn the_warehouse_location_drops_the_query_string() {
        assert_eq!(
            warehouse_location("s3://lake/wh/?endpoint=http://127.0.0.1:5000&region=x")
                .expect("location"),
            "s3://lake/wh"
        );
    }
}
