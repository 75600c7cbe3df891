//! What the store holds, as plain values: metric definitions, pipeline positions, and partial
//! aggregate rows (encoded group keys and states are opaque bytes here; the stream engine owns
//! their format and its versioning).

use serde::Serialize;
use sluice_core::access::Role;
use sluice_core::time::Millis;

/// Where a metric definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A `[[metrics]]` table in the config file.
    Config,
    /// `POST /v1/admin/metrics`.
    Api,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }

    pub(crate) fn parse(text: &str) -> Origin {
        if text == "config" {
            Origin::Config
        } else {
            Origin::Api
        }
    }
}

/// A metric definition and which generation of its results is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricRecord {
    /// Unique name.
    pub name: String,
    /// The `CREATE METRIC` statement.
    pub sql: String,
    /// Whether it was computed from the earliest retained offset.
    pub backfill: bool,
    /// Results of this generation are served; a replay computes the next one beside it and
    /// switches atomically.
    pub generation: u32,
    /// When it was created.
    pub created_at: Millis,
    /// Config file or API.
    pub origin: Origin,
}

impl MetricRecord {
    /// The pipeline computing generation `generation` of `metric`.
    pub fn pipeline_of(metric: &str, generation: u32) -> String {
        format!("{metric}@{generation}")
    }

    /// The pipeline computing the current generation.
    pub fn pipeline(&self) -> String {
        Self::pipeline_of(&self.name, self.generation)
    }
}

/// A pipeline partition's committed position and its owner's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The fencing token of the current owner: a commit with another epoch is refused.
    pub epoch: u64,
    /// The next source offset to read; every record before it is reflected in the rows.
    pub offset: u64,
    /// The partition's event-time clock at that offset.
    pub event_time: Option<Millis>,
}

/// One partial aggregate: a (tenant, group key, window) of one metric generation, computed
/// from one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Source partition.
    pub partition: u32,
    /// Tenant (also inside `key`; separate so reads filter on it).
    pub tenant: String,
    /// Encoded tenant + group key values.
    pub key: Vec<u8>,
    /// Window start, inclusive.
    pub window_start: Millis,
    /// Window end, exclusive.
    pub window_end: Millis,
    /// Last emitted version of the window.
    pub version: u32,
    /// Encoded partial state.
    pub state: Vec<u8>,
}

/// A row to delete: a session window whose bounds changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetractedRow {
    /// Tenant.
    pub tenant: String,
    /// Encoded key.
    pub key: Vec<u8>,
    /// Window start.
    pub window_start: Millis,
    /// Window end.
    pub window_end: Millis,
}

/// What one metric changed in one partition since the previous checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricCommit {
    /// The metric.
    pub metric: String,
    /// The generation being computed.
    pub generation: u32,
    /// Its watermark at the checkpoint.
    pub watermark: Option<Millis>,
    /// Rows to delete (applied first).
    pub retracted: Vec<RetractedRow>,
    /// Rows to insert or replace.
    pub changed: PackedRows,
}

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

impl StoredRow {
    /// This row's columns, borrowed.
    pub fn as_changed(&self) -> ChangedRow<'_> {
        ChangedRow {
            tenant: &self.tenant,
            key: &self.key,
            window_start: self.window_start,
            window_end: self.window_end,
            version: self.version,
            state: &self.state,
        }
    }
}

/// One checkpoint of one pipeline partition: rows and position, committed together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    /// The next offset to read.
    pub offset: u64,
    /// The event-time clock.
    pub event_time: Option<Millis>,
    /// Per metric, what changed.
    pub metrics: Vec<MetricCommit>,
}

/// Rows to read for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowQuery {
    /// The metric.
    pub metric: String,
    /// Its generation.
    pub generation: u32,
    /// Only this tenant's rows.
    pub tenant: String,
    /// Windows starting at or after this.
    pub from: Millis,
    /// Windows starting before this.
    pub to: Millis,
}

/// A tenant created through the admin API (tenants of the config file are not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRecord {
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
    /// Requests per second per key (`None`: the configured default).
    pub requests_per_second: Option<u32>,
    /// Events per UTC day per write key (`None`: the configured default).
    pub events_per_day: Option<u64>,
}

/// A key created through the admin API. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Public id (`key_…`).
    pub id: String,
    /// Its tenant (`None` for admin keys).
    pub tenant: Option<String>,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret.
    #[serde(skip)]
    pub digest: [u8; 32],
    /// The secret's first characters, to recognise it.
    pub hint: String,
    /// A label chosen by the admin.
    pub label: String,
    /// When it was created.
    pub created_at: Millis,
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
}
