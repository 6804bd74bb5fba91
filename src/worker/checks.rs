//! A timer arrived: send it on its next hop if it is not due yet (see
//! `domain::timer`), or wait out its last moments; then check the order and
//! carry out what `domain::check` decides — asking the payment gateway
//! first, when one is configured, before an unpaid order is closed. The
//! order of the steps, and why it is safe, is in `domain::check`.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Utc};

use super::{Bus, Store, Worker};
use crate::{
    domain::{
        Attempt, CheckDecision, CheckDue, CheckKind, CheckOutcome, CloseReason, Inbound, Order,
        OrderId, OrderStatus, Rejection, Route, Verdict, after_lost_close, decide,
        decide_early_as_of, decide_redelivered,
        gateway::{AfterAnswer, GatewayAnswer, after_answer},
        number_of_unnumbered, time_delta,
    },
    error::Result,
};

/// The checks a daemon is making now, by order and number: a second copy
/// of a timer that arrives while the first is handled is a duplicate
/// (whatever the first does, it does for both, and its message stays
/// unacknowledged until it is done).
#[derive(Default)]
pub struct ChecksInFlight(Mutex<HashSet<(OrderId, Attempt)>>);

/// A check claimed in [`ChecksInFlight`], until dropped.
struct Claim<'a> {
    in_flight: &'a ChecksInFlight,
    key: (OrderId, Attempt),
}

impl ChecksInFlight {
    fn claim(&self, order_id: &OrderId, attempt: Attempt) -> Option<Claim<'_>> {
        let key = (order_id.clone(), attempt);
        let claimed = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        // Built only once the lock is let go: a claim unlocks it when dropped.
        claimed.then(|| Claim {
            in_flight: self,
            key,
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut checks = self
            .in_flight
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        checks.remove(&self.key);
    }
}

pub(super) async fn timer_fired<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    due: CheckDue,
    inbound: &Inbound,
) -> Result<Verdict> {
    let CheckDue {
        order_id,
        attempt,
        due_at,
    } = due;
    let attempt = match attempt {
        Ok(attempt) => attempt,
        Err(rejection) => {
            match number_of_unnumbered(worker.store.find(&order_id).await?.as_ref()) {
                Some(attempt) => {
                    tracing::warn!(%rejection, attempt = attempt.get(), "a check with an unusable number checks its pending order as the next one");
                    attempt
                }
                None => return Ok(Verdict::Reject(rejection)),
            }
        }
    };
    let Some(_claim) = worker.checks_in_flight.claim(&order_id, attempt) else {
        tracing::debug!(attempt = attempt.get(), "a copy of a timer in hand dropped");
        return Ok(Verdict::Done);
    };
    let arrived = worker.now();
    let due_at = due_at.unwrap_or(arrived);
    let (order, now) = match worker.timers.route(due_at, arrived) {
        Route::Hop(ttl) => {
            worker
                .bus
                .arm_timer(&order_id, attempt, due_at, Route::Hop(ttl))
                .await?;
            worker.metrics.timer_hopped();
            return Ok(Verdict::Done);
        }
        Route::Hold(wait) => {
            let wake = tokio::time::Instant::now() + wait;
            worker.metrics.timer_arrived(-time_delta(wait));
            // Read while waiting, so that only the decision is left at the due time.
            let order = worker.store.find(&order_id).await?;
            match decide_early_as_of(order.as_ref(), due_at) {
                Some(as_of) => (order, as_of),
                None => {
                    tokio::time::sleep_until(wake).await;
                    // The gateway must never be asked about an order paid
                    // meanwhile: read it again. Without one, the close is
                    // a conditional write that a payment wins anyway.
                    let order = match &worker.gateway {
                        Some(_) => worker.store.find(&order_id).await?,
                        None => order,
                    };
                    (order, worker.now())
                }
            }
        }
        Route::Due => {
            worker.metrics.timer_arrived(arrived - due_at);
            (worker.store.find(&order_id).await?, worker.now())
        }
    };
    let schedule = &worker.schedule;
    let decide = if inbound.seen_before {
        decide_redelivered
    } else {
        decide
    };
    let (decision, order) = match (decide(order.as_ref(), attempt, now, schedule), order) {
        (CheckDecision::Close, Some(order)) => {
            let reason =
                match ask_gateway(worker, &order, attempt, now, inbound.seen_before).await? {
                    AfterAsk::Close(reason) => reason,
                    AfterAsk::Paid => {
                        worker.metrics.check_made(CheckOutcome::Paid);
                        return Ok(Verdict::Done);
                    }
                    AfterAsk::AskedAgain => {
                        worker.metrics.check_made(CheckOutcome::Rescheduled);
                        return Ok(Verdict::Done);
                    }
                };
            close(worker, &order_id, attempt, now, reason).await?
        }
        (decision, order) => (decision, order),
    };
    match decision {
        // This check closed it: it announces it.
        CheckDecision::Close => {
            if let Some(order) = order {
                worker.announce(&order).await?;
            }
        }
        // A terminal order whose event is owed: unless another handler is
        // announcing it.
        CheckDecision::Announce(_) => {
            if let Some(order) = &order
                && let Some(owed) = worker.claim_owed(order, inbound.seen_before).await?
            {
                worker.announce(&owed).await?;
            }
        }
        CheckDecision::Reschedule { next, due_at } => {
            worker.arm(&order_id, next, due_at).await?;
            worker
                .store
                .record_check(&order_id, attempt, due_at, CheckKind::Scheduled)
                .await?;
        }
        CheckDecision::UnknownOrder => {
            return Ok(Verdict::Reject(Rejection::UnknownOrder(order_id)));
        }
        CheckDecision::Stale => {
            tracing::debug!(attempt = attempt.get(), "duplicate timer dropped");
        }
        CheckDecision::Settled(_) => {}
    }
    if let Some(outcome) = decision.outcome() {
        worker.metrics.check_made(outcome);
    }
    Ok(Verdict::Done)
}

