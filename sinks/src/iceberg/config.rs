//! The `iceberg` sink's options, their checks, the catalogs by type, and the factory.

use super::table::PartitionField;
use super::IcebergSink;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{ByteSize, Error, HumanDuration, Result, Sink};
use serde::Deserialize;
use std::time::Duration;

/// The catalog that holds the table.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CatalogConfig {
    /// Apache Iceberg's SQL catalog (the `iceberg_tables` table of pyiceberg's `SqlCatalog`
    /// and the Java `JdbcCatalog`), on a SQLite file: `uri: sqlite:///PATH` (created when
    /// missing).
    Sql {
        /// Catalog name (the `catalog_name` column); default `ferry`.
        #[serde(default = "default_catalog_name")]
        name: String,
        /// `sqlite:///absolute/path.db` (or `sqlite:relative.db`).
        uri: String,
        /// Where tables are created: any Ferry storage URI (a folder, `file://`,
        /// `s3://bucket/prefix?endpoint=…&region=…`, `gs://`, `azblob://`).
        warehouse: String,
    },
    /// An Iceberg REST catalog (`uri: http://host:port`).
    Rest {
        /// Catalog name (for logs); default `ferry`.
        #[serde(default = "default_catalog_name")]
        name: String,
        /// The catalog's base URL.
        uri: String,
        /// The warehouse: a Ferry storage URI (a folder, `file://`, `s3://…`, …) that the
        /// readers can reach at its location (the URI without the query string). Ferry
        /// creates its table at `WAREHOUSE/namespace/table` (the server writes the table's
        /// metadata files, Ferry its data files, manifests and manifest lists there) and
        /// writes only to tables under it. Also sent to the server as its `warehouse`
        /// parameter.
        warehouse: String,
    },
}

impl CatalogConfig {
    /// The warehouse URI.
    pub fn warehouse(&self) -> &str {
        match self {
            CatalogConfig::Sql { warehouse, .. } | CatalogConfig::Rest { warehouse, .. } => {
                warehouse
            }
        }
    }

    /// The catalog's URI.
    pub fn uri(&self) -> &str {
        match self {
            CatalogConfig::Sql { uri, .. } | CatalogConfig::Rest { uri, .. } => uri,
        }
    }

    /// The location Ferry asks for when it creates a table: `WAREHOUSE/ns/levels/table` for
    /// a REST catalog, whose server would otherwise put the table under its own warehouse,
    /// where Ferry's storage cannot write; none for the SQL catalog, which derives the same
    /// location from the warehouse Ferry gives it (or from the namespace's `location`).
    pub fn table_location(&self, namespace: &[String], table: &str) -> Result<Option<String>> {
        match self {
            CatalogConfig::Sql { .. } => Ok(None),
            CatalogConfig::Rest { warehouse, .. } => {
                let root = super::storage::warehouse_location(warehouse)?;
                Ok(Some(format!("{root}/{}/{table}", namespace.join("/"))))
            }
        }
    }
}

fn default_catalog_name() -> String {
    "ferry".to_string()
}

/// When written data files are committed to the table as a snapshot.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// Commit once this many record bytes are written since the last commit (default
    /// 128MiB).
    #[serde(default = "default_commit_bytes")]
    pub max_bytes: ByteSize,
    /// Commit this long after the first write since the last commit (default 5m): at each
    /// checkpoint, files older than this are committed even when small.
    #[serde(default = "default_commit_age")]
    pub max_age: HumanDuration,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            max_bytes: default_commit_bytes(),
            max_age: default_commit_age(),
        }
    }
}

fn default_commit_bytes() -> ByteSize {
    ByteSize(128 * 1024 * 1024)
}

fn default_commit_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// Typed columns decoded from the values.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueConfig {
    /// How values are decoded: `json` (top-level fields of JSON objects).
    #[serde(rename = "as")]
    pub kind: ValueKind,
    /// Name of the struct column holding the fields (default `value_json`).
    #[serde(default = "default_value_column")]
    pub column: String,
}

/// Value decodings the `iceberg` sink knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// JSON objects: each top-level field a column (boolean, long, double, string; nested
    /// objects and arrays as JSON text).
    Json,
}

fn default_value_column() -> String {
    "value_json".to_string()
}

fn default_compression_level() -> i32 {
    1
}

