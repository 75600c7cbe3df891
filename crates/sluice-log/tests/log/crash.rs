//! The crash test: a child process (this test binary, re-executed with `SLUICE_CRASH_DIR` set)
//! appends from several concurrent tasks and prints every acknowledged append; the parent kills
//! it with SIGKILL at a random moment, reopens the log (running recovery) and checks that every
//! acknowledged record is there with its exact bytes, that offsets are contiguous, and that
//! appends continue. Repeated [`ROUNDS`] times on the same directory, alternating `fsync` and
//! `write` acks (`write` also survives a process crash: the page cache outlives the process).

use crate::common::{runtime, value_bytes};
use bytes::Bytes;
use rand::Rng;
use sluice_core::config::ByteSize;
use sluice_log::{AckMode, FileLog, Header, Log, LogConfig, ReadOptions, Record, TopicSpec};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ROUNDS: u32 = 24;
const TOPIC: &str = "crash";
const PARTITIONS: u32 = 2;
const APPENDERS: u32 = 6;
const DIR_VAR: &str = "SLUICE_CRASH_DIR";
const ROUND_VAR: &str = "SLUICE_CRASH_ROUND";

fn config(ack: AckMode) -> LogConfig {
    LogConfig {
        // Small segments, so kills also land in rolls and recovery meets sealed segments.
        segment_bytes: ByteSize(64 * 1024),
        index_interval_bytes: ByteSize(1024),
        max_record_bytes: ByteSize(4096),
        max_batch_bytes: ByteSize(32 * 1024),
        max_pending_bytes: ByteSize(256 * 1024),
        ..crate::common::config(ack)
    }
}

fn ack_for(round: u32) -> AckMode {
    if round.is_multiple_of(2) {
        AckMode::Fsync
    } else {
        AckMode::Write
    }
}

/// The records of batch `seq` of appender `appender` in round `round`: sizes, keys, timestamps
/// and headers all derived from those three numbers, so the parent can regenerate them.
fn batch(round: u32, appender: u32, seq: u64) -> Vec<Record> {
    let seed = (u64::from(round) << 48) | (u64::from(appender) << 40) | seq;
    let count = 1 + (seed.wrapping_mul(31) % 8) as usize;
    (0..count)
        .map(|i| {
            let record_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let len = (record_seed % 600) as usize;
            let mut record = Record::new(
                Some(Bytes::from(format!("r{round}-a{appender}-s{seq}-{i}"))),
                value_bytes(record_seed, len),
                1_700_000_000_000 + seed as i64 % 1_000_000,
            );
            if i.is_multiple_of(3) {
                record.headers.push(Header {
                    key: "seq".into(),
                    value: Bytes::from(seq.to_string()),
                });
            }
            record
        })
        .collect()
}

