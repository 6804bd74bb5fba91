//! Reminders: each kept once it is first due, and marked once its
//! `order.expiring` is confirmed.

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Int4, Nullable, Text, Timestamptz},
};
use diesel_async::RunQueryDsl;

use super::{Database, error::Result};
use crate::domain::{ReminderDue, reminder::RecordedReminder};

#[derive(Debug, QueryableByName)]
struct ReminderRow {
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    published_at: Option<DateTime<Utc>>,
}

/// `$1` the order, `$2` its deadline, `$3` the offset in milliseconds, `$4`
/// the order's checks, `$5` when it is due: kept unless it was, then read.
const KEEP_REMINDER: &str = "WITH kept AS ( \
        INSERT INTO reminders (order_id, expires_at, remind_before_ms, attempts, due_at) \
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING \
        RETURNING attempts, published_at) \
    SELECT attempts, published_at FROM kept \
    UNION ALL \
    SELECT attempts, published_at FROM reminders \
    WHERE order_id = $1 AND expires_at = $2 AND remind_before_ms = $3";

fn millis(reminder: &ReminderDue) -> i64 {
    i64::try_from(reminder.before.as_millis()).unwrap_or(i64::MAX)
}

impl Database {
    /// Keeps `reminder` with `attempts` unless it was kept before; the
    /// reminder as kept.
    pub async fn keep_reminder(
        &self,
        reminder: &ReminderDue,
        attempts: u32,
    ) -> Result<RecordedReminder> {
        self.call(|mut conn| async move {
            let rows: Vec<ReminderRow> = diesel::sql_query(KEEP_REMINDER)
                .bind::<Text, _>(reminder.order_id.as_str())
                .bind::<Timestamptz, _>(reminder.expires_at)
                .bind::<BigInt, _>(millis(reminder))
                .bind::<Int4, _>(i32::try_from(attempts).unwrap_or(i32::MAX))
                .bind::<Timestamptz, _>(reminder.due_at())
                .load(&mut conn)
                .await?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| super::DbError::CorruptRow("a reminder kept vanished".into()))?;
            Ok(RecordedReminder {
                attempts: row.attempts.max(0) as u32,
                published_at: row.published_at,
            })
        })
        .await
    }

    /// Records that the event of `reminder` was confirmed.
    pub async fn mark_reminded(&self, reminder: &ReminderDue) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::sql_query(
                "UPDATE reminders SET published_at = now() \
                 WHERE order_id = $1 AND expires_at = $2 AND remind_before_ms = $3 \
                   AND published_at IS NULL",
            )
            .bind::<Text, _>(reminder.order_id.as_str())
            .bind::<Timestamptz, _>(reminder.expires_at)
            .bind::<BigInt, _>(millis(reminder))
            .execute(&mut conn)
            .await?;
            Ok(())
        })
        .await
    }
}
