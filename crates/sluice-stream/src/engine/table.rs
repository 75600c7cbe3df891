//! The open windows of one metric on one partition: their partial states, when they fire and
//! close, what changed since the last emission and since the last checkpoint.
//!
//! Lookups on the hot path: a tumbling or hopping window is found with one probe of a hash
//! table keyed by (group key bytes, window start); group keys are interned once and shared by
//! all windows of the key. Sessions are found through their key's short list of sessions.
//! Firing and closing are driven by two ordered queues of window ends. A session that grows
//! keeps its queue items (their keys are then early): an item is moved to the entry's current
//! end when it comes up, so a busy visitor's session costs one queue update per gap rather
//! than two per event, and windows still fire and close in the order of their ends.

use super::output::{
    LateReason, LiveWindows, OpenWindow, Outputs, PartialRow, UpdateKind, WindowUpdate,
};
use super::rows::{PackedRows, RowPool};
use crate::agg::{Input, PartialState};
use crate::error::StreamError;
use crate::keys::GroupKey;
use crate::plan::{AggregateKind, WindowSpec};
use crate::window::{self, Window};
use hashbrown::HashTable;
use slab::Slab;
use sluice_core::time::Millis;
use std::collections::BTreeSet;
use std::sync::Arc;

struct KeyEntry {
    key: Arc<GroupKey>,
    /// The key's tenant, as an index into `WindowTable::tenants`.
    tenant: u32,
    hash: u64,
    refs: u32,
    /// Session windows of this key (ids into `entries`); empty for other window kinds.
    sessions: Vec<usize>,
}

struct Entry {
    key: usize,
    /// The key's tenant (`KeyEntry::tenant`), here so that reads of one tenant's windows scan
    /// the entries alone.
    tenant: u32,
    window: Window,
    /// Hash in `index` (fixed windows only).
    hash: u64,
    state: PartialState,
    version: u32,
    /// The watermark passed the end: an update under the current bounds is due or done.
    fired: bool,
    /// An update under the current bounds went out.
    emitted: bool,
    /// Changed since the last emission (only tracked once fired).
    emit_dirty: bool,
    /// Changed since the last checkpoint.
    ckpt_dirty: bool,
    /// A checkpoint holds a row under the current bounds.
    stored: bool,
    /// The key of its item in `fire_queue`, if it has one.
    fire_key: Option<Millis>,
    /// The key of its item in `close_queue`, if it has one.
    close_key: Option<Millis>,
}

/// The open windows of one metric.
pub(crate) struct WindowTable {
    spec: WindowSpec,
    lateness: Millis,
    kinds: Vec<AggregateKind>,
    entries: Slab<Entry>,
    index: HashTable<usize>,
    keys: Slab<KeyEntry>,
    key_index: HashTable<usize>,
    /// Every tenant a key has had, numbered in the order first seen (never forgotten: tenants
    /// are bounded by the tenant directory).
    tenants: std::collections::HashMap<Arc<str>, u32>,
    fire_queue: BTreeSet<(Millis, usize)>,
    close_queue: BTreeSet<(Millis, usize)>,
    emit_list: Vec<usize>,
    retract_emit: Vec<(Arc<GroupKey>, Window, u32)>,
    retract_ckpt: Vec<(Arc<GroupKey>, Window)>,
    /// Windows closed since the last checkpoint, encoded as they closed.
    closed_rows: PackedRows,
    /// Whether closed windows wait in `closed_rows` for a checkpoint.
    keep_closed: bool,
    /// Memory for the sessions an event overlaps, reused.
    overlapping: Vec<usize>,
    /// Sessions' (`CREATE SESSIONS`) longest span, ms: a session's bounds never reach past
    /// its start plus this. Set, the table also deletes a closed window's stored rows instead
    /// of keeping it as final: the window leaves the table as a record.
    max_length: Option<Millis>,
    hasher: foldhash::fast::RandomState,
}

/// What [`WindowTable::checkpoint`] hands over (see [`MetricCheckpoint`](super::output::MetricCheckpoint)).
pub(crate) struct TableCheckpoint {
    pub(crate) retracted: Vec<(Arc<GroupKey>, Window)>,
    pub(crate) closed: PackedRows,
    pub(crate) changed: PackedRows,
}

