use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Currency, OrderId, PaymentId};

/// Where an order is in its life. `Paid` and `Closed` are terminal and
/// exclusive: an order leaves `Pending` once, by one conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Paid,
    Closed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "paid" => Some(Self::Paid),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseReason {
    /// Its deadline passed unpaid.
    Expired,
    /// The customer cancelled it (`order.cancelled`).
    Cancelled,
    /// The payment gateway could not confirm either way.
    Unverified,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Unverified => "unverified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "expired" => Some(Self::Expired),
            "cancelled" => Some(Self::Cancelled),
            "unverified" => Some(Self::Unverified),
            _ => None,
        }
    }
}

/// An order as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub amount_cents: Option<i64>,
    pub currency: Option<Currency>,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Why it was closed, once it is.
    pub close_reason: Option<CloseReason>,
    /// The number of checks made so far.
    pub attempts: u32,
    /// How many times the payment gateway was asked about it.
    pub gateway_asks: u32,
    /// The payment that paid the order, when a payment message did.
    pub payment_id: Option<PaymentId>,
    /// When the event for the current terminal status was confirmed by the
    /// broker; `None` while it is still owed to downstream.
    pub event_published_at: Option<DateTime<Utc>>,
    /// When the next check of a pending order is due.
    pub next_check_at: Option<DateTime<Utc>>,
    /// For an order a payment service marked paid in SQL: the payment
    /// message taken as the one that paid it.
    pub adopted_payment_id: Option<PaymentId>,
    /// When the deadline change it holds was received; `None` while it has
    /// the deadline it was placed with.
    pub deadline_changed_at: Option<DateTime<Utc>>,
}

/// An order for the core's tests: `A-1001`, 12,900 CNY, placed
/// 2026-11-27 08:00 UTC, due 30 minutes later, no check made yet.
impl Order {
    /// Paid or closed, and downstream has not been told yet.
    pub fn owes_event(&self) -> bool {
        self.status != OrderStatus::Pending && self.event_published_at.is_none()
    }
}

/// A payment id for the tests.
#[cfg(test)]
pub(crate) fn pay_id(text: &str) -> PaymentId {
    PaymentId::parse(text).unwrap()
}

#[cfg(test)]
pub(crate) fn test_order(status: OrderStatus) -> Order {
    let placed_at: DateTime<Utc> = "2026-11-27T08:00:00Z".parse().unwrap();
    Order {
        order_id: OrderId::parse("A-1001").unwrap(),
        status,
        amount_cents: Some(12900),
        currency: Some("CNY".parse().unwrap()),
        placed_at,
        expires_at: placed_at + chrono::TimeDelta::minutes(30),
        paid_at: None,
        closed_at: None,
        close_reason: None,
        attempts: 0,
        gateway_asks: 0,
        payment_id: None,
        event_published_at: None,
        next_check_at: None,
        adopted_payment_id: None,
        deadline_changed_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_written_and_read_as_the_database_holds_them() {
        for (status, text) in [
            (OrderStatus::Pending, "pending"),
            (OrderStatus::Paid, "paid"),
            (OrderStatus::Closed, "closed"),
        ] {
            assert_eq!(status.as_str(), text);
            assert_eq!(status.to_string(), text);
            assert_eq!(OrderStatus::parse(text), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), text);
        }
        assert_eq!(OrderStatus::parse("Paid"), None);
        assert_eq!(OrderStatus::parse(""), None);
    }

    #[test]
    fn close_reasons_are_written_and_read_as_the_database_holds_them() {
        for (reason, text) in [
            (CloseReason::Expired, "expired"),
            (CloseReason::Cancelled, "cancelled"),
            (CloseReason::Unverified, "unverified"),
        ] {
            assert_eq!(reason.as_str(), text);
            assert_eq!(CloseReason::parse(text), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), text);
        }
        assert_eq!(CloseReason::parse("Expired"), None);
    }
}
