//! Rough produce and fetch throughput against a broker:
//! `cargo run --release -p ferry-kafka --example throughput -- 127.0.0.1:19092 [records]`
//! Writes `records` x 1 KiB to a new 6-partition topic, then reads them back with
//! one multi-partition fetch per round, decoding every record.

use bytes::Bytes;
use ferry_kafka::{
    decode_batches, Client, ClientConfig, Compression, FetchOptions, FetchRequestPartition,
    NewTopic, ProduceBatch, ProduceRecord, ProducerConfig,
};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let broker = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:19092".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let client = Client::connect(ClientConfig::new(&[broker])).await?;
    let topic = format!("ferry-throughput-{}", std::process::id());
    client
        .create_topics(&[NewTopic {
            name: topic.clone(),
            partitions: 6,
            replication_factor: 1,
            configs: Default::default(),
        }])
        .await?;
    let value = Bytes::from(vec![b'x'; 1024]);
    let producer = client.producer(ProducerConfig {
        compression: Compression::None,
        ..Default::default()
    })?;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batches = (0..6)
            .map(|p| ProduceBatch {
                topic: topic.clone(),
                partition: p,
                records: (0..1000.min((n - sent) / 6 + 1))
                    .map(|i| ProduceRecord {
                        key: Some(Bytes::from(format!("k{i}"))),
                        value: Some(value.clone()),
                        headers: vec![],
                        timestamp: 1,
                    })
                    .collect(),
            })
            .collect();
        for r in producer.produce(batches).await? {
            sent += r.runs.iter().map(|x| x.count).sum::<usize>();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "produced {sent} records in {secs:.2}s ({:.0} MiB/s)",
        sent as f64 / 1024.0 / secs
    );

    let name: Arc<str> = Arc::from(topic.as_str());
    let mut offsets = [0i64; 6];
    let mut read = 0usize;
    let t = Instant::now();
    while read < sent {
        let reqs: Vec<FetchRequestPartition> = (0..6)
            .map(|p| FetchRequestPartition {
                topic: topic.clone(),
                partition: p,
                offset: offsets[p as usize],
            })
            .collect();
        for f in client.fetch(&reqs, &FetchOptions::default()).await? {
            if let Some(d) = f.data {
                read += decode_batches(&d.bytes, &name, f.partition)?.len();
                offsets[f.partition as usize] = d.next_offset;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "fetched and decoded {read} records in {secs:.2}s ({:.0} MiB/s)",
        read as f64 / 1024.0 / secs
    );
    client.delete_topics(&[topic]).await?;
    Ok(())
}
