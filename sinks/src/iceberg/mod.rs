//! The `iceberg` sink: records into an Apache Iceberg v2 table, the envelope and typed
//! JSON columns of the `parquet` export, committed exactly once.
//!
//! ```yaml
//! sink:
//!   type: iceberg
//!   catalog:
//!     type: sql                                   # or: rest (uri: http://…)
//!     name: ferry
//!     uri: sqlite:///var/lib/ferry/catalog.db     # pyiceberg's SqlCatalog reads the same file
//!     warehouse: file:///var/lib/ferry/warehouse  # any Ferry storage URI (s3://…?endpoint=…)
//!   namespace: kafka
//!   table: orders
//!   partition_by: [day(timestamp), topic]         # for a table Ferry creates
//!   value: {as: json}                             # typed columns in struct `value_json`
//!   commit: {max_bytes: 128MiB, max_age: 5m}
//!   dead_letter: file:///var/lib/ferry/dead-letter
//! ```
//!
//! **Exactly once.** Data files are written as records arrive; they become part of the
//! table only in a commit (an Iceberg snapshot), whose summary carries `ferry.offsets` (the
//! next offset of every topic partition the table holds, JSON) and `ferry.ranges` (the
//! offsets this commit added). Batches are acknowledged after their commit, so the
//! checkpoint never runs ahead of the table; on open the sink reads `ferry.offsets` back
//! from the newest snapshot that has it and the source resumes after them. A kill at any
//! moment leaves either a commit (with its offsets) or files no snapshot names (invisible to
//! readers; Iceberg's `remove_orphan_files` deletes them). Concurrent writers (tasks of a
//! worker group) merge their offsets into the latest ones and retry on a commit conflict.
//!
//! **Small files.** Commits happen when `commit.max_bytes` are written or, at a checkpoint,
//! when the oldest uncommitted write is `commit.max_age` old, not per batch. Compaction
//! (`rewrite_data_files` in Spark, `optimize` in Trino) and snapshot expiry run elsewhere:
//! Ferry finds its offsets in the newest snapshot that has them, so rewrites do not disturb
//! it.
//!
//! **Where things are.** `config.rs`: options and factory; `catalog.rs`: catalogs;
//! `storage.rs`: file IO through Ferry's storage; `table.rs`: schema, partition spec,
//! batches fitted to the table; `values.rs`: typed JSON columns and their evolution.

mod catalog;
mod config;
pub mod storage;
mod table;
mod values;

pub use config::{
    CatalogConfig, CommitConfig, IcebergSinkConfig, IcebergSinkFactory, ValueConfig, ValueKind,
};
pub use table::PartitionField;

use async_trait::async_trait;
use ferry_core::{Ack, Batch, Error, Offsets, Result, Sink, Storage};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use values::JsonColumns;

/// Snapshot summary key of the next offsets the table holds (cumulative).
pub const SUMMARY_OFFSETS: &str = "ferry.offsets";
/// Snapshot summary key of the offset ranges one commit added.
pub const SUMMARY_RANGES: &str = "ferry.ranges";

/// Largest row group a data file's writer buffers.
const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// Commit attempts when other writers commit at the same time (each conflict means another
/// writer's commit went through, so the writers as a whole progress).
const COMMIT_ATTEMPTS: usize = 16;

/// Longest wait between two commit attempts.
const COMMIT_BACKOFF_MAX_MS: u64 = 2_000;

type Builder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type DataWriter =
    DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Data files being written for the next commit, with the schema they were opened with.
enum Files {
    Unpartitioned(Box<DataWriter>),
    Partitioned {
        splitter: Box<RecordBatchPartitionSplitter>,
        writer: Box<FanoutWriter<Builder>>,
    },
}

/// What the next commit will hold.
#[derive(Default)]
struct Pending {
    acks: Vec<Ack>,
    /// First and next offset written per topic partition.
    ranges: BTreeMap<String, BTreeMap<i32, (i64, i64)>>,
    bytes: usize,
    records: u64,
    since: Option<Instant>,
    /// Records whose typed fields did not fit, with the reasons.
    rejected: Vec<(ferry_core::Record, String)>,
}

