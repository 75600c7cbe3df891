//! Committing checkpoints to the embedded store: the per-row cost of exactly-once. Each
//! iteration commits one checkpoint of 4 one-minute windows × 380 group keys (new rows, as a
//! partition catching up writes them) with 800-byte states, the size of the DESIGN.md example
//! metric's partials, from 4 partitions in turn, into a store that grows as it goes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_store::{
    Catalogue, Checkpoints, Commit, MetricCommit, MetricRecord, Origin, PackedRows, SqliteStore,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: usize = 380;
const WINDOWS: i64 = 4;
const PARTITIONS: u32 = 4;

fn commit_rows(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    let metric = MetricRecord {
        name: "page_views".into(),
        sql: "CREATE METRIC page_views AS …".into(),
        backfill: false,
        generation: 0,
        created_at: 0,
        origin: Origin::Api,
    };
    let mut epochs = Vec::new();
    runtime.block_on(async {
        store.create_metric(metric).await.unwrap();
        for partition in 0..PARTITIONS {
            let position = store.claim("page_views@0", partition, 0, 0).await.unwrap();
            epochs.push(position.epoch);
        }
    });
    // Keys in the shape of the engine's (tenant, then the URL), in no particular order.
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("\u{1}shop\u{2}/products/{}", (i * 7_919) % 1_000).into_bytes())
        .collect();
    let state = vec![0x5a; 800];
    let mut iteration = 0i64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(KEYS as u64 * WINDOWS as u64));
    group.sample_size(20);
    group.bench_function("commit_new_rows", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let partition = (iteration % i64::from(PARTITIONS)) as u32;
                let first = iteration / i64::from(PARTITIONS) * WINDOWS;
                iteration += 1;
                let mut changed = PackedRows::default();
                for window in first..first + WINDOWS {
                    let start = window * 60_000;
                    for key in &keys {
                        changed.push_with("shop", key, (start, start + 60_000), 1, |bytes| {
                            bytes.extend_from_slice(&state)
                        });
                    }
                }
                let commit = Arc::new(Commit {
                    offset: iteration as u64,
                    event_time: Some(first * 60_000),
                    log_epoch: 0,
                    metrics: vec![MetricCommit {
                        metric: "page_views".into(),
                        generation: 0,
                        watermark: Some(first * 60_000),
                        retracted: vec![],
                        closed: PackedRows::default(),
                        changed,
                    }],
                    output: Vec::new(),
                    note: None,
                });
                let epoch = epochs[partition as usize];
                let started = Instant::now();
                runtime
                    .block_on(store.commit("page_views@0", partition, epoch, commit))
                    .unwrap();
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, commit_rows);
criterion_main!(benches);
