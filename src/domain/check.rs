//! What happens when a timer fires.
//!
//! A timer message for check number `attempt` of an order has expired. The
//! worker reads the order and asks [`plan`] what to do; it carries the
//! plan's steps out in their order, so that a crash at any point repeats
//! work instead of losing it. [`decide`] says what the check does:
//!
//! - [`CheckDecision::UnknownOrder`]: park the timer; nothing is known to check.
//! - [`CheckDecision::Reschedule`]: publish the next timer, due at the next
//!   time the schedule plans (see `domain::timer` for how it gets there on
//!   time), wait for the broker's confirm, then record the check
//!   (`attempts`, `next_check_at`), then acknowledge. Because the record
//!   comes after the confirm, a check whose number the order has already
//!   reached is a duplicate timer whose successor is certainly armed, and
//!   is dropped ([`CheckDecision::Stale`]).
//! - [`CheckDecision::Close`]: with a gateway, ask it first
//!   ([`plan_answer`]). Wait until every payment that reached the broker
//!   before now has been handled, close the order with one conditional
//!   write (`WHERE status = 'pending'`), then publish `order.closed`, then
//!   mark it published, then acknowledge. If a payment won the race,
//!   plan again ([`Stage::LostClose`], [`after_lost_close`]).
//! - [`CheckDecision::Announce`]: the order reached a terminal status whose
//!   event is not confirmed yet (a payment made in SQL, or a crash after the
//!   write): publish it, mark it published, acknowledge. The event says what
//!   the row says, `attempts` included (the checks recorded, and the check
//!   that moved the order), so that every copy of it is the same.
//!
//! A timer that arrives a little before its due time (see `domain::timer`)
//! waits for it only when the check may close the order
//! ([`decide_early_as_of`]); every other check is decided at once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Attempt, CloseReason, Delivery, Order, OrderId, OrderStatus, PaymentSucceeded, Rejection,
    Schedule,
    gateway::{AfterAnswer, AskPolicy, GatewayAnswer, after_answer},
    plan::{Claim, Plan, Step},
    time_delta,
};

/// What a check knows when it plans.
#[derive(Debug, Clone, Copy)]
pub struct CheckFacts<'a> {
    pub order_id: &'a OrderId,
    /// The order as read, if the database knows it.
    pub order: Option<&'a Order>,
    /// The check's number.
    pub check: Attempt,
    /// The time the check is made as of.
    pub now: DateTime<Utc>,
    /// Whether the timer may have been handled part-way before.
    pub delivery: Delivery,
    pub stage: Stage,
    /// A payment gateway is asked before an unpaid order is closed.
    pub gateway: bool,
    /// When the timer said the check was due, if it said.
    pub due_at: Option<DateTime<Utc>>,
}

/// How far a check has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Its timer has just fired.
    Arrived,
    /// Its close found the order moved: a payment (or another close)
    /// committed first.
    LostClose,
    /// The payment the gateway named was applied to the order.
    GatewayPaid,
}

/// A check's plan, and how the check counts in `paywait_checks_total`
/// once it is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPlan {
    pub plan: Plan,
    pub outcome: Option<CheckOutcome>,
}

