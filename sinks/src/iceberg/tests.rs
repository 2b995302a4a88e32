//! Unit tests of the `iceberg` sink on a SQLite catalog and a local-folder warehouse (the
//! tables are read back by pyiceberg in `cli/tests/iceberg.rs`).

use super::*;
use bytes::Bytes;
use ferry_core::{AckTracker, Record};
use iceberg::spec::Type;

fn config(dir: &std::path::Path, extra: serde_json::Value) -> IcebergSinkConfig {
    let mut v = serde_json::json!({
        "catalog": {
            "type": "sql",
            "uri": format!("sqlite://{}/catalog.db", dir.display()),
            "warehouse": format!("file://{}/warehouse", dir.display()),
        },
        "namespace": "kafka",
        "table": "events",
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        m.extend(extra);
    }
    serde_json::from_value(v).expect("config parses")
}

fn batch(tracker: &AckTracker, partition: i32, first: i64, values: &[&str]) -> Batch {
    let topic: Arc<str> = Arc::from("orders");
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = Record::new(
                topic.clone(),
                partition,
                first + i as i64,
                Some(Bytes::copy_from_slice(v.as_bytes())),
            );
            r.timestamp = 1_764_547_200_000 + i as i64;
            r
        })
        .collect();
    let next = first + values.len() as i64;
    let ack = tracker.issue(&topic, partition, first, next);
    Batch::from_records(topic, partition, first, next, records, ack)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn load(config: &IcebergSinkConfig) -> Table {
    let catalog = catalog::connect(&config.catalog).await.expect("catalog");
    let ns = NamespaceIdent::from_strs(["kafka"]).expect("ns");
    catalog
        .load_table(&TableIdent::new(ns, "events".into()))
        .await
        .expect("table")
}

#[test]
fn commits_carry_offsets_and_a_reopened_sink_resumes_after_them() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(
        dir.path(),
        serde_json::json!({"partition_by": ["topic", "day(timestamp)"]}),
    );
    rt().block_on(async {
        let tracker = AckTracker::new();
        let mut sink = IcebergSink::new(cfg.clone()).expect("sink");
        assert_eq!(sink.open().await.expect("open"), Some(Offsets::new()));
        sink.write(batch(&tracker, 0, 0, &["a", "b"]))
            .await
            .expect("write");
        sink.write(batch(&tracker, 1, 10, &["c"]))
            .await
            .expect("write");
        assert!(
            tracker.watermarks().values().all(|p| p.is_empty())
                || tracker.watermarks().is_empty()
                || tracker.watermarks()["orders"]
                    .values()
                    .all(|w| *w == 0 || *w == 10),
            "nothing is acknowledged before the commit"
        );
        sink.close().await.expect("close");
        assert_eq!(tracker.watermarks()["orders"][&0], 2);
        assert_eq!(tracker.watermarks()["orders"][&1], 11);

        let table = load(&cfg).await;
        let offsets = table_offsets(&table).expect("offsets");
        assert_eq!(offsets["orders"][&0], 2);
        assert_eq!(offsets["orders"][&1], 11);
        let summary = &table
            .metadata()
            .current_snapshot()
            .expect("snapshot")
            .summary()
            .additional_properties;
        assert_eq!(
            summary["ferry.ranges"],
            r#"{"orders":{"0":[0,2],"1":[10,11]}}"#
        );
        assert_eq!(summary["added-records"], "3");
        assert_eq!(table.metadata().default_partition_spec().fields().len(), 2);

        // A second run resumes after the committed offsets and skips re-deliveries.
        let mut again = IcebergSink::new(cfg.clone()).expect("sink");
        let resumed = again.open().await.expect("open").expect("offsets");
        assert_eq!(resumed["orders"][&0], 2);
        again
            .write(batch(&tracker, 0, 0, &["a", "b"]))
            .await
            .expect("write");
        again
            .write(batch(&tracker, 0, 1, &["b", "c"]))
            .await
            .expect("write");
        again.close().await.expect("close");
        let table = load(&cfg).await;
        let summary = &table
            .metadata()
            .current_snapshot()
            .expect("snapshot")
            .summary()
            .additional_properties;
        assert_eq!(summary["added-records"], "1", "only offset 2 was new");
        assert_eq!(table_offsets(&table).expect("offsets")["orders"][&0], 3);
    });
}

