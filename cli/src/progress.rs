//! A one-line progress display on stderr for long jobs — only when stderr is a terminal, so
//! logs, pipes and CI stay clean. Shows records and bytes written and the current rate; when
//! the sources know how much is coming (a snapshot backup, a restore) also a bar, the share
//! done and an estimate of the time left.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The running display; [`Progress::finish`] ends it with a last line.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl Progress {
    /// Stops the display and leaves the final totals on their own line.
    pub fn finish(self) {
        self.task.abort();
        let (records, bytes) = ferry_core::progress::totals();
        let elapsed = self.started.elapsed();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let line = line(
            records,
            bytes,
            ferry_core::progress::expected(),
            records as f64 / secs,
            bytes as f64 / secs / 1_048_576.0,
            elapsed,
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// Starts the display if stderr is a terminal.
pub fn start() -> Option<Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let task = tokio::spawn(async {
        let started = Instant::now();
        let mut last = (0u64, 0u64, Instant::now());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let (records, bytes) = ferry_core::progress::totals();
            let now = Instant::now();
            let dt = now.duration_since(last.2).as_secs_f64().max(1e-3);
            let rate = records.saturating_sub(last.0) as f64 / dt;
            let mbs = bytes.saturating_sub(last.1) as f64 / dt / 1_048_576.0;
            last = (records, bytes, now);
            let line = line(
                records,
                bytes,
                ferry_core::progress::expected(),
                rate,
                mbs,
                started.elapsed(),
            );
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        }
    });
    Some(Progress {
        task,
        started: Instant::now(),
    })
}

/// The text of the progress line.
fn line(
    records: u64,
    bytes: u64,
    expected: Option<u64>,
    rate: f64,
    mbs: f64,
    elapsed: Duration,
) -> String {
    let mib = bytes as f64 / 1_048_576.0;
    let secs = elapsed.as_secs_f64();
    match expected {
        Some(total) if total > 0 => {
            let done = (records as f64 / total as f64).min(1.0);
            let width = 24;
            let filled = (done * width as f64).round() as usize;
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
            // The average since the start: steadier than the last half second.
            let avg = records as f64 / secs.max(1e-3);
            let eta = if records >= total {
                "0s".to_string()
            } else if avg > 0.0 {
                human((total - records) as f64 / avg)
            } else {
                "?".to_string()
            };
            format!(
                "[{bar}] {:>3.0}% {records}/{total} records, {mib:.1} MiB, {rate:.0} records/s, \
                 {mbs:.1} MiB/s, {} elapsed, ETA {eta}",
                done * 100.0,
                human(secs)
            )
        }
        _ => format!(
            "{records} records, {mib:.1} MiB, {rate:.0} records/s, {mbs:.1} MiB/s, {}",
            human(secs)
        ),
    }
}

/// `42s`, `3m05s`, `2h07m`.
fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human(4.4), "4s");
        assert_eq!(human(185.0), "3m05s");
        assert_eq!(human(7620.0), "2h07m");
    }

    #[test]
    fn a_known_total_gives_a_bar_and_an_eta() {
        // A quarter done in 10 s: 30 s left at the same pace.
        let l = line(250, 1 << 20, Some(1000), 25.0, 0.1, Duration::from_secs(10));
        assert!(
            l.starts_with("[######------------------]  25% 250/1000 records"),
            "{l}"
        );
        assert!(l.ends_with("10s elapsed, ETA 30s"), "{l}");
        // Done, or past an estimate that counted offsets compaction removed: never over 100%.
        let l = line(1200, 0, Some(1000), 0.0, 0.0, Duration::from_secs(5));
        assert!(l.contains("100% 1200/1000") && l.ends_with("ETA 0s"), "{l}");
    }

    #[test]
    fn without_a_total_only_counts_and_rates() {
        let l = line(5, 2 << 20, None, 1.0, 0.5, Duration::from_secs(61));
        assert_eq!(l, "5 records, 2.0 MiB, 1 records/s, 0.5 MiB/s, 1m01s");
    }
}
