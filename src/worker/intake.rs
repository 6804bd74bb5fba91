//! `order.placed`: store the order, play what waited for it, arm its first
//! timer — as `domain::intake` decides.

use super::{Bus, Store, Worker};
use crate::{
    domain::{
        Attempt, CloseReason, Inbound, Order, OrderPlaced, PaymentOutcome, Transition, Verdict,
        intake::{new_order, on_arrival},
    },
    error::Result,
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
    let seen_before = inbound.seen_before;
    let mut order = placement.order().clone();
    let mut moved = false;
    if placement.looks_for_waiting(seen_before) {
        (order, moved) = play_what_waited(worker, order, seen_before).await?;
    }
    if placement.arms_first_timer(&order, seen_before) {
        let due_at = order.next_check_at.unwrap_or_else(|| worker.now());
        worker.arm(&order.order_id, Attempt::FIRST, due_at).await?;
    }
    if moved {
        worker.announce(&order).await?;
    } else {
        worker.announce_owed(&order, seen_before).await?;
    }
    if placement.is_created() {
        worker.metrics.order_placed();
        tracing::info!(status = %order.status, "order placed");
    } else {
        tracing::debug!("repeated order.placed");
    }
    Ok(Verdict::Done)
}

/// Keeps what each payment that waited for `order` did, announcing what
/// is owed.
async fn decide_waiting<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    order: &Order,
    outcomes: Vec<(String, PaymentOutcome)>,
    seen_before: bool,
) -> Result<()> {
    for (payment_id, outcome) in outcomes {
        worker
            .keep_outcome(Some(order), &payment_id, outcome, seen_before)
            .await?;
    }
    Ok(())
}

/// Plays the payments and the cancellation that came before the order;
/// returns the order as it stands after, and whether this handler's write
/// moved it out of `pending` (and so announces it).
async fn play_what_waited<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    mut order: Order,
    seen_before: bool,
) -> Result<(Order, bool)> {
    let order_id = order.order_id.clone();
    for _ in 0..PLANS {
        let waiting = worker.store.waiting_for(&order_id).await?;
        let arrival = on_arrival(&order, &waiting.payments, waiting.cancellation.as_ref());
        // What came before the transition is decided on the order as it
        // stands, and kept before the transition is written.
        decide_waiting(worker, &order, arrival.earlier, seen_before).await?;
        let moved_now = arrival.transition.is_some();
        let moved = match &arrival.transition {
            None => Some(order.clone()),
            Some(Transition::Settle(payment)) => {
                worker
                    .store
                    .settle(&order_id, &payment.payment_id, None)
                    .await?
            }
            Some(Transition::Cancel) => {
                worker
                    .store
                    .close(&order_id, None, worker.now(), CloseReason::Cancelled)
                    .await?
            }
        };
        let Some(moved) = moved else {
            // Another daemon moved it first: plan again on what it did.
            order = worker.store.find(&order_id).await?.unwrap_or(order);
            continue;
        };
        order = moved;
        if let Some(payment_id) = &arrival.adopted
            && !worker.store.adopt(&order_id, payment_id).await?
        {
            // Another payment was taken first: plan again.
            order = worker.store.find(&order_id).await?.unwrap_or(order);
            continue;
        }
        decide_waiting(worker, &order, arrival.later, seen_before).await?;
        if seen_before {
            // A first try may have decided payments and died before their
            // events were confirmed.
            for payment in worker.store.payments_of(&order_id).await? {
                worker.announce_payment(&order, &payment).await?;
            }
        }
        return Ok((order, moved_now));
    }
    Ok((order, false))
}
