//! Reads for the query API. One tenant's rows of a metric generation come from two tables:
//! `finals` (one row per window every partition has closed into it; read by its primary key,
//! tenant then window start) and `partials` (the windows partitions have open; few, read by
//! their key, one seek per partition). Reads of a range take both in one statement, so one snapshot: a commit
//! moving a window from one to the other is seen whole or not at all. Exports page through
//! `finals` alone, in its key order, so a page is one walk of the table.

use super::{SqliteStore, classify, stored_row};
use crate::error::StoreError;
use crate::model::{RowPage, RowRange, RowsAndWatermarks, StoredRow};
use rusqlite::{Connection, params};
use std::path::Path;

/// Final rows of one tenant in a range: `?1`–`?3` metric, generation, tenant; `?4`, `?5` the
/// end range; `?6`, `?7` the start range. Found by start, their key's next column; a unary `+`
/// keeps the end range out of index selection.
const FINALS_IN: &str = concat!(
    "SELECT NULL, group_key, window_start, window_end, version, state FROM finals ",
    "WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 AND window_start >= ?6 AND window_start < ?7 ",
    "AND +window_end > ?4 AND +window_end <= ?5 "
);

/// Open rows of one tenant in a range, with the parameters of [`FINALS_IN`]: this, the
/// partitions to read ([`partitions_of`]), then [`OPEN_IN_TAIL`]. `partials` has no index
/// beside its key (metric, generation, partition, tenant, start, …): the read seeks to the
/// tenant's start range once per partition and walks it, instead of one key lookup per row.
const OPEN_IN_HEAD: &str = concat!(
    "SELECT partition, group_key, window_start, window_end, version, state FROM partials ",
    "WHERE metric = ?1 AND generation = ?2 AND partition IN ("
);

/// The rest of [`OPEN_IN_HEAD`].
const OPEN_IN_TAIL: &str = concat!(
    ") AND tenant = ?3 AND window_start >= ?6 AND window_start < ?7 ",
    "AND +window_end > ?4 AND +window_end <= ?5 "
);

/// The partitions whose open rows a read of metric `?1`, generation `?2` takes: every
/// partition that holds open rows of a generation has its watermark row (a commit writes both
/// in one transaction; rows copied into a generation bring one along), less those in `skip`.
/// They are numbers, written into the text.
fn partitions_of(skip: &[u32]) -> String {
    let mut sql =
        String::from("SELECT partition FROM watermarks WHERE metric = ?1 AND generation = ?2");
    if !skip.is_empty() {
        let list: Vec<String> = skip.iter().map(u32::to_string).collect();
        sql.push_str(&format!(" AND partition NOT IN ({})", list.join(",")));
    }
    sql
}

/// The statement reading a range (both tables, one snapshot) without the open rows of the
/// partitions in `skip`, ordered by start and limited to `?8` rows.
pub(crate) fn rows_in_sql(skip: &[u32]) -> String {
    format!(
        "{FINALS_IN}UNION ALL {OPEN_IN_HEAD}{}{OPEN_IN_TAIL}ORDER BY 3 LIMIT ?8",
        partitions_of(skip)
    )
}

/// The first page of a [`RowPage`]: `?1`–`?3` metric, generation, tenant; `?4`, `?5` the
/// start range; `?6` the end bound; `?7` the limit.
pub(crate) const FIRST_PAGE: &str = concat!(
    "SELECT NULL, group_key, window_start, window_end, version, state FROM finals ",
    "WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 AND window_start >= ?4 ",
    "AND window_start < ?5 AND window_end <= ?6 ",
    "ORDER BY window_start, group_key, window_end LIMIT ?7"
);

/// The pages after: the cursor (`?8`–`?10`) instead of `?4`. With a cursor the row value is
/// the only lower bound: given `window_start >= ?` beside it, SQLite seeks by that instead and
/// every page walks the range again from its start (pages cost the square of their count).
pub(crate) const NEXT_PAGE: &str = concat!(
    "SELECT NULL, group_key, window_start, window_end, version, state FROM finals ",
    "WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 ",
    "AND (window_start, group_key, window_end) > (?8, ?9, ?10) ",
    "AND window_start < ?5 AND window_end <= ?6 ",
    "ORDER BY window_start, group_key, window_end LIMIT ?7"
);

