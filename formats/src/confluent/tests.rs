use super::*;
use crate::testdata::{avro_reply, fake_registry, schema_dir, value_record, wire};
use apache_avro::types::Record as AvroRecord;
use ferry_core::Ack;

const V1: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"}
]}"#;

const V2: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "channel", "type": "string", "default": "web"}
]}"#;

/// Not resolvable from V1: `id` is a string.
const V3: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "string"}
]}"#;

fn schema(text: &str) -> Schema {
    Schema::parse_str(text).unwrap()
}

fn v1(id: i64, name: &str) -> Vec<u8> {
    let s = schema(V1);
    let mut r = AvroRecord::new(&s).unwrap();
    r.put("id", id);
    r.put("name", name);
    wire(1, &s, r.into())
}

fn v2(id: i64, name: &str, channel: &str) -> Vec<u8> {
    let s = schema(V2);
    let mut r = AvroRecord::new(&s).unwrap();
    r.put("id", id);
    r.put("name", name);
    r.put("channel", channel);
    wire(2, &s, r.into())
}

fn order(id: i64, name: &str) -> Value {
    Value::Record(vec![
        ("id".into(), Value::Long(id)),
        ("name".into(), Value::String(name.into())),
    ])
}

fn config(yaml: serde_json::Value) -> AvroValueColumns {
    serde_json::from_value(yaml).unwrap()
}

fn batch(records: Vec<Record>) -> Batch {
    let first = records.first().map_or(0, |r| r.offset);
    let next = records.last().map_or(0, |r| r.offset + 1);
    Batch::from_records(Arc::from("orders"), 3, first, next, records, Ack::none())
}

#[test]
fn wire_format_is_parsed() {
    assert_eq!(
        parse_wire(&[0, 0, 0, 1, 2, 9, 9]).unwrap(),
        (258, &[9u8, 9][..])
    );
    assert_eq!(
        parse_wire(&[0, 0xff, 0xff, 0xff, 0xff]).unwrap().0,
        u32::MAX
    );
    assert!(parse_wire(&[0, 0, 0, 0, 7]).unwrap().1.is_empty());
    let e = parse_wire(b"").unwrap_err();
    assert!(e.contains("empty"), "{e}");
    let e = parse_wire(b"{\"id\": 1}").unwrap_err();
    assert!(e.contains("0x7b") && e.contains("magic byte 0"), "{e}");
    let e = parse_wire(&[0, 0, 1]).unwrap_err();
    assert!(e.contains("3 bytes") && e.contains("5-byte header"), "{e}");
}

#[test]
fn options_are_checked() {
    let check = |v: serde_json::Value| {
        serde_json::from_value::<AvroValueColumns>(v)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                c.validate("parquet value", &["value"])
                    .map_err(|e| e.to_string())
            })
    };
    let e = check(serde_json::json!({})).unwrap_err();
    assert!(
        e.contains("registry: {url") && e.contains("schemas: <dir>"),
        "{e}"
    );
    check(serde_json::json!({"registry": {"url": "http://r:8081"}})).unwrap();
    check(serde_json::json!({"registry": {"url": "https://r/prefix/"}, "schemas": "/s"})).unwrap();
    check(serde_json::json!({"schemas": "/s", "schema_id": 7, "on_error": "dead_letter"})).unwrap();
    let e = check(serde_json::json!({"registry": {"url": "ftp://r"}})).unwrap_err();
    assert!(e.contains("http:// or https://"), "{e}");
    let e = check(serde_json::json!({"registry": {"url": "not a url"}})).unwrap_err();
    assert!(e.contains("registry url"), "{e}");
    let e =
        check(serde_json::json!({"registry": {"url": "http://r", "password": "p"}})).unwrap_err();
    assert!(e.contains("without a `username`"), "{e}");
    check(serde_json::json!({"registry": {"url": "http://r", "username": "u", "password": "p"}}))
        .unwrap();
    let e = check(serde_json::json!({"schemas": "/s", "column": "value"})).unwrap_err();
    assert!(e.contains("column: value"), "{e}");
    let e = check(serde_json::json!({"schemas": ""})).unwrap_err();
    assert!(e.contains("empty path"), "{e}");
    let e = check(serde_json::json!({"schemas": "/s", "shema_id": 1})).unwrap_err();
    assert!(e.contains("shema_id"), "{e}");
    let c = config(serde_json::json!({"schemas": "/s"}));
    assert_eq!(c.column, "value_avro");
    assert_eq!(c.on_error, OnError::Null);
}

