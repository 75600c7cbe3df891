//! `sluice topics list|create|describe`: the log's topics, beside a running server or not.

use crate::config::ConfigArgs;
use crate::log_tools::{self, Access, user_or_internal};
use crate::{UserError, telemetry};
use clap::{Args, Subcommand};
use sluice_core::config::{ByteSize, HumanDuration};
use sluice_log::{Log, TopicInfo, TopicSpec};

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: TopicsAction,
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// List topics: partitions, records and bytes stored.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Create a topic (needs the server stopped).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// Topic name: letters, digits, '.', '_', '-'.
        name: String,
        /// Number of partitions [default: log.partitions].
        #[arg(long)]
        partitions: Option<u32>,
        /// Delete segments whose newest record is older than this, e.g. 30d; 0s keeps them
        /// [default: log.retention-age].
        #[arg(long, value_name = "DURATION")]
        retention_age: Option<HumanDuration>,
        /// Delete the oldest segments while a partition is larger than this, e.g. 10GiB; 0 means
        /// no limit [default: log.retention-bytes].
        #[arg(long, value_name = "SIZE")]
        retention_bytes: Option<ByteSize>,
    },
    /// Describe topics partition by partition (all topics without a name).
    Describe {
        #[command(flatten)]
        config: ConfigArgs,
        /// The topic to describe.
        name: Option<String>,
    },
}

pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let config = match &args.action {
        TopicsAction::List { config }
        | TopicsAction::Create { config, .. }
        | TopicsAction::Describe { config, .. } => config,
    };
    let config = config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    telemetry::init_logs(&config.telemetry);
    log_tools::runtime()?.block_on(async move {
        match args.action {
            TopicsAction::List { .. } => {
                let opened = log_tools::open(&config, Access::Read).await?;
                let topics = opened.log.describe(None).await.map_err(user_or_internal)?;
                print!("{}", list_table(&topics));
                opened.log.close().await?;
            }
            TopicsAction::Describe { name, .. } => {
                let opened = log_tools::open(&config, Access::Read).await?;
                let topics = opened
                    .log
                    .describe(name.as_deref())
                    .await
                    .map_err(user_or_internal)?;
                print!("{}", describe_text(&topics));
                opened.log.close().await?;
            }
            TopicsAction::Create {
                name,
                partitions,
                retention_age,
                retention_bytes,
                ..
            } => {
                let opened = log_tools::open(&config, Access::Write).await?;
                let spec = TopicSpec {
                    partitions: partitions.unwrap_or(config.log.partitions),
                    retention_age: retention_age.map(HumanDuration::get),
                    retention_bytes: retention_bytes.map(ByteSize::bytes),
                    name,
                };
                let partitions = spec.partitions;
                let name = spec.name.clone();
                opened
                    .log
                    .create_topic(spec)
                    .await
                    .map_err(user_or_internal)?;
                opened.log.close().await?;
                println!("topic {name} ready with {partitions} partitions");
            }
        }
        Ok(())
    })
}

fn list_table(topics: &[TopicInfo]) -> String {
    let mut out = format!(
        "{:<32} {:>10} {:>14} {:>12}\n",
        "TOPIC", "PARTITIONS", "RECORDS", "BYTES"
    );
    for topic in topics {
        let records: u64 = topic
            .partitions
            .iter()
            .map(|p| p.end_offset - p.start_offset)
            .sum();
        let bytes: u64 = topic.partitions.iter().map(|p| p.bytes).sum();
        out += &format!(
            "{:<32} {:>10} {:>14} {:>12}\n",
            topic.name,
            topic.partitions.len(),
            records,
            bytes
        );
    }
    out
}

fn describe_text(topics: &[TopicInfo]) -> String {
    let mut out = String::new();
    for topic in topics {
        let age = topic
            .retention_age
            .map_or("none".to_owned(), |age| HumanDuration(age).to_string());
        let bytes = topic
            .retention_bytes
            .map_or("none".to_owned(), |b| ByteSize(b).to_string());
        out += &format!(
            "topic {}: {} partitions, retention age {age}, retention bytes {bytes}\n",
            topic.name,
            topic.partitions.len()
        );
        out += &format!(
            "  {:>9} {:>14} {:>14} {:>12}\n",
            "PARTITION", "START", "END", "BYTES"
        );
        for p in &topic.partitions {
            out += &format!(
                "  {:>9} {:>14} {:>14} {:>12}\n",
                p.partition, p.start_offset, p.end_offset, p.bytes
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_log::PartitionInfo;
    use std::time::Duration;

    #[test]
    fn tables_show_records_and_retention() {
        let topics = [TopicInfo {
            name: "events".into(),
            partitions: vec![
                PartitionInfo {
                    partition: 0,
                    start_offset: 10,
                    end_offset: 25,
                    bytes: 4096,
                },
                PartitionInfo {
                    partition: 1,
                    start_offset: 0,
                    end_offset: 5,
                    bytes: 100,
                },
            ],
            retention_age: Some(Duration::from_secs(7 * 86_400)),
            retention_bytes: None,
        }];
        let list = list_table(&topics);
        assert!(
            list.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .eq(["events", "2", "20", "4196"])
        );
        let text = describe_text(&topics);
        assert!(
            text.contains("retention age 7d, retention bytes none"),
            "{text}"
        );
        assert!(
            text.lines()
                .nth(2)
                .unwrap()
                .split_whitespace()
                .eq(["0", "10", "25", "4096"])
        );
    }
}
