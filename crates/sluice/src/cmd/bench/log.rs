//! `sluice bench log`: concurrent batched appends to the file log, a replay of what was written,
//! and, beside them, the raw bandwidth of the same disk written the same way: plain files, one
//! per partition, written with the log's average write size, with `fdatasync` covering the same
//! bytes per sync and overlapping the next writes as the log's syncer does. The ratio is then
//! the log's own overhead (framing, offsets, indexes, channels, acks), not a difference of
//! write pattern.
//!
//! Shared disks swing from second to second, so the two are measured in alternating slices of
//! about [`SLICE`] each (log, disk, log, disk, …) and summed: both see the same conditions.

use crate::config::ConfigArgs;
use crate::{UserError, log_tools};
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use sluice_log::file::LogStats;
use sluice_log::{AckMode, FileLog, Log, ReadOptions, Record, TopicSpec};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct LogBenchArgs {
    /// Config file for the [log] settings (segment size, limits); keys it omits keep defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to put the log and the baseline file [default: a temporary directory, removed
    /// afterwards]. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Seconds of appends (and as long again for the disk baseline, in alternating slices).
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    duration: f64,
    /// Bytes of key + value per record.
    #[arg(long, value_name = "B", default_value_t = 200)]
    record_size: usize,
    /// Records per append.
    #[arg(long, value_name = "N", default_value_t = 100)]
    batch: usize,
    /// Concurrent appenders (tasks), spread over the partitions.
    #[arg(long, value_name = "N", default_value_t = 8)]
    appenders: u32,
    /// Ack mode: fsync, write or none.
    #[arg(long, value_name = "MODE", default_value = "fsync")]
    ack: AckMode,
    /// Partitions of the benchmark topic.
    #[arg(long, value_name = "N", default_value_t = 1)]
    partitions: u32,
}

/// The key of every record: the size of a typical anonymous id.
const KEY_LEN: usize = 16;
/// Length of one slice of appends or of disk baseline.
const SLICE: Duration = Duration::from_millis(500);
/// Bytes per read when replaying.
const READ_BYTES: usize = 4 << 20;
const MB: f64 = 1_000_000.0;

