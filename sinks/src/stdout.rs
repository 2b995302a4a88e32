//! `stdout`: prints every record as a JSON line on standard output.
//!
//! ```yaml
//! sink:
//!   type: stdout
//!   format: jsonl     # the only format (default)
//! ```
//!
//! Uses the [`ferry_formats::jsonl`] encoding; control records are skipped. A batch's ack
//! resolves once its lines were written and stdout flushed. Logs go to stderr, so stdout
//! carries only records (`ferry run p.yaml | jq .value`).

use async_trait::async_trait;
use ferry_core::registry::{BuildContext, SinkFactory};
use ferry_core::{Batch, Error, Result, Sink};
use ferry_formats::jsonl;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Formats the `stdout` sink prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    /// One JSON object per record.
    #[default]
    Jsonl,
}

/// Options of the `stdout` sink.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Output format (default `jsonl`).
    #[serde(default)]
    pub format: StdoutFormat,
}

/// Writes JSON lines to any async writer (stdout for the `stdout` sink).
pub struct LineSink<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin + Send> LineSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        LineSink {
            out,
            buf: Vec::new(),
        }
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The `stdout` sink.
pub type StdoutSink = LineSink<tokio::io::Stdout>;

fn io_err(e: std::io::Error) -> Error {
    Error::component("sink stdout", e)
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> Sink for LineSink<W> {
    async fn write(&mut self, mut batch: Batch) -> Result<()> {
        self.buf.clear();
        for r in batch.records_mut()?.iter().filter(|r| !r.is_control) {
            jsonl::encode_record(r, &mut self.buf);
        }
        self.out.write_all(&self.buf).await.map_err(io_err)?;
        self.out.flush().await.map_err(io_err)?;
        std::mem::take(&mut batch.ack).resolve();
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        self.out.flush().await.map_err(io_err)
    }
}

/// Registers `stdout`.
pub struct StdoutFactory;

impl SinkFactory for StdoutFactory {
    type Config = StdoutConfig;

    fn name(&self) -> &'static str {
        "stdout"
    }

    fn description(&self) -> &'static str {
        "Prints records as JSON lines on standard output (logs go to stderr)"
    }

    fn build(&self, _config: StdoutConfig, _ctx: &BuildContext) -> Result<Box<dyn Sink>> {
        Ok(Box::new(LineSink::new(tokio::io::stdout())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::{AckTracker, Record};
    use std::sync::Arc;

    #[tokio::test]
    async fn writes_lines_and_resolves() {
        let tracker = AckTracker::new();
        let topic: Arc<str> = Arc::from("t");
        let mut ctl = Record::new(topic.clone(), 0, 2, None);
        ctl.is_control = true;
        let records = vec![
            Record::new(topic.clone(), 0, 0, Some(Bytes::from_static(b"a"))),
            Record::new(topic.clone(), 0, 1, None),
            ctl,
        ];
        let ack = tracker.issue(&topic, 0, 0, 3);
        let mut sink = LineSink::new(Vec::<u8>::new());
        sink.write(Batch::from_records(topic, 0, 0, 3, records, ack))
            .await
            .unwrap();
        assert_eq!(tracker.watermarks()["t"][&0], 3);
        let out = sink.into_inner();
        let recs = jsonl::decode(&out).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].value, None);
    }
}
