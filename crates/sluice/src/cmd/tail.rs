//! `sluice tail TOPIC`: prints a topic's records as JSON lines, following new ones. A derived
//! stream's topic shows its committed records only, as the stream's readers see it: records a
//! writer appended but never committed (it crashed first) are skipped, and new records appear
//! once their checkpoint is committed.

use crate::config::ConfigArgs;
use crate::log_tools::{self, Access, user_or_internal};
use crate::{UserError, telemetry};
use clap::Args;
use serde::Serialize;
use serde_json::value::RawValue;
use sluice_core::time::{Millis, format_millis, parse_rfc3339_millis};
use sluice_log::{Log, LogBackend, ReadOptions, StoredRecord};
use sluice_pipelines::streams;
use sluice_store::{StoreBackend, StoreLocation};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The topic to print.
    topic: String,
    /// Start at the oldest record still stored (default: only new records).
    #[arg(long, conflicts_with = "from_time")]
    from_beginning: bool,
    /// Start at the first record at or after this time: RFC 3339 (2024-05-01T12:00:00Z) or
    /// milliseconds since the epoch.
    #[arg(long, value_name = "TIME")]
    from_time: Option<String>,
    /// Only this partition (default: all).
    #[arg(long, short)]
    partition: Option<u32>,
    /// Exit once the records present at start are printed, instead of following new ones.
    #[arg(long)]
    no_follow: bool,
}

/// Lines buffered between the partition readers and stdout.
const LINES_QUEUED: usize = 1024;
/// How long one read waits for new records before checking for shutdown.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let config = args
        .config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    telemetry::init_logs(&config.telemetry);
    let from = match (&args.from_time, args.from_beginning) {
        (Some(text), _) => Start::Time(parse_time(text)?),
        (None, true) => Start::Beginning,
        (None, false) => Start::End,
    };
    log_tools::runtime()?.block_on(async move {
        let opened = log_tools::open(&config, Access::Read).await?;
        let log = opened.log.clone();
        let info = log
            .describe(Some(&args.topic))
            .await
            .map_err(user_or_internal)?
            .remove(0);
        let partitions: Vec<u32> = match args.partition {
            Some(p) if p as usize >= info.partitions.len() => {
                return Err(UserError(format!(
                    "topic {} has {} partitions; --partition {p} does not exist",
                    args.topic,
                    info.partitions.len()
                ))
                .into());
            }
            Some(p) => vec![p],
            None => info.partitions.iter().map(|p| p.partition).collect(),
        };
        let committed = stream_store(&config, &args.topic).await?;
        let (lines, mut printed) = mpsc::channel::<String>(LINES_QUEUED);
        let mut readers = Vec::new();
        for partition in partitions {
            let mut info = info.partitions[partition as usize];
            if let Some(store) = &committed {
                info.end_offset = streams::committed_end(store, &args.topic, partition)
                    .await?
                    .unwrap_or(0)
                    .max(info.start_offset);
            }
            let start = match from {
                Start::Beginning => info.start_offset,
                Start::End => info.end_offset,
                Start::Time(time) => log
                    .offset_for_time(&args.topic, partition, time)
                    .await
                    .map_err(user_or_internal)?
                    .unwrap_or(info.end_offset),
            };
            let stop = args.no_follow.then_some(info.end_offset);
            readers.push(tokio::spawn(follow(
                log.clone(),
                committed.clone(),
                args.topic.clone(),
                partition,
                start,
                stop,
                lines.clone(),
            )));
        }
        drop(lines);
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        loop {
            let line = tokio::select! {
                line = printed.recv() => line,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(line) = line else { break };
            let written = writeln!(stdout, "{line}").and_then(|()| {
                if printed.is_empty() {
                    stdout.flush()
                } else {
                    Ok(())
                }
            });
            if let Err(error) = written {
                // `sluice tail … | head` closes the pipe: that is a normal way to stop.
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    break;
                }
                return Err(error.into());
            }
        }
        drop(printed);
        stdout.flush().ok();
        for reader in readers {
            reader.abort();
            if let Ok(Err(error)) = reader.await {
                return Err(error);
            }
        }
        drop(log);
        opened.log.close().await?;
        Ok(())
    })
}

#[derive(Debug, Clone, Copy)]
enum Start {
    Beginning,
    End,
    Time(Millis),
}

fn parse_time(text: &str) -> Result<Millis, UserError> {
    if let Ok(millis) = text.parse::<Millis>() {
        return Ok(millis);
    }
    parse_rfc3339_millis(text).map_err(|error| UserError(format!("--from-time: {error}")))
}

/// The store, when `topic` is a derived stream's (its definition is in the store): its
/// committed ranges say which records to show.
async fn stream_store(
    config: &crate::config::Config,
    topic: &str,
) -> anyhow::Result<Option<StoreBackend>> {
    // No store file yet: no stream either (and tail makes none).
    if let Ok(StoreLocation::Sqlite(path)) = config.store.location(&config.data_dir)
        && !path.exists()
    {
        return Ok(None);
    }
    let store = match StoreBackend::open(&config.store, &config.data_dir).await {
        Ok(store) => store,
        Err(error) => {
            // Tailing a log topic needs no store; but if this one is a derived stream, its
            // uncommitted records show too, so say so.
            tracing::warn!(%error, topic, "cannot open the store to tell whether the topic is a derived stream; printing every record of it, committed or not");
            return Ok(None);
        }
    };
    let defaults = config.stream.metric_defaults();
    let is_stream = streams::is_stored_stream(&store, topic, &defaults).await?;
    Ok(is_stream.then_some(store))
}

