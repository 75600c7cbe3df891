//! One [`Hub`] per (metric, tenant) with subscribers: what changed, computed once per
//! `api.push-interval` for all of them.
//!
//! A hub task wakes every push interval while feeds hold it, reads the tenant's live snapshot
//! and cache of final windows (the same ones queries read), and compares them with what it
//! published before ([`Published::refresh`], a plain function of the two): every window whose
//! rendering changed, became final or vanished gets the next sequence number and is rendered
//! once. Feeds take by sequence ([`Published::take`]): the windows changed after their cursor,
//! through their filters, or every open window on the first take. The hub then wakes the feeds
//! (a `watch` of the sequence); a feed whose client does not read is simply not polled.
//!
//! # State and its bounds
//! - Per window: its latest change and the sequence of it. Open windows stay while open;
//!   final and removed ones ("tombstones") stay for `retain` publications — at least
//!   `api.ws-slow-timeout` worth, longer than any connection can leave its feeds unread
//!   before it is closed as too slow. A feed further behind is told it lagged and gets every
//!   open window again.
//! - An index by sequence, so a take visits only what changed since its cursor.
//! - Hubs live while feeds hold them: at most one per (metric, tenant) with a subscriber, so
//!   at most `api.ws-max-connections` × `api.ws-max-subscriptions`.
//!
//! Metrics: `sluice_push_hubs` (running), `sluice_push_refreshes_total{outcome}` (`changed`,
//! `unchanged`, `failed`), `sluice_push_windows_total` (window changes published).

use super::Change;
use crate::error::ApiError;
use crate::query::Serving;
use crate::query::cache::Series;
use crate::query::cells::{KeySeries, close_of};
use crate::query::live::LiveSnapshot;
use crate::query::params::SeriesQuery;
use axum::http::StatusCode;
use sluice_core::time::Millis;
use sluice_stream::agg::OutputValue;
use sluice_stream::plan::{MetricPlan, WindowSpec};
use sluice_stream::render;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// The error code of a feed that fell behind further than the hub remembers.
pub(crate) const LAGGED: &str = "lagged";

/// The running hubs, by (metric, tenant): one registry for live push and GraphQL, shared by
/// their states and by the hub tasks (which leave it when no feed holds them).
#[derive(Debug, Default)]
pub struct Hubs {
    map: parking_lot::Mutex<HashMap<(String, String), Arc<Hub>>>,
}

impl Hubs {
    /// The hub of `tenant`'s `metric` as defined by `plan` (started if none runs), and a
    /// receiver of its publications.
    pub(crate) fn join(
        self: &Arc<Self>,
        serving: &Arc<Serving>,
        metric: &str,
        tenant: &str,
        plan: &Arc<MetricPlan>,
    ) -> (Arc<Hub>, watch::Receiver<u64>) {
        let mut map = self.map.lock();
        let key = (metric.to_owned(), tenant.to_owned());
        if let Some(hub) = map.get(&key)
            && Arc::ptr_eq(&hub.plan, plan)
            && !hub.ended.load(Ordering::Relaxed)
        {
            return (Arc::clone(hub), hub.published.subscribe());
        }
        let config = serving.config();
        let every = config.push_interval.get();
        // Publications are at least one push interval apart: this many cover the slow timeout.
        let retain =
            (config.ws_slow_timeout.get().as_millis() / every.as_millis().max(1)) as u64 + 2;
        let hub = Arc::new(Hub {
            metric: metric.to_owned(),
            tenant: tenant.to_owned(),
            names: render::aggregate_names(plan)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            plan: Arc::clone(plan),
            state: parking_lot::RwLock::new(Published::new(retain)),
            published: watch::Sender::new(0),
            ended: AtomicBool::new(false),
        });
        let receiver = hub.published.subscribe();
        // A hub of a previous definition ends at its next refresh (the plan changed).
        map.insert(key, Arc::clone(&hub));
        tokio::spawn(run(
            Arc::clone(&hub),
            Arc::clone(self),
            Arc::downgrade(serving),
            every,
        ));
        (hub, receiver)
    }