/// **What happens when a timer fires**: the plan of check number
/// `facts.check` of an order, as [`decide`] (or, as its stage says,
/// [`decide_redelivered`] or [`after_lost_close`]) decides it.
pub fn plan(facts: &CheckFacts, schedule: &Schedule) -> CheckPlan {
    let CheckFacts {
        order,
        check,
        now,
        stage,
        ..
    } = *facts;
    if stage == Stage::Arrived && superseded(order, check, facts.due_at) {
        return CheckPlan {
            plan: Plan::nothing("a timer armed for a deadline since moved dropped"),
            outcome: None,
        };
    }
    let decision = match stage {
        Stage::Arrived if facts.delivery == Delivery::Again => {
            decide_redelivered(order, check, now, schedule)
        }
        Stage::Arrived | Stage::GatewayPaid => decide(order, check, now, schedule),
        Stage::LostClose => after_lost_close(order, check, now, schedule),
    };
    let plan = match decision {
        CheckDecision::UnknownOrder => Plan::park(Rejection::UnknownOrder(facts.order_id.clone())),
        CheckDecision::Stale => Plan::nothing("a duplicate timer dropped"),
        CheckDecision::Settled(_) => Plan::nothing("the order is settled: no check to make"),
        CheckDecision::Announce(_) => {
            Plan::steps([Step::AnnounceOwed(Claim::for_delivery(facts.delivery))])
        }
        // The next timer is confirmed before the check is recorded: a
        // check whose number the order reached has its successor armed.
        CheckDecision::Reschedule { next, due_at } => Plan::steps([
            Step::ArmTimer {
                check: next,
                due_at,
            },
            Step::RecordCheck {
                check,
                next_due_at: due_at,
                kind: CheckKind::Scheduled,
            },
        ]),
        // The gateway is asked once per check; a payment it names that did
        // not pay the order leaves it to close as expired.
        CheckDecision::Close if facts.gateway && stage == Stage::Arrived => {
            return CheckPlan {
                plan: Plan::steps([Step::AskGateway]),
                outcome: None,
            };
        }
        CheckDecision::Close => Plan::close(Some(check), CloseReason::Expired),
    };
    CheckPlan {
        plan,
        outcome: decision.outcome(),
    }
}

/// What a check's question to the gateway leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAsking {
    /// The gateway named this payment: it is recorded and does what any
    /// payment does, counted as made by the check; the check is then
    /// planned again ([`Stage::GatewayPaid`]).
    Pay(PaymentSucceeded),
    Plan(CheckPlan),
}

/// What the gateway said, and what the check knows around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub answer: GatewayAnswer,
    /// The order a payment the gateway names was recorded for, if it was.
    pub payment_recorded_for: Option<OrderId>,
    /// When the answer came: a wait before asking again runs from here,
    /// however long the question took.
    pub at: DateTime<Utc>,
    /// The wait before asking again, should the check ask again.
    pub wait: Duration,
}

/// What check number `check` does with the gateway's answer about `order`.
pub fn plan_answer(
    order: &Order,
    check: Attempt,
    answered: Answered,
    policy: &AskPolicy,
) -> AfterAsking {
    let mut answer = answered.answer;
    // A payment id the gateway names for another order is no answer.
    if let GatewayAnswer::Paid { payment_id, .. } = &answer
        && let Some(recorded_for) = &answered.payment_recorded_for
        && *recorded_for != order.order_id
    {
        answer = GatewayAnswer::Unusable(format!(
            "payment {payment_id:?} belongs to order {recorded_for}"
        ));
    }
    let (plan, outcome) = match after_answer(order, answer, policy) {
        AfterAnswer::Pay(payment) => return AfterAsking::Pay(payment),
        AfterAnswer::Close(reason) => (Plan::close(Some(check), reason), CheckOutcome::Closed),
        // The ask is recorded before the timer is armed: a short retry
        // comes back at once, and must find it counted. Should arming
        // fail, the check is delivered again and arms the recorded timer
        // (`decide_redelivered`).
        AfterAnswer::AskAgain => {
            let due_at = answered.at + time_delta(answered.wait);
            let steps = [
                Step::RecordCheck {
                    check,
                    next_due_at: due_at,
                    kind: CheckKind::AskedGateway,
                },
                Step::ArmTimer {
                    check: check.next(),
                    due_at,
                },
            ];
            (Plan::steps(steps), CheckOutcome::Rescheduled)
        }
    };
    AfterAsking::Plan(CheckPlan {
        plan,
        outcome: Some(outcome),
    })
}

/// What a check does with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDecision {
    /// The order is paid or closed and downstream has not heard of it yet.
    Announce(OrderStatus),
    /// Unpaid, and the deadline has come.
    Close,
    /// Unpaid with time left: arm the timer of check `next`, due at `due_at`.
    Reschedule {
        next: Attempt,
        due_at: DateTime<Utc>,
    },
    /// The order is settled and announced: nothing left to do.
    Settled(OrderStatus),
    /// A duplicate timer: this check was already made and its successor armed.
    Stale,
    /// The database does not know the order.
    UnknownOrder,
}