/// The `iceberg` sink.
pub struct IcebergSink {
    config: IcebergSinkConfig,
    ident: TableIdent,
    catalog: Option<Arc<dyn Catalog>>,
    table: Option<Table>,
    files: Option<Files>,
    /// The Arrow schema `files` write (the table's at the time they were opened).
    file_schema: Option<Arc<arrow::datatypes::Schema>>,
    values: Option<JsonColumns>,
    /// Next offsets the table holds.
    committed: Offsets,
    pending: Pending,
    dead_letter: Option<Storage>,
    /// Set when this sink is one task of a pipeline a worker group shares (see
    /// [`IcebergSink::with_scope`]).
    scope: Option<ferry_core::TaskScope>,
}

/// Longest error text kept: a REST catalog's error may carry a whole HTML page (a Java
/// server's stack trace); its start names the cause.
const ERROR_TEXT_CHARS: usize = 1500;

/// An Iceberg error with its causes, on one line (white space collapsed), at most
/// [`ERROR_TEXT_CHARS`] characters.
pub(crate) fn error_text(e: &iceberg::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(ERROR_TEXT_CHARS) {
        Some((cut, _)) => format!("{}… ({} more bytes)", &text[..cut], text.len() - cut),
        None => text,
    }
}

fn iceberg_error(context: &str, e: iceberg::Error) -> Error {
    Error::component(
        format!("iceberg: {context}"),
        std::io::Error::other(error_text(&e)),
    )
}

impl IcebergSink {
    /// A sink for these options (nothing is contacted until `open`).
    pub fn new(config: IcebergSinkConfig) -> Result<Self> {
        config.validate()?;
        let namespace = NamespaceIdent::from_strs(config.namespace.split('.'))
            .map_err(|e| Error::config(format!("iceberg sink: namespace: {e}")))?;
        let ident = TableIdent::new(namespace, config.table.clone());
        let dead_letter = config
            .dead_letter
            .as_deref()
            .map(Storage::from_uri)
            .transpose()?;
        Ok(IcebergSink {
            values: config.value.as_ref().map(|v| JsonColumns::empty(&v.column)),
            config,
            ident,
            catalog: None,
            table: None,
            files: None,
            file_schema: None,
            committed: Offsets::new(),
            pending: Pending::default(),
            dead_letter,
            scope: None,
        })
    }

    /// Makes this sink one task of a pipeline that workers of a group share: the tasks write
    /// the same table, each its own partitions. On open the task resumes only its own
    /// partitions from `ferry.offsets`; before each commit the scope's fence must confirm the
    /// task still owns its partitions (a task that lost them commits nothing: their new
    /// owner may already be writing them). Commits merge into the other tasks' offsets.
    pub fn with_scope(mut self, scope: Option<ferry_core::TaskScope>) -> Self {
        self.scope = scope;
        self
    }

