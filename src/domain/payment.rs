//! What a payment does. Money is checked, not trusted: a payment settles
//! its order only if it matches it, only a trusted publisher may say
//! "paid", and every payment that does not settle its order is announced
//! once, under its own id, so that a refund is never lost.
//!
//! The database records a payment first, then the worker asks [`plan`]
//! what it does to its order as the order stands ([`decide`]). The first decision about
//! a payment is kept ([`PaymentOutcome`]): a payment delivered again does
//! what it did the first time, and is announced under the same id.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    Attempt, Currency, Delivery, Order, OrderEvent, OrderId, OrderStatus, PaymentId,
    PaymentSucceeded, Rejection,
    plan::{Claim, Plan, Step},
};

/// A payment as paywait recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedPayment {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount_cents: Option<i64>,
    /// `None` means "in the order's currency".
    pub currency: Option<Currency>,
    pub paid_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// What it did, once its order was known.
    pub outcome: Option<PaymentOutcome>,
    /// When its own event (not `order.paid`) was confirmed by the broker.
    pub event_published_at: Option<DateTime<Utc>>,
    /// The order's number of checks when the outcome was decided.
    pub decided_attempts: Option<u32>,
}

impl RecordedPayment {
    /// The event this payment is owed, if it has one and it is not confirmed.
    pub fn owed_event(&self, order: &Order) -> Option<OrderEvent> {
        if self.event_published_at.is_some() {
            return None;
        }
        OrderEvent::about_payment(order, self)
    }
}

/// What a payment did, decided once and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    /// It paid its order.
    Settled,
    /// Its amount or currency differ from the order's; the order stayed
    /// pending.
    Mismatch,
    /// Its order had been paid by another payment: a refund is owed.
    Twice,
    /// Its order had been closed: a refund (or a reopening) is owed.
    AfterClose,
}

impl PaymentOutcome {
    /// The status the order had when a payment was decided this way, which
    /// its event carries on every copy.
    pub fn order_status(self) -> OrderStatus {
        match self {
            Self::Mismatch => OrderStatus::Pending,
            Self::Settled | Self::Twice => OrderStatus::Paid,
            Self::AfterClose => OrderStatus::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Settled => "settled",
            Self::Mismatch => "mismatch",
            Self::Twice => "twice",
            Self::AfterClose => "after_close",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "settled" => Some(Self::Settled),
            "mismatch" => Some(Self::Mismatch),
            "twice" => Some(Self::Twice),
            "after_close" => Some(Self::AfterClose),
            _ => None,
        }
    }
}

/// What a payment does to the order it names, as the order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentDecision {
    /// Pay the pending order with it: one conditional write. If the order
    /// left `pending` meanwhile, decide again on the order as it is then.
    Settle,
    /// Take it as the payment that paid an order marked paid in SQL: one
    /// conditional write, lost to any other payment taken first.
    Adopt,
    /// Keep it with this outcome, and publish its event.
    Keep(PaymentOutcome),
    /// It paid this order already: nothing new to do.
    AlreadySettled,
    /// Its order is not known yet: it waits for the order.
    Early,
}

/// Whether `payment` may settle `order`: where both state an amount they are
/// equal, and where both state a currency it is the same (a payment without
/// a currency is in the order's).
pub fn matches(order: &Order, payment: &RecordedPayment) -> bool {
    fn agree<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
        a.zip(b).is_none_or(|(a, b)| a == b)
    }
    agree(order.amount_cents, payment.amount_cents) && agree(order.currency, payment.currency)
}

/// Decides what `payment` does to `order` (as the database holds it, if at
/// all), unless it was decided before: then it does what it did.
pub fn decide(order: Option<&Order>, payment: &RecordedPayment) -> PaymentDecision {
    if let Some(outcome) = payment.outcome {
        return match outcome {
            PaymentOutcome::Settled => PaymentDecision::AlreadySettled,
            kept => PaymentDecision::Keep(kept),
        };
    }
    let Some(order) = order else {
        return PaymentDecision::Early;
    };
    match order.status {
        OrderStatus::Pending if matches(order, payment) => PaymentDecision::Settle,
        OrderStatus::Pending => PaymentDecision::Keep(PaymentOutcome::Mismatch),
        OrderStatus::Paid if order.payment_id.as_ref() == Some(&payment.payment_id) => {
            PaymentDecision::AlreadySettled
        }
        // Paid in SQL by the payment service, which names no payment: the
        // first message that matches it is that payment; any other is a
        // second one.
        OrderStatus::Paid if order.payment_id.is_none() => match &order.adopted_payment_id {
            Some(adopted) if *adopted == payment.payment_id => PaymentDecision::AlreadySettled,
            None if matches(order, payment) => PaymentDecision::Adopt,
            _ => PaymentDecision::Keep(PaymentOutcome::Twice),
        },
        OrderStatus::Paid => PaymentDecision::Keep(PaymentOutcome::Twice),
        OrderStatus::Closed => PaymentDecision::Keep(PaymentOutcome::AfterClose),
    }
}