/// The rows of `range` (without the open rows of the partitions in `skip`), or `None` when
/// there are more than its limit.
fn rows_of_range(
    connection: &Connection,
    path: &Path,
    range: &RowRange,
    skip: &[u32],
) -> Result<Option<Vec<StoredRow>>, StoreError> {
    let mut statement = connection
        .prepare_cached(&rows_in_sql(skip))
        .map_err(|e| classify(path, e))?;
    let limit = i64::try_from(range.limit).unwrap_or(i64::MAX - 1) + 1;
    let rows = statement
        .query_map(
            params![
                range.metric,
                range.generation,
                range.tenant,
                range.end_after,
                range.end_upto,
                range.start_from,
                range.start_before,
                limit
            ],
            |row| stored_row(row, row.get(0)?, range.tenant.clone()),
        )
        .map_err(|e| classify(path, e))?;
    let rows = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| classify(path, e))?;
    Ok((rows.len() <= range.limit).then_some(rows))
}

impl SqliteStore {
    /// The rows in `range`, ordered by window start. Returns `None` when there are more than
    /// `range.limit`.
    pub(crate) async fn rows_in_range(
        &self,
        range: RowRange,
    ) -> Result<Option<Vec<StoredRow>>, StoreError> {
        self.read(move |connection, path| rows_of_range(connection, path, &range, &[]))
            .await
    }

    /// The rows in `range` but the open rows of `skip`, and the generation's watermarks, in
    /// one read transaction.
    pub(crate) async fn live_rows_in(
        &self,
        range: RowRange,
        skip: Vec<u32>,
    ) -> Result<Option<RowsAndWatermarks>, StoreError> {
        self.read(move |connection, path| {
            let tx = connection
                .unchecked_transaction()
                .map_err(|e| classify(path, e))?;
            let Some(rows) = rows_of_range(&tx, path, &range, &skip)? else {
                return Ok(None);
            };
            let watermarks = super::watermarks_of(&tx, &range.metric, range.generation)
                .map_err(|e| classify(path, e))?;
            tx.finish().map_err(|e| classify(path, e))?;
            Ok(Some(RowsAndWatermarks { rows, watermarks }))
        })
        .await
    }

    /// The next page of `page`, from `finals` in its key order.
    pub(crate) async fn rows_of_page(&self, page: RowPage) -> Result<Vec<StoredRow>, StoreError> {
        self.read(move |connection, path| {
            let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
            let base = params![
                page.metric,
                page.generation,
                page.tenant,
                page.start_from,
                page.start_before,
                page.end_upto,
                limit
            ];
            let to_row = |row: &rusqlite::Row<'_>| stored_row(row, None, page.tenant.clone());
            let rows = match &page.after {
                None => {
                    let mut statement = connection
                        .prepare_cached(FIRST_PAGE)
                        .map_err(|e| classify(path, e))?;
                    statement
                        .query_map(base, to_row)
                        .map_err(|e| classify(path, e))?
                        .collect::<Result<Vec<_>, _>>()
                }
                Some(after) => {
                    let mut statement = connection
                        .prepare_cached(NEXT_PAGE)
                        .map_err(|e| classify(path, e))?;
                    let mut all: Vec<&dyn rusqlite::ToSql> = base.to_vec();
                    all.extend([
                        &after.window_start as &dyn rusqlite::ToSql,
                        &after.key,
                        &after.window_end,
                    ]);
                    statement
                        .query_map(all.as_slice(), to_row)
                        .map_err(|e| classify(path, e))?
                        .collect::<Result<Vec<_>, _>>()
                }
            };
            rows.map_err(|e| classify(path, e))
        })
        .await
    }
}
