//! `order.cancelled`: close a pending order at once, or keep the
//! cancellation for an order not seen yet, as `domain::cancellation` says.

use super::{Bus, Store, Worker};
use crate::{
    domain::{
        CloseReason, Inbound, OrderCancelled, Verdict,
        cancellation::{CancelDecision, decide},
    },
    error::Result,
};

/// A close that lost its race, or a cancellation kept just as its order
/// arrived, is decided again; the order is then known or terminal.
const DECISIONS: usize = 3;

pub(super) async fn order_cancelled<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    cancelled: OrderCancelled,
    inbound: &Inbound,
) -> Result<Verdict> {
    let order_id = &cancelled.order_id;
    let mut order = worker.store.find(order_id).await?;
    for _ in 0..DECISIONS {
        match decide(order.as_ref()) {
            CancelDecision::Close => {
                match worker.close(order_id, None, CloseReason::Cancelled).await? {
                    Some(closed) => {
                        worker.metrics.order_cancelled();
                        tracing::info!(reason = cancelled.reason, "order cancelled");
                        worker.announce(&closed).await?;
                        return Ok(Verdict::Done);
                    }
                    None => {
                        worker.metrics.race_lost("close");
                        order = worker.store.find(order_id).await?;
                    }
                }
            }
            CancelDecision::LeaveAsItIs => {
                if let Some(order) = &order {
                    tracing::info!(status = %order.status, "cancellation of a settled order ignored");
                    worker.announce_owed(order, inbound.seen_before).await?;
                }
                return Ok(Verdict::Done);
            }
            CancelDecision::KeepForArrival => {
                // What came before an order is played in the order it was
                // received; a payment that reached the broker before this
                // cancellation came before it, however far behind the
                // payments are: they are handled first, and the
                // cancellation is kept as received once they are.
                let waited = worker.bus.wait_for_payments(worker.now()).await?;
                worker.metrics.close_waited(waited);
                // Kept first, then the order looked for again: an order
                // stored meanwhile either finds the cancellation or is found.
                worker
                    .store
                    .record_cancellation(&cancelled, worker.now())
                    .await?;
                order = worker.store.find(order_id).await?;
                if order.is_none() {
                    tracing::info!("cancellation before its order: kept until the order arrives");
                    return Ok(Verdict::Done);
                }
            }
        }
    }
    Ok(Verdict::Done)
}
