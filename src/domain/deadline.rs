//! `order.deadline_changed`: the order service moves a pending order's
//! deadline, later or earlier.
//!
//! - The change is applied in the order the broker delivered such messages:
//!   each carries the time it was received (stamped in delivery order, see
//!   `inbox::Arrivals`), the order keeps that of the change it holds, and a
//!   change received before it is superseded.
//! - Once the change is written, the next check is armed for the new
//!   deadline, with the number the check after the order's last one has:
//!   the timer armed for the old deadline has that number too, and whichever
//!   comes second finds the check made (stale), or finds itself due before
//!   the order's next check (armed for a deadline that is no more, see
//!   `check::superseded`). Armed first, the new timer could come before the
//!   write and be taken for the old one. A crash between the two is mended
//!   by the change's next delivery, which finds the deadline it brings and
//!   arms the order's next check again (a copy is stale when it comes).
//! - A new deadline already past closes the order at once: through a check
//!   due now. (The change is itself in the payments queue, so it cannot
//!   wait there for the payments behind it; the check waits for those
//!   ahead of the close, as every close does.)
//! - The change is kept (`deadline_changes`) with the order's `attempts` at
//!   that moment, so that every copy of `order.deadline_changed` is the same.
//!   A deadline the order had before and is given again moves it, but its
//!   event keeps its first record: one id, one body.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Attempt, Delivery, Order, OrderStatus, Rejection, Schedule,
    check::next_check_at,
    message::DeadlineChanged,
    plan::{Plan, Step},
    reminder::{self, RemindBefore},
    time_delta,
};

/// What a deadline brings: the checks follow `schedule`, reminders come
/// `remind_before` it, and a deadline is at most `max_deadline` after
/// `placed_at`.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineRules<'a> {
    pub schedule: &'a Schedule,
    pub max_deadline: Duration,
    pub remind_before: &'a RemindBefore,
}

/// A deadline change as paywait keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordedChange {
    pub expires_at: DateTime<Utc>,
    /// When it was received: its place among the order's changes.
    pub received_at: DateTime<Utc>,
    /// When it moved the order; `None` while its order is not known.
    pub applied_at: Option<DateTime<Utc>>,
    /// The order's checks when it moved it.
    pub attempts: u32,
    /// When its event was confirmed by the broker.
    pub event_published_at: Option<DateTime<Utc>>,
}

/// What a deadline change does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeDecision {
    /// The order is not known yet: keep the change for its arrival.
    KeepForArrival,
    /// Paid or closed: nothing changes.
    Settled,
    /// A change received after this one moved the order already.
    Superseded,
    /// The order has this deadline already.
    Same,
    /// Not a deadline the order may have: park the message.
    Refused(Rejection),
    /// Move the deadline; its next check is then due at `next_check_at`.
    Move { next_check_at: DateTime<Utc> },
    /// Move the deadline, which is past already: the order is closed by a
    /// check due now.
    MoveAndClose,
}

/// How a change counts in `paywait_deadline_changes_total`.
impl ChangeDecision {
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::KeepForArrival => "waiting",
            Self::Settled => "settled",
            Self::Superseded => "superseded",
            Self::Same => "same",
            Self::Refused(_) => "refused",
            Self::Move { .. } | Self::MoveAndClose => "applied",
        }
    }
}

/// Every [`ChangeDecision::outcome`].
pub const OUTCOMES: [&str; 6] = [
    "applied",
    "same",
    "settled",
    "superseded",
    "waiting",
    "refused",
];

/// Decides what `change`, received at `received_at`, does to `order` (as
/// read, if known) at `now`. `max_deadline`: the furthest an order's
/// deadline may be from its `placed_at`.
pub fn decide(
    order: Option<&Order>,
    change: &DeadlineChanged,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    schedule: &Schedule,
    max_deadline: Duration,
) -> ChangeDecision {
    let Some(order) = order else {
        return ChangeDecision::KeepForArrival;
    };
    if order.status != OrderStatus::Pending {
        return ChangeDecision::Settled;
    }
    // Stamps are unique per delivery: the same stamp is this very change,
    // tried again after it was written.
    if order
        .deadline_changed_at
        .is_some_and(|applied| applied > received_at)
    {
        return ChangeDecision::Superseded;
    }
    if change.expires_at == order.expires_at {
        return ChangeDecision::Same;
    }
    if let Err(why) = allowed(order, change.expires_at, max_deadline) {
        return ChangeDecision::Refused(Rejection::InvalidField {
            field: "expires_at",
            why,
        });
    }
    if change.expires_at <= now {
        return ChangeDecision::MoveAndClose;
    }
    let moved = Order {
        expires_at: change.expires_at,
        ..order.clone()
    };
    ChangeDecision::Move {
        next_check_at: next_check_at(&moved, now, schedule),
    }
}

