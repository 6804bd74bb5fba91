//! What happens when a timer fires.
//!
//! A timer message for check number `attempt` of an order has expired. The
//! worker loads the order and asks [`decide`]; it then carries the decision
//! out in this order, so that a crash at any point repeats work instead of
//! losing it:
//!
//! A timer that arrives a little before its due time (see `domain::timer`)
//! waits for it only when the check may close the order
//! ([`decide_early_as_of`]); every other check is decided at once.
//!
//! - [`CheckDecision::UnknownOrder`]: park the timer; nothing is known to check.
//!
//! - [`CheckDecision::Reschedule`]: publish the next timer, due at the next
//!   time the schedule plans (see `domain::timer` for how it gets there on
//!   time), wait for the broker's confirm, then record the check
//!   (`attempts`, `next_check_at`),
//!   then acknowledge. Because the record comes after the confirm, a check
//!   whose number the order has already reached is a duplicate timer whose
//!   successor is certainly armed, and is dropped.
//! - [`CheckDecision::Close`]: close the order with one conditional write
//!   (`WHERE status = 'pending'`), then publish `order.closed`, then mark it
//!   published, then acknowledge. If a payment won the race, decide again
//!   with [`after_lost_close`].
//! - [`CheckDecision::Announce`]: the order reached a terminal status whose
//!   event is not confirmed yet (a payment made in SQL, or a crash after the
//!   write): publish it, mark it published, acknowledge. The event says what
//!   the row says, `attempts` included (the checks recorded, and the check
//!   that moved the order), so that every copy of it is the same.

use chrono::{DateTime, Utc};

use super::{Attempt, Order, OrderStatus, Schedule, time_delta};

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
}
