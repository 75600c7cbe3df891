//! Changed rows as a checkpoint carries them to the store: packed into two buffers, each
//! state encoded once, when its window closes or at the barrier, so a checkpoint of many rows
//! allocates nothing per row; and the pool that hands the buffers back for the next one.

use sluice_core::time::Millis;
use std::sync::{Arc, Mutex};

/// Rows to insert or replace, packed: the tenants, keys and states of every row sit in two
/// buffers, so a checkpoint of many rows allocates nothing per row, and once committed the
/// buffers serve the next checkpoint (see [`PackedRows::clear`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedRows {
    tenants: String,
    bytes: Vec<u8>,
    rows: Vec<PackedRow>,
}

/// Where one row's columns are in the buffers of [`PackedRows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedRow {
    tenant: (usize, usize),
    key: (usize, usize),
    state: (usize, usize),
    window_start: Millis,
    window_end: Millis,
    version: u32,
}

/// One row of [`PackedRows`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedRow<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Encoded tenant + group key values.
    pub key: &'a [u8],
    /// Window start, inclusive.
    pub window_start: Millis,
    /// Window end, exclusive.
    pub window_end: Millis,
    /// Last emitted version of the window.
    pub version: u32,
    /// Encoded partial state.
    pub state: &'a [u8],
}

impl PackedRows {
    /// Adds a row whose state `encode_state` appends to the buffer it is given.
    pub fn push_with(
        &mut self,
        tenant: &str,
        key: &[u8],
        (window_start, window_end): (Millis, Millis),
        version: u32,
        encode_state: impl FnOnce(&mut Vec<u8>),
    ) {
        let tenant_start = self.tenants.len();
        self.tenants.push_str(tenant);
        let key_start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let state_start = self.bytes.len();
        encode_state(&mut self.bytes);
        self.rows.push(PackedRow {
            tenant: (tenant_start, self.tenants.len()),
            key: (key_start, state_start),
            state: (state_start, self.bytes.len()),
            window_start,
            window_end,
            version,
        });
    }

    /// Adds a copy of `row`.
    pub fn push(&mut self, row: ChangedRow<'_>) {
        self.push_with(
            row.tenant,
            row.key,
            (row.window_start, row.window_end),
            row.version,
            |bytes| bytes.extend_from_slice(row.state),
        );
    }

    /// The rows, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ChangedRow<'_>> + '_ {
        self.rows.iter().map(|row| ChangedRow {
            tenant: &self.tenants[row.tenant.0..row.tenant.1],
            key: &self.bytes[row.key.0..row.key.1],
            window_start: row.window_start,
            window_end: row.window_end,
            version: row.version,
            state: &self.bytes[row.state.0..row.state.1],
        })
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Drops the rows, keeping the memory.
    pub fn clear(&mut self) {
        self.tenants.clear();
        self.bytes.clear();
        self.rows.clear();
    }

    /// Bytes of memory held (what [`PackedRows::clear`] keeps).
    pub fn capacity_bytes(&self) -> usize {
        self.tenants.capacity()
            + self.bytes.capacity()
            + self.rows.capacity() * std::mem::size_of::<PackedRow>()
    }
}

impl<'a> FromIterator<ChangedRow<'a>> for PackedRows {
    fn from_iter<I: IntoIterator<Item = ChangedRow<'a>>>(rows: I) -> Self {
        let mut packed = PackedRows::default();
        for row in rows {
            packed.push(row);
        }
        packed
    }
}

/// Row buffers handed back by whoever committed a checkpoint, for the processor's next one:
/// rows then pack into memory already mapped rather than fresh pages (which the kernel zeroes
/// first, costing as much as encoding the states). Keeps at most [`RowPool::KEPT_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct RowPool(Arc<Mutex<Vec<PackedRows>>>);

impl RowPool {
    /// The most memory kept.
    pub const KEPT_BYTES: usize = 64 << 20;

    /// Empty rows, with memory from an earlier checkpoint when there is some.
    pub fn take(&self) -> PackedRows {
        self.lock().pop().unwrap_or_default()
    }

    /// Takes back committed rows (dropped if the pool is full).
    pub fn give(&self, mut rows: PackedRows) {
        rows.clear();
        let mut free = self.lock();
        let kept: usize = free.iter().map(PackedRows::capacity_bytes).sum();
        if kept + rows.capacity_bytes() <= Self::KEPT_BYTES {
            free.push(rows);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PackedRows>> {
        // The vector is valid whatever a panicking holder did to it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &'static str, key: &'static [u8], state: &'static [u8]) -> ChangedRow<'static> {
        ChangedRow {
            tenant,
            key,
            window_start: key.len() as Millis,
            window_end: 60_000,
            version: state.len() as u32,
            state,
        }
    }

    #[test]
    fn packed_rows_give_back_what_was_pushed_and_keep_their_memory_when_cleared() {
        let rows = [
            row("shop", b"k1", b"state one"),
            row("", b"", b""),
            row("caf\u{e9}", b"key three", b"3"),
        ];
        let mut packed: PackedRows = rows.iter().copied().collect();
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.iter().collect::<Vec<_>>(), rows);
        let held = packed.capacity_bytes();
        packed.clear();
        assert!(packed.is_empty());
        assert_eq!(packed.iter().count(), 0);
        assert_eq!(packed.capacity_bytes(), held);
        packed.push_with("t", b"k", (1, 2), 3, |bytes| {
            bytes.extend_from_slice(b"abc")
        });
        assert_eq!(
            packed.iter().next(),
            Some(ChangedRow {
                tenant: "t",
                key: b"k",
                window_start: 1,
                window_end: 2,
                version: 3,
                state: b"abc"
            })
        );
    }

    #[test]
    fn the_pool_hands_back_empty_rows_up_to_its_bound() {
        let pool = RowPool::default();
        assert_eq!(pool.take().capacity_bytes(), 0, "nothing kept yet");
        let chunk = RowPool::KEPT_BYTES / 4;
        let rows = |size: usize| {
            let mut rows = PackedRows::default();
            rows.push_with("t", b"k", (0, 1), 1, |bytes| bytes.resize(size, 7));
            rows
        };
        for _ in 0..6 {
            pool.give(rows(chunk));
        }
        let first = pool.take();
        assert!(first.is_empty());
        assert!(first.capacity_bytes() >= chunk);
        let (second, third, fourth) = (pool.take(), pool.take(), pool.take());
        assert!(second.capacity_bytes() >= chunk && third.capacity_bytes() >= chunk);
        assert_eq!(fourth.capacity_bytes(), 0, "three kept, then the bound");
    }
}