/// Reads one partition from `offset` on (up to `stop` when given) and queues its lines; of a
/// derived stream (`committed`), only the records inside its committed ranges.
async fn follow(
    log: LogBackend,
    committed: Option<StoreBackend>,
    topic: String,
    partition: u32,
    mut offset: u64,
    stop: Option<u64>,
    lines: mpsc::Sender<String>,
) -> anyhow::Result<()> {
    loop {
        if stop.is_some_and(|stop| offset >= stop) {
            return Ok(());
        }
        let mut limit = u64::MAX;
        if let Some(store) = &committed {
            match store
                .stream_ranges(&topic, partition, offset, 1)
                .await?
                .first()
            {
                Some(&(start, end)) => (offset, limit) = (offset.max(start), end),
                None => {
                    tokio::time::sleep(FOLLOW_WAIT).await;
                    continue;
                }
            }
        }
        let options = ReadOptions {
            max_bytes: 1 << 20,
            max_wait: FOLLOW_WAIT,
        };
        let batch = match log.read(&topic, partition, offset, options).await {
            Ok(batch) => batch,
            Err(error) => {
                // Said at once: the other partitions go on printing meanwhile.
                tracing::error!(%error, topic, partition, offset, "stopped reading a partition");
                return Err(user_or_internal(error));
            }
        };
        for record in batch
            .records
            .iter()
            .take_while(|record| record.offset < limit)
        {
            if stop.is_some_and(|stop| record.offset >= stop) {
                return Ok(());
            }
            if lines.send(json_line(partition, record)).await.is_err() {
                return Ok(());
            }
        }
        offset = batch.next_offset(offset).min(limit);
        if batch
            .records
            .first()
            .is_some_and(|first| first.offset >= limit)
        {
            // Nothing readable is left in the range (a repair removed it): go past it.
            offset = limit;
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    partition: u32,
    offset: u64,
    timestamp: Millis,
    time: String,
    key: Option<Cow<'a, str>>,
    headers: BTreeMap<&'a str, Cow<'a, str>>,
    value: Value<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Value<'a> {
    Json(&'a RawValue),
    Parsed(serde_json::Value),
    Text(Cow<'a, str>),
}

/// One record as a JSON line. The value is embedded as JSON when it is JSON (re-serialized on one
/// line if it spans several), else as a string; keys and headers are strings (invalid UTF-8 is
/// replaced by U+FFFD).
fn json_line(partition: u32, stored: &StoredRecord) -> String {
    let record = &stored.record;
    let value = match serde_json::from_slice::<&RawValue>(&record.value) {
        Ok(raw) if !raw.get().contains('\n') => Value::Json(raw),
        Ok(raw) => serde_json::from_str(raw.get())
            .map(Value::Parsed)
            .unwrap_or_else(|_| Value::Text(String::from_utf8_lossy(&record.value))),
        Err(_) => Value::Text(String::from_utf8_lossy(&record.value)),
    };
    let line = Line {
        partition,
        offset: stored.offset,
        timestamp: record.timestamp,
        time: format_millis(record.timestamp),
        key: record.key.as_deref().map(String::from_utf8_lossy),
        headers: record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), String::from_utf8_lossy(&h.value)))
            .collect(),
        value,
    };
    serde_json::to_string(&line).expect("a line serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_log::{Header, Record};

    fn stored(value: &'static [u8]) -> StoredRecord {
        let mut record = Record::new(
            Some(Bytes::from_static(b"user-1")),
            Bytes::from_static(value),
            1_714_564_800_123,
        );
        record.headers.push(Header {
            key: "source".into(),
            value: Bytes::from_static(b"web"),
        });
        StoredRecord { offset: 7, record }
    }

    #[test]
    fn json_values_are_embedded_and_others_are_strings() {
        let line = json_line(3, &stored(br#"{"event":"Page Viewed","n":1}"#));
        assert_eq!(
            line,
            r#"{"partition":3,"offset":7,"timestamp":1714564800123,"time":"2024-05-01T12:00:00.123Z","key":"user-1","headers":{"source":"web"},"value":{"event":"Page Viewed","n":1}}"#
        );
        let line = json_line(0, &stored(b"plain text"));
        assert!(line.ends_with(r#""value":"plain text"}"#), "{line}");
        let line = json_line(0, &stored(b"{\n  \"a\": [1,\n 2]\n}"));
        assert!(line.ends_with(r#""value":{"a":[1,2]}}"#), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn times_are_rfc3339_or_epoch_millis() {
        assert_eq!(parse_time("1714564800123").unwrap(), 1_714_564_800_123);
        assert_eq!(
            parse_time("2024-05-01T12:00:00.123Z").unwrap(),
            1_714_564_800_123
        );
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .0
                .contains("--from-time")
        );
    }
}
