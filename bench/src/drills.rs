//! Nodes of a three-node cluster lost while orders come in, again and
//! again: how long paywait was not ready and how long the order service's
//! publishing stalled, over many drills.

use std::{path::Path, time::Duration};

use paywait_testkit::{DrillReport, node_loss_drill};

use crate::{Options, stats::Samples};

/// The cluster's nodes listen on these ports plus 1 to 3, away from the
/// tests' clusters.
const PORT: u16 = 5840;

pub async fn run(options: &Options, daemon: &Path) -> anyhow::Result<()> {
    let mut reports: Vec<DrillReport> = Vec::new();
    for drill in 1..=options.drills {
        eprintln!("drill {drill}/{}", options.drills);
        let report = node_loss_drill(
            daemon,
            &format!("paywait-bench-drill-{}", std::process::id()),
            PORT,
            options.drill_rate,
        )
        .await;
        anyhow::ensure!(
            report.wrong.is_empty() && report.without_event.is_empty(),
            "drill {drill} lost orders or events: {report:?}"
        );
        reports.push(report);
    }
    report(&reports);
    Ok(())
}

fn report(reports: &[DrillReport]) {
    println!("## Nodes lost while orders come in\n");
    println!(
        "{} drills; {} orders in all, every one resolved with its event.\n",
        reports.len(),
        reports.iter().map(|r| r.orders).sum::<usize>()
    );
    println!("| fault | not ready (median / max) | publishing stalled (median / max) |");
    println!("| --- | --- | --- |");
    let faults = reports.first().map_or(0, |r| r.recoveries.len());
    for fault in 0..faults {
        let seconds = |of: fn(&paywait_testkit::Recovery) -> Duration| {
            Samples::new(
                reports
                    .iter()
                    .map(|r| of(&r.recoveries[fault]).as_secs_f64())
                    .collect(),
            )
        };
        let not_ready = seconds(|r| r.not_ready);
        let stalled = seconds(|r| r.publishing_stalled);
        println!(
            "| {} | {:.2} s / {:.2} s | {:.2} s / {:.2} s |",
            reports[0].recoveries[fault].fault,
            not_ready.percentile(50.0),
            not_ready.max(),
            stalled.percentile(50.0),
            stalled.max(),
        );
    }
    println!();
}
