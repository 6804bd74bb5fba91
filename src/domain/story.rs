//! One order's story, as the status page and `/api/orders/{order_id}` tell
//! it: the row, its payments, its checks, and each event it is owed or was
//! given.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Order, OrderEvent, RecordedPayment, deadline::RecordedChange};

/// An event of the order: published (confirmed by the broker) or still
/// owed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub event: &'static str,
    pub message_id: String,
    /// When the broker confirmed it; `None` while it is owed.
    pub published_at: Option<DateTime<Utc>>,
}

/// Everything paywait knows of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderStory {
    pub order: Order,
    pub payments: Vec<RecordedPayment>,
    /// Its deadline changes, applied or waiting for it, by when they came.
    pub deadline_changes: Vec<RecordedChange>,
    pub events: Vec<EventRecord>,
    /// Whether the payment gateway was asked about it.
    pub gateway_asked: bool,
}

impl OrderStory {
    pub fn tell(
        order: Order,
        payments: Vec<RecordedPayment>,
        deadline_changes: Vec<RecordedChange>,
    ) -> Self {
        let mut events: Vec<EventRecord> = OrderEvent::for_status(&order)
            .map(|event| EventRecord {
                event: event.event.name(),
                message_id: event.message_id(),
                published_at: order.event_published_at,
            })
            .into_iter()
            .collect();
        events.extend(payments.iter().filter_map(|payment| {
            OrderEvent::about_payment(&order, payment).map(|event| EventRecord {
                event: event.event.name(),
                message_id: event.message_id(),
                published_at: payment.event_published_at,
            })
        }));
        events.extend(deadline_changes.iter().filter_map(|change| {
            OrderEvent::deadline_changed(&order, change).map(|event| EventRecord {
                event: event.event.name(),
                message_id: event.message_id(),
                published_at: change.event_published_at,
            })
        }));
        Self {
            gateway_asked: order.gateway_asks > 0,
            order,
            payments,
            deadline_changes,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pay_id;
    use crate::domain::{OrderStatus, PaymentOutcome, test_order};

    fn payment(payment_id: &str, outcome: PaymentOutcome) -> RecordedPayment {
        RecordedPayment {
            payment_id: pay_id(payment_id),
            order_id: crate::domain::OrderId::parse("A-1001").unwrap(),
            amount_cents: Some(12_900),
            currency: None,
            paid_at: None,
            received_at: Utc::now(),
            outcome: Some(outcome),
            event_published_at: None,
            decided_attempts: None,
        }
    }

    #[test]
    fn a_pending_order_has_no_event_yet() {
        let story = OrderStory::tell(test_order(OrderStatus::Pending), vec![], vec![]);
        assert!(story.events.is_empty());
        assert!(!story.gateway_asked);
    }

    #[test]
    fn a_paid_order_tells_its_event_and_each_refund_owed() {
        let mut order = test_order(OrderStatus::Paid);
        order.status = OrderStatus::Paid;
        order.paid_at = Some(Utc::now());
        order.payment_id = Some(pay_id("PAY-1"));
        let published = Utc::now();
        order.event_published_at = Some(published);
        order.gateway_asks = 1;
        let story = OrderStory::tell(
            order,
            vec![
                payment("PAY-1", PaymentOutcome::Settled),
                payment("PAY-2", PaymentOutcome::Twice),
            ],
            vec![
                RecordedChange {
                    expires_at: "2026-11-27T09:00:00Z".parse().unwrap(),
                    received_at: published,
                    applied_at: Some(published),
                    attempts: 1,
                    event_published_at: Some(published),
                },
                // Waiting for its order when the order came paid: no event.
                RecordedChange {
                    expires_at: "2026-11-27T09:30:00Z".parse().unwrap(),
                    received_at: published,
                    applied_at: None,
                    attempts: 0,
                    event_published_at: None,
                },
            ],
        );
        assert_eq!(
            story.events,
            [
                EventRecord {
                    event: "order.paid",
                    message_id: "A-1001/order.paid".into(),
                    published_at: Some(published),
                },
                EventRecord {
                    event: "order.paid_twice",
                    message_id: "A-1001/order.paid_twice/PAY-2".into(),
                    published_at: None,
                },
                EventRecord {
                    event: "order.deadline_changed",
                    message_id: "A-1001/order.deadline_changed/2026-11-27T09:00:00Z".into(),
                    published_at: Some(published),
                },
            ]
        );
        assert!(story.gateway_asked);
    }
}