/// The plan of `payment`, recorded for `order` (as the database holds it,
/// if at all), on the `delivery` of the message that brought it;
/// `by_check`, the check whose question to the gateway brought it.
pub fn plan(
    order: Option<&Order>,
    payment: &RecordedPayment,
    delivery: Delivery,
    by_check: Option<Attempt>,
) -> Plan {
    let claim = Claim::for_delivery(delivery);
    let payment_id = payment.payment_id.clone();
    match decide(order, payment) {
        // Whoever moves the order announces it.
        PaymentDecision::Settle => Plan::steps([
            Step::Settle {
                payment_id,
                by_check,
            },
            Step::Announce,
        ]),
        PaymentDecision::Adopt => {
            Plan::steps([Step::Adopt { payment_id }, Step::AnnounceOwed(claim)])
        }
        PaymentDecision::Keep(outcome) => Plan::steps([Step::KeepOutcome {
            payment_id,
            outcome,
            attempts: order.map_or(0, |order| order.attempts),
            announce: claim,
        }]),
        PaymentDecision::AlreadySettled => Plan::steps([Step::AnnounceOwed(claim)]),
        // Kept as recorded, and logged by the worker, until its order comes.
        PaymentDecision::Early => Plan::steps([]),
    }
}

/// A payment id is one payment, of one order: a message naming a payment
/// recorded for another order is refused.
pub fn check_recorded(
    payment: &PaymentSucceeded,
    recorded: &RecordedPayment,
) -> Result<(), Rejection> {
    if recorded.order_id == payment.order_id {
        return Ok(());
    }
    Err(Rejection::InvalidField {
        field: "payment_id",
        why: format!(
            "{:?} was already recorded for order {}",
            recorded.payment_id, recorded.order_id
        ),
    })
}

