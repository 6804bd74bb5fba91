//! Timer precision: unpaid orders at a steady rate, each stamped with when
//! it was published and given a deadline, closed by a one-hop or a
//! four-hop schedule, or by deadlines of their own.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::ensure;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use diesel::{
    QueryableByName,
    sql_types::{Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::{
    Options,
    harness::Harness,
    stats::{Lateness, PrecisionRun, Samples},
};

/// What a precision run places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadlines {
    /// Every order 1 s after it was published, through this schedule.
    Schedule(&'static str),
    /// Each order its own `expires_at`, from 0.1 s to 10 s after it was
    /// published, spread evenly; schedule `["1m"]`, so the check at the
    /// deadline is each order's only one, reached through the ladder.
    PerOrder,
}

impl Deadlines {
    pub fn label(self) -> String {
        match self {
            Self::Schedule(schedule) => format!("schedule {schedule}"),
            Self::PerOrder => "per-order deadlines, 0.1–10 s".to_owned(),
        }
    }

    fn schedule(self) -> &'static str {
        match self {
            Self::Schedule(schedule) => schedule,
            Self::PerOrder => "1m",
        }
    }

    /// The deadline of order `i`, `placed_at` after publishing.
    fn deadline(self, i: usize, placed_at: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Schedule(_) => placed_at + TimeDelta::seconds(1),
            // A stride coprime with the spread visits every deadline once.
            Self::PerOrder => placed_at + TimeDelta::milliseconds(100 + (i as i64 * 7_919) % 9_900),
        }
    }
}

/// The schedules of the one-hop and four-hop runs.
pub const ONE_HOP: Deadlines = Deadlines::Schedule("1s");
pub const FOUR_HOPS: Deadlines = Deadlines::Schedule("250ms,250ms,250ms,250ms");

pub async fn run(
    options: &Options,
    binary: &Path,
    deadlines: Deadlines,
) -> anyhow::Result<PrecisionRun> {
    let mut harness = Harness::start(options, binary, deadlines.schedule()).await?;
    let exchange = harness.topology.orders_exchange().to_owned();
    let orders = options.precision_orders();
    harness
        .pipeline
        .place_steadily(&exchange, options.rate, orders, |i| {
            let placed_at = Utc::now();
            let mut body = json!({
                "order_id": format!("P-{i}"),
                "placed_at": placed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            });
            if deadlines == Deadlines::PerOrder {
                body["expires_at"] = json!(
                    deadlines
                        .deadline(i, placed_at)
                        .to_rfc3339_opts(SecondsFormat::Micros, true)
                );
            }
            body
        })
        .await?;
    let outcomes = harness
        .await_outcomes(orders, Duration::from_secs(120))
        .await?;
    let closes = closes(&mut harness.database().await?).await?;
    ensure!(closes.len() == orders, "some orders are not closed");
    let early: Vec<&String> = closes
        .iter()
        .filter(|(_, close)| close.closed_at < close.expires_at)
        .map(|(order_id, _)| order_id)
        .take(5)
        .collect();
    ensure!(early.is_empty(), "closed before their deadline: {early:?}");

    let decided = Samples::new(
        closes
            .values()
            .map(|close| millis(close.closed_at - close.expires_at))
            .collect(),
    );
    let announced = Samples::new(
        outcomes
            .by_order
            .iter()
            .map(|(order_id, ended)| millis(ended.received_at - closes[order_id].expires_at))
            .collect(),
    );
    let arrived_in_time = harness.arrived_in_time().await;
    let hops = harness.metric("paywait_timer_hops_total").await;
    let peak_rss_mib = harness.peak_rss_mib()?;
    harness.stop().await?;
    Ok(PrecisionRun {
        label: deadlines.label(),
        lateness: Lateness::of(&decided),
        announced: Lateness::of(&announced),
        decided,
        duplicates: outcomes.duplicates,
        arrived_in_time,
        hops_per_order: hops / orders as f64,
        peak_rss_mib,
    })
}

pub fn millis(delta: TimeDelta) -> f64 {
    delta.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

#[derive(QueryableByName)]
struct Close {
    #[diesel(sql_type = Text)]
    order_id: String,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    closed_at: DateTime<Utc>,
}

/// Every closed order: its deadline and when the close was decided.
async fn closes(conn: &mut AsyncPgConnection) -> anyhow::Result<HashMap<String, Close>> {
    let rows: Vec<Close> = diesel::sql_query(
        "SELECT order_id, expires_at, closed_at FROM orders WHERE status = 'closed'",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|close| (close.order_id.clone(), close))
        .collect())
}
