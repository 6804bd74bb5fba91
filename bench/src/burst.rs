//! The burst: every order at once, every other one paid right after it —
//! throughput, CPU time per order, duplicates.

use std::{path::Path, time::Duration};

use anyhow::ensure;
use serde_json::json;

use crate::{Options, harness::Harness, stats::BurstRun};

pub async fn run(options: &Options, binary: &Path) -> anyhow::Result<BurstRun> {
    let mut harness = Harness::start(options, binary, "1s").await?;
    let cpu_before = harness.cpu_seconds()?;
    let started = std::time::Instant::now();
    for i in 0..options.orders {
        let order_id = format!("B-{i}");
        harness.place(&json!({"order_id": order_id})).await?;
        if i % 2 == 0 {
            harness
                .pay(&json!({"order_id": order_id, "payment_id": format!("PAY-{i}")}))
                .await?;
        }
    }
    harness.pipeline.finish().await?;
    let outcomes = harness
        .await_outcomes(options.orders, Duration::from_secs(300))
        .await?;
    let last = outcomes.last.unwrap_or(started);
    let cpu_seconds = harness.cpu_seconds()? - cpu_before;
    for i in 0..options.orders {
        let ended = &outcomes.by_order[&format!("B-{i}")].event;
        let expected = if i % 2 == 0 {
            "order.paid"
        } else {
            "order.closed"
        };
        ensure!(
            ended == expected,
            "B-{i} ended {ended}, expected {expected}"
        );
    }
    let peak_rss_mib = harness.peak_rss_mib()?;
    harness.stop().await?;
    Ok(BurstRun {
        orders_per_second: options.orders as f64 / (last - started).as_secs_f64(),
        duplicates: outcomes.duplicates,
        cpu_ms_per_order: cpu_seconds * 1000.0 / options.orders as f64,
        peak_rss_mib,
    })
}