/// How a check that left its order pending was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// As the schedule planned: the next check is the schedule's.
    Scheduled,
    /// At the deadline, asking the payment gateway, which had no answer
    /// yet: the next check asks it again.
    AskedGateway,
}

/// The outcome label of a check, as counted in `paywait_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckOutcome {
    Paid,
    Rescheduled,
    Closed,
}

impl CheckOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Rescheduled => "rescheduled",
            Self::Closed => "closed",
        }
    }
}

impl CheckDecision {
    /// How the check counts; a stale duplicate does not count at all.
    pub fn outcome(self) -> Option<CheckOutcome> {
        match self {
            Self::Announce(status) | Self::Settled(status) => match status {
                OrderStatus::Paid => Some(CheckOutcome::Paid),
                OrderStatus::Closed => Some(CheckOutcome::Closed),
                OrderStatus::Pending => None,
            },
            Self::Close => Some(CheckOutcome::Closed),
            Self::Reschedule { .. } => Some(CheckOutcome::Rescheduled),
            Self::Stale | Self::UnknownOrder => None,
        }
    }
}

/// Decides what check number `attempt` does with `order` (as the database
/// holds it, if at all) at time `now`.
///
/// An unpaid order is closed at or after its deadline and never before it.
pub fn decide(
    order: Option<&Order>,
    attempt: Attempt,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> CheckDecision {
    let Some(order) = order else {
        return CheckDecision::UnknownOrder;
    };
    match order.status {
        OrderStatus::Paid | OrderStatus::Closed if order.event_published_at.is_none() => {
            CheckDecision::Announce(order.status)
        }
        OrderStatus::Paid | OrderStatus::Closed => CheckDecision::Settled(order.status),
        OrderStatus::Pending if order.attempts >= attempt.get() => CheckDecision::Stale,
        OrderStatus::Pending if now >= order.expires_at => CheckDecision::Close,
        OrderStatus::Pending => CheckDecision::Reschedule {
            next: attempt.next(),
            due_at: next_check_at(order, now, schedule),
        },
    }
}

/// Decides what a check delivered again (its first handling may have stopped
/// part-way) does: as [`decide`], but a check the order has recorded may
/// have died before its successor's timer was confirmed (a gateway's ask is
/// recorded before its timer is armed), so that timer is armed again, due
/// when recorded. A duplicate it makes is dropped as stale in its turn.
pub fn decide_redelivered(
    order: Option<&Order>,
    attempt: Attempt,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> CheckDecision {
    match (decide(order, attempt, now, schedule), order) {
        (CheckDecision::Stale, Some(order)) if order.attempts == attempt.get() => {
            CheckDecision::Reschedule {
                next: attempt.next(),
                due_at: order.next_check_at.unwrap_or(now),
            }
        }
        (decision, _) => decision,
    }
}

/// Whether a timer for check number `check`, due at `due_at`, was armed for
/// a deadline that has moved since (see `domain::deadline`): it is for the
/// pending order's next check, and due before that check is. The timer
/// armed with the change makes the check. (`x-due-at` keeps milliseconds,
/// the database microseconds: a timer less than a millisecond before is
/// the order's own.)
pub fn superseded(order: Option<&Order>, check: Attempt, due_at: Option<DateTime<Utc>>) -> bool {
    let (Some(order), Some(due_at)) = (order, due_at) else {
        return false;
    };
    order.status == OrderStatus::Pending
        && order.attempts.checked_add(1) == Some(check.get())
        && order
            .next_check_at
            .is_some_and(|next| next - due_at >= chrono::TimeDelta::milliseconds(1))
}

/// The number a check whose `x-attempt` is unusable is made as: the next
/// check of a pending order (a check is never refused for its header while
/// its order waits for it), or `None` for any other order, whose check is
/// parked.
pub fn number_of_unnumbered(order: Option<&Order>) -> Option<Attempt> {
    order
        .filter(|order| order.status == OrderStatus::Pending)
        .and_then(|order| Attempt::new(order.attempts.checked_add(1)?))
}

/// When a check that arrived `early` (before `due_at`) is made, given the
/// order as read on its arrival: a check that may close the order (pending,
/// its deadline at or before `due_at`) waits for its due time, because no
/// order is closed before its deadline; any other check decides now, as of
/// its due time, since what it does (arm the next check, announce an event
/// owed) is the same a moment early. `None`: at its due time, by the clock.
pub fn decide_early_as_of(order: Option<&Order>, due_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match order {
        Some(order) if order.status == OrderStatus::Pending && order.expires_at <= due_at => None,
        _ => Some(due_at),
    }
}

/// When the next check of a pending order is due, seen at `now`: the next
/// planned by the schedule, never past the order's deadline.
pub fn next_check_at(order: &Order, now: DateTime<Utc>, schedule: &Schedule) -> DateTime<Utc> {
    let deadline = (order.expires_at - order.placed_at)
        .to_std()
        .unwrap_or_default();
    let offset = schedule.next_offset(now - order.placed_at, deadline);
    order.placed_at + time_delta(offset)
}

/// Decides again after a close lost its race: the conditional write found
/// the order no longer pending, so a payment (or another daemon's close)
/// committed first. The order is terminal now and is announced if its event
/// is owed; a lost close never closes or reschedules.
pub fn after_lost_close(
    order: Option<&Order>,
    attempt: Attempt,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> CheckDecision {
    match decide(order, attempt, now, schedule) {
        CheckDecision::Close | CheckDecision::Reschedule { .. } => CheckDecision::Stale,
        decision => decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_order;
    use chrono::TimeDelta;

    fn schedule() -> Schedule {
        Schedule::parse(&["1m", "4m", "10m", "15m"]).unwrap()
    }

    fn placed_at() -> DateTime<Utc> {
        "2026-11-27T08:00:00Z".parse().unwrap()
    }

    fn pending(attempts: u32) -> Order {
        Order {
            attempts,
            ..test_order(OrderStatus::Pending)
        }
    }

    fn at(minutes: i64, millis: i64) -> DateTime<Utc> {
        placed_at() + TimeDelta::minutes(minutes) + TimeDelta::milliseconds(millis)
    }

    fn attempt(n: u32) -> Attempt {
        Attempt::new(n).unwrap()
    }

    #[test]
    fn unpaid_orders_follow_the_schedule_then_close_at_the_deadline() {
        let s = schedule();
        // Due when planned, however late the check before ran.
        assert_eq!(
            decide(Some(&pending(0)), attempt(1), at(1, 3), &s),
            CheckDecision::Reschedule {
                next: attempt(2),
                due_at: at(5, 0)
            }
        );
        assert_eq!(
            decide(Some(&pending(2)), attempt(3), at(15, 3), &s),
            CheckDecision::Reschedule {
                next: attempt(4),
                due_at: at(30, 0)
            }
        );
        assert_eq!(
            decide(Some(&pending(3)), attempt(4), at(30, 0), &s),
            CheckDecision::Close
        );
        assert_eq!(
            decide(Some(&pending(3)), attempt(4), at(30, 5), &s),
            CheckDecision::Close
        );
    }

    #[test]
    fn never_closes_before_the_deadline() {
        // The last planned check fired early: placed_at was ahead of our clock.
        let decision = decide(Some(&pending(3)), attempt(4), at(29, 0), &schedule());
        assert_eq!(
            decision,
            CheckDecision::Reschedule {
                next: attempt(5),
                due_at: at(30, 0)
            }
        );
        let decision = decide(Some(&pending(3)), attempt(4), at(30, -1), &schedule());
        assert!(matches!(decision, CheckDecision::Reschedule { .. }));
    }

    #[test]
    fn only_a_check_that_may_close_waits_for_its_due_time() {
        let s = schedule();
        // The closing check (the deadline is 30 minutes in) waits.
        assert_eq!(decide_early_as_of(Some(&pending(3)), at(30, 0)), None);
        assert_eq!(decide_early_as_of(Some(&pending(3)), at(30, 1)), None);
        // A check before the deadline decides at once, as of its due time,
        // and arms the next planned check, not itself again.
        let as_of = decide_early_as_of(Some(&pending(1)), at(5, 0)).unwrap();
        assert_eq!(as_of, at(5, 0));
        assert_eq!(
            decide(Some(&pending(1)), attempt(2), as_of, &s),
            CheckDecision::Reschedule {
                next: attempt(3),
                due_at: at(15, 0)
            }
        );
        // Settled orders and unknown ones have nothing to wait for.
        for status in [OrderStatus::Paid, OrderStatus::Closed] {
            assert_eq!(
                decide_early_as_of(Some(&test_order(status)), at(30, 0)),
                Some(at(30, 0))
            );
        }
        assert_eq!(decide_early_as_of(None, at(30, 0)), Some(at(30, 0)));
    }

    #[test]
    fn a_check_after_the_deadline_closes_even_mid_schedule() {
        // The order message itself arrived late: first check is already past the deadline.
        assert_eq!(
            decide(Some(&pending(0)), attempt(1), at(45, 0), &schedule()),
            CheckDecision::Close
        );
    }

    #[test]
    fn paid_orders_are_announced_once() {
        let mut order = pending(1);
        order.status = OrderStatus::Paid;
        order.paid_at = Some(at(2, 0));
        assert_eq!(
            decide(Some(&order), attempt(2), at(5, 0), &schedule()),
            CheckDecision::Announce(OrderStatus::Paid)
        );
        order.event_published_at = Some(at(2, 1));
        assert_eq!(
            decide(Some(&order), attempt(2), at(5, 0), &schedule()),
            CheckDecision::Settled(OrderStatus::Paid)
        );
        // Even past the deadline a paid order stays paid.
        assert_eq!(
            decide(Some(&order), attempt(4), at(31, 0), &schedule()),
            CheckDecision::Settled(OrderStatus::Paid)
        );
    }

    #[test]
    fn a_close_whose_event_was_lost_is_announced_again() {
        let mut order = pending(4);
        order.status = OrderStatus::Closed;
        order.closed_at = Some(at(30, 2));
        assert_eq!(
            decide(Some(&order), attempt(4), at(30, 9), &schedule()),
            CheckDecision::Announce(OrderStatus::Closed)
        );
    }

    #[test]
    fn duplicate_timers_are_stale() {
        assert_eq!(
            decide(Some(&pending(2)), attempt(2), at(5, 0), &schedule()),
            CheckDecision::Stale
        );
        assert_eq!(
            decide(Some(&pending(3)), attempt(1), at(31, 0), &schedule()),
            CheckDecision::Stale
        );
        assert_eq!(CheckDecision::Stale.outcome(), None);
    }

    #[test]
    fn a_redelivered_check_that_was_recorded_arms_its_successor_again() {
        let recorded = Order {
            next_check_at: Some(at(5, 400)),
            ..pending(2)
        };
        assert_eq!(
            decide_redelivered(Some(&recorded), attempt(2), at(5, 1), &schedule()),
            CheckDecision::Reschedule {
                next: attempt(3),
                due_at: at(5, 400)
            }
        );
        // Delivered once, the same check is a duplicate.
        assert_eq!(
            decide(Some(&recorded), attempt(2), at(5, 1), &schedule()),
            CheckDecision::Stale
        );
        // Older checks are stale however often they come.
        assert_eq!(
            decide_redelivered(Some(&recorded), attempt(1), at(5, 1), &schedule()),
            CheckDecision::Stale
        );
        // Otherwise it decides as any check.
        assert_eq!(
            decide_redelivered(Some(&pending(3)), attempt(4), at(30, 0), &schedule()),
            CheckDecision::Close
        );
    }

    #[test]
    fn a_check_with_an_unusable_number_checks_a_pending_order_next() {
        assert_eq!(number_of_unnumbered(Some(&pending(2))), Some(attempt(3)));
        assert_eq!(number_of_unnumbered(Some(&pending(0))), Some(attempt(1)));
        for status in [OrderStatus::Paid, OrderStatus::Closed] {
            assert_eq!(number_of_unnumbered(Some(&test_order(status))), None);
        }
        assert_eq!(number_of_unnumbered(None), None);
        assert_eq!(number_of_unnumbered(Some(&pending(Attempt::MAX))), None);
    }

    #[test]
    fn an_order_with_its_own_deadline_is_checked_on_schedule_up_to_it() {
        // Due 12 minutes after it was placed: checks at 1 and 5, then 12.
        let own = Order {
            expires_at: placed_at() + TimeDelta::minutes(12),
            ..pending(1)
        };
        assert_eq!(
            decide(Some(&own), attempt(2), at(5, 0), &schedule()),
            CheckDecision::Reschedule {
                next: attempt(3),
                due_at: at(12, 0)
            }
        );
        assert_eq!(
            decide(Some(&own), attempt(3), at(12, 0), &schedule()),
            CheckDecision::Close
        );
        // Three days: the last wait of 15 minutes repeats.
        let long = Order {
            expires_at: placed_at() + TimeDelta::days(3),
            ..pending(4)
        };
        assert_eq!(
            decide(Some(&long), attempt(5), at(30, 1), &schedule()),
            CheckDecision::Reschedule {
                next: attempt(6),
                due_at: at(45, 0)
            }
        );
    }

    #[test]
    fn a_timer_for_an_unknown_order_is_refused() {
        let decision = decide(None, attempt(1), at(1, 0), &schedule());
        assert_eq!(decision, CheckDecision::UnknownOrder);
        assert_eq!(decision.outcome(), None);
    }

    #[test]
    fn a_close_that_lost_to_a_payment_announces_the_payment() {
        let mut paid = pending(3);
        paid.status = OrderStatus::Paid;
        paid.paid_at = Some(at(29, 999));
        // The payment at the deadline committed first.
        assert_eq!(
            after_lost_close(Some(&paid), attempt(4), at(30, 1), &schedule()),
            CheckDecision::Announce(OrderStatus::Paid)
        );
        paid.event_published_at = Some(at(30, 0));
        assert_eq!(
            after_lost_close(Some(&paid), attempt(4), at(30, 1), &schedule()),
            CheckDecision::Settled(OrderStatus::Paid)
        );
        // Another daemon's close won: its event may still be owed.
        let mut closed = pending(4);
        closed.status = OrderStatus::Closed;
        assert_eq!(
            after_lost_close(Some(&closed), attempt(4), at(30, 1), &schedule()),
            CheckDecision::Announce(OrderStatus::Closed)
        );
        // A lost close never closes, nor arms another timer.
        for now in [at(30, 1), at(29, 0)] {
            assert_eq!(
                after_lost_close(Some(&pending(3)), attempt(4), now, &schedule()),
                CheckDecision::Stale
            );
        }
        assert_eq!(
            after_lost_close(None, attempt(4), at(30, 1), &schedule()),
            CheckDecision::UnknownOrder
        );
    }

    #[test]
    fn outcomes_are_labelled_as_the_metric_expects() {
        assert_eq!(CheckDecision::Close.outcome(), Some(CheckOutcome::Closed));
        assert_eq!(
            CheckDecision::Announce(OrderStatus::Paid).outcome(),
            Some(CheckOutcome::Paid)
        );
        assert_eq!(
            CheckDecision::Reschedule {
                next: attempt(2),
                due_at: at(1, 0)
            }
            .outcome()
            .map(CheckOutcome::as_str),
            Some("rescheduled")
        );
    }

    mod plans {
        use super::*;
        use crate::domain::{Currency, PaymentId, Verdict};

        fn facts<'a>(order: Option<&'a Order>, check: u32, now: DateTime<Utc>) -> CheckFacts<'a> {
            static ORDER_ID: std::sync::LazyLock<OrderId> =
                std::sync::LazyLock::new(|| OrderId::parse("A-1001").unwrap());
            CheckFacts {
                order_id: &ORDER_ID,
                order,
                check: attempt(check),
                now,
                delivery: Delivery::First,
                stage: Stage::Arrived,
                gateway: false,
                due_at: None,
            }
        }

        #[test]
        fn a_timer_armed_for_a_deadline_since_moved_finds_nothing_to_do() {
            // The next check (the third) moved from 08:05 to 08:12.
            let order = Order {
                next_check_at: Some(at(12, 0)),
                ..pending(2)
            };
            let old = CheckFacts {
                due_at: Some(at(5, 0)),
                ..facts(Some(&order), 3, at(5, 0))
            };
            let planned = plan(&old, &schedule());
            assert!(steps(&planned).is_empty());
            assert_eq!(planned.outcome, None);
            // The timer armed with the change, to the millisecond.
            for due_at in [at(12, 0), at(12, 0) - TimeDelta::microseconds(999)] {
                let new = CheckFacts {
                    due_at: Some(due_at),
                    ..facts(Some(&order), 3, at(12, 0))
                };
                assert!(!superseded(Some(&order), attempt(3), Some(due_at)));
                assert!(!steps(&plan(&new, &schedule())).is_empty());
            }
            // Only the next check's timer, only of a pending order, and only
            // a timer that says when it is due.
            assert!(!superseded(Some(&order), attempt(4), Some(at(5, 0))));
            assert!(!superseded(Some(&order), attempt(3), None));
            let paid = Order {
                status: OrderStatus::Paid,
                ..order.clone()
            };
            assert!(!superseded(Some(&paid), attempt(3), Some(at(5, 0))));
            assert!(!superseded(None, attempt(3), Some(at(5, 0))));
        }

        fn steps(planned: &CheckPlan) -> &[Step] {
            &planned.plan.steps
        }

        #[test]
        fn a_check_before_the_deadline_arms_the_next_then_records_itself() {
            let order = pending(0);
            let planned = plan(&facts(Some(&order), 1, at(1, 3)), &schedule());
            assert_eq!(
                steps(&planned),
                [
                    Step::ArmTimer {
                        check: attempt(2),
                        due_at: at(5, 0)
                    },
                    Step::RecordCheck {
                        check: attempt(1),
                        next_due_at: at(5, 0),
                        kind: CheckKind::Scheduled
                    },
                ]
            );
            assert_eq!(planned.plan.reply, Verdict::Done);
            assert_eq!(planned.outcome, Some(CheckOutcome::Rescheduled));
        }

        #[test]
        fn a_close_waits_for_the_payments_before_it_then_closes_then_announces() {
            let order = pending(3);
            let planned = plan(&facts(Some(&order), 4, at(30, 2)), &schedule());
            assert_eq!(
                steps(&planned),
                [
                    Step::WaitForPayments,
                    Step::Close {
                        by_check: Some(attempt(4)),
                        reason: CloseReason::Expired
                    },
                    Step::Announce,
                ]
            );
            assert_eq!(planned.outcome, Some(CheckOutcome::Closed));
            // With a gateway, it is asked first; its answer says the rest.
            let asking = CheckFacts {
                gateway: true,
                ..facts(Some(&order), 4, at(30, 2))
            };
            let planned = plan(&asking, &schedule());
            assert_eq!(steps(&planned), [Step::AskGateway]);
            assert_eq!(planned.outcome, None);
            // Once the gateway's payment left the order unpaid, it closes
            // without asking again.
            let after_payment = CheckFacts {
                stage: Stage::GatewayPaid,
                ..asking
            };
            assert_eq!(
                steps(&plan(&after_payment, &schedule()))[1],
                Step::Close {
                    by_check: Some(attempt(4)),
                    reason: CloseReason::Expired
                }
            );
        }

        #[test]
        fn a_close_that_lost_plans_nothing_that_moves_the_order() {
            let mut paid = pending(3);
            paid.status = OrderStatus::Paid;
            let lost = CheckFacts {
                stage: Stage::LostClose,
                ..facts(Some(&paid), 4, at(30, 2))
            };
            // The payment's handler announces it: claimed, so announced once.
            let planned = plan(&lost, &schedule());
            assert_eq!(steps(&planned), [Step::AnnounceOwed(Claim::First)]);
            assert_eq!(planned.outcome, Some(CheckOutcome::Paid));
            let redelivered = CheckFacts {
                delivery: Delivery::Again,
                ..lost
            };
            assert_eq!(
                steps(&plan(&redelivered, &schedule())),
                [Step::AnnounceOwed(Claim::Skip)]
            );
            // A pending order after a lost close (another daemon's close
            // rolled back) is left to its next timer, never closed here.
            let still_pending = pending(3);
            let lost = CheckFacts {
                stage: Stage::LostClose,
                ..facts(Some(&still_pending), 4, at(30, 2))
            };
            assert_eq!(
                plan(&lost, &schedule()).plan,
                Plan::nothing("a duplicate timer dropped")
            );
        }

        #[test]
        fn an_unknown_order_parks_the_timer_and_a_stale_one_is_dropped() {
            let planned = plan(&facts(None, 1, at(1, 0)), &schedule());
            assert_eq!(
                planned.plan,
                Plan::park(Rejection::UnknownOrder(OrderId::parse("A-1001").unwrap()))
            );
            let order = pending(2);
            let stale = plan(&facts(Some(&order), 2, at(5, 0)), &schedule());
            assert_eq!(stale.plan, Plan::nothing("a duplicate timer dropped"));
            assert_eq!(stale.outcome, None);
        }

        fn answered(answer: GatewayAnswer, recorded_for: Option<&str>) -> Answered {
            Answered {
                answer,
                payment_recorded_for: recorded_for.map(|id| OrderId::parse(id).unwrap()),
                at: at(30, 40),
                wait: Duration::from_secs(30),
            }
        }

        fn policy() -> AskPolicy {
            AskPolicy {
                retry: Duration::from_secs(30),
                max_retries: 2,
            }
        }

        fn paid_by(payment_id: &str) -> GatewayAnswer {
            GatewayAnswer::Paid {
                payment_id: PaymentId::parse(payment_id).unwrap(),
                amount_cents: Some(12900),
                currency: Some(Currency::parse("CNY").unwrap()),
            }
        }

        #[test]
        fn asking_again_records_the_ask_before_arming_its_timer_from_the_answer() {
            let order = pending(3);
            let after = plan_answer(
                &order,
                attempt(4),
                answered(GatewayAnswer::Pending, None),
                &policy(),
            );
            let due_at = at(30, 30_040);
            assert_eq!(
                after,
                AfterAsking::Plan(CheckPlan {
                    plan: Plan::steps([
                        Step::RecordCheck {
                            check: attempt(4),
                            next_due_at: due_at,
                            kind: CheckKind::AskedGateway
                        },
                        Step::ArmTimer {
                            check: attempt(5),
                            due_at
                        },
                    ]),
                    outcome: Some(CheckOutcome::Rescheduled),
                })
            );
        }

        #[test]
        fn the_gateways_payment_pays_unless_it_was_recorded_for_another_order() {
            let order = pending(3);
            let check = attempt(4);
            match plan_answer(&order, check, answered(paid_by("P-1"), None), &policy()) {
                AfterAsking::Pay(payment) => {
                    assert_eq!(payment.order_id, order.order_id);
                    assert_eq!(payment.payment_id.as_str(), "P-1");
                }
                other => panic!("{other:?}"),
            }
            // Recorded for this order already: still this order's payment.
            let again = answered(paid_by("P-1"), Some("A-1001"));
            assert!(matches!(
                plan_answer(&order, check, again, &policy()),
                AfterAsking::Pay(_)
            ));
            // Another order's payment is no answer: asked again.
            let elsewhere = answered(paid_by("P-9"), Some("B-7"));
            let AfterAsking::Plan(planned) = plan_answer(&order, check, elsewhere, &policy())
            else {
                panic!("another order's payment paid this one");
            };
            assert_eq!(planned.outcome, Some(CheckOutcome::Rescheduled));
            // Unpaid: closed, after the payments before it.
            let AfterAsking::Plan(planned) = plan_answer(
                &order,
                check,
                answered(GatewayAnswer::Unpaid, None),
                &policy(),
            ) else {
                panic!("unpaid paid");
            };
            assert_eq!(planned.plan, Plan::close(Some(check), CloseReason::Expired));
        }
    }
}
