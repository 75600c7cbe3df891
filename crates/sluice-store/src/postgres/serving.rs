//! Reads for the query API, as in the SQLite store: final rows from `finals` by their key
//! (tenant, then window start), open rows from `partials` by theirs, one index range per
//! partition with a watermark row; a range is one statement over both (one snapshot).

use super::{PostgresStore, big, stored_row, watermarks_of};
use crate::error::StoreError;
use crate::model::{RowPage, RowQuery, RowRange, RowsAndWatermarks, StoredRow};
use crate::roles::ResultReads;
use async_trait::async_trait;
use sluice_core::time::Millis;
use tokio_postgres::GenericClient;

/// Final and open rows of one tenant in a range: `$1`–`$3` metric, generation, tenant; `$4`,
/// `$5` the end range; `$6`, `$7` the start range; `$8` the limit; `$9` the partitions whose
/// open rows are left out.
const ROWS_IN: &str = "SELECT NULL::BIGINT, group_key, window_start, window_end, version, state FROM finals \
     WHERE metric = $1 AND generation = $2 AND tenant = $3 AND window_start >= $6 AND window_start < $7 \
     AND window_end > $4 AND window_end <= $5 \
     UNION ALL \
     SELECT partition, group_key, window_start, window_end, version, state FROM partials \
     WHERE metric = $1 AND generation = $2 \
     AND partition IN (SELECT partition FROM watermarks WHERE metric = $1 AND generation = $2 AND partition <> ALL($9)) \
     AND tenant = $3 AND window_start >= $6 AND window_start < $7 AND window_end > $4 AND window_end <= $5 \
     ORDER BY 3 LIMIT $8";

/// A page of final rows: `$1`–`$3` metric, generation, tenant; `$4`, `$5` the start range;
/// `$6` the end bound; `$7` the limit; `$8`–`$10` the cursor (a row value below every key for
/// the first page).
const PAGE: &str = "SELECT group_key, window_start, window_end, version, state FROM finals \
     WHERE metric = $1 AND generation = $2 AND tenant = $3 AND window_start >= $4 \
     AND (window_start, group_key, window_end) > ($8, $9, $10) \
     AND window_start < $5 AND window_end <= $6 \
     ORDER BY window_start, group_key, window_end LIMIT $7";

/// The rows of `range` but the open rows of `skip`, or `None` when there are more than its
/// limit.
async fn rows_of_range(
    client: &impl GenericClient,
    range: &RowRange,
    skip: &[u32],
) -> Result<Option<Vec<StoredRow>>, tokio_postgres::Error> {
    let limit = i64::try_from(range.limit)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1);
    let skip: Vec<i64> = skip.iter().map(|&p| big(p)).collect();
    let rows = client
        .query(
            ROWS_IN,
            &[
                &range.metric,
                &big(range.generation),
                &range.tenant,
                &range.end_after,
                &range.end_upto,
                &range.start_from,
                &range.start_before,
                &limit,
                &skip,
            ],
        )
        .await?;
    let rows: Vec<StoredRow> = rows
        .iter()
        .map(|row| {
            let partition = row.get::<_, Option<i64>>(0).map(|p| p as u32);
            stored_row(row, 1, partition, range.tenant.clone())
        })
        .collect();
    Ok((rows.len() <= range.limit).then_some(rows))
}

#[async_trait]
impl ResultReads for PostgresStore {
    async fn query_rows(&self, query: RowQuery) -> Result<Vec<StoredRow>, StoreError> {
        // No limit: every row comes back.
        Ok(self.rows_in(query.into_range()).await?.unwrap_or_default())
    }

    async fn rows_in(&self, range: RowRange) -> Result<Option<Vec<StoredRow>>, StoreError> {
        let client = self.client().await?;
        rows_of_range(&**client, &range, &[])
            .await
            .map_err(self.failed())
    }

    async fn live_rows(
        &self,
        range: RowRange,
        skip: Vec<u32>,
    ) -> Result<Option<RowsAndWatermarks>, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.failed())?;
        let Some(rows) = rows_of_range(&*tx, &range, &skip)
            .await
            .map_err(self.failed())?
        else {
            return Ok(None);
        };
        let watermarks = watermarks_of(&*tx, &range.metric, range.generation)
            .await
            .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(Some(RowsAndWatermarks { rows, watermarks }))
    }

    async fn rows_page(&self, page: RowPage) -> Result<Vec<StoredRow>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
        let (start, key, end) = match &page.after {
            Some(after) => (after.window_start, after.key.clone(), after.window_end),
            None => (Millis::MIN, Vec::new(), Millis::MIN),
        };
        let rows = client
            .query(
                PAGE,
                &[
                    &page.metric,
                    &big(page.generation),
                    &page.tenant,
                    &page.start_from,
                    &page.start_before,
                    &page.end_upto,
                    &limit,
                    &start,
                    &key,
                    &end,
                ],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| stored_row(row, 0, None, page.tenant.clone()))
            .collect())
    }
}