    /// Ends `hub` if it is unused or `force`: no feed can join it after this.
    fn leave(&self, hub: &Arc<Hub>, force: bool) -> bool {
        let mut map = self.map.lock();
        if !force && hub.published.receiver_count() > 0 {
            return false;
        }
        hub.ended.store(true, Ordering::Relaxed);
        let key = (hub.metric.clone(), hub.tenant.clone());
        if map
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, hub))
        {
            map.remove(&key);
        }
        true
    }
}

/// The changes of one tenant's metric, shared by its feeds.
#[derive(Debug)]
pub(crate) struct Hub {
    metric: String,
    tenant: String,
    plan: Arc<MetricPlan>,
    names: Vec<String>,
    state: parking_lot::RwLock<Published>,
    published: watch::Sender<u64>,
    ended: AtomicBool,
}

impl Hub {
    pub(crate) fn plan(&self) -> &Arc<MetricPlan> {
        &self.plan
    }

    pub(crate) fn metric(&self) -> &str {
        &self.metric
    }

    /// What a feed with `cursor` and `filters` has not taken yet (see [`Published::take`]).
    pub(crate) fn take(
        &self,
        cursor: &mut Cursor,
        filters: &SeriesQuery,
    ) -> Result<Vec<Arc<Change>>, ApiError> {
        self.state.read().take(cursor, filters, &self.metric)
    }

    /// Reads the snapshot and the cache once, and publishes what changed.
    async fn refresh(&self, serving: &Serving) -> Result<usize, Failure> {
        let cache = serving
            .cache(&self.metric, &self.tenant)
            .await
            .map_err(|error| match error.status() {
                StatusCode::NOT_FOUND => Failure::gone(&self.metric),
                _ => Failure::of(&error),
            })?;
        if !Arc::ptr_eq(&cache.plan, &self.plan) {
            return Err(Failure::gone(&self.metric));
        }
        let snapshot = serving
            .live(&cache)
            .await
            .map_err(|error| Failure::of(&error))?;
        let series = cache.series.read();
        let mut state = self.state.write();
        let changed = state.refresh(&self.plan, &self.names, &snapshot, &series);
        if changed > 0 {
            self.published.send_replace(state.seq);
        }
        Ok(changed)
    }

    fn fail(&self, failure: Failure) {
        let mut state = self.state.write();
        if state.fail(failure) {
            self.published.send_replace(state.seq);
        }
    }
}

/// Refreshes `hub` every `every` until no feed holds it or its metric is gone.
async fn run(hub: Arc<Hub>, hubs: Arc<Hubs>, serving: Weak<Serving>, every: Duration) {
    metrics::gauge!("sluice_push_hubs").increment(1.0);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(serving) = serving.upgrade() else {
            break;
        };
        if hubs.leave(&hub, false) {
            break;
        }
        match hub.refresh(&serving).await {
            Ok(0) => {
                metrics::counter!("sluice_push_refreshes_total", "outcome" => "unchanged")
                    .increment(1);
            }
            Ok(changed) => {
                metrics::counter!("sluice_push_refreshes_total", "outcome" => "changed")
                    .increment(1);
                metrics::counter!("sluice_push_windows_total").increment(changed as u64);
            }
            Err(failure) => {
                metrics::counter!("sluice_push_refreshes_total", "outcome" => "failed")
                    .increment(1);
                let gone = failure.status == StatusCode::GONE;
                tracing::debug!(metric = %hub.metric, tenant = %hub.tenant, code = failure.code, message = %failure.message, "a push refresh failed");
                hub.fail(failure);
                if gone {
                    hubs.leave(&hub, true);
                    break;
                }
            }
        }
    }
    metrics::gauge!("sluice_push_hubs").decrement(1.0);
}

