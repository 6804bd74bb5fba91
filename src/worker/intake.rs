//! `order.placed`: store the order, then carry out what `domain::intake`
//! plans — play what waited for it, arm its first timer, announce it.

use super::{Bus, Store, Worker, execute::Executed};
use crate::{
    domain::{
        Inbound, OrderPlaced, Verdict,
        deadline::DeadlineRules,
        intake::{self, new_order},
    },
    error::{Error, Result},
};

/// A transition that lost its race leaves the order terminal, so the next
/// plan stands.
const PLANS: usize = 3;

pub(super) async fn order_placed<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    placed: OrderPlaced,
    inbound: &Inbound,
) -> Result<Verdict> {
    let (new, skew) = match new_order(placed, worker.now(), &worker.schedule, &worker.limits) {
        Ok(order) => order,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    if let Some(ahead) = skew {
        worker.metrics.clock_skewed();
        tracing::warn!(
            ahead = %ahead,
            "placed_at is ahead of this clock by more than checks.max_clock_skew: taken as now"
        );
    }
    let placement = worker.store.place(new).await?;
    let delivery = inbound.delivery();
    let mut order = placement.order().clone();
    let order_id = order.order_id.clone();
    for _ in 0..PLANS {
        let waiting = if placement.looks_for_waiting(delivery) {
            Some(worker.store.waiting_for(&order_id).await?)
        } else {
            None
        };
        let rules = DeadlineRules {
            schedule: &worker.schedule,
            max_deadline: worker.limits.max_deadline,
            remind_before: &worker.remind_before,
        };
        let plan = intake::plan(
            &placement,
            &order,
            waiting.as_ref(),
            delivery,
            worker.now(),
            &rules,
        );
        match worker
            .execute(&order_id, Some(order.clone()), &plan)
            .await?
        {
            Executed::Done(after) => {
                let order = after.unwrap_or(order);
                if placement.is_created() {
                    worker.metrics.order_placed();
                    tracing::info!(status = %order.status, "order placed");
                } else {
                    tracing::debug!("repeated order.placed");
                }
                return Ok(Verdict::Done);
            }
            // Another handler moved it first: plan again on what it did.
            Executed::Moved | Executed::Answered(_) => {
                order = worker.store.find(&order_id).await?.unwrap_or(order);
            }
        }
    }
    Err(Error::Unfinished(
        "an order found itself moved by each of its plans",
    ))
}
