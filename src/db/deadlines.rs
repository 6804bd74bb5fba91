//! Deadline changes: the conditional write that moves an order's deadline,
//! changes kept for orders not seen yet, and the record of each change its
//! event is built from.

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{Int4, Nullable, Text, Timestamptz},
};
use diesel_async::RunQueryDsl;

use super::{Database, error::Result, rows::OrderRow};
use crate::domain::{Order, OrderId, deadline::RecordedChange};

/// A row of `deadline_changes`.
#[derive(Debug, QueryableByName)]
struct ChangeRow {
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    received_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    applied_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    event_published_at: Option<DateTime<Utc>>,
}

impl From<ChangeRow> for RecordedChange {
    fn from(row: ChangeRow) -> Self {
        Self {
            expires_at: row.expires_at,
            received_at: row.received_at,
            applied_at: row.applied_at,
            attempts: row.attempts.max(0) as u32,
            event_published_at: row.event_published_at,
        }
    }
}

/// `$1` the order, `$2` the new deadline, `$3` its next check, `$4` when
/// the change was received, `$5` now. Moves a pending order whose last
/// change was received before this one, and keeps the change as applied.
/// A deadline the order was given before keeps its first record: its event
/// has one id, and so one body.
const CHANGE_DEADLINE: &str = "WITH moved AS ( \
        UPDATE orders SET expires_at = $2, next_check_at = $3, deadline_changed_at = $4 \
        WHERE order_id = $1 AND status = 'pending' \
          AND (deadline_changed_at IS NULL OR deadline_changed_at <= $4) \
        RETURNING orders.*), \
    kept AS ( \
        INSERT INTO deadline_changes AS c \
            (order_id, expires_at, received_at, applied_at, attempts) \
        SELECT order_id, $2, $4, $5, attempts FROM moved \
        ON CONFLICT (order_id, expires_at) DO UPDATE SET received_at = EXCLUDED.received_at, \
            applied_at = coalesce(c.applied_at, EXCLUDED.applied_at), \
            attempts = CASE WHEN c.applied_at IS NULL THEN EXCLUDED.attempts ELSE c.attempts END) \
    SELECT * FROM moved";

/// `$1` the order, `$2` the deadline, `$3` when it was received: a change
/// of an order not seen yet, kept (the latest received of the same
/// deadline).
const KEEP_DEADLINE_CHANGE: &str = "INSERT INTO deadline_changes AS c \
        (order_id, expires_at, received_at) VALUES ($1, $2, $3) \
    ON CONFLICT (order_id, expires_at) DO UPDATE SET received_at = EXCLUDED.received_at \
        WHERE c.applied_at IS NULL AND c.received_at < EXCLUDED.received_at";

const CHANGE_COLUMNS: &str = "expires_at, received_at, applied_at, attempts, event_published_at";

impl Database {
    /// Moves a pending order's deadline to `expires_at` and its next check
    /// to `next_check_at`, unless a change received after `received_at`
    /// moved it first; keeps the change. The order as moved, or `None`
    /// when it was not (no longer pending, or a later change holds).
    pub async fn change_deadline(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Order>> {
        self.call(|mut conn| async move {
            let moved: Vec<OrderRow> = diesel::sql_query(CHANGE_DEADLINE)
                .bind::<Text, _>(order_id.as_str())
                .bind::<Timestamptz, _>(expires_at)
                .bind::<Timestamptz, _>(next_check_at)
                .bind::<Timestamptz, _>(received_at)
                .bind::<Timestamptz, _>(now)
                .load(&mut conn)
                .await?;
            moved.into_iter().next().map(Order::try_from).transpose()
        })
        .await
    }

    /// Keeps a change of an order not known yet, for when it arrives.
    pub async fn keep_deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::sql_query(KEEP_DEADLINE_CHANGE)
                .bind::<Text, _>(order_id.as_str())
                .bind::<Timestamptz, _>(expires_at)
                .bind::<Timestamptz, _>(received_at)
                .execute(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// The change of the order to `expires_at`, as kept.
    pub async fn deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<RecordedChange>> {
        self.call(|mut conn| async move {
            let rows: Vec<ChangeRow> = diesel::sql_query(format!(
                "SELECT {CHANGE_COLUMNS} FROM deadline_changes \
                 WHERE order_id = $1 AND expires_at = $2"
            ))
            .bind::<Text, _>(order_id.as_str())
            .bind::<Timestamptz, _>(expires_at)
            .load(&mut conn)
            .await?;
            Ok(rows.into_iter().next().map(RecordedChange::from))
        })
        .await
    }

    /// Every change of the order, applied or waiting, by when it came.
    pub async fn deadline_changes_of(&self, order_id: &OrderId) -> Result<Vec<RecordedChange>> {
        self.call(|mut conn| async move {
            let rows: Vec<ChangeRow> = diesel::sql_query(format!(
                "SELECT {CHANGE_COLUMNS} FROM deadline_changes \
                 WHERE order_id = $1 ORDER BY received_at"
            ))
            .bind::<Text, _>(order_id.as_str())
            .load(&mut conn)
            .await?;
            Ok(rows.into_iter().map(RecordedChange::from).collect())
        })
        .await
    }

    /// Records that the event of the change to `expires_at` was confirmed.
    pub async fn mark_deadline_change_announced(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::sql_query(
                "UPDATE deadline_changes SET event_published_at = now() \
                 WHERE order_id = $1 AND expires_at = $2 AND event_published_at IS NULL",
            )
            .bind::<Text, _>(order_id.as_str())
            .bind::<Timestamptz, _>(expires_at)
            .execute(&mut conn)
            .await?;
            Ok(())
        })
        .await
    }
}