/// Options of the `iceberg` sink.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IcebergSinkConfig {
    /// The catalog: `{type: sql, name, uri: sqlite:///PATH, warehouse: URI}` or
    /// `{type: rest, uri: http://…, warehouse: URI}`.
    pub catalog: CatalogConfig,
    /// The table's namespace (created when missing); dots separate levels.
    pub namespace: String,
    /// The table (created on first write).
    pub table: String,
    /// Partition spec of a table Ferry creates: `topic`, `identity(partition)`,
    /// `day(timestamp)`, `hour(timestamp)`, `month(…)`, `year(…)`, `bucket(N, key)`,
    /// `truncate(W, topic)`. Ignored for a table that exists.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Typed columns from the values: `{as: json, column: value_json}`. A field seen for the
    /// first time adds a column; a field whose type changes is left null in that row and the
    /// record written to the dead-letter location with the reason.
    #[serde(default)]
    pub value: Option<ValueConfig>,
    /// When data files are committed.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Where records whose typed fields do not fit go, as JSON lines
    /// (`<topic>/<partition>/<first_offset:020>.jsonl`): a Ferry storage URI. Without it
    /// they are counted and logged only (their raw `value` is in the table either way).
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// zstd level of the data files (1 to 22, default 1).
    #[serde(default = "default_compression_level")]
    pub compression_level: i32,
}

impl IcebergSinkConfig {
    /// Checks the options without the network.
    pub fn validate(&self) -> Result<()> {
        if self.namespace.trim().is_empty() {
            return Err(Error::config("iceberg sink: `namespace` must not be empty"));
        }
        if self.table.trim().is_empty() || self.table.contains('.') {
            return Err(Error::config(format!(
                "iceberg sink: `table: {}` must be one name without dots (put the levels in `namespace`)",
                self.table
            )));
        }
        for p in &self.partition_by {
            PartitionField::parse(p)?;
        }
        if let CatalogConfig::Sql { uri, .. } = &self.catalog {
            super::catalog::sqlite_url(uri)?;
        }
        if let CatalogConfig::Rest { uri, .. } = &self.catalog {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(Error::config(format!(
                    "iceberg sink: catalog `uri: {uri}` of a rest catalog must start with http:// or https://"
                )));
            }
        }
        super::storage::warehouse_location(self.catalog.warehouse())?;
        if let Some(v) = &self.value {
            if v.column.is_empty() || super::table::ENVELOPE.contains(&v.column.as_str()) {
                return Err(Error::config(format!(
                    "iceberg sink: value `column: {}` must be a new name, not empty or an envelope column",
                    v.column
                )));
            }
        }
        if !(1..=22).contains(&self.compression_level) {
            return Err(Error::config(format!(
                "iceberg sink: compression_level {} must be 1 to 22",
                self.compression_level
            )));
        }
        if self.commit.max_bytes.0 == 0 {
            return Err(Error::config("iceberg sink: commit.max_bytes must be > 0"));
        }
        Ok(())
    }
}

/// Builds [`IcebergSink`]s.
pub struct IcebergSinkFactory;

impl SinkFactory for IcebergSinkFactory {
    type Config = IcebergSinkConfig;

    fn name(&self) -> &'static str {
        "iceberg"
    }

    fn description(&self) -> &'static str {
        "Apache Iceberg v2 tables (SQL or REST catalog): envelope and typed JSON columns, exactly once"
    }

    fn validate(&self, config: &IcebergSinkConfig) -> Result<()> {
        config.validate()
    }

    fn build(&self, config: IcebergSinkConfig, ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        let shared = ctx.scope.as_ref().is_some_and(|s| s.partitions.is_some());
        if shared {
            if let CatalogConfig::Sql { uri, .. } = &config.catalog {
                // Several processes commit through one SQLite file: safe only while they
                // share its host's file locks (not over NFS or other network file systems),
                // and not tested.
                tracing::warn!(
                    pipeline = %ctx.pipeline,
                    catalog = %uri,
                    "iceberg sink: tasks of a worker group share a SQL catalog on a SQLite file; this works only when every worker runs on the host that has the file (not over a network file system) and is not tested; use a REST catalog (catalog: {{type: rest, …}}) for workers"
                );
            }
        }
        Ok(Box::new(
            IcebergSink::new(config)?.with_scope(ctx.scope.clone()),
        ))
    }
}