/// An error published to feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn of(error: &ApiError) -> Failure {
        Failure {
            status: error.status(),
            code: error.code(),
            message: error.message().to_owned(),
        }
    }

    fn gone(metric: &str) -> Failure {
        Failure {
            status: StatusCode::GONE,
            code: "metric_replaced",
            message: format!("metric {metric:?} was deleted or redefined; subscribe again"),
        }
    }

    fn error(&self) -> ApiError {
        ApiError::new(self.status, self.code, self.message.clone())
    }
}

/// Where a feed is: the last sequence it took (`None` before its first take) and the last
/// error it was told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) seq: Option<u64>,
    pub(crate) error: u64,
}

/// A window: its encoded group key, start and end.
type WindowAt = (Arc<[u8]>, Millis, Millis);

#[derive(Debug)]
struct Entry {
    /// The publication of its latest change.
    seq: u64,
    /// A hash of its rendering, to see changes.
    hash: u64,
    /// The last refresh that saw it open.
    seen: u64,
    change: Arc<Change>,
}

impl Entry {
    fn is_open(&self) -> bool {
        !self.change.is_final && !self.change.removed
    }
}

/// What a hub published: its state between refreshes.
#[derive(Debug)]
pub(crate) struct Published {
    /// The last publication.
    seq: u64,
    /// Refreshes made.
    round: u64,
    /// Tombstones of publications up to `retain` before the last are dropped.
    retain: u64,
    /// Per encoded group key, per (start, end), the latest change (in key order, as queries
    /// answer).
    windows: BTreeMap<Arc<[u8]>, BTreeMap<(Millis, Millis), Entry>>,
    /// Every window by the publication of its latest change.
    by_seq: BTreeSet<(u64, WindowAt)>,
    /// Final and removed windows, in publication order, to drop once old.
    tombstones: VecDeque<(u64, WindowAt)>,
    /// The latest publication of a dropped tombstone: a cursor before it lagged.
    dropped: u64,
    /// The cache frontier at the last refresh.
    frontier: Option<Millis>,
    /// The current error and its publication.
    error: Option<(u64, Failure)>,
}

impl Published {
    pub(crate) fn new(retain: u64) -> Published {
        Published {
            seq: 0,
            round: 0,
            retain: retain.max(1),
            windows: BTreeMap::new(),
            by_seq: BTreeSet::new(),
            tombstones: VecDeque::new(),
            dropped: 0,
            frontier: None,
            error: None,
        }
    }

    /// Compares `snapshot` (open windows) and `series` (final windows) with what was
    /// published, and publishes every difference under the next sequence; returns how many
    /// windows changed (0: nothing published).
    pub(crate) fn refresh(
        &mut self,
        plan: &MetricPlan,
        names: &[String],
        snapshot: &LiveSnapshot,
        series: &Series,
    ) -> usize {
        self.round += 1;
        let round = self.round;
        self.error = None;
        let next = self.seq + 1;
        let frontier = series.frontier;
        let mut changed = 0;
        for (bytes, live) in &snapshot.keys {
            for (&(start, end), cell) in &live.cells {
                if close_of(plan, end) <= frontier {
                    continue;
                }
                let hash = hash(&cell.rendered);
                if let Some(entry) = self.entry_mut(bytes, start, end)
                    && entry.is_open()
                    && entry.hash == hash
                {
                    entry.seen = round;
                    continue;
                }
                let change = render_change(live, names, start, end, Kind::Open, &cell.values);
                self.publish(bytes, start, end, hash, next, change);
                changed += 1;
            }
        }
        if let Some(previous) = self.frontier
            && frontier > previous
        {
            let earliest = earliest_start(plan, previous);
            for (bytes, key) in &series.keys {
                for (&(start, end), cell) in key.cells.range((earliest, Millis::MIN)..) {
                    let close = close_of(plan, end);
                    if close > previous && close <= frontier {
                        let change =
                            render_change(key, names, start, end, Kind::Final, &cell.values);
                        self.publish(bytes, start, end, hash(&cell.rendered), next, change);
                        changed += 1;
                    }
                }
            }
        }
        self.frontier = Some(frontier);
        changed += self.vanish(plan, frontier, next);
        if changed > 0 {
            self.seq = next;
        }
        self.forget_tombstones();
        changed
    }

