//! `order.placed`: store the order and arm its first timer.

use chrono::Utc;

use super::{Verdict, Worker};
use crate::{
    db::{NewOrder, Placement},
    domain::{Attempt, OrderId, OrderPlaced, OrderStatus, time_delta},
    error::Result,
};

/// `seen_before`: this message may have been handled part-way already (a
/// redelivery, or a retry after a failure).
pub(super) async fn order_placed(
    worker: &Worker,
    body: &[u8],
    seen_before: bool,
) -> Result<Verdict> {
    let placed = match OrderPlaced::parse(body) {
        Ok(placed) => placed,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    let schedule = &worker.schedule;
    let now = Utc::now();
    let placed_at = placed.placed_at.unwrap_or(now);
    let new = NewOrder {
        order_id: placed.order_id,
        amount_cents: placed.amount_cents,
        currency: placed.currency.map(|currency| currency.as_str().to_owned()),
        placed_at,
        expires_at: placed_at + time_delta(schedule.total()),
        next_check_at: now + time_delta(schedule.first_wait()),
    };
    match worker.db.place(new).await? {
        Placement::Created(order) => {
            arm_first_timer(worker, &order.order_id).await?;
            worker.metrics.order_placed();
            tracing::info!(order_id = %order.order_id, expires_at = %order.expires_at, "order placed");
        }
        Placement::CreatedPaid(order) => {
            worker.metrics.order_placed();
            tracing::info!(order_id = %order.order_id, "order placed, already paid");
            worker.announce(&order).await?;
        }
        Placement::Known(order) => {
            // A first try that died between the commit and the timer's
            // confirm comes back: arm the timer it may not have.
            if seen_before && order.status == OrderStatus::Pending && order.attempts == 0 {
                arm_first_timer(worker, &order.order_id).await?;
            } else if order.status != OrderStatus::Pending && order.event_published_at.is_none() {
                worker.announce(&order).await?;
            } else {
                tracing::debug!(order_id = %order.order_id, "repeated order.placed ignored");
            }
        }
    }
    Ok(Verdict::Done)
}

async fn arm_first_timer(worker: &Worker, order_id: &OrderId) -> Result<()> {
    worker
        .publisher
        .arm_timer(
            &worker.topology,
            order_id,
            Attempt::FIRST,
            worker.schedule.first_wait(),
        )
        .await
}