    /// Whether this sink's task writes `topic`/`partition` (every partition without a scope).
    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.scope.as_ref().is_none_or(|s| s.owns(topic, partition))
    }

    /// An error when this task of a worker group lost its partitions: nothing more may be
    /// committed.
    fn check_writer(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        // A future that holds no `&self` (the sink is not `Sync`: its Parquet writers).
        let scope = self.scope.clone();
        async move {
            match scope {
                Some(scope) => scope.check_fence().await,
                None => Ok(()),
            }
        }
    }

    fn catalog(&self) -> Result<&Arc<dyn Catalog>> {
        self.catalog
            .as_ref()
            .ok_or_else(|| Error::internal("iceberg sink used before open"))
    }

    /// The table, created with the envelope schema and `partition_by` if it does not exist.
    async fn ensure_table(&mut self) -> Result<Table> {
        if let Some(t) = &self.table {
            return Ok(t.clone());
        }
        let catalog = self.catalog()?.clone();
        let schema = table::envelope_schema()?;
        let spec = table::partition_spec(&schema, &self.config.partition_by)?;
        let location = self
            .config
            .catalog
            .table_location(self.ident.namespace().as_ref(), &self.config.table)?;
        let creation = TableCreation::builder()
            .name(self.config.table.clone())
            .location_opt(location)
            .schema(schema)
            .partition_spec(spec)
            .properties(HashMap::from([(
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            )]))
            .build();
        let table = match catalog.create_table(self.ident.namespace(), creation).await {
            Ok(t) => {
                tracing::info!(table = %self.ident, "iceberg table created");
                t
            }
            // Another writer created it first.
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => catalog
                .load_table(&self.ident)
                .await
                .map_err(|e| iceberg_error(&format!("loading table {}", self.ident), e))?,
            Err(e) => return Err(iceberg_error(&format!("creating table {}", self.ident), e)),
        };
        self.check_location(&table)?;
        self.set_table(table.clone());
        Ok(table)
    }

    /// Refuses a table that lies outside the warehouse (one a REST catalog placed under its
    /// own warehouse, or another tool created elsewhere): Ferry could not write its files.
    fn check_location(&self, table: &Table) -> Result<()> {
        let warehouse = self.config.catalog.warehouse();
        let location = table.metadata().location();
        if storage::is_under_warehouse(warehouse, location)? {
            return Ok(());
        }
        Err(Error::config(format!(
            "iceberg table {} is at {location}, outside the warehouse {}: Ferry writes only under the warehouse it is given (give the catalog's warehouse location as `warehouse`/--to, or write to another table)",
            self.ident,
            storage::warehouse_location(warehouse)?
        )))
    }

    fn set_table(&mut self, table: Table) {
        if let Some(v) = &self.config.value {
            self.values = Some(JsonColumns::from_schema(
                &v.column,
                table.metadata().current_schema(),
            ));
        }
        self.table = Some(table);
    }

    /// Opens data files for the table's current schema.
    async fn open_files(&mut self, table: &Table) -> Result<()> {
        let schema = table.metadata().current_schema().clone();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(self.config.compression_level).unwrap_or_default(),
            ))
            // Values and keys are rarely repeated: skip the dictionary attempt.
            .set_column_dictionary_enabled(ColumnPath::from("value"), false)
            .set_column_dictionary_enabled(ColumnPath::from("key"), false)
            // The writer holds a row group in memory until it is complete: bounded by bytes
            // (rows of 10 MiB values would otherwise make gigabyte row groups).
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .build();
        let location = DefaultLocationGenerator::new(table.metadata())
            .map_err(|e| iceberg_error("iceberg data location", e))?;
        // Unique per writer: a retry after a crash never overwrites a file a commit names.
        let prefix = format!("ferry-{}", uuid_like());
        let names = DefaultFileNameGenerator::new(prefix, None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            ParquetWriterBuilder::new(props, schema.clone()),
            512 * 1024 * 1024,
            table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = table.metadata().default_partition_spec().clone();
        let files = if spec.is_unpartitioned() {
            let writer = builder
                .build(None)
                .await
                .map_err(|e| iceberg_error("opening iceberg data file", e))?;
            Files::Unpartitioned(Box::new(writer))
        } else {
            let splitter =
                RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec)
                    .map_err(|e| iceberg_error("iceberg partition spec", e))?;
            Files::Partitioned {
                splitter: Box::new(splitter),
                writer: Box::new(FanoutWriter::new(builder)),
            }
        };
        self.file_schema = Some(table::arrow_schema(&schema)?);
        self.files = Some(files);
        Ok(())
    }

    /// Adds the columns of fields seen for the first time (committing the files written
    /// with the old schema first).
    async fn evolve(&mut self, fields: Vec<(String, values::FieldType)>) -> Result<()> {
        self.commit().await?;
        let Some(values) = self.values.clone() else {
            return Ok(());
        };
        let catalog = self.catalog()?.clone();
        for attempt in 1..=COMMIT_ATTEMPTS {
            let table = catalog
                .load_table(&self.ident)
                .await
                .map_err(|e| iceberg_error(&format!("loading table {}", self.ident), e))?;
            let current =
                JsonColumns::from_schema(values.column(), table.metadata().current_schema());
            let missing: Vec<_> = fields
                .iter()
                .filter(|(n, _)| !current.has_field(n))
                .cloned()
                .collect();
            if missing.is_empty() {
                self.set_table(table);
                return Ok(());
            }
            let tx = Transaction::new(&table);
            let mut action = tx.update_schema();
            if current.has_column() {
                for (name, t) in &missing {
                    action = action.add_column(
                        AddColumn::builder()
                            .parent(values.column().to_string())
                            .name(name.clone())
                            .field_type(t.iceberg())
                            .build(),
                    );
                }
            } else {
                action = action.add_column(AddColumn::optional(
                    values.column(),
                    JsonColumns::struct_type(&missing),
                ));
            }
            let tx = action
                .apply(tx)
                .map_err(|e| iceberg_error("iceberg schema update", e))?;
            let pinned = catalog::PinnedCatalog::new(catalog.clone(), table.clone());
            match tx.commit(&pinned).await {
                Ok(t) => {
                    tracing::info!(table = %self.ident, columns = ?missing.iter().map(|(n, t)| format!("{}.{n}: {t:?}", values.column())).collect::<Vec<_>>(), "iceberg columns added for new JSON fields");
                    self.set_table(t);
                    return Ok(());
                }
                Err(e)
                    if e.kind() == ErrorKind::CatalogCommitConflicts
                        && attempt < COMMIT_ATTEMPTS =>
                {
                    tracing::debug!(attempt, "iceberg schema update conflicted; retrying");
                    commit_backoff(attempt).await;
                }
                Err(e) => {
                    return Err(iceberg_error(
                        &format!("adding columns to {}", self.ident),
                        e,
                    ))
                }
            }
        }
        Err(Error::internal("iceberg schema update: out of attempts"))
    }

    /// Writes the records of a batch (already trimmed to new offsets) to the data files.
    async fn write_records(&mut self, records: &[ferry_core::Record]) -> Result<()> {
        let parsed = self.values.as_ref().map(|_| JsonColumns::parse(records));
        self.ensure_table().await?;
        if let (Some(values), Some(parsed)) = (&self.values, &parsed) {
            let new = values.new_fields(parsed);
            if !new.is_empty() {
                self.evolve(new).await?;
            }
        }
        let table = self.ensure_table().await?;
        if self.files.is_none() {
            self.open_files(&table).await?;
        }
        let mut batch = ferry_formats::parquet::envelope_batch(records)?;
        if let (Some(values), Some(parsed)) = (&self.values, &parsed) {
            let (column, rejected) = values.build(parsed)?;
            if let Some(column) = column {
                batch = with_column(&batch, values.column(), column)?;
            }
            for (row, reason) in rejected {
                if let Some(r) = records.get(row) {
                    self.pending.rejected.push((r.clone(), reason));
                }
            }
        }
        let target = self
            .file_schema
            .clone()
            .ok_or_else(|| Error::internal("iceberg: no open files"))?;
        let batch = table::fit(&batch, &target)?;
        match self.files.as_mut() {
            Some(Files::Unpartitioned(w)) => w
                .write(batch)
                .await
                .map_err(|e| iceberg_error("writing iceberg data file", e))?,
            Some(Files::Partitioned { splitter, writer }) => {
                let parts = splitter
                    .split(&batch)
                    .map_err(|e| iceberg_error("partitioning rows", e))?;
                for (key, part) in parts {
                    writer
                        .write(key, part)
                        .await
                        .map_err(|e| iceberg_error("writing iceberg data file", e))?;
                }
            }
            None => return Err(Error::internal("iceberg: no open files")),
        }
        Ok(())
    }

    /// Closes the data files and commits them with the offsets they hold; then resolves
    /// their batches' acks.
    async fn commit(&mut self) -> Result<()> {
        let files = match self.files.take() {
            Some(Files::Unpartitioned(mut w)) => w
                .close()
                .await
                .map_err(|e| iceberg_error("closing iceberg data file", e))?,
            Some(Files::Partitioned { writer, .. }) => writer
                .close()
                .await
                .map_err(|e| iceberg_error("closing iceberg data files", e))?,
            None => Vec::new(),
        };
        self.file_schema = None;
        let pending = std::mem::take(&mut self.pending);
        if pending.acks.is_empty() && files.is_empty() {
            return Ok(());
        }
        Self::write_dead_letters(self.dead_letter.clone(), &pending.rejected).await?;
        if !files.is_empty() {
            self.commit_files(files, &pending).await?;
        }
        // Control records only, or everything already in the table: nothing to commit, the
        // checkpoint carries the progress.
        for (topic, parts) in &pending.ranges {
            let entry = self.committed.entry(topic.clone()).or_default();
            for (p, (_, next)) in parts {
                let e = entry.entry(*p).or_insert(*next);
                *e = (*e).max(*next);
            }
        }
        for ack in pending.acks {
            ack.resolve();
        }
        Ok(())
    }

    async fn commit_files(&mut self, files: Vec<DataFile>, pending: &Pending) -> Result<()> {
        let catalog = self.catalog()?.clone();
        let ranges = serde_json::to_string(&pending.ranges)
            .map_err(|e| Error::internal(format!("encoding ranges: {e}")))?;
        let rows: u64 = files.iter().map(|f| f.record_count()).sum();
        for attempt in 1..=COMMIT_ATTEMPTS {
            // Before every attempt: a retry may come after a rebalance took the partitions.
            self.check_writer().await?;
            let table = catalog
                .load_table(&self.ident)
                .await
                .map_err(|e| iceberg_error(&format!("loading table {}", self.ident), e))?;
            // Cumulative: the other writers' partitions stay as they committed them.
            let mut offsets = table_offsets(&table)?;
            for (topic, parts) in &pending.ranges {
                let entry = offsets.entry(topic.clone()).or_default();
                for (p, (_, next)) in parts {
                    let e = entry.entry(*p).or_insert(*next);
                    *e = (*e).max(*next);
                }
            }
            let summary = HashMap::from([
                (
                    SUMMARY_OFFSETS.to_string(),
                    serde_json::to_string(&offsets)
                        .map_err(|e| Error::internal(format!("encoding offsets: {e}")))?,
                ),
                (SUMMARY_RANGES.to_string(), ranges.clone()),
            ]);
            let tx = Transaction::new(&table);
            let tx = tx
                .fast_append()
                .add_data_files(files.clone())
                .set_snapshot_properties(summary)
                .apply(tx)
                .map_err(|e| iceberg_error("iceberg append", e))?;
            // Pinned to `table`: the offsets were merged from it (see `PinnedCatalog`).
            let pinned = catalog::PinnedCatalog::new(catalog.clone(), table.clone());
            match tx.commit(&pinned).await {
                Ok(t) => {
                    tracing::info!(table = %self.ident, files = files.len(), rows, records = pending.records, "iceberg commit");
                    metrics::counter!("ferry_iceberg_commits_total").increment(1);
                    metrics::counter!("ferry_iceberg_rows_total").increment(rows);
                    self.committed = offsets;
                    self.set_table(t);
                    return Ok(());
                }
                Err(e)
                    if e.kind() == ErrorKind::CatalogCommitConflicts
                        && attempt < COMMIT_ATTEMPTS =>
                {
                    tracing::debug!(
                        attempt,
                        "iceberg commit conflicted with another writer; retrying"
                    );
                    metrics::counter!("ferry_iceberg_commit_conflicts_total").increment(1);
                    commit_backoff(attempt).await;
                }
                Err(e) => return Err(iceberg_error(&format!("committing to {}", self.ident), e)),
            }
        }
        Err(Error::component(
            format!("iceberg: committing to {}", self.ident),
            std::io::Error::other(format!(
                "{COMMIT_ATTEMPTS} attempts conflicted with other writers' commits"
            )),
        ))
    }

    /// Writes the records whose typed fields did not fit, before the commit that holds
    /// them (a retry after a crash writes the same keys again).
    async fn write_dead_letters(
        dead_letter: Option<Storage>,
        rejected: &[(ferry_core::Record, String)],
    ) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        metrics::counter!("ferry_dead_letter_records_total").increment(rejected.len() as u64);
        let Some(storage) = dead_letter else {
            tracing::warn!(records = rejected.len(), first_reason = %rejected[0].1, "JSON fields whose type changed are null in the table (their raw value is kept); set `dead_letter:` to keep them aside");
            return Ok(());
        };
        let mut by_file: BTreeMap<(String, i32), (i64, Vec<u8>)> = BTreeMap::new();
        for (record, reason) in rejected {
            let entry = by_file
                .entry((record.topic.to_string(), record.partition))
                .or_insert((record.offset, Vec::new()));
            crate::storage::dead_letter_line(record, reason, &mut entry.1)?;
        }
        for ((topic, partition), (first, lines)) in by_file {
            let key = format!("{topic}/{partition}/{first:020}.jsonl");
            storage.write(&key, lines).await?;
            tracing::warn!(file = %format!("{storage}/{key}"), "values whose fields changed type written to the dead-letter file");
        }
        Ok(())
    }

    /// Whether a commit is due: `max_bytes` written, or the oldest uncommitted write is
    /// `max_age` old.
    fn commit_due(&self, at_checkpoint: bool) -> bool {
        self.pending.bytes as u64 >= self.config.commit.max_bytes.0
            || (at_checkpoint
                && self
                    .pending
                    .since
                    .is_some_and(|s| s.elapsed() >= self.config.commit.max_age.get()))
    }
}