    /// Open windows not seen by this refresh: removed (merged away) if they could still
    /// change, else forgotten (final beyond what the cache holds).
    fn vanish(&mut self, plan: &MetricPlan, frontier: Millis, next: u64) -> usize {
        let round = self.round;
        let mut gone = Vec::new();
        for (bytes, windows) in &self.windows {
            for (&(start, end), entry) in windows {
                if entry.is_open() && entry.seen != round {
                    gone.push((Arc::clone(bytes), start, end, Arc::clone(&entry.change)));
                }
            }
        }
        let mut removed = 0;
        for (bytes, start, end, change) in gone {
            if close_of(plan, end) > frontier {
                let json = format!(
                    "{{\"key\":{},\"start\":{start},\"end\":{end},\"removed\":true}}",
                    change.key_json
                );
                let change = Change {
                    key: Arc::clone(&change.key),
                    key_json: Arc::clone(&change.key_json),
                    start,
                    end,
                    is_final: false,
                    removed: true,
                    values: Box::new([]),
                    json: json.into_boxed_str(),
                };
                self.publish(&bytes, start, end, 0, next, change);
                removed += 1;
            } else {
                self.forget(&bytes, start, end);
            }
        }
        removed
    }

    /// Records `change` of a window as of publication `seq`.
    fn publish(
        &mut self,
        bytes: &[u8],
        start: Millis,
        end: Millis,
        hash: u64,
        seq: u64,
        change: Change,
    ) {
        let tombstone = change.is_final || change.removed;
        let bytes: Arc<[u8]> = match self.windows.get_key_value(bytes) {
            Some((bytes, _)) => Arc::clone(bytes),
            None => Arc::from(bytes),
        };
        let windows = self.windows.entry(Arc::clone(&bytes)).or_default();
        let entry = Entry {
            seq,
            hash,
            seen: self.round,
            change: Arc::new(change),
        };
        if let Some(old) = windows.insert((start, end), entry) {
            self.by_seq
                .remove(&(old.seq, (Arc::clone(&bytes), start, end)));
        }
        self.by_seq.insert((seq, (Arc::clone(&bytes), start, end)));
        if tombstone {
            self.tombstones.push_back((seq, (bytes, start, end)));
        }
    }

    fn forget(&mut self, bytes: &Arc<[u8]>, start: Millis, end: Millis) {
        if let Some(windows) = self.windows.get_mut(bytes) {
            if let Some(old) = windows.remove(&(start, end)) {
                self.by_seq
                    .remove(&(old.seq, (Arc::clone(bytes), start, end)));
            }
            if windows.is_empty() {
                self.windows.remove(bytes);
            }
        }
    }

    /// Drops tombstones published `retain` publications ago or more.
    fn forget_tombstones(&mut self) {
        let keep_after = self.seq.saturating_sub(self.retain);
        while let Some((seq, _)) = self.tombstones.front()
            && *seq <= keep_after
        {
            let Some((seq, (bytes, start, end))) = self.tombstones.pop_front() else {
                break;
            };
            // Only if it is still that tombstone (a window may come back).
            let current = self
                .windows
                .get(&bytes)
                .and_then(|windows| windows.get(&(start, end)))
                .is_some_and(|entry| entry.seq == seq && !entry.is_open());
            if current {
                self.forget(&bytes, start, end);
                self.dropped = self.dropped.max(seq);
            }
        }
    }

    fn entry_mut(&mut self, bytes: &[u8], start: Millis, end: Millis) -> Option<&mut Entry> {
        self.windows.get_mut(bytes)?.get_mut(&(start, end))
    }

