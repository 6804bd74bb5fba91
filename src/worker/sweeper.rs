//! The safety net, run periodically: claims the orders `domain::sweep` calls
//! overdue and arms their next check again.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::{configuration::SweeperSettings, domain::Sweep, error::Result};

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
                Ok(rearmed) if rearmed >= settings.batch.get() as usize && !stop.is_cancelled() => {
                    continue;
                }
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
    let sweep = Sweep::at(Utc::now(), settings.grace);
    let claimed = worker.db.claim_overdue(&sweep, settings.batch).await?;
    for (order_id, checks_made) in &claimed {
        let attempt = Sweep::next_attempt(*checks_made);
        worker.arm(order_id, attempt, sweep.due_at).await?;
        worker.metrics.timer_rearmed();
        tracing::warn!(%order_id, attempt = attempt.get(), "re-armed a lost timer");
    }
    Ok(claimed.len())
}
