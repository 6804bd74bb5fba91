//! The figures `paywait status` and the status page show, each read
//! through an index or a small table, never a scan of `orders`, and each
//! bounded: a count that could run long stops at `COUNT_CAP`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Bool, Text, Timestamptz},
};
use diesel_async::RunQueryDsl;

use super::Database;
use super::error::Result;
use crate::domain::{
    OrderFigures, Parked, ParkedSample,
    status::{COUNT_CAP, OVERDUE_AFTER},
};

/// Pending orders whose deadline is in `($1, $2]`, through the partial
/// index `orders_pending_expires_at`, counted up to `$3`.
pub const DUE: &str = "SELECT count(*) AS n FROM ( \
        SELECT 1 FROM orders WHERE status = 'pending' AND expires_at > $1 AND expires_at <= $2 \
        LIMIT $3) AS due";

/// Pending orders whose check was due before `$1`, through the sweeper's
/// partial index `orders_unsettled_next_check_at`, counted up to `$2`.
pub const OVERDUE: &str = "SELECT count(*) AS n FROM ( \
        SELECT 1 FROM orders \
        WHERE event_published_at IS NULL AND next_check_at < $1 AND status = 'pending' \
        LIMIT $2) AS overdue";

/// Settled orders whose event is still owed since before `$1`: those with
/// no next check in the sweeper's partial index (a settled order has none),
/// counted up to `$2`.
pub const OWED_LATE: &str = "SELECT count(*) AS n FROM ( \
        SELECT 1 FROM orders \
        WHERE event_published_at IS NULL AND next_check_at IS NULL AND status <> 'pending' \
          AND coalesce(closed_at, paid_at, created_at) < $1 \
        LIMIT $2) AS owed";

#[derive(QueryableByName)]
struct ParkedRow {
    #[diesel(sql_type = Timestamptz)]
    parked_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Text)]
    source_queue: String,
    #[diesel(sql_type = Text)]
    error: String,
    #[diesel(sql_type = Text)]
    preview: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Kept {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    close_reason: String,
    #[diesel(sql_type = Bool)]
    announced: bool,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Database {
    /// The orders: how many in each status from the counts the triggers
    /// keep, the rest through partial indexes, each bounded by
    /// `COUNT_CAP`.
    pub async fn order_figures(&self, now: DateTime<Utc>) -> Result<OrderFigures> {
        self.call(|mut conn| async move {
            let kept: Vec<Kept> = diesel::sql_query(
                "SELECT status, close_reason, announced, sum(orders)::bigint AS n \
             FROM order_counts GROUP BY status, close_reason, announced",
            )
            .load(&mut conn)
            .await?;
            let mut figures = OrderFigures::default();
            for row in kept {
                let n = count(row.n);
                match row.status.as_str() {
                    "pending" => figures.pending += n,
                    "paid" => figures.paid += n,
                    "closed" => {
                        figures.closed += n;
                        *figures
                            .closed_by_reason
                            .entry(row.close_reason)
                            .or_default() += n;
                    }
                    _ => {}
                }
                if !row.announced && row.status != "pending" {
                    figures.events_owed += n;
                }
            }
            figures.closed_by_reason.retain(|_, n| *n > 0);
            let due = |until: DateTime<Utc>| {
                diesel::sql_query(DUE)
                    .bind::<Timestamptz, _>(now)
                    .bind::<Timestamptz, _>(until)
                    .bind::<BigInt, _>(COUNT_CAP as i64)
            };
            figures.due_next_minute = count(
                due(now + chrono::TimeDelta::minutes(1))
                    .get_result::<Count>(&mut conn)
                    .await?
                    .n,
            );
            figures.due_next_hour = count(
                due(now + chrono::TimeDelta::hours(1))
                    .get_result::<Count>(&mut conn)
                    .await?
                    .n,
            );
            for (query, into) in [
                (OVERDUE, &mut figures.overdue),
                (OWED_LATE, &mut figures.events_owed_late),
            ] {
                *into = count(
                    diesel::sql_query(query)
                        .bind::<Timestamptz, _>(now - OVERDUE_AFTER)
                        .bind::<BigInt, _>(COUNT_CAP as i64)
                        .get_result::<Count>(&mut conn)
                        .await?
                        .n,
                );
            }
            Ok(figures)
        })
        .await
    }

    /// Parked messages by reason.
    pub async fn parked_by_reason(&self) -> Result<BTreeMap<String, u64>> {
        self.call(|mut conn| async move {
            let counts: Vec<Counted> = diesel::sql_query(
                "SELECT reason AS key, count(*) AS n \
             FROM parked_messages GROUP BY reason",
            )
            .load(&mut conn)
            .await?;
            Ok(counts
                .into_iter()
                .map(|counted| (counted.key, count(counted.n)))
                .collect())
        })
        .await
    }

    /// The newest `per_reason` parked messages of each reason, newest first
    /// within a reason.
    pub async fn recent_parked(&self, per_reason: i64) -> Result<Vec<ParkedSample>> {
        self.call(|mut conn| async move {
            let rows: Vec<ParkedRow> = diesel::sql_query(
                "SELECT p.parked_at, p.reason, p.source_queue, p.error, p.preview \
             FROM (SELECT DISTINCT reason FROM parked_messages) AS r \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM parked_messages WHERE reason = r.reason \
                 ORDER BY parked_at DESC LIMIT $1) AS p \
             ORDER BY p.reason, p.parked_at DESC",
            )
            .bind::<BigInt, _>(per_reason)
            .load(&mut conn)
            .await?;
            Ok(rows
                .into_iter()
                .map(|row| ParkedSample {
                    parked_at: row.parked_at,
                    reason: row.reason,
                    source_queue: row.source_queue,
                    error: row.error,
                    preview: row.preview,
                })
                .collect())
        })
        .await
    }

    /// Records a message parked in the dead queue under `parked_id`.
    pub async fn record_parked(&self, parked: &Parked) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::sql_query(
                "INSERT INTO parked_messages (parked_id, reason, source_queue, error, preview) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (parked_id) DO NOTHING",
            )
            .bind::<Text, _>(&parked.parked_id)
            .bind::<Text, _>(parked.reason)
            .bind::<Text, _>(&parked.source_queue)
            .bind::<Text, _>(&parked.error)
            .bind::<Text, _>(&parked.preview)
            .execute(&mut conn)
            .await?;
            Ok(())
        })
        .await
    }

    /// Forgets parked messages that were moved back to their queues.
    pub async fn forget_parked(&self, parked_ids: &[String]) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::sql_query("DELETE FROM parked_messages WHERE parked_id = ANY($1)")
                .bind::<diesel::sql_types::Array<Text>, _>(parked_ids)
                .execute(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }
}

/// A count from SQL, which is never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