    /// Publishes an error unless it is the current one; returns whether it did.
    fn fail(&mut self, failure: Failure) -> bool {
        if self
            .error
            .as_ref()
            .is_some_and(|(_, current)| *current == failure)
        {
            return false;
        }
        self.seq += 1;
        self.error = Some((self.seq, failure));
        true
    }

    /// What a feed at `cursor` has not taken, through `filters`, and moves the cursor: an
    /// error it was not told yet (then the windows at the next take), every open window on the
    /// first take, else the windows changed since. A cursor from before the oldest dropped
    /// tombstone lagged: it is told so, and its next take is a first take.
    pub(crate) fn take(
        &self,
        cursor: &mut Cursor,
        filters: &SeriesQuery,
        metric: &str,
    ) -> Result<Vec<Arc<Change>>, ApiError> {
        if let Some((seq, failure)) = &self.error
            && *seq > cursor.error
        {
            cursor.error = *seq;
            return Err(failure.error());
        }
        if self.seq == 0 {
            return Ok(Vec::new());
        }
        let accepts = |change: &Change| filters.accepts(change.key.values());
        let taken = match cursor.seq {
            None => self
                .windows
                .values()
                .flat_map(BTreeMap::values)
                .filter(|entry| entry.is_open() && accepts(&entry.change))
                .map(|entry| Arc::clone(&entry.change))
                .collect(),
            Some(seq) if seq >= self.seq => Vec::new(),
            Some(seq) if seq < self.dropped => {
                cursor.seq = None;
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    LAGGED,
                    format!(
                        "this subscription was not read for longer than the server keeps changes; the next update holds every open window, and windows that became final meanwhile are in GET /v1/metrics/{metric}"
                    ),
                ));
            }
            Some(seq) => {
                let from = (seq + 1, (Arc::from(&[][..]), Millis::MIN, Millis::MIN));
                self.by_seq
                    .range(from..)
                    .filter_map(|(_, (bytes, start, end))| {
                        self.windows.get(bytes)?.get(&(*start, *end))
                    })
                    .filter(|entry| accepts(&entry.change))
                    .map(|entry| Arc::clone(&entry.change))
                    .collect()
            }
        };
        cursor.seq = Some(self.seq);
        Ok(taken)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Final,
}

/// A window's change, rendered once: `{"key", "start", "end", "final", "values": {…}}`.
fn render_change(
    key: &KeySeries,
    names: &[String],
    start: Millis,
    end: Millis,
    kind: Kind,
    values: &[OutputValue],
) -> Change {
    let is_final = kind == Kind::Final;
    let mut json = String::with_capacity(key.json.len() + 64 + 16 * values.len());
    let _ = write!(
        json,
        "{{\"key\":{},\"start\":{start},\"end\":{end},\"final\":{is_final},\"values\":{{",
        key.json
    );
    for (index, (name, value)) in names.iter().zip(values).enumerate() {
        if index > 0 {
            json.push(',');
        }
        render::string(name, &mut json);
        json.push(':');
        render::value(value, &mut json);
    }
    json.push_str("}}");
    Change {
        key: Arc::clone(&key.key),
        key_json: Arc::clone(&key.json),
        start,
        end,
        is_final,
        removed: false,
        values: values.into(),
        json: json.into_boxed_str(),
    }
}