/// Whether `order` may be given the deadline `expires_at`: after its
/// `placed_at`, and at most `max_deadline` later.
fn allowed(order: &Order, expires_at: DateTime<Utc>, max_deadline: Duration) -> Result<(), String> {
    if expires_at <= order.placed_at {
        return Err(format!(
            "{expires_at} is not after the order's placed_at ({})",
            order.placed_at
        ));
    }
    if expires_at > order.placed_at + time_delta(max_deadline) {
        return Err(format!(
            "{expires_at} is more than checks.max_deadline after the order's placed_at ({})",
            order.placed_at
        ));
    }
    Ok(())
}

/// The plan of a deadline change, as [`decide`] decides it. `delivery`: a
/// change delivered again may have been written and died before its event
/// was confirmed, which is then published.
pub fn plan(
    order: Option<&Order>,
    decision: &ChangeDecision,
    change: &DeadlineChanged,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    delivery: Delivery,
    remind_before: &RemindBefore,
) -> Plan {
    let reminders = || reminder::ahead(&change.order_id, change.expires_at, remind_before, now);
    let next_check = order.map_or(Attempt::FIRST, |order| {
        Attempt::new(order.attempts.saturating_add(1)).unwrap_or(Attempt::FIRST)
    });
    let expires_at = change.expires_at;
    match decision {
        ChangeDecision::KeepForArrival => Plan::steps([Step::KeepDeadlineChange {
            expires_at,
            received_at,
        }]),
        ChangeDecision::Settled => Plan::nothing("a deadline change of a settled order ignored"),
        ChangeDecision::Superseded => {
            Plan::nothing("a deadline change superseded by a later one ignored")
        }
        ChangeDecision::Same if delivery == Delivery::Again => {
            let mut steps = vec![Step::ArmTimer {
                check: next_check,
                due_at: order.and_then(|order| order.next_check_at).unwrap_or(now),
            }];
            steps.extend(reminders());
            steps.push(Step::AnnounceDeadlineChange { expires_at });
            Plan::steps(steps)
        }
        ChangeDecision::Same => Plan::nothing("the order has this deadline already"),
        ChangeDecision::Refused(rejection) => Plan::park(rejection.clone()),
        ChangeDecision::Move { next_check_at } => {
            let mut steps = vec![Step::ChangeDeadline {
                expires_at,
                next_check_at: *next_check_at,
                received_at,
            }];
            // The timer in flight stays good when it is due at the same time.
            if order.and_then(|order| order.next_check_at) != Some(*next_check_at) {
                steps.push(Step::ArmTimer {
                    check: next_check,
                    due_at: *next_check_at,
                });
            }
            steps.extend(reminders());
            steps.push(Step::AnnounceDeadlineChange { expires_at });
            Plan::steps(steps)
        }
        ChangeDecision::MoveAndClose => Plan::steps([
            Step::ChangeDeadline {
                expires_at,
                next_check_at: now,
                received_at,
            },
            Step::ArmTimer {
                check: next_check,
                due_at: now,
            },
            Step::AnnounceDeadlineChange { expires_at },
        ]),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::{OrderId, test_order};

    const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

    fn schedule() -> Schedule {
        Schedule::parse(&["1m", "4m", "10m", "15m"]).unwrap()
    }

    /// Pending, placed 08:00, due 08:30, two checks made, the next at 08:15.
    fn pending() -> Order {
        let order = test_order(OrderStatus::Pending);
        Order {
            attempts: 2,
            next_check_at: Some(order.placed_at + TimeDelta::minutes(15)),
            ..order
        }
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        pending().placed_at + TimeDelta::minutes(minutes)
    }

    fn change(minutes: i64) -> DeadlineChanged {
        DeadlineChanged {
            order_id: OrderId::parse("A-1001").unwrap(),
            expires_at: at(minutes),
        }
    }

    fn decide_at(order: Option<&Order>, minutes: i64, now: i64) -> ChangeDecision {
        decide(
            order,
            &change(minutes),
            at(now),
            at(now),
            &schedule(),
            MONTH,
        )
    }

    #[test]
    fn a_pending_orders_deadline_moves_and_its_checks_follow() {
        let order = pending();
        // Later: the schedule's next check (15 minutes) stands.
        assert_eq!(
            decide_at(Some(&order), 60, 10),
            ChangeDecision::Move {
                next_check_at: at(15)
            }
        );
        // Earlier than the next check: the new deadline is the next check.
        assert_eq!(
            decide_at(Some(&order), 12, 10),
            ChangeDecision::Move {
                next_check_at: at(12)
            }
        );
        // Already past: closed now.
        assert_eq!(decide_at(Some(&order), 9, 10), ChangeDecision::MoveAndClose);
        assert_eq!(
            decide_at(Some(&order), 10, 10),
            ChangeDecision::MoveAndClose
        );
    }

    #[test]
    fn what_a_change_leaves_alone() {
        let order = pending();
        assert_eq!(decide_at(None, 60, 10), ChangeDecision::KeepForArrival);
        for status in [OrderStatus::Paid, OrderStatus::Closed] {
            let settled = test_order(status);
            assert_eq!(decide_at(Some(&settled), 60, 10), ChangeDecision::Settled);
        }
        assert_eq!(decide_at(Some(&order), 30, 10), ChangeDecision::Same);
        // A change received before the one the order holds.
        let changed = Order {
            deadline_changed_at: Some(at(10)),
            ..order.clone()
        };
        assert_eq!(decide_at(Some(&changed), 60, 9), ChangeDecision::Superseded);
        assert!(matches!(
            decide_at(Some(&changed), 60, 11),
            ChangeDecision::Move { .. }
        ));
        // This very change, tried again once written: its deadline holds.
        let written = Order {
            expires_at: at(60),
            ..changed
        };
        assert_eq!(decide_at(Some(&written), 60, 10), ChangeDecision::Same);
    }

    #[test]
    fn a_deadline_the_order_may_not_have_is_refused() {
        let order = pending();
        for minutes in [0, -5, 30 * 24 * 60 + 1] {
            match decide_at(Some(&order), minutes, 10) {
                ChangeDecision::Refused(rejection) => {
                    assert_eq!(rejection.reason(), "invalid_field");
                    assert!(rejection.to_string().contains("placed_at"), "{rejection}");
                }
                other => panic!("{minutes}: {other:?}"),
            }
        }
        assert!(matches!(
            decide_at(Some(&order), 30 * 24 * 60, 10),
            ChangeDecision::Move { .. }
        ));
    }

    #[test]
    fn the_next_timer_is_armed_once_the_change_is_written() {
        let order = pending();
        let changed = change(12);
        let decision = decide_at(Some(&order), 12, 10);
        let planned = plan(
            Some(&order),
            &decision,
            &changed,
            at(10),
            at(10),
            Delivery::First,
            &RemindBefore::default(),
        );
        assert_eq!(
            planned.steps,
            [
                Step::ChangeDeadline {
                    expires_at: at(12),
                    next_check_at: at(12),
                    received_at: at(10)
                },
                Step::ArmTimer {
                    check: Attempt::new(3).unwrap(),
                    due_at: at(12)
                },
                Step::AnnounceDeadlineChange { expires_at: at(12) },
            ]
        );
        // The timer in flight is due at the same time: none is armed.
        let later = change(60);
        let decision = decide_at(Some(&order), 60, 10);
        let planned = plan(
            Some(&order),
            &decision,
            &later,
            at(10),
            at(10),
            Delivery::First,
            &RemindBefore::default(),
        );
        assert!(
            !planned
                .steps
                .iter()
                .any(|step| matches!(step, Step::ArmTimer { .. }))
        );
    }

    #[test]
    fn a_past_deadline_is_closed_by_a_check_due_now() {
        let order = pending();
        let changed = change(5);
        let planned = plan(
            Some(&order),
            &ChangeDecision::MoveAndClose,
            &changed,
            at(10),
            at(10),
            Delivery::First,
            &RemindBefore::default(),
        );
        assert_eq!(
            planned.steps,
            [
                Step::ChangeDeadline {
                    expires_at: at(5),
                    next_check_at: at(10),
                    received_at: at(10)
                },
                Step::ArmTimer {
                    check: Attempt::new(3).unwrap(),
                    due_at: at(10)
                },
                Step::AnnounceDeadlineChange { expires_at: at(5) },
            ]
        );
    }

    #[test]
    fn a_change_delivered_again_arms_the_next_check_and_publishes_its_event_if_owed() {
        let order = Order {
            expires_at: at(60),
            ..pending()
        };
        let changed = change(60);
        let again = plan(
            Some(&order),
            &ChangeDecision::Same,
            &changed,
            at(10),
            at(10),
            Delivery::Again,
            &RemindBefore::default(),
        );
        assert_eq!(
            again.steps,
            [
                Step::ArmTimer {
                    check: Attempt::new(3).unwrap(),
                    due_at: at(15)
                },
                Step::AnnounceDeadlineChange { expires_at: at(60) }
            ]
        );
        let first = plan(
            Some(&order),
            &ChangeDecision::Same,
            &changed,
            at(10),
            at(10),
            Delivery::First,
            &RemindBefore::default(),
        );
        assert!(first.steps.is_empty());
        assert!(first.note.is_some());
    }
}