/// The child: append until killed, printing `ACK partition base count appender seq` after each
/// acknowledgement. Run only as the crash test's child process.
#[test]
#[ignore = "the crash test runs this as its child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
    runtime().block_on(async move {
        let log = FileLog::open(Path::new(&dir), &config(ack_for(round))).unwrap();
        log.create_topic(TopicSpec::new(TOPIC, PARTITIONS))
            .await
            .unwrap();
        println!("READY");
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|appender| {
                let log = log.clone();
                tokio::spawn(async move {
                    let partition = appender % PARTITIONS;
                    for seq in 0.. {
                        let records = batch(round, appender, seq);
                        let result = log.append(TOPIC, partition, records).await.unwrap();
                        println!(
                            "ACK {partition} {} {} {appender} {seq}",
                            result.base_offset, result.count
                        );
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// An acknowledged append, as the child reported it.
#[derive(Debug, Clone, Copy)]
struct Acked {
    round: u32,
    partition: u32,
    base_offset: u64,
    count: u32,
    appender: u32,
    seq: u64,
}

fn parse_ack(round: u32, line: &str) -> Option<Acked> {
    let mut fields = line.strip_prefix("ACK ")?.split(' ');
    let mut next = || fields.next()?.parse::<u64>().ok();
    Some(Acked {
        round,
        partition: next()? as u32,
        base_offset: next()?,
        count: next()? as u32,
        appender: next()? as u32,
        seq: next()?,
    })
}

/// Runs one child and kills it after a random delay; returns the appends it acknowledged.
fn run_child(dir: &Path, round: u32, rng: &mut impl Rng) -> Vec<Acked> {
    let guard = crate::common::SPAWN_GUARD
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::crash_child", "--ignored", "--nocapture"])
        .args(["--test-threads=1", "-q"])
        .env(DIR_VAR, dir)
        .env(ROUND_VAR, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    drop(guard);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        // Only complete lines count: SIGKILL may cut the last one short.
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                lines.push(line.trim_end().to_owned());
            }
            line.clear();
        }
        lines
    });
    // Most kills land while appends run; some during start-up, open and recovery.
    let delay = if rng.random_bool(0.15) {
        rng.random_range(0..40)
    } else {
        rng.random_range(40..400)
    };
    std::thread::sleep(Duration::from_millis(delay));
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    let lines = reader.join().unwrap();
    lines.iter().filter_map(|l| parse_ack(round, l)).collect()
}

async fn read_partition(log: &FileLog, partition: u32) -> Vec<sluice_log::StoredRecord> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let options = ReadOptions {
            max_bytes: 1 << 20,
            max_wait: Duration::ZERO,
        };
        let batch = log.read(TOPIC, partition, offset, options).await.unwrap();
        if batch.records.is_empty() {
            return records;
        }
        offset = batch.next_offset(offset);
        records.extend(batch.records);
    }
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acked: Vec<Acked> = Vec::new();
    let mut kills_with_acks = 0;
    let runtime = runtime();
    for round in 0..ROUNDS {
        let new = run_child(dir.path(), round, &mut rng);
        if !new.is_empty() {
            kills_with_acks += 1;
        }
        acked.extend(new);

        runtime.block_on(async {
            let log = crate::common::open(dir.path(), &config(AckMode::Fsync));
            // The child may have died before its topic existed.
            log.create_topic(TopicSpec::new(TOPIC, PARTITIONS)).await.unwrap();
            let mut stored = HashMap::new();
            for partition in 0..PARTITIONS {
                let records = read_partition(&log, partition).await;
                for (i, record) in records.iter().enumerate() {
                    assert_eq!(record.offset, i as u64, "offsets are contiguous from 0");
                }
                stored.insert(partition, records);
            }
            for ack in &acked {
                let records = &stored[&ack.partition];
                let expected = if ack.appender == u32::MAX {
                    parent_batch(ack.round)
                } else {
                    batch(ack.round, ack.appender, ack.seq)
                };
                assert_eq!(expected.len(), ack.count as usize);
                for (i, record) in expected.into_iter().enumerate() {
                    let offset = ack.base_offset as usize + i;
                    let found = records.get(offset).unwrap_or_else(|| {
                        panic!(
                            "round {round}: acknowledged offset {offset} of partition {} is missing; the partition ends at {}",
                            ack.partition,
                            records.len()
                        )
                    });
                    assert_eq!(found.record, record, "round {round}: record at offset {offset} differs");
                }
            }
            // Appends continue after recovery, right after the last stored record.
            for partition in 0..PARTITIONS {
                let end = stored[&partition].len() as u64;
                let result = log.append(TOPIC, partition, parent_batch(round)).await.unwrap();
                assert_eq!(result.base_offset, end);
                acked.push(Acked {
                    round,
                    partition,
                    base_offset: result.base_offset,
                    count: result.count,
                    appender: u32::MAX,
                    seq: 0,
                });
            }
            log.close().await.unwrap();
        });
    }
    let segments = std::fs::read_dir(dir.path().join("topics").join(TOPIC).join("0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    eprintln!(
        "crash test: {ROUNDS} kills, {} acknowledged appends checked, {segments} segments in partition 0",
        acked.len()
    );
    assert!(
        kills_with_acks >= ROUNDS / 2,
        "only {kills_with_acks} of {ROUNDS} children acknowledged appends before the kill"
    );
}

/// What the parent appends after each recovery.
fn parent_batch(round: u32) -> Vec<Record> {
    vec![Record::new(
        Some(Bytes::from_static(b"parent")),
        Bytes::from(format!("after round {round}")),
        1_700_000_000_000,
    )]
}
