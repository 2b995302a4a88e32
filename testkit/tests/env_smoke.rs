//! Needs the dev environment (`scripts/dev-env up`): produces with
//! confluent-kafka and reads back with [`ferry_testkit::dump_topic`].

use ferry_testkit::{dump_topic, kcat_produce, py_produce, py_produce_to, unique, KcatMsg};

#[test]
fn py_produce_then_dump_round_trips_on_kafka() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("testkit-smoke");
    let msgs = vec![
        KcatMsg::new(None, Some(b"null key")).at(1_700_000_000_000),
        KcatMsg::new(Some(b"k2"), Some(b"header with a null value"))
            .header("nullable", None)
            .header("e", Some(b"")),
        KcatMsg::new(Some(b""), None)
            .header("dup", Some(b"1"))
            .header("dup", Some(b"2"))
            .header("other", Some(b"\x00\xff"))
            .header("dup", Some(b"3")),
    ];
    let acks = py_produce_to(&env, &env.kafka, &topic, Some(0), &msgs, "zstd", true);
    assert_eq!(acks, vec![(0, 0), (0, 1), (0, 2)]);

    let got = dump_topic(&env, &env.kafka, &topic);
    assert_eq!(got.len(), 3, "{got:#?}");
    for (i, (m, r)) in msgs.iter().zip(&got).enumerate() {
        assert_eq!((r.partition, r.offset), (0, i as i64));
        assert_eq!(r.key, m.key, "record {i}");
        assert_eq!(r.value, m.value, "record {i}");
        assert_eq!(r.headers, m.headers, "record {i}");
        assert_eq!(r.timestamp_type, "create");
    }
    assert_eq!(got[0].timestamp, 1_700_000_000_000);
    assert!(got[1].timestamp > 1_700_000_000_000);
}

#[test]
fn kcat_produce_then_dump_round_trips_on_kafka() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("testkit-kcat");
    let msgs = vec![
        KcatMsg::new(Some(b"k1"), Some(b"v1")),
        KcatMsg::new(None, Some(b"no key\nwith newline")),
        KcatMsg::new(Some(b""), Some(b"")),
        KcatMsg::new(Some(b"tomb"), None),
        KcatMsg::new(Some(b"h"), Some(b"~FeRrY-mD-0~ in data"))
            .header("a", None)
            .header("a", Some(b"x=y")),
    ];
    kcat_produce(&env, &env.kafka, &topic, Some(0), "lz4", &msgs);
    let got = dump_topic(&env, &env.kafka, &topic);
    let back: Vec<_> = got
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.headers.clone()))
        .collect();
    let want: Vec<_> = msgs
        .iter()
        .map(|m| (m.key.clone(), m.value.clone(), m.headers.clone()))
        .collect();
    assert_eq!(back, want);
}

#[test]
fn py_produce_works_on_tansu() {
    let Some(env) = ferry_testkit::env_or_skip() else {
        return;
    };
    let topic = unique("testkit-tansu");
    let msgs = [
        KcatMsg::new(Some(b"a"), Some(b"1")),
        KcatMsg::new(Some(b"a"), Some(b"2")),
    ];
    let acks = py_produce(&env, &env.tansu, &topic, &msgs, "none", false);
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0].0, acks[1].0, "same key, same partition");
    let got = dump_topic(&env, &env.tansu, &topic);
    let values: Vec<_> = got.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(values, vec![b"1".to_vec(), b"2".to_vec()]);
}