#[tokio::test]
async fn registry_client_fetches_schemas_like_the_real_registry() {
    let reg = fake_registry(
        vec![
            (1, avro_reply(V1)),
            (2, serde_json::json!({"schema": V2, "schemaType": "AVRO"})),
            (
                3,
                serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
            ),
            (
                4,
                serde_json::json!({"schema": V1, "references": [
                    {"name": "shop.Address", "subject": "address", "version": 1}
                ]}),
            ),
            (5, avro_reply("{\"type\": \"record\"}")),
        ],
        None,
        0,
    )
    .await;
    let client = SchemaRegistry::new(&RegistryConfig {
        url: format!("{}/", reg.url),
        username: None,
        password: None,
    })
    .unwrap();
    assert_eq!(client.url(), reg.url);
    let s1 = client.fetch(1).await.unwrap().unwrap();
    assert_eq!((s1.id, schema_name(&s1.schema).as_str()), (1, "shop.Order"));
    assert!(client.fetch(2).await.unwrap().is_ok());
    let e = client.fetch(3).await.unwrap().unwrap_err();
    assert!(e.contains("PROTOBUF schema, not Avro"), "{e}");
    let e = client.fetch(4).await.unwrap().unwrap_err();
    assert!(e.contains("references (shop.Address)"), "{e}");
    let e = client.fetch(5).await.unwrap().unwrap_err();
    assert!(e.contains("not a valid Avro schema"), "{e}");
    let e = client.fetch(99).await.unwrap().unwrap_err();
    assert!(
        e.contains("schema id 99 is not in the schema registry") && e.contains("40403"),
        "{e}"
    );
    assert_eq!(
        reg.requests.lock().unwrap()[..2],
        ["GET /schemas/ids/1", "GET /schemas/ids/2"]
    );
    // A 404 that is not "schema not found" is a wrong URL, not a wrong id.
    let wrong = SchemaRegistry::new(&RegistryConfig {
        url: format!("{}/nope/", reg.url),
        username: None,
        password: None,
    })
    .unwrap();
    let e = wrong.fetch(1).await.unwrap_err().to_string();
    assert!(e.contains("is registry.url the registry's base URL"), "{e}");
}

#[tokio::test]
async fn registry_client_sends_basic_auth_and_retries_server_errors() {
    let reg = fake_registry(vec![(1, avro_reply(V1))], Some(("key", "secret")), 2).await;
    let with = |user: Option<&str>, pass: Option<&str>| {
        SchemaRegistry::new(&RegistryConfig {
            url: reg.url.clone(),
            username: user.map(str::to_string),
            password: pass.map(str::to_string),
        })
        .unwrap()
    };
    // Two 500s, then the answer.
    let good = with(Some("key"), Some("secret"));
    assert!(good.fetch(1).await.unwrap().is_ok());
    assert_eq!(reg.requests.lock().unwrap().len(), 3);
    let e = with(Some("key"), Some("wrong")).fetch(1).await.unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("401") && e.contains("refused the credentials"),
        "{e}"
    );
    let e = with(None, None).fetch(1).await.unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");
}

#[tokio::test]
async fn an_unreachable_registry_is_an_error_not_a_value_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let values = AvroValues::new(config(serde_json::json!({"registry": {"url": url}})));
    let e = values
        .prepare(&batch(vec![value_record(0, Some(v1(1, "a")))]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema registry: GET") && e.contains("/schemas/ids/1"),
        "{e}"
    );
}