/// Closes the order for `reason`; when a payment won the race, decides
/// again on the order as it is.
async fn close<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    order_id: &OrderId,
    attempt: Attempt,
    now: DateTime<Utc>,
    reason: CloseReason,
) -> Result<(CheckDecision, Option<Order>)> {
    match worker.close(order_id, Some(attempt), reason).await? {
        Some(closed) => {
            // Measured once the close is committed, as the metric promises.
            let lateness = worker.now() - closed.expires_at;
            worker.metrics.order_closed(lateness);
            tracing::info!(
                attempts = closed.attempts,
                reason = reason.as_str(),
                "order closed"
            );
            Ok((CheckDecision::Close, Some(closed)))
        }
        None => {
            worker.metrics.race_lost("close");
            tracing::info!("a payment committed before the close");
            let order = worker.store.find(order_id).await?;
            let decision = after_lost_close(order.as_ref(), attempt, now, &worker.schedule);
            Ok((decision, order))
        }
    }
}

/// What asking the gateway left to do.
enum AfterAsk {
    /// Close the order, for this reason.
    Close(CloseReason),
    /// The gateway's payment settled the order.
    Paid,
    /// The gateway is asked again once a timer fires.
    AskedAgain,
}

/// Asks the gateway about an order at its deadline, when one is configured;
/// without one, the order closes as expired.
async fn ask_gateway<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    order: &Order,
    attempt: Attempt,
    now: DateTime<Utc>,
    seen_before: bool,
) -> Result<AfterAsk> {
    let Some(gateway) = &worker.gateway else {
        return Ok(AfterAsk::Close(CloseReason::Expired));
    };
    let order_id = &order.order_id;
    let mut answer = gateway.ask(order).await;
    tracing::info!(answer = answer.label(), "asked the payment gateway");
    if let GatewayAnswer::Unusable(why) = &answer {
        tracing::warn!(why, "no usable answer from the payment gateway");
    }
    // A payment id the gateway names for another order is no answer.
    if let GatewayAnswer::Paid { payment_id, .. } = &answer
        && let Some(recorded) = worker.store.payment(payment_id.as_str()).await?
        && recorded.order_id != order_id.as_str()
    {
        answer = GatewayAnswer::Unusable(format!(
            "payment {payment_id:?} belongs to order {}",
            recorded.order_id
        ));
    }
    match after_answer(order, answer, gateway.policy()) {
        AfterAnswer::Pay(payment) => {
            let (first_time, recorded) = worker.store.record_payment(&payment, now).await?;
            if first_time {
                worker.metrics.payment_recorded();
            }
            let after = worker
                .apply_payment(order_id, recorded, seen_before, Some(attempt))
                .await?;
            match after.map(|order| order.status) {
                // The payment did not match: the deadline has come unpaid.
                Some(OrderStatus::Pending) => Ok(AfterAsk::Close(CloseReason::Expired)),
                _ => Ok(AfterAsk::Paid),
            }
        }
        AfterAnswer::Close(reason) => Ok(AfterAsk::Close(reason)),
        AfterAnswer::AskAgain => {
            // The wait runs from the answer, however long it took. The ask
            // is recorded before the timer is armed: a short retry comes
            // back at once to wait in process, and must find it counted.
            // Should arming fail, the check is delivered again and arms the
            // recorded timer (`decide_redelivered`).
            let due_at = worker.now() + time_delta(gateway.wait_before_asking_again());
            worker
                .store
                .record_check(order_id, attempt, due_at, CheckKind::AskedGateway)
                .await?;
            worker.arm(order_id, attempt.next(), due_at).await?;
            Ok(AfterAsk::AskedAgain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_in_hand_is_claimed_once_until_it_is_done() {
        let in_flight = ChecksInFlight::default();
        let order_id = OrderId::parse("A-1").unwrap();
        let first = in_flight.claim(&order_id, Attempt::FIRST).unwrap();
        assert!(in_flight.claim(&order_id, Attempt::FIRST).is_none());
        // Another check of the order, or another order, is its own.
        let next = in_flight.claim(&order_id, Attempt::FIRST.next()).unwrap();
        let other = OrderId::parse("A-2").unwrap();
        assert!(in_flight.claim(&other, Attempt::FIRST).is_some());
        drop(first);
        assert!(in_flight.claim(&order_id, Attempt::FIRST).is_some());
        drop(next);
    }
}