pub fn run(args: LogBenchArgs) -> anyhow::Result<()> {
    if args.duration <= 0.0 || args.batch == 0 || args.appenders == 0 || args.partitions == 0 {
        return Err(UserError(
            "--duration, --batch, --appenders and --partitions must be larger than 0".into(),
        )
        .into());
    }
    if args.record_size < KEY_LEN {
        return Err(UserError(format!("--record-size must be at least {KEY_LEN} bytes")).into());
    }
    let config_args = ConfigArgs {
        config: args.config.clone(),
        data_dir: None,
    };
    let mut config = config_args
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?
        .log;
    config.ack = args.ack;
    let (_temp, dir) = super::work_dir(args.data_dir.as_deref(), "log")?;
    let runtime = log_tools::runtime()?;
    let log = FileLog::open(&dir.join("log"), &config).map_err(log_tools::user_or_internal)?;
    println!(
        "sluice bench log: {} appenders, {} records of {} B per append, ack = {}, {} partition{}, {:.0} s, in {}",
        args.appenders,
        args.batch,
        args.record_size,
        args.ack,
        args.partitions,
        if args.partitions == 1 { "" } else { "s" },
        args.duration,
        dir.display()
    );

    let topic = "bench";
    let starts = runtime.block_on(end_offsets(&log, topic, args.partitions))?;
    let slices = (args.duration / SLICE.as_secs_f64()).ceil().max(1.0);
    let slice = Duration::from_secs_f64(args.duration / slices);
    let sync_every_write = args.ack == AckMode::Fsync;
    let mut appended = Appended::default();
    let mut disk = Disk::default();
    let mut append_cpu_s = Some(0.0);
    for _ in 0..slices as u32 {
        let cpu_before = process_cpu_seconds();
        runtime.block_on(append_for(&log, &args, slice, &mut appended))?;
        append_cpu_s = append_cpu_s
            .zip(process_cpu_seconds().zip(cpu_before))
            .map(|(sum, (after, before))| sum + after - before);
        let stats = log.stats();
        disk_baseline(
            &dir,
            args.partitions,
            Pattern::of(&stats, sync_every_write),
            slice,
            &mut disk,
        )?;
    }
    let stats = log.stats();
    let pattern = Pattern::of(&stats, sync_every_write);
    let ends = runtime.block_on(end_offsets(&log, topic, args.partitions))?;
    let ranges: Vec<(u32, u64, u64)> = (0..args.partitions)
        .map(|p| (p, starts[p as usize], ends[p as usize]))
        .collect();
    let cpu_before = process_cpu_seconds();
    let replay = runtime.block_on(read_phase(&log, &ranges))?;
    let read_cpu_s = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    runtime.block_on(log.close())?;
    let disk_mb_s = disk.bytes as f64 / MB / disk.elapsed.as_secs_f64();

    let seconds = appended.elapsed.as_secs_f64();
    let append_mb_s = appended.bytes as f64 / MB / seconds;
    let append_disk_mb_s = stats.bytes_written as f64 / MB / seconds;
    let read_mb_s = replay.bytes as f64 / MB / replay.elapsed.as_secs_f64();
    let quantile = |q: f64| appended.latency.value_at_quantile(q) as f64 / 1000.0;
    let (p50, p99, p999) = (quantile(0.5), quantile(0.99), quantile(0.999));
    println!(
        "append: {:.0} appends/s, {:.0} records/s, {append_mb_s:.1} MB/s of records ({append_disk_mb_s:.1} MB/s written to segments)",
        appended.appends as f64 / seconds,
        appended.records as f64 / seconds,
    );
    println!("append latency: p50 {p50:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms");
    if let Some(cpu) = append_cpu_s {
        println!(
            "append CPU: {cpu:.2} s in {seconds:.2} s ({:.2} cores; {:.2} CPU-seconds per GB of records)",
            cpu / seconds,
            cpu / (appended.bytes as f64 / 1e9)
        );
    }
    println!(
        "group commit: {} writes of {} B on average, {} syncs of {} B, {:.1} appends per sync",
        stats.writes,
        stats.bytes_written / stats.writes.max(1),
        stats.syncs,
        stats.bytes_written / stats.syncs.max(1),
        appended.appends as f64 / stats.syncs.max(1) as f64
    );
    println!(
        "disk: {disk_mb_s:.1} MB/s on {} plain file{} written the same way ({} B per write{}); the log's records reach {:.0}% of it",
        args.partitions,
        if args.partitions == 1 { "" } else { "s" },
        pattern.write_size,
        match pattern.sync_size {
            Some(bytes) => format!(", fdatasync every {bytes} B, pipelined"),
            None => String::new(),
        },
        100.0 * append_mb_s / disk_mb_s
    );
    let read_mb_per_cpu_s = read_cpu_s
        .filter(|&cpu| cpu > 0.0)
        .map(|cpu| replay.bytes as f64 / MB / cpu);
    println!(
        "replay: {read_mb_s:.1} MB/s ({} records, {:.1} MB in {:.2} s, from the page cache; {})",
        replay.records,
        replay.bytes as f64 / MB,
        replay.elapsed.as_secs_f64(),
        match (read_cpu_s, read_mb_per_cpu_s) {
            (Some(cpu), Some(rate)) => format!("{cpu:.2} s of CPU, {rate:.0} MB per CPU-second"),
            _ => "CPU time not available".to_owned(),
        }
    );
    let summary = serde_json::json!({
        "append_mb_s": round(append_mb_s),
        "disk_mb_s": round(disk_mb_s),
        "read_mb_s": round(read_mb_s),
        "read_mb_per_cpu_s": read_mb_per_cpu_s.map(round),
        "append_cores": append_cpu_s.map(|cpu| round(cpu / seconds)),
        "p99_ms": round(p99),
        "p50_ms": round(p50),
        "p999_ms": round(p999),
        "append_disk_mb_s": round(append_disk_mb_s),
        "ratio": round(append_mb_s / disk_mb_s),
        "appends_s": round(appended.appends as f64 / seconds),
        "records_s": round(appended.records as f64 / seconds),
        "baseline_write_bytes": pattern.write_size,
        "baseline_sync_bytes": pattern.sync_size,
        "syncs": stats.syncs,
        "ack": args.ack.as_str(),
        "record_size": args.record_size,
        "batch": args.batch,
        "appenders": args.appenders,
        "partitions": args.partitions,
    });
    println!("{summary}");
    Ok(())
}

/// CPU time (user + system) this process used so far, from `/proc/self/stat` (Linux; in
/// clock ticks of 1/100 s, the fixed `USER_HZ` of Linux's user ABI).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// What the append slices did, summed.
struct Appended {
    elapsed: Duration,
    appends: u64,
    records: u64,
    /// Key + value bytes appended.
    bytes: u64,
    /// Append latency in microseconds.
    latency: Histogram<u64>,
}

