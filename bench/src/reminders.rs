//! Reminders at a steady rate: unpaid orders due 3 s after they are placed,
//! with `checks.remind_before = ["2s", "1s"]`, beside the same orders
//! without reminders: how late each reminder reaches a downstream queue,
//! and what reminders cost in broker timers and CPU per order.

use std::path::Path;

use anyhow::ensure;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::{
    Options,
    harness::Harness,
    precision::millis,
    stats::{Lateness, Samples},
};

/// The schedule of the run: each order's only check at its deadline.
const SCHEDULE: &str = "3s";
/// The offsets, as the setting writes them.
const REMIND_BEFORE: &str = "2s,1s";

/// One run, with reminders or without.
pub struct ReminderRun {
    pub reminders: bool,
    /// Received minus due, in ms, for the reminders of each offset.
    pub late_2s: Samples,
    pub late_1s: Samples,
    /// Reminders per order received: 2 when every one came. One is not
    /// armed when its time had passed when the daemon stored the order
    /// (its intake behind the load by more than the offset).
    pub per_order: f64,
    /// Timers sent on through another TTL queue, per order.
    pub hops_per_order: f64,
    /// The daemon's CPU time per order, in ms.
    pub cpu_ms_per_order: f64,
}

pub async fn run(options: &Options, binary: &Path, reminders: bool) -> anyhow::Result<ReminderRun> {
    let extra: &[(&str, &str)] = if reminders {
        &[("PAYWAIT_CHECKS__REMIND_BEFORE", REMIND_BEFORE)]
    } else {
        &[]
    };
    let mut harness = Harness::start_with(options, binary, SCHEDULE, extra).await?;
    let exchange = harness.topology.orders_exchange().to_owned();
    let orders = options.precision_orders();
    harness
        .pipeline
        .place_steadily(&exchange, options.rate, orders, |i| {
            json!({
                "order_id": format!("R-{i}"),
                "placed_at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            })
        })
        .await?;
    let outcomes = harness
        .await_outcomes(orders, std::time::Duration::from_secs(120))
        .await?;
    let mut late = [Vec::new(), Vec::new()];
    for (body, received_at) in &outcomes.others {
        if body["event"] != "order.expiring" {
            continue;
        }
        let due: DateTime<Utc> = body["occurred_at"].as_str().unwrap_or_default().parse()?;
        let slot = match body["remind_before"].as_str() {
            Some("2s") => 0,
            Some("1s") => 1,
            other => anyhow::bail!("a reminder of an offset not configured: {other:?}"),
        };
        late[slot].push(millis(*received_at - due));
    }
    let received = late[0].len() + late[1].len();
    ensure!(
        reminders || received == 0,
        "{received} reminders without remind_before"
    );
    let hops = harness.metric("paywait_timer_hops_total").await;
    let cpu = harness.cpu_seconds()?;
    harness.stop().await?;
    let [late_2s, late_1s] = late.map(Samples::new);
    Ok(ReminderRun {
        reminders,
        late_2s,
        late_1s,
        per_order: received as f64 / orders as f64,
        hops_per_order: hops / orders as f64,
        cpu_ms_per_order: cpu * 1000.0 / orders as f64,
    })
}

/// The figures of the runs, as BENCHMARKS.md shows them.
pub fn report(runs: &[ReminderRun], rate: u32) {
    println!(
        "## Reminders at {rate} orders/s: deadlines of 3 s, remind_before = [\"2s\", \"1s\"]\n"
    );
    println!(
        "| reminders | 2 s reminder received, ms after due: p50 / p99 / max | 1 s reminder: p50 / p99 / max | reminders per order | TTL hops per order | CPU per order |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let lateness = |samples: &Samples| {
            if samples.is_empty() {
                return "—".to_owned();
            }
            let l = Lateness::of(samples);
            format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max)
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.3} ms |",
            if run.reminders { "on" } else { "off" },
            lateness(&run.late_2s),
            lateness(&run.late_1s),
            run.per_order,
            run.hops_per_order,
            run.cpu_ms_per_order,
        );
    }
    println!();
}
