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

    /// `<order_id>/<event>`: the same for every copy of the event, so that
    /// consumers can drop duplicates.
    pub fn message_id(&self) -> String {
        format!("{}/{}", self.order_id, self.event.name())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serialises")
    }
}
