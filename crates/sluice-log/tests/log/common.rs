//! Helpers shared by the log tests.

use bytes::Bytes;
use sluice_core::config::{ByteSize, HumanDuration};
use sluice_log::{AckMode, FileLog, Header, LogConfig, Record};
use std::path::Path;
use std::time::Duration;

/// A config for tests: small segments so that tests roll and retain segments.
pub(crate) fn config(ack: AckMode) -> LogConfig {
    LogConfig {
        url: String::new(),
        ack,
        partitions: 4,
        segment_bytes: ByteSize(16 * 1024),
        segment_age: HumanDuration(Duration::from_secs(86_400)),
        retention_age: HumanDuration(Duration::ZERO),
        retention_bytes: ByteSize(0),
        retention_check_interval: HumanDuration(Duration::from_secs(60)),
        index_interval_bytes: ByteSize(512),
        max_record_bytes: ByteSize(4 * 1024),
        max_batch_bytes: ByteSize(16 * 1024),
        max_pending_bytes: ByteSize(1 << 20),
        kafka: Default::default(),
    }
}

/// Held by the crash test while it spawns a child. A child inherits every descriptor of this
/// process between `clone` and `exec` (they are close-on-exec, so only then), including the lock
/// of any log open in another test; a test that closes and reopens its log in that window would
/// find it locked by the child. Opening under this guard keeps clear of most of that window, but
/// not all of it: `Command::spawn` (`posix_spawn`, a vfork) returns once the child has replaced
/// its memory, and the kernel closes the close-on-exec descriptors a moment after that. So
/// [`try_open`] also tries again, briefly, when it finds the log locked.
pub(crate) static SPAWN_GUARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long [`try_open`] keeps trying a log that is locked: far longer than a child takes to
/// finish its `exec`, far shorter than a log held by a live process would need.
const LOCKED_BY_A_CHILD_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens (or creates) a file log in `dir`.
pub(crate) fn open(dir: &Path, config: &LogConfig) -> FileLog {
    try_open(dir, config).expect("open log")
}

/// Opens a file log in `dir`, returning the error.
pub(crate) fn try_open(dir: &Path, config: &LogConfig) -> Result<FileLog, sluice_log::LogError> {
    let started = std::time::Instant::now();
    loop {
        let opened = {
            let _guard = SPAWN_GUARD.lock().unwrap_or_else(|e| e.into_inner());
            FileLog::open(dir, config)
        };
        match opened {
            Err(sluice_log::LogError::Locked { .. })
                if started.elapsed() < LOCKED_BY_A_CHILD_FOR =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// A record with a text key and value.
pub(crate) fn record(key: Option<&str>, value: &str, timestamp: i64) -> Record {
    Record::new(
        key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        Bytes::copy_from_slice(value.as_bytes()),
        timestamp,
    )
}

/// A record with a header.
pub(crate) fn record_with_header(value: &str, timestamp: i64) -> Record {
    let mut record = record(Some("k"), value, timestamp);
    record.headers.push(Header {
        key: "trace".into(),
        value: Bytes::from_static(b"abc"),
    });
    record
}

/// A deterministic value of `len` bytes derived from `seed`.
pub(crate) fn value_bytes(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A runtime for tests that drive the log from synchronous code (proptest, the crash test).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