#[test]
fn files_written_but_not_committed_are_not_in_the_table() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), serde_json::json!({}));
    rt().block_on(async {
        let tracker = AckTracker::new();
        let mut sink = IcebergSink::new(cfg.clone()).expect("sink");
        sink.open().await.expect("open");
        sink.write(batch(&tracker, 0, 0, &["a"]))
            .await
            .expect("write");
        sink.close().await.expect("close");
        // A crash: written, never committed.
        let mut crashed = IcebergSink::new(cfg.clone()).expect("sink");
        crashed.open().await.expect("open");
        crashed
            .write(batch(&tracker, 0, 1, &["b", "c"]))
            .await
            .expect("write");
        drop(crashed);
        let mut resumed = IcebergSink::new(cfg.clone()).expect("sink");
        let offsets = resumed.open().await.expect("open").expect("offsets");
        assert_eq!(offsets["orders"][&0], 1, "resume after the last commit");
        let table = load(&cfg).await;
        assert_eq!(
            table.metadata().snapshots().count(),
            1,
            "the crashed writer committed nothing"
        );
    });
}

#[test]
fn new_json_fields_add_columns_and_changed_types_go_to_the_dead_letter_location() {
    let dir = tempfile::tempdir().expect("dir");
    let dead = dir.path().join("dead");
    let cfg = config(
        dir.path(),
        serde_json::json!({
            "value": {"as": "json"},
            "dead_letter": format!("file://{}", dead.display()),
        }),
    );
    rt().block_on(async {
        let tracker = AckTracker::new();
        let mut sink = IcebergSink::new(cfg.clone()).expect("sink");
        sink.open().await.expect("open");
        sink.write(batch(
            &tracker,
            0,
            0,
            &[r#"{"id": 1, "name": "a"}"#, "not json"],
        ))
        .await
        .expect("write");
        sink.write(batch(
            &tracker,
            0,
            2,
            &[r#"{"id": 2, "price": 9.5}"#, r#"{"id": "three"}"#],
        ))
        .await
        .expect("write");
        sink.close().await.expect("close");
        let table = load(&cfg).await;
        let schema = table.metadata().current_schema();
        let Some(Type::Struct(s)) = schema
            .field_by_name("value_json")
            .map(|f| f.field_type.as_ref())
        else {
            panic!("no value_json struct in {schema:?}");
        };
        let names: Vec<_> = s.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "name", "price"]);
        assert_eq!(table_offsets(&table).expect("offsets")["orders"][&0], 4);
        let file = dead.join("orders/0/00000000000000000003.jsonl");
        let text = std::fs::read_to_string(&file).expect("dead-letter file");
        assert!(
            text.contains("`id` is string here, but its column in value_json is long"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    });
}

#[test]
fn mistakes_in_the_options_name_the_field() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = |extra: serde_json::Value| {
        IcebergSink::new(config(dir.path(), extra))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(bad(serde_json::json!({"table": "a.b"})).contains("table: a.b"));
    assert!(
        bad(serde_json::json!({"partition_by": ["week(timestamp)"]})).contains("week(timestamp)")
    );
    assert!(
        bad(serde_json::json!({"value": {"as": "json", "column": "offset"}}))
            .contains("column: offset")
    );
    assert!(bad(serde_json::json!({"compression_level": 0})).contains("compression_level"));
    let e = serde_json::from_value::<IcebergSinkConfig>(serde_json::json!({
        "catalog": {"type": "hive", "uri": "x", "warehouse": "y"}, "namespace": "n", "table": "t"
    }))
    .expect_err("unknown catalog");
    assert!(e.to_string().contains("hive"), "{e}");
}

#[test]
fn a_rest_catalog_table_is_placed_under_the_warehouse() {
    let rest: CatalogConfig = serde_json::from_value(serde_json::json!({
        "type": "rest",
        "uri": "http://127.0.0.1:1",
        "warehouse": "s3://lake/wh/?endpoint=http://127.0.0.1:2&region=x",
    }))
    .expect("config");
    assert_eq!(
        rest.table_location(&["kafka".into(), "raw".into()], "orders")
            .expect("location")
            .as_deref(),
        Some("s3://lake/wh/kafka/raw/orders")
    );
    let dir = tempfile::tempdir().expect("dir");
    let sql = config(dir.path(), serde_json::json!({})).catalog;
    assert_eq!(
        sql.table_location(&["kafka".into()], "events")
            .expect("location"),
        None,
        "the SQL catalog derives it from the warehouse itself"
    );
}

#[test]
fn error_texts_are_one_line_and_cut() {
    let page = format!(
        "<html>\n<title>Error 500 Cannot parse missing int: spec-id</title>\n{}</html>",
        "\tat org.example.Class.method(Class.java:1)\n".repeat(500)
    );
    let text = error_text(&iceberg::Error::new(ErrorKind::Unexpected, page));
    assert!(
        text.contains("<title>Error 500 Cannot parse missing int: spec-id</title>"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    assert!(text.ends_with("more bytes)"), "{text}");
    assert!(text.chars().count() < 1600, "{}", text.len());
}

/// A fence that refuses: the task lost its partitions.
struct Lost;

#[async_trait]
impl ferry_core::Fence for Lost {
    async fn check(&self) -> Result<()> {
        Err(Error::refused("lost its partitions"))
    }
}

fn scope(partitions: &[i32], fence: Option<Arc<dyn ferry_core::Fence>>) -> ferry_core::TaskScope {
    ferry_core::TaskScope {
        partitions: Some(
            partitions
                .iter()
                .map(|p| ("orders".to_string(), *p))
                .collect(),
        ),
        fence,
        ..ferry_core::TaskScope::default()
    }
}

#[test]
fn tasks_of_a_worker_group_share_a_table_and_a_fenced_task_commits_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), serde_json::json!({}));
    rt().block_on(async {
        let tracker = AckTracker::new();
        // Both tasks open before the table exists; the second creates it too late and loads
        // the first's.
        let mut t0 = IcebergSink::new(cfg.clone())
            .expect("sink")
            .with_scope(Some(scope(&[0], None)));
        let mut t1 = IcebergSink::new(cfg.clone())
            .expect("sink")
            .with_scope(Some(scope(&[1], None)));
        t0.open().await.expect("open");
        t1.open().await.expect("open");
        t0.write(batch(&tracker, 0, 0, &["a", "b"]))
            .await
            .expect("write");
        t1.write(batch(&tracker, 1, 10, &["c"]))
            .await
            .expect("write");
        t0.close().await.expect("close");
        t1.close().await.expect("close");
        let table = load(&cfg).await;
        let offsets = table_offsets(&table).expect("offsets");
        assert_eq!(
            (offsets["orders"][&0], offsets["orders"][&1]),
            (2, 11),
            "the second commit kept the first task's offsets"
        );

        // A task resumes its own partitions only.
        let mut again = IcebergSink::new(cfg.clone())
            .expect("sink")
            .with_scope(Some(scope(&[1], None)));
        let resumed = again.open().await.expect("open").expect("offsets");
        assert_eq!(
            resumed,
            Offsets::from([("orders".to_string(), BTreeMap::from([(1, 11)]))])
        );

        // A task whose fence refuses writes files but commits none.
        let snapshots = table.metadata().snapshots().count();
        let mut fenced = IcebergSink::new(cfg.clone())
            .expect("sink")
            .with_scope(Some(scope(&[0], Some(Arc::new(Lost)))));
        fenced.open().await.expect("open");
        fenced
            .write(batch(&tracker, 0, 2, &["d"]))
            .await
            .expect("write");
        let err = fenced.close().await.expect_err("a fenced task's commit");
        assert!(err.to_string().contains("lost its partitions"), "{err}");
        let table = load(&cfg).await;
        assert_eq!(table.metadata().snapshots().count(), snapshots);
        assert_eq!(table_offsets(&table).expect("offsets")["orders"][&0], 2);
    });
}

#[test]
fn a_commit_made_from_a_table_another_writer_moved_conflicts() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), serde_json::json!({}));
    rt().block_on(async {
        let tracker = AckTracker::new();
        let mut first = IcebergSink::new(cfg.clone()).expect("sink");
        first.open().await.expect("open");
        first
            .write(batch(&tracker, 0, 0, &["a"]))
            .await
            .expect("write");
        first.close().await.expect("close");
        let stale = load(&cfg).await;

        // Data files for a commit from the stale table.
        let mut late = IcebergSink::new(cfg.clone()).expect("sink");
        late.open().await.expect("open");
        let mut b = batch(&tracker, 2, 0, &["x"]);
        let records = std::mem::take(b.records_mut().expect("records"));
        late.write_records(&records).await.expect("write");
        let files = match late.files.take() {
            Some(Files::Unpartitioned(mut w)) => w.close().await.expect("close files"),
            _ => panic!("an unpartitioned table's files"),
        };

        // Another writer commits in between.
        let mut other = IcebergSink::new(cfg.clone()).expect("sink");
        other.open().await.expect("open");
        other
            .write(batch(&tracker, 1, 0, &["b"]))
            .await
            .expect("write");
        other.close().await.expect("close");

        let catalog = catalog::connect(&cfg.catalog).await.expect("catalog");
        let tx = Transaction::new(&stale);
        let tx = tx
            .fast_append()
            .add_data_files(files)
            .apply(tx)
            .expect("append");
        let pinned = catalog::PinnedCatalog::new(catalog, stale.clone());
        let err = tx
            .commit(&pinned)
            .await
            .expect_err("a commit from the stale table");
        assert_eq!(err.kind(), ErrorKind::CatalogCommitConflicts, "{err}");
        assert!(
            !err.retryable(),
            "left to the sink's own loop to merge again"
        );
        let table = load(&cfg).await;
        assert_eq!(
            table_offsets(&table).expect("offsets")["orders"].len(),
            2,
            "the other writer's offsets are still there"
        );
    });
}
