//! What happens when a payment arrives.
//!
//! The database records the payment first, then pays its order if it is
//! pending (one conditional write). From what it found, [`PaymentEffect::of`]
//! says what the payment did, and [`respond`] what the worker must publish.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Order, OrderEvent, OrderStatus, Rejection};

/// A payment as paywait recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedPayment {
    pub payment_id: String,
    pub order_id: String,
    pub amount_cents: Option<i64>,
    pub paid_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// The order was already closed when it arrived.
    pub after_close: bool,
    /// When `order.paid_after_close` for it was confirmed.
    pub event_published_at: Option<DateTime<Utc>>,
}

/// What recording a `payment.succeeded` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEffect {
    /// The payment moved the order from pending to paid.
    Paid(Order),
    /// The order was paid already (by this payment, another, or SQL).
    AlreadyPaid(Order),
    /// The order had been closed: the payment is kept and owed a refund.
    AfterClose {
        order: Order,
        payment: RecordedPayment,
    },
    /// The order is not known yet; the payment waits for it.
    Early,
    /// This payment id was recorded before for another order.
    Conflict { recorded_for: String },
}

impl PaymentEffect {
    /// What a payment for the order `order_id` did, given the payment
    /// recorded under its id, the order if this payment's write paid it, and
    /// the order as it stands otherwise.
    pub fn of(
        order_id: &str,
        recorded: RecordedPayment,
        paid_now: Option<Order>,
        order: Option<Order>,
    ) -> Self {
        if recorded.order_id != order_id {
            return Self::Conflict {
                recorded_for: recorded.order_id,
            };
        }
        if let Some(paid) = paid_now {
            return Self::Paid(paid);
        }
        match order {
            None => Self::Early,
            Some(order) if order.status == OrderStatus::Closed => Self::AfterClose {
                order,
                payment: RecordedPayment {
                    after_close: true,
                    ..recorded
                },
            },
            Some(order) => Self::AlreadyPaid(order),
        }
    }
}

/// What the worker publishes for a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentAction {
    /// The order's terminal event (`order.paid`), still owed.
    Announce(Order),
    /// `order.paid_after_close` for this payment, still owed.
    AnnouncePaidAfterClose(OrderEvent),
    Nothing,
    Reject(Rejection),
}

/// Decides what to publish for a payment whose recording had `effect`.
pub fn respond(effect: &PaymentEffect, payment_id: &str) -> PaymentAction {
    match effect {
        PaymentEffect::Paid(order) => PaymentAction::Announce(order.clone()),
        PaymentEffect::AlreadyPaid(order) if order.event_published_at.is_none() => {
            PaymentAction::Announce(order.clone())
        }
        PaymentEffect::AfterClose { order, payment } if payment.event_published_at.is_none() => {
            PaymentAction::AnnouncePaidAfterClose(OrderEvent::paid_after_close(
                order,
                payment_id,
                payment.received_at,
            ))
        }
        PaymentEffect::AlreadyPaid(_) | PaymentEffect::AfterClose { .. } | PaymentEffect::Early => {
            PaymentAction::Nothing
        }
        PaymentEffect::Conflict { recorded_for } => {
            PaymentAction::Reject(Rejection::InvalidField {
                field: "payment_id",
                why: format!("{payment_id:?} was already recorded for order {recorded_for}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, test_order};

    fn recorded(order_id: &str) -> RecordedPayment {
        RecordedPayment {
            payment_id: "PAY-1".into(),
            order_id: order_id.into(),
            amount_cents: None,
            paid_at: None,
            received_at: "2026-11-27T08:31:00Z".parse().unwrap(),
            after_close: false,
            event_published_at: None,
        }
    }

    fn id() -> &'static str {
        "A-1001"
    }

    #[test]
    fn what_a_recorded_payment_did() {
        let pending = test_order(OrderStatus::Pending);
        let paid = test_order(OrderStatus::Paid);
        let closed = test_order(OrderStatus::Closed);
        assert_eq!(
            PaymentEffect::of(id(), recorded("A-1001"), Some(paid.clone()), None),
            PaymentEffect::Paid(paid.clone())
        );
        // Paid by another payment, or by SQL, before this one.
        assert_eq!(
            PaymentEffect::of(id(), recorded("A-1001"), None, Some(paid.clone())),
            PaymentEffect::AlreadyPaid(paid.clone())
        );
        // A payment that lost the race to the close is kept for a refund.
        assert_eq!(
            PaymentEffect::of(id(), recorded("A-1001"), None, Some(closed.clone())),
            PaymentEffect::AfterClose {
                order: closed,
                payment: RecordedPayment {
                    after_close: true,
                    ..recorded("A-1001")
                },
            }
        );
        // Before its order: kept until the order arrives.
        assert_eq!(
            PaymentEffect::of(id(), recorded("A-1001"), None, None),
            PaymentEffect::Early
        );
        // The id is another order's: whatever this order's state.
        assert_eq!(
            PaymentEffect::of(id(), recorded("B-2"), None, Some(pending)),
            PaymentEffect::Conflict {
                recorded_for: "B-2".into()
            }
        );
    }

    #[test]
    fn what_a_payment_publishes() {
        let paid = test_order(OrderStatus::Paid);
        let announced = Order {
            event_published_at: Some(paid.placed_at),
            ..paid.clone()
        };
        let closed = test_order(OrderStatus::Closed);
        let late = RecordedPayment {
            after_close: true,
            ..recorded("A-1001")
        };
        let refunded = RecordedPayment {
            event_published_at: Some(late.received_at),
            ..late.clone()
        };
        assert_eq!(
            respond(&PaymentEffect::Paid(paid.clone()), "PAY-1"),
            PaymentAction::Announce(paid.clone())
        );
        assert_eq!(
            respond(&PaymentEffect::AlreadyPaid(paid.clone()), "PAY-1"),
            PaymentAction::Announce(paid)
        );
        assert_eq!(
            respond(&PaymentEffect::AlreadyPaid(announced), "PAY-1"),
            PaymentAction::Nothing
        );
        let PaymentAction::AnnouncePaidAfterClose(event) = respond(
            &PaymentEffect::AfterClose {
                order: closed.clone(),
                payment: late.clone(),
            },
            "PAY-1",
        ) else {
            panic!("a payment after the close is announced");
        };
        assert_eq!(event.event, EventKind::PaidAfterClose);
        assert_eq!(event.payment_id.as_deref(), Some("PAY-1"));
        assert_eq!(event.occurred_at, late.received_at);
        assert_eq!(
            respond(
                &PaymentEffect::AfterClose {
                    order: closed,
                    payment: refunded,
                },
                "PAY-1"
            ),
            PaymentAction::Nothing
        );
        assert_eq!(
            respond(&PaymentEffect::Early, "PAY-1"),
            PaymentAction::Nothing
        );
        let PaymentAction::Reject(rejection) = respond(
            &PaymentEffect::Conflict {
                recorded_for: "B-2".into(),
            },
            "PAY-1",
        ) else {
            panic!("a payment id of another order is refused");
        };
        assert_eq!(rejection.reason(), "invalid_field");
        assert!(rejection.to_string().contains("B-2"), "{rejection}");
    }
}