#[tokio::test]
async fn prepare_fetches_each_id_once_and_fixes_the_reader_schema_of_the_topic() {
    let reg = fake_registry(vec![(1, avro_reply(V1)), (2, avro_reply(V2))], None, 0).await;
    let values = AvroValues::new(config(serde_json::json!({"registry": {"url": reg.url}})));
    let records = vec![
        value_record(0, None),
        value_record(1, Some(b"plain".to_vec())),
        value_record(2, Some(v1(7, "ann"))),
        value_record(3, Some(v2(8, "bob", "app"))),
        value_record(4, Some(v1(9, "cy"))),
        value_record(5, Some(wire(99, &schema(V1), order(1, "x")))),
    ];
    values.prepare(&batch(records.clone())).await.unwrap();
    values.prepare(&batch(records.clone())).await.unwrap();
    assert_eq!(
        *reg.requests.lock().unwrap(),
        [
            "GET /schemas/ids/1",
            "GET /schemas/ids/2",
            "GET /schemas/ids/99"
        ]
    );
    let decoded: Vec<Decoded> = records
        .iter()
        .map(|r| {
            let (reader, d) = values.decode("orders", r).unwrap();
            assert_eq!(
                reader.unwrap().id,
                1,
                "the first value's schema is the reader"
            );
            d
        })
        .collect();
    assert_eq!(decoded[0], Decoded::Null);
    assert!(matches!(&decoded[1], Decoded::Rejected(w) if w.contains("magic byte")));
    assert_eq!(decoded[2], Decoded::Value(order(7, "ann")));
    // Written with v2, read as v1: `channel` is dropped.
    assert_eq!(decoded[3], Decoded::Value(order(8, "bob")));
    assert_eq!(decoded[4], Decoded::Value(order(9, "cy")));
    assert!(
        matches!(&decoded[5], Decoded::Rejected(w) if w.contains("schema id 99 is not in the schema registry")),
        "{:?}",
        decoded[5]
    );
}

