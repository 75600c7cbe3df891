//! Reads for the query API: one tenant's rows of a metric generation by window end (the
//! windows that became final since a cache last looked, or that are not final yet) and by
//! window start (ranges older than the cache), each bounded; and pages of a whole range in
//! the order of `partials_by_tenant` (exports), so a page is one walk of the index.

use super::{SqliteStore, classify, stored_row};
use crate::error::StoreError;
use crate::model::{RowPage, RowRange, StoredRow};
use rusqlite::params;
use sluice_core::time::Millis;

/// The first page of a [`RowPage`]: `?1`–`?3` metric, generation, tenant; `?4`, `?5` the
/// start range; `?6` the end bound; `?7` the limit.
pub(crate) const FIRST_PAGE: &str = concat!(
    "SELECT partition, group_key, window_start, window_end, version, state FROM partials ",
    "WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 AND window_start >= ?4 ",
    "AND window_start < ?5 AND +window_end <= ?6 ",
    "ORDER BY window_start, partition, group_key, window_end LIMIT ?7"
);

/// The pages after: the cursor (`?8`–`?11`) instead of `?4`.
pub(crate) const NEXT_PAGE: &str = concat!(
    "SELECT partition, group_key, window_start, window_end, version, state FROM partials ",
    "WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 ",
    "AND (window_start, partition, group_key, window_end) > (?8, ?9, ?10, ?11) ",
    "AND window_start < ?5 AND +window_end <= ?6 ",
    "ORDER BY window_start, partition, group_key, window_end LIMIT ?7"
);

impl SqliteStore {
    /// The rows in `range`, ordered by window start. Returns `None` when there are more than
    /// `range.limit`.
    pub(crate) async fn rows_in_range(
        &self,
        range: RowRange,
    ) -> Result<Option<Vec<StoredRow>>, StoreError> {
        // SQLite has no statistics to choose between the two indexes and, given both ranges,
        // walks `partials_by_tenant` over the whole start range — every row of the metric for
        // the live snapshot, which asks for windows ending after the frontier (a handful). A
        // unary `+` keeps a term out of index selection, so the range that narrows the read
        // picks the index: reads with a lower bound on the end (live state, newly final
        // windows) go by `partials_by_end`, the others (history) by `partials_by_tenant`.
        let by_end = range.end_after > Millis::MIN;
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached(if by_end {
                    "SELECT partition, group_key, window_start, window_end, version, state FROM partials \
                     WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 AND window_end > ?4 AND window_end <= ?5 \
                     AND +window_start >= ?6 AND +window_start < ?7 ORDER BY window_start LIMIT ?8"
                } else {
                    "SELECT partition, group_key, window_start, window_end, version, state FROM partials \
                     WHERE metric = ?1 AND generation = ?2 AND tenant = ?3 AND +window_end > ?4 AND +window_end <= ?5 \
                     AND window_start >= ?6 AND window_start < ?7 ORDER BY window_start LIMIT ?8"
                })
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
        })
        .await
    }

    /// The next page of `page`: `partials_by_tenant` holds the primary key's other columns
    /// after `window_start` (partition, group key, window end), so the page order is the
    /// index's and the cursor a row-value bound on it. With a cursor the row value is the only
    /// lower bound: given `window_start >= ?` beside it, SQLite seeks by that instead and every
    /// page walks the range again from its start (pages cost the square of their count).
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
            let to_row =
                |row: &rusqlite::Row<'_>| stored_row(row, row.get(0)?, page.tenant.clone());
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
                        &after.partition,
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
