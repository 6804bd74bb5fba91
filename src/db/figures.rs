//! The figures `paywait status` and the status page show, each read
//! through an index or a small table: never a scan of `orders`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text, Timestamptz},
};
use diesel_async::RunQueryDsl;

use super::Database;
use crate::{
    domain::{OrderFigures, Parked, status::OVERDUE_AFTER},
    error::Result,
};

/// Orders still in flight, by when they are due, through the partial index
/// `orders_unsettled_next_check_at_status` (an index-only scan: the status
/// and the deadline are in the index). `$1` now, `$2` now less
/// [`OVERDUE_AFTER`].
pub const IN_FLIGHT: &str = "SELECT \
        count(*) FILTER (WHERE status = 'pending') AS pending, \
        count(*) FILTER (WHERE status = 'pending' AND expires_at > $1 \
                         AND expires_at <= $1 + interval '1 minute') AS due_next_minute, \
        count(*) FILTER (WHERE status = 'pending' AND expires_at > $1 \
                         AND expires_at <= $1 + interval '1 hour') AS due_next_hour, \
        count(*) FILTER (WHERE status = 'pending' AND next_check_at < $2) AS overdue, \
        count(*) FILTER (WHERE status <> 'pending') AS events_owed \
    FROM orders WHERE event_published_at IS NULL";

/// Events owed for longer than [`OVERDUE_AFTER`]: the few settled rows of
/// the same index, read in full. `$1` now less [`OVERDUE_AFTER`].
pub const OWED_LATE: &str = "SELECT count(*) AS owed_late FROM orders \
    WHERE event_published_at IS NULL AND status <> 'pending' \
      AND coalesce(closed_at, paid_at, created_at) < $1";

#[derive(QueryableByName)]
struct InFlight {
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    due_next_minute: i64,
    #[diesel(sql_type = BigInt)]
    due_next_hour: i64,
    #[diesel(sql_type = BigInt)]
    overdue: i64,
    #[diesel(sql_type = BigInt)]
    events_owed: i64,
}

#[derive(QueryableByName)]
struct OwedLate {
    #[diesel(sql_type = BigInt)]
    owed_late: i64,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    detail: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Database {
    /// The orders: settled ones from the counts the triggers keep, those in
    /// flight through the partial index.
    pub async fn order_figures(&self, now: DateTime<Utc>) -> Result<OrderFigures> {
        let mut conn = self.conn().await?;
        let in_flight: InFlight = diesel::sql_query(IN_FLIGHT)
            .bind::<Timestamptz, _>(now)
            .bind::<Timestamptz, _>(now - OVERDUE_AFTER)
            .get_result(&mut conn)
            .await?;
        let late: OwedLate = diesel::sql_query(OWED_LATE)
            .bind::<Timestamptz, _>(now - OVERDUE_AFTER)
            .get_result(&mut conn)
            .await?;
        let counts: Vec<Counted> = diesel::sql_query(
            "SELECT status AS key, close_reason AS detail, sum(orders)::bigint AS n \
             FROM order_counts GROUP BY status, close_reason",
        )
        .load(&mut conn)
        .await?;
        let mut figures = OrderFigures {
            pending: count(in_flight.pending),
            due_next_minute: count(in_flight.due_next_minute),
            due_next_hour: count(in_flight.due_next_hour),
            overdue: count(in_flight.overdue),
            events_owed: count(in_flight.events_owed),
            events_owed_late: count(late.owed_late),
            ..OrderFigures::default()
        };
        for counted in counts {
            match counted.key.as_str() {
                "paid" => figures.paid += count(counted.n),
                "closed" => {
                    figures.closed += count(counted.n);
                    *figures.closed_by_reason.entry(counted.detail).or_default() +=
                        count(counted.n);
                }
                _ => {}
            }
        }
        figures.closed_by_reason.retain(|_, n| *n > 0);
        Ok(figures)
    }

    /// Parked messages by reason.
    pub async fn parked_by_reason(&self) -> Result<BTreeMap<String, u64>> {
        let mut conn = self.conn().await?;
        let counts: Vec<Counted> = diesel::sql_query(
            "SELECT reason AS key, '' AS detail, count(*) AS n \
             FROM parked_messages GROUP BY reason",
        )
        .load(&mut conn)
        .await?;
        Ok(counts
            .into_iter()
            .map(|counted| (counted.key, count(counted.n)))
            .collect())
    }

    /// Records a message parked in the dead queue under `parked_id`.
    pub async fn record_parked(&self, parked: &Parked) -> Result<()> {
        let mut conn = self.conn().await?;
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
    }

    /// Forgets parked messages that were moved back to their queues.
    pub async fn forget_parked(&self, parked_ids: &[String]) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::sql_query("DELETE FROM parked_messages WHERE parked_id = ANY($1)")
            .bind::<diesel::sql_types::Array<Text>, _>(parked_ids)
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// A count from SQL, which is never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
