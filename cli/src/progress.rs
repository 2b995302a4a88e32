//! A one-line progress display on stderr for long jobs — only when stderr is a terminal, so
//! logs, pipes and CI stay clean. Shows records and bytes written, and the current rate.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Starts the display if stderr is a terminal; abort the handle when the job ends.
pub fn start() -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async {
        let started = Instant::now();
        let mut last = (0u64, 0u64, Instant::now());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let (records, bytes) = ferry_core::progress::totals();
            let now = Instant::now();
            let dt = now.duration_since(last.2).as_secs_f64().max(1e-3);
            let rate = (records - last.0) as f64 / dt;
            let mbs = (bytes - last.1) as f64 / dt / 1_048_576.0;
            last = (records, bytes, now);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{records} records, {:.1} MiB, {rate:.0} records/s, {mbs:.1} MiB/s, {:.0}s",
                bytes as f64 / 1_048_576.0,
                started.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        }
    }))
}
