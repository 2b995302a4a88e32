//! Catalogs by `catalog.type`: the SQL catalog on a SQLite file and the REST catalog, both
//! with their tables' files read and written through Ferry's storage
//! ([`super::storage::FerryStorageFactory`]).

use super::config::CatalogConfig;
use super::storage::{warehouse_location, FerryStorageFactory};
use async_trait::async_trait;
use ferry_core::{Error, Result};
use iceberg::table::Table;
use iceberg::{
    Catalog, CatalogBuilder, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation,
    TableIdent,
};
use iceberg_catalog_rest::{
    RestCatalogBuilder, REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_sql::{SqlCatalogBuilder, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE};
use std::collections::HashMap;
use std::sync::Arc;

/// The sqlx URL of a `sqlite:` catalog URI, with the file created when missing. Takes the
/// spellings people paste: `sqlite:///abs/path.db` (as in the issue and Ferry's docs),
/// `sqlite:////abs/path.db` (SQLAlchemy's, pyiceberg's) and `sqlite:relative.db`.
pub fn sqlite_url(uri: &str) -> Result<String> {
    let Some(rest) = uri.strip_prefix("sqlite:") else {
        return Err(Error::config(format!(
            "iceberg sink: catalog `uri: {uri}` of a sql catalog must be sqlite:///PATH (the only database built in)"
        )));
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = if let Some(abs) = path.strip_prefix("//") {
        // sqlite:///abs or sqlite:////abs: an absolute path.
        format!("/{}", abs.trim_start_matches('/'))
    } else {
        path.to_string()
    };
    if path.is_empty() || path == "/" {
        return Err(Error::config(format!(
            "iceberg sink: catalog `uri: {uri}` names no file: use sqlite:///PATH"
        )));
    }
    let path = std::path::absolute(&path)
        .map_err(|e| Error::config(format!("iceberg sink: catalog uri {uri}: {e}")))?;
    let query = query.unwrap_or("mode=rwc");
    Ok(format!("sqlite://{}?{query}", path.display()))
}

fn catalog_error(config: &CatalogConfig, e: iceberg::Error) -> Error {
    Error::config(format!(
        "iceberg catalog {}: {}",
        ferry_core::storage::redact_query(config.uri()),
        super::error_text(&e)
    ))
}

/// Connects to the catalog.
pub async fn connect(config: &CatalogConfig) -> Result<Arc<dyn Catalog>> {
    let factory = Arc::new(FerryStorageFactory {
        warehouse_uri: config.warehouse().to_string(),
    });
    let location = warehouse_location(config.warehouse())?;
    match config {
        CatalogConfig::Sql { name, uri, .. } => {
            let url = sqlite_url(uri)?;
            if let Some(dir) = url
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
                .and_then(|p| std::path::Path::new(p).parent())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config(format!(
                        "iceberg catalog {uri}: cannot create folder {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            let props = HashMap::from([
                (SQL_CATALOG_PROP_URI.to_string(), url),
                (SQL_CATALOG_PROP_WAREHOUSE.to_string(), location),
            ]);
            let catalog = SqlCatalogBuilder::default()
                .with_storage_factory(factory)
                .load(name.clone(), props)
                .await
                .map_err(|e| catalog_error(config, e))?;
            Ok(Arc::new(catalog))
        }
        CatalogConfig::Rest { name, uri, .. } => {
            let props = HashMap::from([
                (REST_CATALOG_PROP_URI.to_string(), uri.clone()),
                (REST_CATALOG_PROP_WAREHOUSE.to_string(), location),
            ]);
            let catalog = RestCatalogBuilder::default()
                .with_storage_factory(factory)
                .load(name.clone(), props)
                .await
                .map_err(|e| catalog_error(config, e))?;
            Ok(Arc::new(catalog))
        }
    }
}

/// The catalog as one commit sees it: `load_table` of the committed table answers the table
/// the commit was computed from, and a conflict is returned rather than retried.
///
/// Why: iceberg-rust's `Transaction::commit` reloads the table before it commits and, when
/// another writer committed in between, re-applies the actions on the newer table; it does
/// the same on its own retries after a conflict. A fast append's snapshot summary is fixed
/// when the action is made, so that rebase would commit `ferry.offsets` merged from the older
/// table, dropping the offsets the other writer (another task of a worker group) had just
/// committed. Pinned, the commit carries the requirement that the table is still at the
/// snapshot the offsets were merged from; when it is not the catalog refuses it, and the
/// sink reloads, merges again and retries.
#[derive(Debug)]
pub(crate) struct PinnedCatalog {
    inner: Arc<dyn Catalog>,
    table: Table,
}

impl PinnedCatalog {
    /// `inner`, with `table` (freshly loaded) as the state commits to it start from.
    pub(crate) fn new(inner: Arc<dyn Catalog>, table: Table) -> Self {
        PinnedCatalog { inner, table }
    }
}

#[async_trait]
impl Catalog for PinnedCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        if table == self.table.identifier() {
            return Ok(self.table.clone());
        }
        self.inner.load_table(table).await
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        self.inner.update_table(commit).await.map_err(|e| {
            if e.kind() == ErrorKind::CatalogCommitConflicts {
                // Not retryable here: a retry would commit from the same stale table. The
                // sink's own loop reloads and merges again.
                iceberg::Error::new(ErrorKind::CatalogCommitConflicts, e.message().to_string())
                    .with_source(e)
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_url;

    #[test]
    fn sqlite_uris_in_every_spelling_name_one_file() {
        assert_eq!(
            sqlite_url("sqlite:///var/ferry/c.db").expect("url"),
            "sqlite:///var/ferry/c.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:////var/ferry/c.db").expect("url"),
            "sqlite:///var/ferry/c.db?mode=rwc"
        );
        assert!(sqlite_url("sqlite:c.db")
            .expect("url")
            .ends_with("/c.db?mode=rwc"));
        assert!(sqlite_url("postgres://x").is_err());
        assert!(sqlite_url("sqlite:///").is_err());
    }
}
