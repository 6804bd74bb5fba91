//! The safety net: a timer can be lost outside paywait (a classic queue's
//! at-most-once dead-lettering, a purged queue). Every pending order records
//! when its next check is due; the sweeper re-arms the timer of any order
//! whose check is overdue by more than the grace and whose event is still owed.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::{
    configuration::SweeperSettings,
    domain::{Attempt, time_delta},
    error::Result,
};

/// Sweeps every `settings.interval` until `stop` is cancelled.
pub async fn sweep_periodically(
    worker: Arc<Worker>,
    settings: SweeperSettings,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // A full batch means more may be waiting: go on at once.
        loop {
            match sweep(&worker, &settings).await {
                Ok(rearmed) if rearmed as i64 >= settings.batch && !stop.is_cancelled() => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "sweep failed; trying again next interval");
                    break;
                }
            }
        }
    }
}

/// Re-arms the timers of overdue orders once; returns how many.
pub async fn sweep(worker: &Worker, settings: &SweeperSettings) -> Result<usize> {
    let now = Utc::now();
    // The shortest wait brings the overdue check as soon as the TTL queues allow.
    let wait = worker.schedule.shortest_wait();
    let claimed = worker
        .db
        .claim_overdue(
            now - time_delta(settings.grace),
            settings.batch,
            now + time_delta(wait),
        )
        .await?;
    for (order_id, attempts) in &claimed {
        let attempt = Attempt::new(attempts + 1).unwrap_or(Attempt::FIRST);
        worker
            .publisher
            .arm_timer(&worker.topology, order_id, attempt, wait)
            .await?;
        worker.metrics.timer_rearmed();
        tracing::warn!(%order_id, attempt = attempt.get(), "re-armed a lost timer");
    }
    Ok(claimed.len())
}