#[tokio::test]
async fn schema_id_names_the_reader_schema_and_defaults_fill_new_fields() {
    let reg = fake_registry(vec![(1, avro_reply(V1)), (2, avro_reply(V2))], None, 0).await;
    let values = AvroValues::new(config(
        serde_json::json!({"registry": {"url": reg.url}, "schema_id": 2}),
    ));
    let r = value_record(0, Some(v1(7, "ann")));
    values.prepare(&batch(vec![r.clone()])).await.unwrap();
    let (reader, d) = values.decode("orders", &r).unwrap();
    assert_eq!(reader.unwrap().id, 2);
    assert_eq!(
        d,
        Decoded::Value(Value::Record(vec![
            ("id".into(), Value::Long(7)),
            ("name".into(), Value::String("ann".into())),
            ("channel".into(), Value::String("web".into())),
        ]))
    );
    // An unknown schema_id stops the pipeline: it is configuration, not data.
    let values = AvroValues::new(config(
        serde_json::json!({"registry": {"url": reg.url}, "schema_id": 5}),
    ));
    let e = values
        .prepare(&batch(vec![r]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema_id 5") && e.contains("not in the schema registry"),
        "{e}"
    );
}

#[test]
fn values_that_do_not_decode_or_resolve_are_rejected_with_a_reason() {
    let dir = schema_dir(&[(1, V1), (3, V3)]);
    let values = AvroValues::new(config(
        serde_json::json!({"schemas": dir.path(), "schema_id": 3}),
    ));
    let (_, d) = values
        .decode("orders", &value_record(0, Some(v1(7, "ann"))))
        .unwrap();
    assert!(
        matches!(&d, Decoded::Rejected(w) if w.contains("writer schema id 1 does not resolve to reader schema id 3")),
        "{d:?}"
    );

    let values = AvroValues::new(config(serde_json::json!({"schemas": dir.path()})));
    let mut trailing = v1(7, "ann");
    trailing.extend_from_slice(b"xx");
    let (_, d) = values
        .decode("orders", &value_record(0, Some(trailing)))
        .unwrap();
    assert!(
        matches!(&d, Decoded::Rejected(w) if w.contains("2 bytes are left")),
        "{d:?}"
    );
    // A string length past the end of the value.
    let (_, d) = values
        .decode(
            "orders",
            &value_record(1, Some(vec![0, 0, 0, 0, 1, 2, 0x7e])),
        )
        .unwrap();
    assert!(
        matches!(&d, Decoded::Rejected(w) if w.contains("does not decode with writer schema id 1")),
        "{d:?}"
    );
    let (_, d) = values
        .decode(
            "orders",
            &value_record(2, Some(wire(2, &schema(V1), order(1, "x")))),
        )
        .unwrap();
    assert!(
        matches!(&d, Decoded::Rejected(w) if w.contains("no file 2.avsc")),
        "{d:?}"
    );
}

#[test]
fn on_error_decides_what_a_rejected_value_gives() {
    let r = value_record(41, Some(b"nope".to_vec()));
    let why = || Decoded::Rejected("bad".into());
    let with = |on_error: &str| {
        AvroValues::new(config(
            serde_json::json!({"schemas": "/nowhere", "on_error": on_error}),
        ))
    };
    let s = with("null").settle(&r, why()).unwrap();
    assert_eq!((s.value, s.rejected), (None, None));
    let s = with("dead_letter").settle(&r, why()).unwrap();
    assert_eq!((s.value, s.rejected.as_deref()), (None, Some("bad")));
    let e = with("fail").settle(&r, why()).unwrap_err().to_string();
    assert!(e.contains("topic orders partition 3 offset 41: bad"), "{e}");
    // Tombstones and decoded values are never errors.
    let s = with("fail").settle(&r, Decoded::Null).unwrap();
    assert_eq!((s.value, s.rejected), (None, None));
    let s = with("fail")
        .settle(&r, Decoded::Value(Value::Null))
        .unwrap();
    assert_eq!(s.value, Some(Value::Null));
}

#[tokio::test]
async fn schema_files_come_before_the_registry_and_are_checked() {
    let reg = fake_registry(vec![(1, avro_reply(V3)), (2, avro_reply(V2))], None, 0).await;
    let dir = schema_dir(&[(1, V1)]);
    let values = AvroValues::new(config(
        serde_json::json!({"registry": {"url": reg.url}, "schemas": dir.path()}),
    ));
    let records = vec![
        value_record(0, Some(v1(1, "a"))),
        value_record(1, Some(v2(2, "b", "c"))),
    ];
    values.prepare(&batch(records.clone())).await.unwrap();
    assert_eq!(*reg.requests.lock().unwrap(), ["GET /schemas/ids/2"]);
    let (reader, d) = values.decode("orders", &records[0]).unwrap();
    assert_eq!(reader.unwrap().id, 1);
    assert_eq!(d, Decoded::Value(order(1, "a")));

    let missing = AvroValues::new(config(serde_json::json!({"schemas": "/no/such/dir"})));
    let e = missing
        .decode("orders", &records[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a directory"), "{e}");
    let bad = schema_dir(&[(1, "{\"type\": \"nope\"}")]);
    let bad = AvroValues::new(config(serde_json::json!({"schemas": bad.path()})));
    let e = bad.decode("orders", &records[0]).unwrap_err().to_string();
    assert!(e.contains("1.avsc is not a valid Avro schema"), "{e}");
}

#[test]
fn a_reader_schema_must_be_a_record() {
    let s = Schema::parse_str("\"string\"").unwrap();
    let dir = schema_dir(&[(4, "\"string\"")]);
    let values = AvroValues::new(config(serde_json::json!({"schemas": dir.path()})));
    let e = values
        .decode(
            "orders",
            &value_record(0, Some(wire(4, &s, Value::String("x".into())))),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("topic orders: schema id 4 of its first value (partition 3, offset 0) is a `string` schema, not a record"),
        "{e}"
    );
}

#[test]
fn named_types_are_referred_to_by_name_inside_a_schema() {
    let text = r#"{"type": "record", "name": "Move", "namespace": "geo", "fields": [
        {"name": "from", "type": {"type": "record", "name": "Point", "fields": [
            {"name": "x", "type": "int"}, {"name": "y", "type": "int"}]}},
        {"name": "to", "type": "Point"},
        {"name": "via", "type": {"type": "array", "items": "geo.Point"}}
    ]}"#;
    let s = schema(text);
    let point = |x: i32, y: i32| {
        Value::Record(vec![
            ("x".into(), Value::Int(x)),
            ("y".into(), Value::Int(y)),
        ])
    };
    let value = Value::Record(vec![
        ("from".into(), point(1, 2)),
        ("to".into(), point(3, 4)),
        ("via".into(), Value::Array(vec![point(5, 6)])),
    ]);
    let dir = schema_dir(&[(10, text)]);
    let values = AvroValues::new(config(serde_json::json!({"schemas": dir.path()})));
    let (_, d) = values
        .decode(
            "orders",
            &value_record(0, Some(wire(10, &s, value.clone()))),
        )
        .unwrap();
    assert_eq!(d, Decoded::Value(value));
}

#[test]
fn minimal_length_decimals_resolve_to_another_schema() {
    // apache-avro alone refuses to resolve a bytes decimal shorter than the reader's
    // precision could need; values are written with the fewest bytes.
    let w = r#"{"type": "record", "name": "P", "fields": [
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 0}},
        {"name": "list", "type": {"type": "array", "items": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}}}
    ]}"#;
    let r = w.replace(
        "\n    ]}",
        ",\n        {\"name\": \"x\", \"type\": \"int\", \"default\": 1}\n    ]}",
    );
    let dir = schema_dir(&[(1, w), (2, &r)]);
    let values = AvroValues::new(config(
        serde_json::json!({"schemas": dir.path(), "schema_id": 2}),
    ));
    let dec = |b: Vec<u8>| Value::Decimal(apache_avro::Decimal::from(b));
    let value = Value::Record(vec![
        ("amount".into(), dec(vec![0x7d])),
        ("fx".into(), dec(vec![0xff; 8])),
        (
            "list".into(),
            Value::Array(vec![dec(vec![0x80]), dec(vec![0x01, 0x00])]),
        ),
    ]);
    let (_, d) = values
        .decode("orders", &value_record(0, Some(wire(1, &schema(w), value))))
        .unwrap();
    let Decoded::Value(Value::Record(fields)) = d else {
        panic!("{d:?}");
    };
    let bytes = |v: &Value| match v {
        Value::Decimal(d) => Vec::<u8>::try_from(d).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(bytes(&fields[0].1), [0x7d]);
    assert_eq!(bytes(&fields[1].1), [0xff]);
    let Value::Array(items) = &fields[2].1 else {
        panic!()
    };
    assert_eq!(
        (bytes(&items[0]), bytes(&items[1])),
        (vec![0x80], vec![0x01, 0x00])
    );
    assert_eq!(fields[3], ("x".to_string(), Value::Int(1)));
}