impl Default for Appended {
    fn default() -> Self {
        Self {
            elapsed: Duration::ZERO,
            appends: 0,
            records: 0,
            bytes: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

/// Creates the topic if needed; returns each partition's end offset.
async fn end_offsets(log: &FileLog, topic: &str, partitions: u32) -> anyhow::Result<Vec<u64>> {
    log.create_topic(TopicSpec::new(topic, partitions))
        .await
        .map_err(log_tools::user_or_internal)?;
    Ok(log.describe(Some(topic)).await?[0]
        .partitions
        .iter()
        .map(|p| p.end_offset)
        .collect())
}

/// Runs every appender for `slice`, adding what they did to `total`.
async fn append_for(
    log: &FileLog,
    args: &LogBenchArgs,
    slice: Duration,
    total: &mut Appended,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + slice;
    let tasks: Vec<_> = (0..args.appenders)
        .map(|appender| {
            let log = log.clone();
            let partition = appender % args.partitions;
            let batch = records(appender, args.batch, args.record_size);
            tokio::spawn(async move {
                let mut done = Appended::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let result = log.append("bench", partition, batch.clone()).await?;
                    done.latency
                        .saturating_record(sent.elapsed().as_micros() as u64);
                    done.appends += 1;
                    done.records += u64::from(result.count);
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    for task in tasks {
        let done = task.await??;
        total.latency.add(&done.latency)?;
        total.appends += done.appends;
        total.records += done.records;
    }
    total.elapsed += started.elapsed();
    total.bytes = total.records * args.record_size as u64;
    Ok(())
}

/// One append's records: a 16-byte key and a JSON-like value, different per appender.
fn records(appender: u32, count: usize, size: usize) -> Vec<Record> {
    let mut value = format!("{{\"appender\":{appender},\"event\":\"Page Viewed\",\"pad\":\"");
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(appender);
    while value.len() < size - KEY_LEN - 2 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.push(char::from(b'a' + (state % 26) as u8));
    }
    value.truncate(size - KEY_LEN - 2);
    value.push_str("\"}");
    let value = Bytes::from(value);
    (0..count)
        .map(|i| {
            let mut key = format!("anon-{appender:03}-{i:07}").into_bytes();
            key.resize(KEY_LEN, b'0');
            Record::new(Some(Bytes::from(key)), value.clone(), 1_714_564_800_000)
        })
        .collect()
}

struct Replayed {
    elapsed: Duration,
    records: u64,
    bytes: u64,
}

/// Reads back everything the append phase wrote, one reader per partition.
async fn read_phase(log: &FileLog, ranges: &[(u32, u64, u64)]) -> anyhow::Result<Replayed> {
    let started = Instant::now();
    let tasks: Vec<_> = ranges
        .iter()
        .map(|&(partition, start, end)| {
            let log = log.clone();
            tokio::spawn(async move {
                let (mut offset, mut records, mut bytes) = (start, 0u64, 0u64);
                while offset < end {
                    let options = ReadOptions {
                        max_bytes: READ_BYTES,
                        max_wait: Duration::ZERO,
                    };
                    let batch = log.read("bench", partition, offset, options).await?;
                    records += batch.records.len() as u64;
                    bytes += batch
                        .records
                        .iter()
                        .map(|r| r.record.size() as u64)
                        .sum::<u64>();
                    offset = batch.next_offset(offset);
                }
                anyhow::Ok((records, bytes))
            })
        })
        .collect();
    let (mut records, mut bytes) = (0, 0);
    for task in tasks {
        let (task_records, task_bytes) = task.await??;
        records += task_records;
        bytes += task_bytes;
    }
    Ok(Replayed {
        elapsed: started.elapsed(),
        records,
        bytes,
    })
}

/// What the disk baseline slices wrote, summed.
#[derive(Default)]
struct Disk {
    elapsed: Duration,
    bytes: u64,
}

/// How the baseline writes: the log's pattern, on plain files.
#[derive(Debug, Clone, Copy)]
struct Pattern {
    /// Bytes per write (the log's average write).
    write_size: usize,
    /// With syncs: the bytes one sync of the log covered on average.
    sync_size: Option<usize>,
}

impl Pattern {
    fn of(stats: &LogStats, sync: bool) -> Self {
        Self {
            write_size: (stats.bytes_written / stats.writes.max(1)).max(1) as usize,
            sync_size: sync.then(|| (stats.bytes_written / stats.syncs.max(1)).max(1) as usize),
        }
    }
}

/// The disk written the way the log writes it for `slice`: `files` plain files, one writer
/// thread each, appending `write_size` bytes per write. With syncs, a second thread per file
/// runs `fdatasync` back to back, each covering what was written before it started, while the
/// writer stays at most two syncs' worth ahead: the log's writer/syncer pipeline without the
/// log. Counts durable bytes.
fn disk_baseline(
    dir: &Path,
    files: u32,
    pattern: Pattern,
    slice: Duration,
    total: &mut Disk,
) -> anyhow::Result<()> {
    let opened: Vec<(PathBuf, File)> = (0..files)
        .map(|i| {
            let path = dir.join(format!("disk-baseline-{i}.tmp"));
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            anyhow::Ok((path, file))
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let deadline = started + slice;
    let written = std::thread::scope(|scope| {
        let threads: Vec<_> = opened
            .iter()
            .map(|(path, file)| scope.spawn(move || baseline_file(path, file, pattern, deadline)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("baseline thread"))
            .sum::<anyhow::Result<u64>>()
    })?;
    total.elapsed += started.elapsed();
    total.bytes += written;
    for (path, file) in opened {
        drop(file);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Writes one baseline file until `deadline`; returns the bytes made durable (or written,
/// without syncs).
fn baseline_file(
    path: &Path,
    file: &File,
    pattern: Pattern,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let chunk = vec![0x5a_u8; pattern.write_size];
    let mut writer = file;
    let Some(sync_size) = pattern.sync_size else {
        let mut written = 0u64;
        while Instant::now() < deadline {
            writer
                .write_all(&chunk)
                .with_context(|| format!("writing {}", path.display()))?;
            written += chunk.len() as u64;
        }
        return Ok(written);
    };
    #[derive(Default)]
    struct Progress {
        written: u64,
        synced: u64,
        done: bool,
        error: Option<std::io::Error>,
    }
    let progress = Mutex::new(Progress::default());
    let changed = Condvar::new();
    let ahead = 2 * sync_size as u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            loop {
                let target = {
                    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                    while p.written == p.synced && !p.done {
                        p = changed.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                    if p.written == p.synced {
                        return;
                    }
                    p.written
                };
                let synced = file.sync_data();
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                match synced {
                    Ok(()) => p.synced = target,
                    Err(error) => {
                        p.error = Some(error);
                        p.done = true;
                        changed.notify_all();
                        return;
                    }
                }
                changed.notify_all();
            }
        });
        while Instant::now() < deadline {
            {
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                while p.written - p.synced >= ahead && !p.done {
                    p = changed.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.done {
                    break;
                }
            }
            writer
                .write_all(&chunk)
                .with_context(|| format!("writing {}", path.display()))?;
            progress.lock().unwrap_or_else(|e| e.into_inner()).written += chunk.len() as u64;
            changed.notify_all();
        }
        progress.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        changed.notify_all();
        anyhow::Ok(())
    })?;
    let p = progress.into_inner().unwrap_or_else(|e| e.into_inner());
    match p.error {
        Some(error) => {
            Err(anyhow::Error::new(error).context(format!("syncing {}", path.display())))
        }
        None => Ok(p.synced),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_parses_from_proc() {
        let cpu = process_cpu_seconds().expect("/proc/self/stat parses");
        assert!(cpu.is_finite() && cpu >= 0.0, "{cpu}");
    }

    #[test]
    fn records_have_the_requested_size() {
        for size in [KEY_LEN + 2, 150, 200, 300] {
            let batch = records(3, 5, size);
            assert_eq!(batch.len(), 5);
            assert!(batch.iter().all(|r| r.size() == size), "size {size}");
        }
    }

    #[test]
    fn a_short_run_reports_every_figure() {
        let dir = tempfile::tempdir().unwrap();
        let args = LogBenchArgs {
            config: None,
            data_dir: Some(dir.path().to_owned()),
            duration: 0.2,
            record_size: 150,
            batch: 10,
            appenders: 3,
            ack: AckMode::Fsync,
            partitions: 2,
        };
        run(args).unwrap();
        let log = FileLog::open(&dir.path().join("log"), &load_log_config()).unwrap();
        let info = log_tools::runtime()
            .unwrap()
            .block_on(log.describe(Some("bench")))
            .unwrap();
        assert!(info[0].partitions.iter().all(|p| p.end_offset > 0));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn load_log_config() -> sluice_log::LogConfig {
        crate::config::load(None, &[]).unwrap().log
    }
}
