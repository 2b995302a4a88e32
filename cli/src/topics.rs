//! `ferry topics`: every topic of a cluster with its partitions and their earliest and latest
//! offsets, as a table or (`--json`) as one JSON array:
//! `[{"topic":"orders","partitions":[{"partition":0,"earliest":0,"latest":42}]}]`
//! (internal topics are listed too, with `"internal":true`).

use anyhow::Context;
use ferry_kafka::TopicOffsets;

/// Arguments of `ferry topics`.
#[derive(clap::Args, Debug)]
pub struct TopicsArgs {
    /// Brokers to bootstrap from, `host:port` (repeat the flag or separate with commas).
    #[arg(long, required = true, value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// TLS and SASL settings of the cluster.
    #[command(flatten)]
    pub security: crate::shortcuts::SecurityArgs,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The table `ferry topics` prints.
pub fn render_table(topics: &[TopicOffsets]) -> String {
    let label = |t: &TopicOffsets| {
        if t.internal {
            format!("{} (internal)", t.topic)
        } else {
            t.topic.clone()
        }
    };
    let w = topics
        .iter()
        .map(|t| label(t).len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut s = format!(
        "{:<w$}  {:>9}  {:>14}  {:>14}  {:>12}\n",
        "TOPIC", "PARTITION", "EARLIEST", "LATEST", "RECORDS"
    );
    for t in topics {
        let name = label(t);
        for p in &t.partitions {
            s.push_str(&format!(
                "{name:<w$}  {:>9}  {:>14}  {:>14}  {:>12}\n",
                p.partition,
                p.earliest,
                p.latest,
                (p.latest - p.earliest).max(0)
            ));
        }
    }
    s
}

/// `ferry topics`.
pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let client = crate::shortcuts::connect(&args.brokers, &args.security).await?;
    let topics = client
        .topic_offsets()
        .await
        .context("listing topics and offsets")?;
    if args.json {
        crate::outln!("{}", serde_json::to_string(&topics)?);
    } else {
        crate::output::print(&render_table(&topics))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_kafka::PartitionOffsets;

    fn sample() -> Vec<TopicOffsets> {
        vec![
            TopicOffsets {
                topic: "__consumer_offsets".into(),
                internal: true,
                partitions: vec![PartitionOffsets {
                    partition: 0,
                    earliest: 0,
                    latest: 3,
                }],
            },
            TopicOffsets {
                topic: "orders".into(),
                internal: false,
                partitions: vec![PartitionOffsets {
                    partition: 0,
                    earliest: 0,
                    latest: 42,
                }],
            },
        ]
    }

    #[test]
    fn json_shape() {
        let s = serde_json::to_string(&sample()[1..]).unwrap();
        assert_eq!(
            s,
            r#"[{"topic":"orders","partitions":[{"partition":0,"earliest":0,"latest":42}]}]"#
        );
        let s = serde_json::to_string(&sample()[..1]).unwrap();
        assert!(s.contains(r#""internal":true"#), "{s}");
    }

    #[test]
    fn table_marks_internal_topics() {
        let t = render_table(&sample());
        assert!(t.lines().next().unwrap().starts_with("TOPIC"));
        assert!(t.contains("__consumer_offsets (internal)"));
        assert!(t
            .lines()
            .any(|l| l.starts_with("orders") && l.trim_end().ends_with("42")));
    }
}
