//! The Prometheus endpoint: `telemetry.prometheus` serves the runtime's metrics.
//! (Its own test binary: the metrics recorder is global to a process.)

use ferry_core::testing::{AckMode, TestSink, TestSource};
use ferry_core::{Pipeline, Storage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn has_line(body: &str, name: &str, labels: &[&str], value: &str) -> bool {
    body.lines().any(|l| {
        l.starts_with(name)
            && labels.iter().all(|lab| l.contains(lab))
            && l.ends_with(&format!(" {value}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_serves_pipeline_metrics() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = Pipeline::new(
        "prom",
        // 10 batches of 10 records.
        Box::new(TestSource::new(10, 10)),
        Vec::new(),
        Box::new(TestSink::new(AckMode::Immediate)),
    )
    .with_checkpoint_storage(Storage::from_uri("memory://metrics-test").unwrap())
    .with_prometheus(addr);
    let s = ferry_core::run(p, std::future::pending()).await.unwrap();
    assert_eq!(s.records, 100);
    let body = scrape(addr).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("# HELP ferry_records_total"), "{body}");
    let p = "pipeline=\"prom\"";
    assert!(
        has_line(
            &body,
            "ferry_records_total",
            &[p, "stage=\"source\""],
            "100"
        ),
        "{body}"
    );
    assert!(
        has_line(&body, "ferry_records_total", &[p, "stage=\"sink\""], "100"),
        "{body}"
    );
    assert!(
        has_line(&body, "ferry_batches_total", &[p, "stage=\"sink\""], "10"),
        "{body}"
    );
    assert!(
        has_line(
            &body,
            "ferry_checkpoint_offset",
            &[p, "topic=\"t\"", "partition=\"0\""],
            "100"
        ),
        "{body}"
    );
    assert!(
        has_line(&body, "ferry_in_flight_bytes", &[p], "0"),
        "{body}"
    );
    // A second pipeline of the same process may name the same address, not another one.
    ferry_core::metrics::install_prometheus(addr).unwrap();
    let other = std::net::SocketAddr::from(([127, 0, 0, 1], addr.port().wrapping_add(1)));
    assert!(ferry_core::metrics::install_prometheus(other).is_err());
}
