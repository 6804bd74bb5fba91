//! The safety net, run periodically: claims the orders `domain::sweep` calls
//! overdue and arms their next check again.

use std::sync::Arc;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::{configuration::SweeperSettings, domain::Sweep, error::Result};

/// How long a barrier passed for another daemon is kept for it: far longer
/// than any close waits.
const BARRIER_RECORDS_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sweeps every `settings.interval` until `stop` is cancelled (the end of
/// the session), the first time one `settings.grace` after the session
/// started: timers that came due while no session consumed wait in the
/// check queue, and are checked in that time rather than taken for lost.
pub async fn sweep_periodically(
    worker: Arc<Worker>,
    settings: SweeperSettings,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        () = tokio::time::sleep(settings.grace) => {}
    }
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let full = settings.batch.get() as usize;
        let _underway = worker.progress.begin();
        until_done(&stop, full, || sweep(&worker, &settings)).await;
        until_done(&stop, full, || announce_owed_payments(&worker, &settings)).await;
        if let Err(error) = worker.store.forget_old_barriers(BARRIER_RECORDS_KEPT).await {
            tracing::warn!(%error, "old barrier records were not removed; trying again next interval");
        }
    }
}

/// Runs `round` again while it did a full batch (more may be waiting; each
/// round takes what it does off the list, so this ends), until it fails or
/// `stop` is cancelled.
async fn until_done<F, Fut>(stop: &CancellationToken, full: usize, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    loop {
        match round().await {
            Ok(done) if done >= full && !stop.is_cancelled() => {}
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, "sweep failed; trying again next interval");
                return;
            }
        }
    }
}

/// Announces the events of payments owed longer than the grace (their
/// announcer failed, and the message that brought them may not come back);
/// returns how many were announced.
pub async fn announce_owed_payments(worker: &Worker, settings: &SweeperSettings) -> Result<usize> {
    let cutoff = Sweep::at(worker.now(), settings.grace).cutoff;
    let owed = worker
        .store
        .owed_payment_events(cutoff, settings.batch)
        .await?;
    let mut announced = 0;
    for payment in &owed {
        let order_id = &payment.order_id;
        if let Some(order) = worker.store.find(order_id).await? {
            tracing::warn!(%order_id, payment_id = %payment.payment_id, "announcing a payment's owed event");
            worker.announce_payment(&order, payment).await?;
            announced += 1;
        }
    }
    Ok(announced)
}

/// Re-arms the timers of overdue orders once; returns how many.
pub async fn sweep(worker: &Worker, settings: &SweeperSettings) -> Result<usize> {
    let sweep = Sweep::at(worker.now(), settings.grace);
    let claimed = worker.store.claim_overdue(&sweep, settings.batch).await?;
    for (order_id, checks_made) in &claimed {
        let attempt = Sweep::next_attempt(*checks_made);
        worker.arm(order_id, attempt, sweep.due_at).await?;
        worker.metrics.timer_rearmed();
        tracing::warn!(%order_id, attempt = attempt.get(), "re-armed a lost timer");
    }
    Ok(claimed.len())
}
