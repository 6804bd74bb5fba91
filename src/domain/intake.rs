//! What happens when an order is placed.
//!
//! The worker builds the order to store with [`new_order`], stores it (the
//! database answers with a [`Placement`]), and carries out what
//! [`after_placement`] says. Storing is idempotent, so a message handled
//! twice changes nothing the second time; what a repeat must still do — arm
//! a timer a crash may have lost, announce an event still owed — is decided
//! here.

use chrono::{DateTime, Utc};

use super::{Order, OrderId, OrderPlaced, OrderStatus, Schedule, time_delta};

/// An order ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When the first check is due.
    pub next_check_at: DateTime<Utc>,
}

/// The order an `order.placed` received at `now` stores: placed when the
/// message says (or now), due after the whole schedule, first checked after
/// the schedule's first wait from now.
pub fn new_order(placed: OrderPlaced, now: DateTime<Utc>, schedule: &Schedule) -> NewOrder {
    let placed_at = placed.placed_at.unwrap_or(now);
    NewOrder {
        order_id: placed.order_id,
        amount_cents: placed.amount_cents,
        currency: placed.currency.map(|currency| currency.as_str().to_owned()),
        placed_at,
        expires_at: placed_at + time_delta(schedule.total()),
        next_check_at: now + time_delta(schedule.first_wait()),
    }
}

/// What storing an order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new pending order.
    Created(Order),
    /// A new order whose payment had arrived first: it is paid already.
    CreatedPaid(Order),
    /// The order was known already; nothing changed.
    Known(Order),
}

impl Placement {
    /// Classifies a stored order: `created` when this message's write
    /// created it, `paid_on_arrival` when a payment recorded before it paid it.
    pub fn of(order: Order, created: bool, paid_on_arrival: bool) -> Self {
        match (created, paid_on_arrival) {
            (true, true) => Self::CreatedPaid(order),
            (true, false) => Self::Created(order),
            (false, _) => Self::Known(order),
        }
    }
}

/// What the worker does once the order is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeAction {
    /// Publish the timer of the order's first check.
    ArmFirstTimer { counts_as_new: bool },
    /// Publish the order's terminal event, which downstream has not heard.
    Announce { order: Order, counts_as_new: bool },
    /// A repeated `order.placed`: nothing to do.
    Nothing,
}

/// Decides what an `order.placed` does after storing its order.
/// `seen_before`: the message may have been handled part-way already.
pub fn after_placement(placement: Placement, seen_before: bool) -> IntakeAction {
    match placement {
        Placement::Created(_) => IntakeAction::ArmFirstTimer {
            counts_as_new: true,
        },
        Placement::CreatedPaid(order) => IntakeAction::Announce {
            order,
            counts_as_new: true,
        },
        // A first try that died between the commit and the timer's confirm
        // comes back: arm the timer it may not have. Without that doubt, a
        // repeat must not start a second timer.
        Placement::Known(order)
            if seen_before && order.status == OrderStatus::Pending && order.attempts == 0 =>
        {
            IntakeAction::ArmFirstTimer {
                counts_as_new: false,
            }
        }
        Placement::Known(order)
            if order.status != OrderStatus::Pending && order.event_published_at.is_none() =>
        {
            IntakeAction::Announce {
                order,
                counts_as_new: false,
            }
        }
        Placement::Known(_) => IntakeAction::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, test_order};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_new_order_is_due_after_the_whole_schedule_from_when_it_was_placed() {
        let schedule = Schedule::parse(&["1m", "4m"]).unwrap();
        let now = at("2026-11-27T08:00:05Z");
        let placed = OrderPlaced {
            order_id: OrderId::parse("A-1").unwrap(),
            amount_cents: Some(100),
            currency: Some(Currency::parse("CNY").unwrap()),
            placed_at: Some(at("2026-11-27T08:00:00Z")),
        };
        assert_eq!(
            new_order(placed.clone(), now, &schedule),
            NewOrder {
                order_id: OrderId::parse("A-1").unwrap(),
                amount_cents: Some(100),
                currency: Some("CNY".into()),
                placed_at: at("2026-11-27T08:00:00Z"),
                expires_at: at("2026-11-27T08:05:00Z"),
                next_check_at: at("2026-11-27T08:01:05Z"),
            }
        );
        let unstamped = OrderPlaced {
            placed_at: None,
            ..placed
        };
        let order = new_order(unstamped, now, &schedule);
        assert_eq!(order.placed_at, now);
        assert_eq!(order.expires_at, at("2026-11-27T08:05:05Z"));
    }

    #[test]
    fn placements_are_classified_by_what_the_write_did() {
        let order = test_order(OrderStatus::Pending);
        assert_eq!(
            Placement::of(order.clone(), true, false),
            Placement::Created(order.clone())
        );
        assert_eq!(
            Placement::of(order.clone(), true, true),
            Placement::CreatedPaid(order.clone())
        );
        assert_eq!(
            Placement::of(order.clone(), false, true),
            Placement::Known(order.clone())
        );
        assert_eq!(
            Placement::of(order.clone(), false, false),
            Placement::Known(order)
        );
    }

    #[test]
    fn what_each_placement_does() {
        let pending = test_order(OrderStatus::Pending);
        let checked = Order {
            attempts: 1,
            ..pending.clone()
        };
        let paid = test_order(OrderStatus::Paid);
        let announced = Order {
            event_published_at: Some(paid.placed_at),
            ..paid.clone()
        };
        let arm_new = IntakeAction::ArmFirstTimer {
            counts_as_new: true,
        };
        let arm_again = IntakeAction::ArmFirstTimer {
            counts_as_new: false,
        };
        let cases = [
            // A new order gets its first timer, whatever the message's past.
            (Placement::Created(pending.clone()), false, arm_new.clone()),
            (Placement::Created(pending.clone()), true, arm_new),
            // The payment came first: announce at once, and no timer.
            (
                Placement::CreatedPaid(paid.clone()),
                false,
                IntakeAction::Announce {
                    order: paid.clone(),
                    counts_as_new: true,
                },
            ),
            // A redelivery of a message whose timer may have been lost.
            (Placement::Known(pending.clone()), true, arm_again),
            // A plain repeat starts no second timer.
            (Placement::Known(pending), false, IntakeAction::Nothing),
            // Once a check was made, the first timer certainly fired.
            (Placement::Known(checked), true, IntakeAction::Nothing),
            // A repeat finds the event still owed (a crash before it): owe no more.
            (
                Placement::Known(paid.clone()),
                false,
                IntakeAction::Announce {
                    order: paid,
                    counts_as_new: false,
                },
            ),
            (Placement::Known(announced), true, IntakeAction::Nothing),
        ];
        for (placement, seen_before, expected) in cases {
            assert_eq!(
                after_placement(placement.clone(), seen_before),
                expected,
                "{placement:?}, seen before: {seen_before}"
            );
        }
    }
}