/// Whether a `payment.succeeded` published as the RabbitMQ user `user_id`
/// may say "paid". With no trusted users configured, anyone may; otherwise
/// the broker-checked `user_id` property must name one of them.
pub fn check_publisher(trusted_users: &[String], user_id: Option<&str>) -> Result<(), Rejection> {
    if trusted_users.is_empty() {
        return Ok(());
    }
    match user_id {
        Some(user) if trusted_users.iter().any(|trusted| trusted == user) => Ok(()),
        Some(user) => Err(Rejection::UntrustedPublisher(format!(
            "published by RabbitMQ user {user:?}, who is not among payments.trusted_users"
        ))),
        None => Err(Rejection::UntrustedPublisher(
            "published without the user_id property that payments.trusted_users requires".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pay_id;
    use crate::domain::test_order;

    fn payment(amount_cents: Option<i64>, currency: Option<&str>) -> RecordedPayment {
        RecordedPayment {
            payment_id: pay_id("PAY-1"),
            order_id: crate::domain::OrderId::parse("A-1001").unwrap(),
            amount_cents,
            currency: currency.map(|c| c.parse().unwrap()),
            paid_at: None,
            received_at: "2026-11-27T08:03:00Z".parse().unwrap(),
            outcome: None,
            event_published_at: None,
            decided_attempts: None,
        }
    }

    #[test]
    fn amount_and_currency_must_match_where_both_are_stated() {
        // The order: 12,900 CNY.
        let order = test_order(OrderStatus::Pending);
        let cases = [
            (Some(12900), Some("CNY"), true),
            (Some(12900), None, true),
            (None, None, true),
            (None, Some("CNY"), true),
            (Some(1), Some("CNY"), false),
            (Some(12901), None, false),
            (Some(12900), Some("USD"), false),
            (None, Some("USD"), false),
        ];
        for (amount, currency, expected) in cases {
            assert_eq!(
                matches(&order, &payment(amount, currency)),
                expected,
                "{amount:?} {currency:?}"
            );
        }
        // An order that states neither takes any payment.
        let open = Order {
            amount_cents: None,
            currency: None,
            ..order
        };
        assert!(matches(&open, &payment(Some(1), Some("USD"))));
    }

    #[test]
    fn what_a_payment_does_to_its_order() {
        let pending = test_order(OrderStatus::Pending);
        let paid_by_it = Order {
            payment_id: Some(pay_id("PAY-1")),
            ..test_order(OrderStatus::Paid)
        };
        let paid_by_another = Order {
            payment_id: Some(pay_id("PAY-0")),
            ..test_order(OrderStatus::Paid)
        };
        let paid_in_sql = test_order(OrderStatus::Paid);
        let closed = test_order(OrderStatus::Closed);
        let right = payment(Some(12900), Some("CNY"));
        let wrong = payment(Some(1), None);
        let cases = [
            (Some(&pending), &right, PaymentDecision::Settle),
            (
                Some(&pending),
                &wrong,
                PaymentDecision::Keep(PaymentOutcome::Mismatch),
            ),
            (Some(&paid_by_it), &right, PaymentDecision::AlreadySettled),
            (
                Some(&paid_by_another),
                &right,
                PaymentDecision::Keep(PaymentOutcome::Twice),
            ),
            // A second payment is a second payment, whatever its amount.
            (
                Some(&paid_by_another),
                &wrong,
                PaymentDecision::Keep(PaymentOutcome::Twice),
            ),
            (Some(&paid_in_sql), &right, PaymentDecision::Adopt),
            (
                Some(&paid_in_sql),
                &wrong,
                PaymentDecision::Keep(PaymentOutcome::Twice),
            ),
            (
                Some(&closed),
                &right,
                PaymentDecision::Keep(PaymentOutcome::AfterClose),
            ),
            (None, &right, PaymentDecision::Early),
        ];
        for (order, payment, expected) in cases {
            assert_eq!(
                decide(order, payment),
                expected,
                "{:?} {payment:?}",
                order.map(|o| o.status)
            );
        }
    }

    #[test]
    fn an_order_paid_in_sql_takes_its_first_matching_payment_and_refunds_the_rest() {
        let adopted = Order {
            adopted_payment_id: Some(pay_id("PAY-1")),
            ..test_order(OrderStatus::Paid)
        };
        let pay = |id: &str, amount: i64| RecordedPayment {
            payment_id: pay_id(id),
            ..payment(Some(amount), None)
        };
        assert_eq!(
            decide(Some(&adopted), &pay("PAY-1", 12900)),
            PaymentDecision::AlreadySettled
        );
        for other in [pay("PAY-2", 12900), pay("PAY-3", 1)] {
            assert_eq!(
                decide(Some(&adopted), &other),
                PaymentDecision::Keep(PaymentOutcome::Twice)
            );
        }
    }

    #[test]
    fn a_payment_does_what_it_did_the_first_time() {
        let paid_by_another = Order {
            payment_id: Some(pay_id("PAY-0")),
            ..test_order(OrderStatus::Paid)
        };
        // Decided a mismatch while the order was pending; the order was
        // paid by another payment since: still a mismatch, not a second
        // event under another name.
        let mismatched = RecordedPayment {
            outcome: Some(PaymentOutcome::Mismatch),
            ..payment(Some(1), None)
        };
        assert_eq!(
            decide(Some(&paid_by_another), &mismatched),
            PaymentDecision::Keep(PaymentOutcome::Mismatch)
        );
        let settled = RecordedPayment {
            outcome: Some(PaymentOutcome::Settled),
            ..payment(None, None)
        };
        assert_eq!(
            decide(Some(&paid_by_another), &settled),
            PaymentDecision::AlreadySettled
        );
        assert_eq!(
            decide(
                None,
                &RecordedPayment {
                    outcome: Some(PaymentOutcome::AfterClose),
                    ..payment(None, None)
                }
            ),
            PaymentDecision::Keep(PaymentOutcome::AfterClose)
        );
    }

    #[test]
    fn outcomes_are_written_and_read_as_the_database_holds_them() {
        for (outcome, text) in [
            (PaymentOutcome::Settled, "settled"),
            (PaymentOutcome::Mismatch, "mismatch"),
            (PaymentOutcome::Twice, "twice"),
            (PaymentOutcome::AfterClose, "after_close"),
        ] {
            assert_eq!(outcome.as_str(), text);
            assert_eq!(PaymentOutcome::parse(text), Some(outcome));
            assert_eq!(serde_json::to_value(outcome).unwrap(), text);
        }
        assert_eq!(PaymentOutcome::parse("paid"), None);
    }

    #[test]
    fn only_trusted_users_may_say_paid_once_any_are_named() {
        let trusted = ["payment-service".to_owned(), "gateway".to_owned()];
        assert_eq!(check_publisher(&[], None), Ok(()));
        assert_eq!(check_publisher(&[], Some("anyone")), Ok(()));
        assert_eq!(check_publisher(&trusted, Some("gateway")), Ok(()));
        for user_id in [Some("order-service"), Some("Payment-Service"), None] {
            let refused = check_publisher(&trusted, user_id).unwrap_err();
            assert_eq!(refused.reason(), "untrusted_publisher");
            if let Some(user) = user_id {
                assert!(refused.to_string().contains(user), "{refused}");
            } else {
                assert!(refused.to_string().contains("user_id"), "{refused}");
            }
        }
    }

    #[test]
    fn only_payments_that_did_not_settle_owe_an_event_of_their_own() {
        let order = test_order(OrderStatus::Closed);
        let late = RecordedPayment {
            outcome: Some(PaymentOutcome::AfterClose),
            ..payment(None, None)
        };
        let event = late.owed_event(&order).unwrap();
        assert_eq!(event.message_id(), "A-1001/order.paid_after_close/PAY-1");
        let announced = RecordedPayment {
            event_published_at: Some(late.received_at),
            ..late.clone()
        };
        assert_eq!(announced.owed_event(&order), None);
        let settled = RecordedPayment {
            outcome: Some(PaymentOutcome::Settled),
            ..payment(None, None)
        };
        assert_eq!(settled.owed_event(&order), None);
        assert_eq!(payment(None, None).owed_event(&order), None);
    }

    #[test]
    fn a_payment_is_planned_as_decided_and_whoever_moves_the_order_announces_it() {
        let pending = test_order(OrderStatus::Pending);
        let matching = payment(Some(12900), Some("CNY"));
        assert_eq!(
            plan(Some(&pending), &matching, Delivery::First, None).steps,
            [
                Step::Settle {
                    payment_id: pay_id("PAY-1"),
                    by_check: None
                },
                Step::Announce
            ]
        );
        let by_check = Attempt::new(3);
        assert_eq!(
            plan(Some(&pending), &matching, Delivery::First, by_check).steps[0],
            Step::Settle {
                payment_id: pay_id("PAY-1"),
                by_check
            }
        );
        let wrong = payment(Some(1), None);
        assert_eq!(
            plan(Some(&pending), &wrong, Delivery::Again, None).steps,
            [Step::KeepOutcome {
                payment_id: pay_id("PAY-1"),
                outcome: PaymentOutcome::Mismatch,
                attempts: 0,
                announce: Claim::Skip
            }]
        );
        let mut in_sql = test_order(OrderStatus::Paid);
        in_sql.payment_id = None;
        assert_eq!(
            plan(Some(&in_sql), &matching, Delivery::First, None).steps,
            [
                Step::Adopt {
                    payment_id: pay_id("PAY-1")
                },
                Step::AnnounceOwed(Claim::First)
            ]
        );
        // Before its order: nothing to do until the order comes.
        assert_eq!(
            plan(None, &matching, Delivery::First, None),
            Plan::steps([])
        );
    }

    #[test]
    fn a_payment_id_recorded_for_another_order_is_refused() {
        let message = PaymentSucceeded {
            order_id: crate::domain::OrderId::parse("A-1001").unwrap(),
            payment_id: crate::domain::PaymentId::parse("PAY-1").unwrap(),
            amount_cents: None,
            currency: None,
            paid_at: None,
        };
        assert_eq!(check_recorded(&message, &payment(None, None)), Ok(()));
        let elsewhere = RecordedPayment {
            order_id: crate::domain::OrderId::parse("B-7").unwrap(),
            ..payment(None, None)
        };
        let refused = check_recorded(&message, &elsewhere).unwrap_err();
        assert_eq!(refused.reason(), "invalid_field");
        assert!(refused.to_string().contains("B-7"), "{refused}");
    }
}
