//! A deadline storm: many orders due in the same instant.

use std::{path::Path, time::Duration};

use anyhow::ensure;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use diesel::{QueryableByName, sql_types::Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::{
    Options,
    harness::Harness,
    precision::millis,
    stats::{Samples, StormRun},
};

pub async fn run(options: &Options, binary: &Path) -> anyhow::Result<StormRun> {
    // One check only, at the deadline each order carries.
    let mut harness = Harness::start(options, binary, "1h").await?;
    let orders = options.storm;
    // Long enough for the intake to take every order in before the deadline.
    let lead = TimeDelta::seconds(10 + orders as i64 / 1_000);
    let deadline = Utc::now() + lead;
    let expires_at = deadline.to_rfc3339_opts(SecondsFormat::Micros, true);
    let placing = std::time::Instant::now();
    for i in 0..orders {
        harness
            .place(&json!({"order_id": format!("S-{i}"), "expires_at": expires_at}))
            .await?;
    }
    harness.pipeline.finish().await?;
    let placed_in = placing.elapsed();
    ensure!(
        Utc::now() < deadline,
        "placing the storm's orders took past their deadline ({placed_in:?})"
    );
    let outcomes = harness
        .await_outcomes(orders, lead.to_std()? + Duration::from_secs(120))
        .await?;
    ensure!(
        outcomes
            .by_order
            .values()
            .all(|ended| ended.event == "order.closed"),
        "a storm order ended otherwise than closed"
    );
    let closed_at = closes(&mut harness.database().await?).await?;
    ensure!(
        closed_at.len() == orders,
        "some storm orders are not closed"
    );
    ensure!(
        closed_at.iter().all(|at| *at >= deadline),
        "a storm order was closed before its deadline"
    );
    let peak_rss_mib = harness.peak_rss_mib()?;
    harness.stop().await?;
    Ok(StormRun {
        orders,
        placed_in,
        decided: Samples::new(closed_at.iter().map(|at| millis(*at - deadline)).collect()),
        announced: Samples::new(
            outcomes
                .by_order
                .values()
                .map(|ended| millis(ended.received_at - deadline))
                .collect(),
        ),
        duplicates: outcomes.duplicates,
        peak_rss_mib,
    })
}

#[derive(QueryableByName)]
struct Closed {
    #[diesel(sql_type = Timestamptz)]
    closed_at: DateTime<Utc>,
}

async fn closes(conn: &mut diesel_async::AsyncPgConnection) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let rows: Vec<Closed> =
        diesel::sql_query("SELECT closed_at FROM orders WHERE status = 'closed'")
            .load(conn)
            .await?;
    Ok(rows.into_iter().map(|row| row.closed_at).collect())
}
