//! A timer arrived: send it on its next hop if it is not due yet (see
//! `domain::timer`), or wait out its last moments; then read the order and
//! carry out the plan `domain::check` makes — asking the payment gateway
//! first, when one is configured, before an unpaid order is closed. The
//! order of the steps, and why it is safe, is in `domain::check`.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Utc};

use super::{Bus, Store, Worker, execute::Executed};
use crate::{
    domain::{
        Attempt, CheckDue, CheckFacts, CheckPlan, Delivery, Inbound, Order, OrderId, Route, Stage,
        Verdict,
        check::{self, AfterAsking, Answered},
        decide_early_as_of,
        gateway::GatewayAnswer,
        number_of_unnumbered, time_delta,
    },
    error::{Error, Result},
};

/// The checks a daemon is making now, by order, number and due time: a
/// second copy of a timer that arrives while the first is handled is a
/// duplicate (whatever the first does, it does for both, and its message
/// stays unacknowledged until it is done). A timer of the same number due
/// at another time was armed for another deadline (see `domain::deadline`)
/// and is not a copy.
#[derive(Default)]
pub struct ChecksInFlight(Mutex<HashSet<CheckKey>>);

type CheckKey = (OrderId, Attempt, Option<DateTime<Utc>>);

/// A check claimed in [`ChecksInFlight`], until dropped.
struct Claim<'a> {
    in_flight: &'a ChecksInFlight,
    key: CheckKey,
}

impl ChecksInFlight {
    fn claim(
        &self,
        order_id: &OrderId,
        attempt: Attempt,
        due_at: Option<DateTime<Utc>>,
    ) -> Option<Claim<'_>> {
        let key = (order_id.clone(), attempt, due_at);
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
    let Some(_claim) = worker.checks_in_flight.claim(&order_id, attempt, due_at) else {
        tracing::debug!(attempt = attempt.get(), "a copy of a timer in hand dropped");
        return Ok(Verdict::Done);
    };
    let arrived = worker.now();
    let stated_due_at = due_at;
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
    plan_and_carry_out(
        worker,
        &order_id,
        (attempt, stated_due_at),
        order,
        now,
        inbound.delivery(),
    )
    .await
}

/// A check is planned at most this many times: a question to the gateway,
/// its answer, a close after the gateway's payment, and a close that lost
/// its race (whose plan moves nothing).
const PLANS: usize = 4;

/// Plans check number `check`, due at `due_at` (if its timer said), of
/// `order` (as read) as of `now`, and carries
/// the plan out; plans again on what a step found.
async fn plan_and_carry_out<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    order_id: &OrderId,
    (check, due_at): (Attempt, Option<DateTime<Utc>>),
    mut order: Option<Order>,
    now: DateTime<Utc>,
    delivery: Delivery,
) -> Result<Verdict> {
    let mut stage = Stage::Arrived;
    let mut answer_plan = None;
    for _ in 0..PLANS {
        let CheckPlan { plan, outcome } = match answer_plan.take() {
            Some(planned) => planned,
            None => {
                let facts = CheckFacts {
                    order_id,
                    order: order.as_ref(),
                    check,
                    now,
                    delivery,
                    stage,
                    gateway: worker.gateway.is_some(),
                    due_at,
                };
                check::plan(&facts, &worker.schedule)
            }
        };
        match worker.execute(order_id, order.clone(), &plan).await? {
            Executed::Done(_) => {
                if let Some(outcome) = outcome {
                    worker.metrics.check_made(outcome);
                }
                return Ok(plan.reply);
            }
            Executed::Moved => {
                stage = Stage::LostClose;
                order = worker.store.find(order_id).await?;
            }
            Executed::Answered(answer) => {
                let (Some(gateway), Some(asked)) = (&worker.gateway, &order) else {
                    return Err(Error::Unfinished(
                        "the payment gateway answered a check without a gateway or an order",
                    ));
                };
                let payment_recorded_for = match &answer {
                    GatewayAnswer::Paid { payment_id, .. } => worker
                        .store
                        .payment(payment_id)
                        .await?
                        .map(|recorded| recorded.order_id),
                    _ => None,
                };
                let answered = Answered {
                    answer,
                    payment_recorded_for,
                    at: worker.now(),
                    wait: gateway.wait_before_asking_again(),
                };
                match check::plan_answer(asked, check, answered, gateway.policy()) {
                    AfterAsking::Plan(planned) => answer_plan = Some(planned),
                    AfterAsking::Pay(payment) => {
                        let (first_time, recorded) =
                            worker.store.record_payment(&payment, now).await?;
                        if first_time {
                            worker.metrics.payment_recorded();
                        }
                        order = worker
                            .apply_payment(order_id, recorded, delivery, Some(check))
                            .await?;
                        stage = Stage::GatewayPaid;
                    }
                }
            }
        }
    }
    Err(Error::Unfinished(
        "a check found its order moved by each of its plans",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_in_hand_is_claimed_once_until_it_is_done() {
        let in_flight = ChecksInFlight::default();
        let order_id = OrderId::parse("A-1").unwrap();
        let first = in_flight.claim(&order_id, Attempt::FIRST, None).unwrap();
        assert!(in_flight.claim(&order_id, Attempt::FIRST, None).is_none());
        // The same number for another deadline is another timer.
        let other_deadline = Some("2026-12-08T10:00:00Z".parse().unwrap());
        let moved = in_flight
            .claim(&order_id, Attempt::FIRST, other_deadline)
            .unwrap();
        assert!(
            in_flight
                .claim(&order_id, Attempt::FIRST, other_deadline)
                .is_none()
        );
        drop(moved);
        // Another check of the order, or another order, is its own.
        let next = in_flight
            .claim(&order_id, Attempt::FIRST.next(), None)
            .unwrap();
        let other = OrderId::parse("A-2").unwrap();
        assert!(in_flight.claim(&other, Attempt::FIRST, None).is_some());
        drop(first);
        assert!(in_flight.claim(&order_id, Attempt::FIRST, None).is_some());
        drop(next);
    }
}
