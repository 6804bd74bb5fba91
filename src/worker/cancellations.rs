//! `order.cancelled`: close a pending order at once, or keep the
//! cancellation for an order not seen yet, as `domain::cancellation` says.

use super::Worker;
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

pub(super) async fn order_cancelled(
    worker: &Worker,
    cancelled: OrderCancelled,
    inbound: &Inbound,
) -> Result<Verdict> {
    let order_id = &cancelled.order_id;
    let mut order = worker.db.find(order_id).await?;
    for _ in 0..DECISIONS {
        match decide(order.as_ref()) {
            CancelDecision::Close => {
                match worker.close(order_id, 0, CloseReason::Cancelled).await? {
                    Some(closed) => {
                        worker.metrics.order_cancelled();
                        tracing::info!(reason = cancelled.reason, "order cancelled");
                        worker.announce(&closed).await?;
                        return Ok(Verdict::Done);
                    }
                    None => {
                        worker.metrics.race_lost("close");
                        order = worker.db.find(order_id).await?;
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
                // Kept first, then the order looked for again: an order
                // stored meanwhile either finds the cancellation or is found.
                worker
                    .db
                    .record_cancellation(&cancelled, inbound.received_at)
                    .await?;
                order = worker.db.find(order_id).await?;
                if order.is_none() {
                    tracing::info!("cancellation before its order: kept until the order arrives");
                    return Ok(Verdict::Done);
                }
            }
        }
    }
    Ok(Verdict::Done)
}
