use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Order, OrderId, OrderStatus};

/// The events paywait publishes to downstream services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    #[serde(rename = "order.paid")]
    Paid,
    #[serde(rename = "order.closed")]
    Closed,
    #[serde(rename = "order.paid_after_close")]
    PaidAfterClose,
}

impl EventKind {
    pub const ALL: [Self; 3] = [Self::Paid, Self::Closed, Self::PaidAfterClose];

    /// The event's name: also its routing key and AMQP `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Paid => "order.paid",
            Self::Closed => "order.closed",
            Self::PaidAfterClose => "order.paid_after_close",
        }
    }

    /// Whether the event is about one payment rather than the order's
    /// terminal status: an order can have several such events.
    pub fn is_about_one_payment(self) -> bool {
        match self {
            Self::Paid | Self::Closed => false,
            Self::PaidAfterClose => true,
        }
    }
}

/// The JSON body of an outbound event.
///
/// Built only from what the database holds, so a republished event is the
/// same as the first one, down to `occurred_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    pub event: EventKind,
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub occurred_at: DateTime<Utc>,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub attempts: u32,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub payment_id: Option<String>,
}

impl OrderEvent {
    /// The event that announces the order's terminal status, or `None` while
    /// it is pending.
    pub fn for_status(order: &Order) -> Option<Self> {
        let (kind, occurred_at) = match order.status {
            OrderStatus::Pending => return None,
            OrderStatus::Paid => (EventKind::Paid, order.paid_at),
            OrderStatus::Closed => (EventKind::Closed, order.closed_at),
        };
        Some(Self::build(
            kind,
            order,
            occurred_at.unwrap_or(order.placed_at),
            order.payment_id.clone(),
        ))
    }

    /// `order.paid_after_close`: a payment arrived for an order already closed.
    pub fn paid_after_close(order: &Order, payment_id: &str, received_at: DateTime<Utc>) -> Self {
        Self::build(
            EventKind::PaidAfterClose,
            order,
            received_at,
            Some(payment_id.to_owned()),
        )
    }

    fn build(
        event: EventKind,
        order: &Order,
        occurred_at: DateTime<Utc>,
        payment_id: Option<String>,
    ) -> Self {
        Self {
            event,
            order_id: order.order_id.clone(),
            status: order.status,
            occurred_at,
            placed_at: order.placed_at,
            expires_at: order.expires_at,
            attempts: order.attempts,
            amount_cents: order.amount_cents,
            currency: order.currency.clone(),
            payment_id,
        }
    }

    /// The same for every copy of the event, so that consumers can drop
    /// duplicates: `<order_id>/<event>` for the order's terminal status, and
    /// `<order_id>/<event>/<payment_id>` for an event about one payment, so
    /// that each payment owed a refund keeps an id of its own.
    pub fn message_id(&self) -> String {
        match &self.payment_id {
            Some(payment_id) if self.event.is_about_one_payment() => {
                format!("{}/{}/{payment_id}", self.order_id, self.event.name())
            }
            _ => format!("{}/{}", self.order_id, self.event.name()),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serialises")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use serde_json::json;

    use super::*;
    use crate::domain::test_order;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn order(status: OrderStatus) -> Order {
        Order {
            attempts: 4,
            ..test_order(status)
        }
    }

    #[test]
    fn a_pending_order_has_no_event() {
        assert_eq!(OrderEvent::for_status(&order(OrderStatus::Pending)), None);
    }

    #[test]
    fn a_closed_order_is_announced_with_every_documented_field() {
        let mut closed = order(OrderStatus::Closed);
        closed.closed_at = Some(at("2026-11-27T08:30:00.120Z"));
        let event = OrderEvent::for_status(&closed).unwrap();
        assert_eq!(event.message_id(), "A-1001/order.closed");
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "order.closed", "order_id": "A-1001", "status": "closed",
                "occurred_at": "2026-11-27T08:30:00.120Z",
                "placed_at": "2026-11-27T08:00:00Z", "expires_at": "2026-11-27T08:30:00Z",
                "attempts": 4, "amount_cents": 12900, "currency": "CNY", "payment_id": null
            })
        );
    }

    #[test]
    fn a_paid_order_is_announced_when_and_by_what_it_was_paid() {
        let mut paid = order(OrderStatus::Paid);
        paid.paid_at = Some(at("2026-11-27T08:03:10Z"));
        paid.payment_id = Some("PAY-77".into());
        let event = OrderEvent::for_status(&paid).unwrap();
        assert_eq!(event.event, EventKind::Paid);
        assert_eq!(event.occurred_at, at("2026-11-27T08:03:10Z"));
        assert_eq!(event.payment_id.as_deref(), Some("PAY-77"));
        assert_eq!(event.message_id(), "A-1001/order.paid");
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(body["event"], "order.paid");
        assert_eq!(body["status"], "paid");
    }

    #[test]
    fn a_terminal_order_without_its_timestamp_falls_back_to_placed_at() {
        let event = OrderEvent::for_status(&order(OrderStatus::Paid)).unwrap();
        assert_eq!(event.occurred_at, at("2026-11-27T08:00:00Z"));
    }

    #[test]
    fn each_payment_after_the_close_has_a_message_id_of_its_own() {
        let mut closed = order(OrderStatus::Closed);
        closed.closed_at = Some(at("2026-11-27T08:30:00Z"));
        let received = at("2026-11-27T08:31:00Z");
        let first = OrderEvent::paid_after_close(&closed, "PAY-1", received);
        let second =
            OrderEvent::paid_after_close(&closed, "PAY-2", received + TimeDelta::seconds(1));
        assert_eq!(first.message_id(), "A-1001/order.paid_after_close/PAY-1");
        assert_eq!(second.message_id(), "A-1001/order.paid_after_close/PAY-2");
        assert_eq!(first.occurred_at, received);
        assert_eq!(first.status, OrderStatus::Closed);
        let body: serde_json::Value = serde_json::from_slice(&first.to_json()).unwrap();
        assert_eq!(body["event"], "order.paid_after_close");
        assert_eq!(body["payment_id"], "PAY-1");
    }

    #[test]
    fn event_names_are_the_documented_routing_keys() {
        let names: Vec<_> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(
            names,
            ["order.paid", "order.closed", "order.paid_after_close"]
        );
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert!(!EventKind::Paid.is_about_one_payment());
        assert!(!EventKind::Closed.is_about_one_payment());
        assert!(EventKind::PaidAfterClose.is_about_one_payment());
    }
}