/// `batch` with a column appended.
fn with_column(
    batch: &arrow::array::RecordBatch,
    name: &str,
    column: arrow::array::ArrayRef,
) -> Result<arrow::array::RecordBatch> {
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        name,
        column.data_type().clone(),
        true,
    )));
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    arrow::array::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .map_err(|e| Error::internal(format!("iceberg: typed columns: {e}")))
}

/// Waits before commit attempt `attempt + 1`: growing, with jitter so that writers that
/// conflicted do not try again in the same instant.
async fn commit_backoff(attempt: usize) {
    use rand::Rng;
    let base = (25u64 << attempt.min(6)).min(COMMIT_BACKOFF_MAX_MS);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(std::time::Duration::from_millis(base / 2 + jitter / 2)).await;
}

/// A random 128-bit hex name part.
fn uuid_like() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The next offsets the table holds: `ferry.offsets` of the newest snapshot that has it
/// (walking back through parents past snapshots other tools made, e.g. compaction).
pub fn table_offsets(table: &Table) -> Result<Offsets> {
    let meta = table.metadata();
    let mut snapshot = meta.current_snapshot().cloned();
    while let Some(s) = snapshot {
        if let Some(json) = s.summary().additional_properties.get(SUMMARY_OFFSETS) {
            return serde_json::from_str(json).map_err(|e| {
                Error::Corrupt(format!(
                    "iceberg table {}: snapshot {} has an unreadable {SUMMARY_OFFSETS}: {e}",
                    meta.location(),
                    s.snapshot_id()
                ))
            });
        }
        snapshot = s
            .parent_snapshot_id()
            .and_then(|id| meta.snapshot_by_id(id).cloned());
    }
    Ok(Offsets::new())
}