fn hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The earliest start of a window closing after `frontier`.
fn earliest_start(plan: &MetricPlan, frontier: Millis) -> Millis {
    let span = match plan.window {
        WindowSpec::Tumble { size } => size,
        WindowSpec::Hop { size, .. } => size,
        // Sessions have no bound on their length; a day covers every realistic one.
        WindowSpec::Session { .. } => 86_400_000,
    };
    frontier
        .saturating_sub(plan.allowed_lateness)
        .saturating_sub(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::cells::Cell;
    use crate::query::params::{SeriesParams, resolve};
    use sluice_stream::agg::{AggState, PartialState};
    use sluice_stream::keys::{GroupKey, encode_text};
    use sluice_stream::sql::{MetricDefaults, parse_metric};
    use std::time::Instant;

    const MINUTE: Millis = 60_000;

    fn plan() -> MetricPlan {
        parse_metric(
            "CREATE METRIC m AS SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id, TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            &MetricDefaults {
                out_of_orderness: 0,
                allowed_lateness: 0,
                late: sluice_stream::plan::LatePolicy::Drop,
            },
        )
        .unwrap()
    }

    fn bytes(user: &str) -> Box<[u8]> {
        let mut bytes = Vec::new();
        encode_text(b"shop", &mut bytes);
        encode_text(user.as_bytes(), &mut bytes);
        bytes.into_boxed_slice()
    }

    /// Windows as (user, start, count), each a minute long.
    fn keys(
        plan: &MetricPlan,
        windows: &[(&str, Millis, u64)],
        is_final: bool,
    ) -> BTreeMap<Box<[u8]>, KeySeries> {
        let mut keys: BTreeMap<Box<[u8]>, KeySeries> = BTreeMap::new();
        for &(user, start, count) in windows {
            let key = Arc::new(GroupKey::from_bytes(&bytes(user)).unwrap());
            let series = keys
                .entry(bytes(user))
                .or_insert_with(|| KeySeries::new(plan, key, &[]));
            let state = PartialState {
                states: vec![AggState::Count(count)],
            };
            let cell = Cell::new(plan, start, start + MINUTE, is_final, state);
            series.insert(start, start + MINUTE, cell);
        }
        keys
    }

    fn open(plan: &MetricPlan, windows: &[(&str, Millis, u64)]) -> LiveSnapshot {
        LiveSnapshot {
            taken: Instant::now(),
            keys: keys(plan, windows, false),
        }
    }

    fn finals(plan: &MetricPlan, frontier: Millis, windows: &[(&str, Millis, u64)]) -> Series {
        let mut series = Series::new(Millis::MIN);
        series.frontier = frontier;
        series.keys = keys(plan, windows, true);
        series
    }

    fn filters(plan: &MetricPlan, filters: &[&str]) -> SeriesQuery {
        let params = SeriesParams {
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
            ..SeriesParams::default()
        };
        resolve(plan, &params, 10 * MINUTE, 100).unwrap()
    }

    fn take(published: &Published, cursor: &mut Cursor, filters: &SeriesQuery) -> Vec<String> {
        published
            .take(cursor, filters, "m")
            .unwrap()
            .iter()
            .map(|change| change.json.to_string())
            .collect()
    }

    #[test]
    fn changes_are_found_once_and_each_feed_takes_what_passes_its_filters_since_its_cursor() {
        let plan = plan();
        let names = vec!["n".to_owned()];
        let (all, u1) = (filters(&plan, &[]), filters(&plan, &["user_id:u1"]));
        let none = finals(&plan, Millis::MIN, &[]);
        let mut published = Published::new(100);
        let (mut a, mut b) = (Cursor::default(), Cursor::default());
        assert!(
            take(&published, &mut a, &all).is_empty(),
            "nothing published yet"
        );
        assert_eq!(a.seq, None, "the first take is still to come");

        let snapshot = open(&plan, &[("u1", 0, 1), ("u2", 0, 1)]);
        assert_eq!(published.refresh(&plan, &names, &snapshot, &none), 2);
        assert_eq!(
            take(&published, &mut a, &all),
            [
                r#"{"key":{"user_id":"u1"},"start":0,"end":60000,"final":false,"values":{"n":1}}"#,
                r#"{"key":{"user_id":"u2"},"start":0,"end":60000,"final":false,"values":{"n":1}}"#,
            ]
        );
        assert_eq!(take(&published, &mut b, &u1).len(), 1);
        let mut slow = b;

        // The same state again publishes nothing; one window changing publishes one.
        assert_eq!(published.refresh(&plan, &names, &snapshot, &none), 0);
        assert!(take(&published, &mut a, &all).is_empty());
        for count in 2..=4 {
            let snapshot = open(&plan, &[("u1", 0, count), ("u2", 0, 1)]);
            assert_eq!(published.refresh(&plan, &names, &snapshot, &none), 1);
            assert_eq!(take(&published, &mut a, &all).len(), 1);
        }
        // A feed that was not read meanwhile gets the window once, with its latest values.
        assert_eq!(
            take(&published, &mut slow, &u1),
            [r#"{"key":{"user_id":"u1"},"start":0,"end":60000,"final":false,"values":{"n":4}}"#]
        );
        let snapshot = open(&plan, &[("u1", 0, 4), ("u2", 0, 2)]);
        assert_eq!(published.refresh(&plan, &names, &snapshot, &none), 1);
        assert!(take(&published, &mut slow, &u1).is_empty(), "filtered out");

        // The minute closes: both windows final, once; a new minute opens; a window that
        // vanishes before it could close was merged away.
        let snapshot = open(&plan, &[("u1", MINUTE, 1), ("u3", MINUTE, 1)]);
        let closed = finals(&plan, MINUTE, &[("u1", 0, 4), ("u2", 0, 2)]);
        assert_eq!(published.refresh(&plan, &names, &snapshot, &closed), 4);
        let taken = take(&published, &mut a, &all);
        assert_eq!(taken.len(), 4, "{taken:?}");
        assert!(
            taken.contains(
                &r#"{"key":{"user_id":"u2"},"start":0,"end":60000,"final":true,"values":{"n":2}}"#
                    .to_owned()
            )
        );
        let snapshot = open(&plan, &[("u1", MINUTE, 1)]);
        assert_eq!(published.refresh(&plan, &names, &snapshot, &closed), 1);
        assert_eq!(
            take(&published, &mut a, &all),
            [r#"{"key":{"user_id":"u3"},"start":60000,"end":120000,"removed":true}"#]
        );
        // A new feed's first take is every open window, not what closed or vanished.
        let mut fresh = Cursor::default();
        assert_eq!(
            take(&published, &mut fresh, &all),
            [
                r#"{"key":{"user_id":"u1"},"start":60000,"end":120000,"final":false,"values":{"n":1}}"#
            ]
        );
    }

    #[test]
    fn a_feed_behind_the_kept_tombstones_lagged_and_starts_over() {
        let plan = plan();
        let names = vec!["n".to_owned()];
        let all = filters(&plan, &[]);
        let mut published = Published::new(2);
        let none = finals(&plan, Millis::MIN, &[]);
        published.refresh(&plan, &names, &open(&plan, &[("u1", 0, 1)]), &none);
        let mut behind = Cursor::default();
        assert_eq!(take(&published, &mut behind, &all).len(), 1);
        // The window closes, then enough publications pass for its tombstone to go.
        let closed = finals(&plan, MINUTE, &[("u1", 0, 1)]);
        for count in 1..=4 {
            let snapshot = open(&plan, &[("u2", MINUTE, count)]);
            assert!(published.refresh(&plan, &names, &snapshot, &closed) > 0);
        }
        assert!(
            !published.windows.contains_key(&bytes("u1")[..]),
            "tombstone dropped"
        );
        let error = published.take(&mut behind, &all, "m").unwrap_err();
        assert_eq!(error.code(), LAGGED);
        assert_eq!(behind.seq, None);
        assert_eq!(
            take(&published, &mut behind, &all),
            [
                r#"{"key":{"user_id":"u2"},"start":60000,"end":120000,"final":false,"values":{"n":4}}"#
            ]
        );
        // Errors are told once per feed, then the windows follow.
        let failure = Failure::gone("m");
        assert!(published.fail(failure.clone()));
        assert!(!published.fail(failure), "the same error is published once");
        let error = published.take(&mut behind, &all, "m").unwrap_err();
        assert_eq!(error.status(), StatusCode::GONE);
        assert!(take(&published, &mut behind, &all).is_empty());
    }
}
