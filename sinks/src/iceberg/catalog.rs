//! Catalogs by `catalog.type`: the SQL catalog on a SQLite file and the REST catalog, both
//! with their tables' files read and written through Ferry's storage
//! ([`super::storage::FerryStorageFactory`]).

use super::config::CatalogConfig;
use super::storage::{warehouse_location, FerryStorageFactory};
use ferry_core::{Error, Result};
use iceberg::{Catalog, CatalogBuilder};
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