#[async_trait]
impl Sink for IcebergSink {
    async fn open(&mut self) -> Result<Option<Offsets>> {
        let catalog = catalog::connect(&self.config.catalog).await?;
        let namespace = self.ident.namespace().clone();
        let exists = catalog.namespace_exists(&namespace).await.map_err(|e| {
            iceberg_error(&format!("iceberg namespace {}", self.config.namespace), e)
        })?;
        if !exists {
            match catalog.create_namespace(&namespace, HashMap::new()).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => {}
                // Another writer created it at the same moment, and the catalog answered the
                // lost race with an error of its own (Iceberg's JDBC-backed REST catalog: a
                // 500 from the duplicate row): what counts is that the namespace exists now.
                Err(e) if catalog.namespace_exists(&namespace).await.unwrap_or(false) => {
                    tracing::debug!(namespace = %self.config.namespace, error = %e, "namespace created by another writer meanwhile");
                }
                Err(e) => {
                    return Err(iceberg_error(
                        &format!("creating iceberg namespace {}", self.config.namespace),
                        e,
                    ))
                }
            }
        }
        let table_exists = catalog
            .table_exists(&self.ident)
            .await
            .map_err(|e| iceberg_error(&format!("iceberg table {}", self.ident), e))?;
        self.catalog = Some(catalog.clone());
        if table_exists {
            let table = catalog
                .load_table(&self.ident)
                .await
                .map_err(|e| iceberg_error(&format!("loading table {}", self.ident), e))?;
            self.check_location(&table)?;
            // Only this task's partitions: the other tasks of a worker group resume theirs.
            let mut committed = table_offsets(&table)?;
            for (topic, parts) in committed.iter_mut() {
                parts.retain(|p, _| self.owns(topic, *p));
            }
            committed.retain(|_, parts| !parts.is_empty());
            self.committed = committed;
            tracing::info!(table = %self.ident, offsets = ?self.committed, "iceberg table found; resuming after the offsets of its last commit");
            self.set_table(table);
        }
        Ok(Some(self.committed.clone()))
    }

    async fn write(&mut self, mut batch: Batch) -> Result<()> {
        let topic = batch.topic.to_string();
        let stored = self
            .committed
            .get(&topic)
            .and_then(|p| p.get(&batch.partition))
            .copied();
        let pending_next = self
            .pending
            .ranges
            .get(&topic)
            .and_then(|p| p.get(&batch.partition))
            .map(|(_, n)| *n);
        let floor = stored.into_iter().chain(pending_next).max();
        if floor.is_some_and(|f| batch.next_offset <= f) {
            // Already in the table (a re-delivery): nothing to write.
            batch.ack.resolve();
            return Ok(());
        }
        let size = batch.size_bytes();
        let (first, next) = (batch.first_offset, batch.next_offset);
        let records = batch.records_mut()?;
        if let Some(f) = floor {
            records.retain(|r| r.offset >= f);
        }
        let records = std::mem::take(records);
        if !records.is_empty() {
            // May commit what is pending first (a schema change): this batch is not yet in it.
            self.write_records(&records).await?;
        }
        self.pending.records += records.len() as u64;
        let range = self
            .pending
            .ranges
            .entry(topic)
            .or_default()
            .entry(batch.partition)
            .or_insert((floor.unwrap_or(first).max(first), next));
        range.1 = range.1.max(next);
        self.pending.bytes += size;
        self.pending.since.get_or_insert_with(Instant::now);
        self.pending.acks.push(batch.ack);
        if self.commit_due(false) {
            self.commit().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.commit_due(true) {
            self.commit().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        self.commit().await
    }

    /// The pipeline's checkpoint lives in the warehouse (`checkpoints/<pipeline>.json`): it
    /// moves on past batches that add no rows (transaction markers); the table's own
    /// `ferry.offsets` are what a resume trusts first.
    fn checkpoint_storage(&self) -> Option<Storage> {
        Storage::from_uri(self.config.catalog.warehouse()).ok()
    }
}

#[cfg(test)]
mod tests;