/// Where emitted updates are attributed.
pub(crate) struct EmitContext<'a> {
    pub(crate) metric: &'a Arc<str>,
    pub(crate) partition: u32,
}

#[inline]
fn mix(key_hash: u64, start: Millis) -> u64 {
    let x = key_hash ^ (start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// Puts entry `id`'s item of `queue` (its key kept in `key`) at `due`, unless it is queued at
/// or before it already (it is moved when it comes up).
fn queue_at(
    queue: &mut BTreeSet<(Millis, usize)>,
    key: &mut Option<Millis>,
    due: Millis,
    id: usize,
) {
    match *key {
        Some(queued) if queued <= due => return,
        Some(queued) => {
            queue.remove(&(queued, id));
        }
        None => {}
    }
    queue.insert((due, id));
    *key = Some(due);
}

fn closed(window: &Window, lateness: Millis, watermark: Millis) -> bool {
    watermark >= window.end.saturating_add(lateness)
}

impl WindowTable {
    pub(crate) fn new(spec: WindowSpec, lateness: Millis, kinds: Vec<AggregateKind>) -> Self {
        WindowTable {
            spec,
            lateness,
            kinds,
            entries: Slab::new(),
            index: HashTable::new(),
            keys: Slab::new(),
            key_index: HashTable::new(),
            tenants: std::collections::HashMap::new(),
            fire_queue: BTreeSet::new(),
            close_queue: BTreeSet::new(),
            emit_list: Vec::new(),
            retract_emit: Vec::new(),
            retract_ckpt: Vec::new(),
            closed_rows: PackedRows::default(),
            keep_closed: true,
            overlapping: Vec::new(),
            max_length: None,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Whether closed windows are kept for the next checkpoint (they are by default).
    pub(crate) fn keep_closed_rows(&mut self, keep: bool) {
        self.keep_closed = keep;
        if !keep {
            self.closed_rows = PackedRows::default();
        }
    }

    /// Makes this the table of a `CREATE SESSIONS` plan: session bounds capped at
    /// `max_length`, and closed sessions deleted from the store rather than kept as final.
    pub(crate) fn sessions(&mut self, max_length: Millis) {
        self.max_length = Some(max_length);
    }

    /// A session's bounds, capped at the longest span.
    fn capped(&self, window: Window) -> Window {
        match self.max_length {
            Some(max) => Window {
                start: window.start,
                end: window.end.min(window.start.saturating_add(max)),
            },
            None => window,
        }
    }

    /// Number of open windows.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds one event; returns why it missed a window, if it did.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        time: Millis,
        key_bytes: &[u8],
        key_hash: u64,
        (inputs, event): (&[Input], &[u8]),
        watermark: Millis,
        limit: usize,
    ) -> Result<Option<LateReason>, StreamError> {
        match self.spec {
            WindowSpec::Tumble { size } => self.add_fixed(
                window::tumble(time, size),
                key_bytes,
                key_hash,
                (inputs, event),
                watermark,
                limit,
            ),
            WindowSpec::Hop { slide, size } => {
                let mut late = None;
                for window in window::hop(time, slide, size) {
                    let missed = self.add_fixed(
                        window,
                        key_bytes,
                        key_hash,
                        (inputs, event),
                        watermark,
                        limit,
                    )?;
                    late = late.or(missed);
                }
                Ok(late)
            }
            WindowSpec::Session { gap } => self.add_session(
                window::session(time, gap),
                key_bytes,
                key_hash,
                (inputs, event),
                watermark,
                limit,
            ),
        }
    }

    fn add_fixed(
        &mut self,
        window: Window,
        key_bytes: &[u8],
        key_hash: u64,
        (inputs, event): (&[Input], &[u8]),
        watermark: Millis,
        limit: usize,
    ) -> Result<Option<LateReason>, StreamError> {
        if closed(&window, self.lateness, watermark) {
            return Ok(Some(LateReason::WindowClosed));
        }
        let hash = mix(key_hash, window.start);
        let (entries, keys) = (&self.entries, &self.keys);
        let found = self.index.find(hash, |&id| {
            let entry = &entries[id];
            entry.window.start == window.start && keys[entry.key].key.as_bytes() == key_bytes
        });
        if let Some(&id) = found {
            self.apply(id, inputs, event);
            return Ok(None);
        }
        if self.entries.len() >= limit {
            return Ok(Some(LateReason::TooManyOpenWindows));
        }
        let Ok(key) = self.intern(key_bytes, key_hash) else {
            return Ok(Some(LateReason::InvalidKey));
        };
        let id = self.create(key, window, hash, PartialState::new(&self.kinds));
        let entries = &self.entries;
        self.index.insert_unique(hash, id, |&id| entries[id].hash);
        self.apply(id, inputs, event);
        Ok(None)
    }

    fn add_session(
        &mut self,
        window: Window,
        key_bytes: &[u8],
        key_hash: u64,
        (inputs, event): (&[Input], &[u8]),
        watermark: Millis,
        limit: usize,
    ) -> Result<Option<LateReason>, StreamError> {
        let window = self.capped(window);
        let keys = &self.keys;
        let key = self
            .key_index
            .find(key_hash, |&k| keys[k].key.as_bytes() == key_bytes)
            .copied();
        let mut overlapping = std::mem::take(&mut self.overlapping);
        overlapping.clear();
        if let Some(key) = key {
            overlapping.extend(self.keys[key].sessions.iter().copied().filter(|&id| {
                let entry = &self.entries[id];
                entry.window.overlaps(&window) && !closed(&entry.window, self.lateness, watermark)
            }));
        }
        let missed = self.add_to_sessions(
            window,
            key_bytes,
            key_hash,
            (inputs, event),
            watermark,
            limit,
            &overlapping,
        );
        self.overlapping = overlapping;
        missed
    }

    /// [`WindowTable::add_session`] once the open sessions the event's window overlaps are
    /// known.
    #[allow(clippy::too_many_arguments)]
    fn add_to_sessions(
        &mut self,
        window: Window,
        key_bytes: &[u8],
        key_hash: u64,
        (inputs, event): (&[Input], &[u8]),
        watermark: Millis,
        limit: usize,
        overlapping: &[usize],
    ) -> Result<Option<LateReason>, StreamError> {
        if overlapping.is_empty() {
            if closed(&window, self.lateness, watermark) {
                return Ok(Some(LateReason::WindowClosed));
            }
            if self.entries.len() >= limit {
                return Ok(Some(LateReason::TooManyOpenWindows));
            }
            let Ok(key) = self.intern(key_bytes, key_hash) else {
                return Ok(Some(LateReason::InvalidKey));
            };
            let id = self.create(key, window, 0, PartialState::new(&self.kinds));
            self.keys[key].sessions.push(id);
            self.apply(id, inputs, event);
            return Ok(None);
        }
        let survivor = overlapping
            .iter()
            .copied()
            .min_by_key(|&id| (self.entries[id].window.start, id))
            .unwrap_or(overlapping[0]);
        let mut bounds = window;
        for &id in overlapping {
            bounds = bounds.cover(&self.entries[id].window);
        }
        for &id in overlapping.iter().filter(|&&id| id != survivor) {
            self.retract(id);
            let (absorbed, _) = self.remove(id);
            let entry = &mut self.entries[survivor];
            entry.state.merge(&absorbed.state)?;
            entry.version = entry.version.max(absorbed.version);
        }
        self.set_bounds(survivor, self.capped(bounds));
        self.apply(survivor, inputs, event);
        Ok(None)
    }

    /// Finds or creates the interned key.
    fn intern(&mut self, key_bytes: &[u8], key_hash: u64) -> Result<usize, StreamError> {
        let keys = &self.keys;
        if let Some(&key) = self
            .key_index
            .find(key_hash, |&k| keys[k].key.as_bytes() == key_bytes)
        {
            return Ok(key);
        }
        let key = Arc::new(GroupKey::from_bytes(key_bytes)?);
        Ok(self.intern_key(key, key_hash))
    }

    fn intern_key(&mut self, key: Arc<GroupKey>, key_hash: u64) -> usize {
        let tenant = self.tenant_id(key.tenant());
        let id = self.keys.insert(KeyEntry {
            key,
            tenant,
            hash: key_hash,
            refs: 0,
            sessions: Vec::new(),
        });
        let keys = &self.keys;
        self.key_index
            .insert_unique(key_hash, id, |&k| keys[k].hash);
        id
    }

    /// The number of `tenant` in `tenants`, given if new.
    fn tenant_id(&mut self, tenant: &str) -> u32 {
        if let Some(&id) = self.tenants.get(tenant) {
            return id;
        }
        let id = self.tenants.len() as u32;
        self.tenants.insert(Arc::from(tenant), id);
        id
    }

    fn create(&mut self, key: usize, window: Window, hash: u64, state: PartialState) -> usize {
        self.keys[key].refs += 1;
        let id = self.entries.insert(Entry {
            key,
            tenant: self.keys[key].tenant,
            window,
            hash,
            state,
            version: 0,
            fired: false,
            emitted: false,
            emit_dirty: false,
            ckpt_dirty: false,
            stored: false,
            fire_key: None,
            close_key: None,
        });
        self.schedule(id);
        id
    }

    /// Queues the entry's firing (unless fired) and closing. An item already queued at or
    /// before the due time stays (it is moved when it comes up); one queued later is moved now.
    fn schedule(&mut self, id: usize) {
        let entry = &mut self.entries[id];
        let fire_at = entry.window.end;
        let close_at = fire_at.saturating_add(self.lateness);
        if !entry.fired {
            queue_at(&mut self.fire_queue, &mut entry.fire_key, fire_at, id);
        }
        queue_at(&mut self.close_queue, &mut entry.close_key, close_at, id);
    }

    fn unschedule(&mut self, id: usize) {
        let entry = &mut self.entries[id];
        if let Some(key) = entry.fire_key.take() {
            self.fire_queue.remove(&(key, id));
        }
        if let Some(key) = entry.close_key.take() {
            self.close_queue.remove(&(key, id));
        }
    }

    /// Changes a session's bounds: the old bounds are retracted where they were published.
    fn set_bounds(&mut self, id: usize, bounds: Window) {
        if self.entries[id].window == bounds {
            return;
        }
        self.retract(id);
        let entry = &mut self.entries[id];
        entry.window = bounds;
        entry.fired = false;
        entry.emit_dirty = false;
        entry.ckpt_dirty = true;
        self.schedule(id);
    }

    fn retract(&mut self, id: usize) {
        let entry = &mut self.entries[id];
        let key = &self.keys[entry.key].key;
        if entry.emitted {
            entry.version += 1;
            self.retract_emit
                .push((key.clone(), entry.window, entry.version));
        }
        if entry.stored {
            self.retract_ckpt.push((key.clone(), entry.window));
        }
        entry.emitted = false;
        entry.stored = false;
    }

    /// Removes an entry (merged away or closed), releasing its key; returns the entry and
    /// its key.
    fn remove(&mut self, id: usize) -> (Entry, Arc<GroupKey>) {
        self.unschedule(id);
        let entry = self.entries.remove(id);
        if matches!(self.spec, WindowSpec::Session { .. }) {
            self.keys[entry.key].sessions.retain(|&s| s != id);
        } else if let Ok(found) = self.index.find_entry(entry.hash, |&e| e == id) {
            found.remove();
        }
        let key = &mut self.keys[entry.key];
        let group_key = key.key.clone();
        key.refs -= 1;
        if key.refs == 0 {
            let hash = key.hash;
            if let Ok(found) = self.key_index.find_entry(hash, |&k| k == entry.key) {
                found.remove();
            }
            self.keys.remove(entry.key);
        }
        (entry, group_key)
    }

    #[inline]
    fn apply(&mut self, id: usize, inputs: &[Input], event: &[u8]) {
        let entry = &mut self.entries[id];
        for (state, &input) in entry.state.states.iter_mut().zip(inputs) {
            state.update_from(input, event);
        }
        entry.ckpt_dirty = true;
        if entry.fired && !entry.emit_dirty {
            entry.emit_dirty = true;
            self.emit_list.push(id);
        }
    }

    /// Fires windows the watermark reached, closes those past their lateness, and emits
    /// updates for everything that changed.
    pub(crate) fn advance(
        &mut self,
        watermark: Millis,
        context: &EmitContext<'_>,
        out: &mut Outputs,
    ) {
        for (key, window, version) in self.retract_emit.drain(..) {
            out.updates.push(WindowUpdate {
                metric: context.metric.clone(),
                partition: context.partition,
                key,
                window,
                version,
                kind: UpdateKind::Retract,
                state: None,
            });
        }
        while let Some(&(end, id)) = self.fire_queue.first() {
            if end > watermark {
                break;
            }
            self.fire_queue.pop_first();
            let entry = &mut self.entries[id];
            entry.fire_key = None;
            if entry.window.end != end {
                // The window grew since it was queued: queued again at its end.
                if !entry.fired {
                    entry.fire_key = Some(entry.window.end);
                    self.fire_queue.insert((entry.window.end, id));
                }
                continue;
            }
            entry.fired = true;
            if !entry.emit_dirty {
                entry.emit_dirty = true;
                self.emit_list.push(id);
            }
        }
        while let Some(&(close_at, id)) = self.close_queue.first() {
            if close_at > watermark {
                break;
            }
            let entry = &mut self.entries[id];
            let due = entry.window.end.saturating_add(self.lateness);
            if due != close_at {
                self.close_queue.pop_first();
                entry.close_key = Some(due);
                self.close_queue.insert((due, id));
                continue;
            }
            let (mut entry, key) = self.remove(id);
            if self.max_length.is_some() {
                // A closed session leaves as a record: its stored open row goes.
                if self.keep_closed && entry.stored {
                    self.retract_ckpt.push((key.clone(), entry.window));
                }
            } else if self.keep_closed {
                // Every closed window goes to the next checkpoint, changed or not: the store
                // moves it from the partition's open rows into the final ones. Encoded now,
                // while the state is in cache, rather than copied for later.
                self.closed_rows.push_with(
                    key.tenant(),
                    key.as_bytes(),
                    (entry.window.start, entry.window.end),
                    entry.version + 1,
                    |bytes| entry.state.encode_append(bytes),
                );
            }
            entry.version += 1;
            out.updates.push(WindowUpdate {
                metric: context.metric.clone(),
                partition: context.partition,
                key,
                window: entry.window,
                version: entry.version,
                kind: UpdateKind::Final,
                state: Some(entry.state),
            });
        }
        for id in std::mem::take(&mut self.emit_list) {
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            if !entry.emit_dirty {
                continue;
            }
            entry.emit_dirty = false;
            entry.emitted = true;
            entry.version += 1;
            out.updates.push(WindowUpdate {
                metric: context.metric.clone(),
                partition: context.partition,
                key: self.keys[entry.key].key.clone(),
                window: entry.window,
                version: entry.version,
                kind: UpdateKind::Update,
                state: Some(entry.state.clone()),
            });
        }
    }

    /// What changed since the previous call, encoded: retracted bounds, every window closed
    /// since (its final state), and the open windows whose state changed. The next rows are
    /// packed into memory from `pool`.
    pub(crate) fn checkpoint(&mut self, pool: &RowPool) -> TableCheckpoint {
        let closed = std::mem::replace(&mut self.closed_rows, pool.take());
        let mut changed = pool.take();
        for (_, entry) in self.entries.iter_mut().filter(|(_, e)| e.ckpt_dirty) {
            entry.ckpt_dirty = false;
            entry.stored = true;
            let key = &self.keys[entry.key].key;
            changed.push_with(
                key.tenant(),
                key.as_bytes(),
                (entry.window.start, entry.window.end),
                entry.version,
                |bytes| entry.state.encode_append(bytes),
            );
        }
        let mut retracted = std::mem::take(&mut self.retract_ckpt);
        if !retracted.is_empty() {
            let rewritten: std::collections::HashSet<(&[u8], Window)> = closed
                .iter()
                .chain(changed.iter())
                .map(|row| {
                    let window = Window {
                        start: row.window_start,
                        end: row.window_end,
                    };
                    (row.key, window)
                })
                .collect();
            retracted.retain(|(key, window)| !rewritten.contains(&(key.as_bytes(), *window)));
        }
        TableCheckpoint {
            retracted,
            closed,
            changed,
        }
    }

    /// The open windows, optionally of one tenant.
    pub(crate) fn open_windows(&self, tenant: Option<&str>) -> Vec<OpenWindow> {
        let wanted = match tenant {
            None => None,
            Some(tenant) => match self.tenants.get(tenant) {
                Some(&id) => Some(id),
                None => return Vec::new(),
            },
        };
        self.entries
            .iter()
            .filter(|(_, entry)| wanted.is_none_or(|t| entry.tenant == t))
            .map(|(_, entry)| OpenWindow {
                key: self.keys[entry.key].key.clone(),
                window: entry.window,
                version: entry.version,
                fired: entry.fired,
                state: entry.state.clone(),
            })
            .collect()
    }

    /// What the store does not have yet (see [`LiveWindows`]), optionally of one tenant.
    pub(crate) fn live(&self, tenant: Option<&str>) -> Result<LiveWindows, StreamError> {
        let ours = |of: &str| tenant.is_none_or(|t| of == t);
        Ok(LiveWindows {
            open: self.open_windows(tenant),
            closed: self
                .closed_rows
                .iter()
                .filter(|row| ours(row.tenant))
                .map(|row| PartialRow::decode(row, &self.kinds))
                .collect::<Result<_, _>>()?,
            retracted: self
                .retract_ckpt
                .iter()
                .filter(|(key, _)| ours(key.tenant()))
                .cloned()
                .collect(),
            watermark: None,
        })
    }

    /// Loads stored rows; rows of windows already closed at `watermark` are skipped (their
    /// stored state is final). Fails on rows that do not fit the metric.
    pub(crate) fn restore(
        &mut self,
        rows: Vec<PartialRow>,
        watermark: Millis,
    ) -> Result<(), String> {
        for row in rows {
            let window = row.window;
            let fits = match self.spec {
                WindowSpec::Tumble { size } => window == window::tumble(window.start, size),
                WindowSpec::Hop { slide, size } => {
                    window.end - window.start == size && window.start.rem_euclid(slide) == 0
                }
                WindowSpec::Session { .. } => window.start < window.end,
            };
            if !fits {
                return Err(format!(
                    "window {window} does not fit the metric's {:?}",
                    self.spec
                ));
            }
            let kinds_fit = row.state.states.len() == self.kinds.len()
                && row
                    .state
                    .states
                    .iter()
                    .zip(&self.kinds)
                    .all(|(state, kind)| state.fits(kind));
            if !kinds_fit {
                return Err(format!(
                    "the state of window {window} does not match the metric's aggregates"
                ));
            }
            if closed(&window, self.lateness, watermark) {
                continue;
            }
            let key_hash = self.key_hash(row.key.as_bytes());
            let keys = &self.keys;
            let key = match self
                .key_index
                .find(key_hash, |&k| keys[k].key.as_bytes() == row.key.as_bytes())
            {
                Some(&key) => key,
                None => self.intern_key(row.key.clone(), key_hash),
            };
            let hash = match self.spec {
                WindowSpec::Session { .. } => {
                    let clash = self.keys[key]
                        .sessions
                        .iter()
                        .any(|&id| self.entries[id].window.overlaps(&window));
                    if clash {
                        return Err(format!(
                            "session {window} of key {} overlaps another",
                            row.key
                        ));
                    }
                    0
                }
                _ => {
                    let hash = mix(key_hash, window.start);
                    let (entries, keys) = (&self.entries, &self.keys);
                    let duplicate = self
                        .index
                        .find(hash, |&id| {
                            entries[id].window.start == window.start
                                && keys[entries[id].key].key.as_bytes() == row.key.as_bytes()
                        })
                        .is_some();
                    if duplicate {
                        return Err(format!("window {window} of key {} appears twice", row.key));
                    }
                    hash
                }
            };
            self.keys[key].refs += 1;
            let fired = window.end <= watermark;
            let id = self.entries.insert(Entry {
                key,
                tenant: self.keys[key].tenant,
                window,
                hash,
                state: row.state,
                version: row.version,
                fired,
                emitted: row.version > 0,
                emit_dirty: false,
                ckpt_dirty: false,
                stored: true,
                fire_key: None,
                close_key: None,
            });
            self.schedule(id);
            match self.spec {
                WindowSpec::Session { .. } => self.keys[key].sessions.push(id),
                _ => {
                    let entries = &self.entries;
                    self.index.insert_unique(hash, id, |&id| entries[id].hash);
                }
            }
        }
        Ok(())
    }

    /// The hash of an encoded group key in this store's tables. Seeded randomly per store:
    /// keys come from events, and a fixed seed would let a sender flood one bucket.
    #[inline]
    pub(crate) fn key_hash(&self, key_bytes: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key_bytes)
    }
}