#[tokio::test]
async fn subject_names_the_reader_schema_by_its_latest_version() {
    let reg = fake_registry(vec![(1, avro_reply(V1)), (2, avro_reply(V2))], None, 0).await;
    let values = AvroValues::new(config(
        serde_json::json!({"registry": {"url": reg.url}, "subject": "orders-value"}),
    ));
    // A v1 value read with the latest version (v2): the new field takes its default.
    let records = vec![value_record(0, Some(v1(7, "a")))];
    values.prepare(&batch(records.clone())).await.unwrap();
    let (reader, d) = values.decode("orders", &records[0]).unwrap();
    assert_eq!(reader.unwrap().id, 2);
    assert_eq!(
        d,
        Decoded::Value(Value::Record(vec![
            ("id".into(), Value::Long(7)),
            ("name".into(), Value::String("a".into())),
            ("channel".into(), Value::String("web".into())),
        ]))
    );
    let requests = reg.requests.lock().unwrap().clone();
    assert_eq!(requests[0], "GET /subjects/orders-value/versions/latest");

    // An unknown subject stops the pipeline with a message naming it.
    let missing = AvroValues::new(config(
        serde_json::json!({"registry": {"url": reg.url}, "subject": "missing-value"}),
    ));
    let e = missing
        .prepare(&batch(records))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("subject `missing-value` is not in the schema registry"),
        "{e}"
    );

    // `subject` and `schema_id` together, or `subject` without a registry: config errors.
    let both =
        config(serde_json::json!({"registry": {"url": reg.url}, "subject": "s", "schema_id": 1}));
    assert!(both
        .validate("parquet value", &[])
        .unwrap_err()
        .to_string()
        .contains("keep one"));
    let alone = config(serde_json::json!({"schemas": "/tmp", "subject": "s"}));
    assert!(alone
        .validate("parquet value", &[])
        .unwrap_err()
        .to_string()
        .contains("needs `registry"));
}
