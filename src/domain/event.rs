//! The events paywait publishes to downstream services.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    CloseReason, Currency, Order, OrderId, OrderStatus, PaymentId, PaymentOutcome, RecordedPayment,
    ReminderDue, deadline::RecordedChange,
};

/// The events paywait publishes to downstream services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    #[serde(rename = "order.paid")]
    Paid,
    #[serde(rename = "order.closed")]
    Closed,
    #[serde(rename = "order.paid_after_close")]
    PaidAfterClose,
    #[serde(rename = "order.paid_twice")]
    PaidTwice,
    #[serde(rename = "order.payment_mismatch")]
    PaymentMismatch,
    #[serde(rename = "order.deadline_changed")]
    DeadlineChanged,
    #[serde(rename = "order.expiring")]
    Expiring,
}

impl EventKind {
    pub const ALL: [Self; 7] = [
        Self::Paid,
        Self::Closed,
        Self::PaidAfterClose,
        Self::PaidTwice,
        Self::PaymentMismatch,
        Self::DeadlineChanged,
        Self::Expiring,
    ];

    /// The event's name: also its routing key and AMQP `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Paid => "order.paid",
            Self::Closed => "order.closed",
            Self::PaidAfterClose => "order.paid_after_close",
            Self::PaidTwice => "order.paid_twice",
            Self::PaymentMismatch => "order.payment_mismatch",
            Self::DeadlineChanged => "order.deadline_changed",
            Self::Expiring => "order.expiring",
        }
    }

    /// How its `message_id` is made, as docs/asyncapi.yaml writes it.
    pub fn message_id_template(self) -> String {
        let name = self.name();
        match self {
            Self::Paid | Self::Closed => format!("{{order_id}}/{name}"),
            Self::PaidAfterClose | Self::PaidTwice | Self::PaymentMismatch => {
                format!("{{order_id}}/{name}/{{payment_id}}")
            }
            Self::DeadlineChanged => format!("{{order_id}}/{name}/{{expires_at}}"),
            Self::Expiring => format!("{{order_id}}/{name}/{{expires_at}}/{{remind_before}}"),
        }
    }

    /// Whether the event is about one payment rather than the order's
    /// terminal status: an order can have several such events.
    pub fn is_about_one_payment(self) -> bool {
        match self {
            Self::Paid | Self::Closed | Self::DeadlineChanged | Self::Expiring => false,
            Self::PaidAfterClose | Self::PaidTwice | Self::PaymentMismatch => true,
        }
    }
}

/// What a mismatched payment said, beside the order's own amount and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentStated {
    pub payment_amount_cents: Option<i64>,
    pub payment_currency: Option<Currency>,
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
    pub currency: Option<Currency>,
    pub payment_id: Option<PaymentId>,
    /// Why the order was closed: on `order.closed` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<CloseReason>,
    /// How long before the deadline: on `order.expiring` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remind_before: Option<String>,
    /// On `order.payment_mismatch` only.
    #[serde(flatten)]
    pub stated: Option<PaymentStated>,
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
        let mut event = Self::build(
            kind,
            order,
            occurred_at.unwrap_or(order.placed_at),
            order.payment_id.clone(),
        );
        if kind == EventKind::Closed {
            event.reason = Some(order.close_reason.unwrap_or(CloseReason::Expired));
        }
        Some(event)
    }

    /// The event of a payment that did not settle its order (a refund is
    /// owed, or the mismatch must be looked into), or `None` for one that
    /// settled it or is not decided yet.
    pub fn about_payment(order: &Order, payment: &RecordedPayment) -> Option<Self> {
        let outcome = payment.outcome?;
        let kind = match outcome {
            PaymentOutcome::Settled => return None,
            PaymentOutcome::Mismatch => EventKind::PaymentMismatch,
            PaymentOutcome::Twice => EventKind::PaidTwice,
            PaymentOutcome::AfterClose => EventKind::PaidAfterClose,
        };
        let mut event = Self::build(
            kind,
            order,
            payment.received_at,
            Some(payment.payment_id.clone()),
        );
        // As decided, whatever became of the order since: every copy of
        // the event is the same.
        event.status = outcome.order_status();
        event.attempts = payment.decided_attempts.unwrap_or(order.attempts);
        if kind == EventKind::PaymentMismatch {
            event.stated = Some(PaymentStated {
                payment_amount_cents: payment.amount_cents,
                payment_currency: payment.currency,
            });
        }
        Some(event)
    }

    /// `order.deadline_changed` for `change`, which moved `order`: as it
    /// was when the change was applied, so that every copy is the same.
    /// `None` for a change not applied yet.
    pub fn deadline_changed(order: &Order, change: &RecordedChange) -> Option<Self> {
        let mut event = Self::build(EventKind::DeadlineChanged, order, change.applied_at?, None);
        event.status = OrderStatus::Pending;
        event.expires_at = change.expires_at;
        event.attempts = change.attempts;
        Some(event)
    }

    /// `order.expiring` for `reminder` of `order`, with the checks the
    /// order had when the reminder was first due (`attempts`, kept): every
    /// copy is the same.
    pub fn expiring(order: &Order, reminder: &ReminderDue, attempts: u32) -> Self {
        let mut event = Self::build(EventKind::Expiring, order, reminder.due_at(), None);
        event.status = OrderStatus::Pending;
        event.expires_at = reminder.expires_at;
        event.attempts = attempts;
        event.remind_before = Some(reminder.label());
        event
    }

    fn build(
        event: EventKind,
        order: &Order,
        occurred_at: DateTime<Utc>,
        payment_id: Option<PaymentId>,
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
            currency: order.currency,
            payment_id,
            reason: None,
            remind_before: None,
            stated: None,
        }
    }

    /// The same for every copy of the event, so that consumers can drop
    /// duplicates: `<order_id>/<event>` for the order's terminal status, and
    /// `<order_id>/<event>/<payment_id>` for an event about one payment, so
    /// that each payment owed a refund keeps an id of its own.
    pub fn message_id(&self) -> String {
        match &self.payment_id {
            _ if self.event == EventKind::DeadlineChanged => format!(
                "{}/{}/{}",
                self.order_id,
                self.event.name(),
                self.expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            _ if self.event == EventKind::Expiring => format!(
                "{}/{}/{}/{}",
                self.order_id,
                self.event.name(),
                self.expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                self.remind_before.as_deref().unwrap_or_default()
            ),
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

/// One line for a person watching the events: when, which event, the
/// order, and the reason or payment where there is one.
pub fn describe_event(routing_key: &str, body: &[u8]) -> String {
    let Ok(serde_json::Value::Object(event)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return format!(
            "{routing_key:<24} (not a JSON object: {})",
            String::from_utf8_lossy(body)
                .chars()
                .take(80)
                .collect::<String>()
        );
    };
    let text = |key: &str| match event.get(key) {
        Some(serde_json::Value::String(text)) => Some(text.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut line = format!(
        "{} {routing_key:<24} {}",
        text("occurred_at").unwrap_or_else(|| "-".into()),
        text("order_id").unwrap_or_else(|| "?".into()),
    );
    for (label, key) in [
        ("reason", "reason"),
        ("payment", "payment_id"),
        ("paid", "payment_amount_cents"),
        ("in", "payment_currency"),
    ] {
        if let Some(value) = text(key) {
            line.push_str(&format!(" {label}={value}"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::pay_id;
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
    fn a_deadline_change_is_announced_as_it_was_applied_under_an_id_of_its_deadline() {
        let change = RecordedChange {
            expires_at: at("2026-11-27T09:15:30.250Z"),
            received_at: at("2026-11-27T08:10:00Z"),
            applied_at: Some(at("2026-11-27T08:10:00.004Z")),
            attempts: 2,
            event_published_at: None,
        };
        // The order checked since, and closed: the event stays the same.
        let mut later = order(OrderStatus::Closed);
        later.expires_at = change.expires_at;
        let event = OrderEvent::deadline_changed(&later, &change).unwrap();
        assert_eq!(
            event.message_id(),
            "A-1001/order.deadline_changed/2026-11-27T09:15:30.250Z"
        );
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "order.deadline_changed", "order_id": "A-1001", "status": "pending",
                "occurred_at": "2026-11-27T08:10:00.004Z",
                "placed_at": "2026-11-27T08:00:00Z", "expires_at": "2026-11-27T09:15:30.250Z",
                "attempts": 2, "amount_cents": 12900, "currency": "CNY", "payment_id": null
            })
        );
        // The id writes the deadline as the body does, whatever its precision.
        for expires_at in ["2026-11-27T09:15:00Z", "2026-11-27T09:15:00.000001Z"] {
            let change = RecordedChange {
                expires_at: at(expires_at),
                ..change.clone()
            };
            let event = OrderEvent::deadline_changed(&later, &change).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
            assert_eq!(
                event.message_id(),
                format!(
                    "A-1001/order.deadline_changed/{}",
                    body["expires_at"].as_str().unwrap()
                )
            );
        }
        let waiting = RecordedChange {
            applied_at: None,
            ..change
        };
        assert_eq!(OrderEvent::deadline_changed(&later, &waiting), None);
    }

    #[test]
    fn a_reminder_is_announced_under_an_id_of_its_deadline_and_offset() {
        let order = order(OrderStatus::Pending);
        let reminder = ReminderDue {
            order_id: order.order_id.clone(),
            expires_at: order.expires_at,
            before: std::time::Duration::from_secs(15 * 60),
        };
        let event = OrderEvent::expiring(&order, &reminder, 2);
        assert_eq!(
            event.message_id(),
            "A-1001/order.expiring/2026-11-27T08:30:00Z/15m"
        );
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "order.expiring", "order_id": "A-1001", "status": "pending",
                "occurred_at": "2026-11-27T08:15:00Z",
                "placed_at": "2026-11-27T08:00:00Z", "expires_at": "2026-11-27T08:30:00Z",
                "attempts": 2, "amount_cents": 12900, "currency": "CNY", "payment_id": null,
                "remind_before": "15m"
            })
        );
    }

    #[test]
    fn a_pending_order_has_no_event() {
        assert_eq!(OrderEvent::for_status(&order(OrderStatus::Pending)), None);
    }

    #[test]
    fn a_closed_order_is_announced_with_every_documented_field() {
        let mut closed = order(OrderStatus::Closed);
        closed.closed_at = Some(at("2026-11-27T08:30:00.120Z"));
        closed.close_reason = Some(CloseReason::Cancelled);
        let event = OrderEvent::for_status(&closed).unwrap();
        assert_eq!(event.message_id(), "A-1001/order.closed");
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "order.closed", "order_id": "A-1001", "status": "closed",
                "occurred_at": "2026-11-27T08:30:00.120Z",
                "placed_at": "2026-11-27T08:00:00Z", "expires_at": "2026-11-27T08:30:00Z",
                "attempts": 4, "amount_cents": 12900, "currency": "CNY", "payment_id": null,
                "reason": "cancelled"
            })
        );
        closed.close_reason = Some(CloseReason::Unverified);
        assert_eq!(
            OrderEvent::for_status(&closed).unwrap().reason,
            Some(CloseReason::Unverified)
        );
    }

    #[test]
    fn a_paid_order_is_announced_when_and_by_what_it_was_paid() {
        let mut paid = order(OrderStatus::Paid);
        paid.paid_at = Some(at("2026-11-27T08:03:10Z"));
        paid.payment_id = Some(pay_id("PAY-77"));
        let event = OrderEvent::for_status(&paid).unwrap();
        assert_eq!(event.event, EventKind::Paid);
        assert_eq!(event.occurred_at, at("2026-11-27T08:03:10Z"));
        assert_eq!(event.payment_id, Some(pay_id("PAY-77")));
        assert_eq!(event.message_id(), "A-1001/order.paid");
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(body["event"], "order.paid");
        assert_eq!(body["status"], "paid");
        for absent in ["reason", "payment_amount_cents", "payment_currency"] {
            assert!(body.get(absent).is_none(), "{absent} in {body}");
        }
    }

    #[test]
    fn a_terminal_order_without_its_timestamp_falls_back_to_placed_at() {
        let event = OrderEvent::for_status(&order(OrderStatus::Paid)).unwrap();
        assert_eq!(event.occurred_at, at("2026-11-27T08:00:00Z"));
    }

    fn payment(id: &str, outcome: Option<PaymentOutcome>) -> RecordedPayment {
        RecordedPayment {
            payment_id: pay_id(id),
            order_id: crate::domain::OrderId::parse("A-1001").unwrap(),
            amount_cents: Some(1),
            currency: Some("USD".parse().unwrap()),
            paid_at: None,
            received_at: at("2026-11-27T08:31:00Z"),
            outcome,
            event_published_at: None,
            decided_attempts: None,
        }
    }

    #[test]
    fn each_payment_that_did_not_settle_has_an_event_of_its_own() {
        let mut closed = order(OrderStatus::Closed);
        closed.closed_at = Some(at("2026-11-27T08:30:00Z"));
        let first =
            OrderEvent::about_payment(&closed, &payment("PAY-1", Some(PaymentOutcome::AfterClose)))
                .unwrap();
        let second = OrderEvent::about_payment(
            &closed,
            &RecordedPayment {
                received_at: at("2026-11-27T08:31:01Z"),
                ..payment("PAY-2", Some(PaymentOutcome::AfterClose))
            },
        )
        .unwrap();
        assert_eq!(first.message_id(), "A-1001/order.paid_after_close/PAY-1");
        assert_eq!(second.message_id(), "A-1001/order.paid_after_close/PAY-2");
        assert_eq!(first.occurred_at, at("2026-11-27T08:31:00Z"));
        assert_eq!(first.status, OrderStatus::Closed);
        let body: serde_json::Value = serde_json::from_slice(&first.to_json()).unwrap();
        assert_eq!(body["event"], "order.paid_after_close");
        assert_eq!(body["payment_id"], "PAY-1");
        assert!(body.get("reason").is_none(), "{body}");

        let paid = order(OrderStatus::Paid);
        let twice =
            OrderEvent::about_payment(&paid, &payment("PAY-2", Some(PaymentOutcome::Twice)))
                .unwrap();
        assert_eq!(twice.event, EventKind::PaidTwice);
        assert_eq!(twice.message_id(), "A-1001/order.paid_twice/PAY-2");
        assert_eq!(
            OrderEvent::about_payment(&paid, &payment("PAY-1", Some(PaymentOutcome::Settled))),
            None
        );
        assert_eq!(
            OrderEvent::about_payment(&paid, &payment("PAY-1", None)),
            None
        );
    }

    #[test]
    fn every_copy_of_a_payments_event_says_what_was_decided() {
        // Decided a mismatch while the order was pending after one check;
        // announced again once the order was paid, after three.
        let mismatched = RecordedPayment {
            decided_attempts: Some(1),
            ..payment("PAY-9", Some(PaymentOutcome::Mismatch))
        };
        let first = OrderEvent::about_payment(
            &Order {
                attempts: 1,
                ..order(OrderStatus::Pending)
            },
            &mismatched,
        )
        .unwrap();
        let again = OrderEvent::about_payment(
            &Order {
                attempts: 3,
                payment_id: Some(pay_id("PAY-10")),
                paid_at: Some(at("2026-11-27T08:20:00Z")),
                ..order(OrderStatus::Paid)
            },
            &mismatched,
        )
        .unwrap();
        assert_eq!(first.to_json(), again.to_json());
        assert_eq!(again.status, OrderStatus::Pending);
        assert_eq!(again.attempts, 1);
        for (outcome, status) in [
            (PaymentOutcome::Twice, OrderStatus::Paid),
            (PaymentOutcome::AfterClose, OrderStatus::Closed),
        ] {
            let event = OrderEvent::about_payment(
                &order(OrderStatus::Pending),
                &payment("P", Some(outcome)),
            )
            .unwrap();
            assert_eq!(event.status, status, "{outcome:?}");
        }
    }

    #[test]
    fn a_mismatch_says_what_the_payment_stated_beside_the_order() {
        let pending = order(OrderStatus::Pending);
        let event =
            OrderEvent::about_payment(&pending, &payment("PAY-9", Some(PaymentOutcome::Mismatch)))
                .unwrap();
        assert_eq!(event.message_id(), "A-1001/order.payment_mismatch/PAY-9");
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(body["event"], "order.payment_mismatch");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["amount_cents"], 12900);
        assert_eq!(body["currency"], "CNY");
        assert_eq!(body["payment_amount_cents"], 1);
        assert_eq!(body["payment_currency"], "USD");
        // What the payment did not state is said to be null, not left out.
        let vague = OrderEvent::about_payment(
            &pending,
            &RecordedPayment {
                amount_cents: None,
                currency: None,
                ..payment("PAY-9", Some(PaymentOutcome::Mismatch))
            },
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&vague.to_json()).unwrap();
        assert!(body["payment_amount_cents"].is_null());
        assert!(body.get("payment_currency").is_some_and(|c| c.is_null()));
    }

    #[test]
    fn event_names_are_the_documented_routing_keys() {
        let names: Vec<_> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(
            names,
            [
                "order.paid",
                "order.closed",
                "order.paid_after_close",
                "order.paid_twice",
                "order.payment_mismatch",
                "order.deadline_changed",
                "order.expiring",
            ]
        );
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        let about_payments: Vec<_> = EventKind::ALL
            .into_iter()
            .filter(|kind| kind.is_about_one_payment())
            .collect();
        assert_eq!(
            about_payments,
            [
                EventKind::PaidAfterClose,
                EventKind::PaidTwice,
                EventKind::PaymentMismatch
            ]
        );
    }

    #[test]
    fn a_watched_event_is_one_line_with_its_reason_or_payment() {
        let closed = br#"{"event":"order.closed","order_id":"A-1","occurred_at":"2026-11-27T08:30:00.120Z","reason":"expired","payment_id":null}"#;
        assert_eq!(
            describe_event("order.closed", closed),
            "2026-11-27T08:30:00.120Z order.closed             A-1 reason=expired"
        );
        let mismatch = br#"{"order_id":"A-2","occurred_at":"t","payment_id":"P-9","payment_amount_cents":500,"payment_currency":"EUR"}"#;
        assert_eq!(
            describe_event("order.payment_mismatch", mismatch),
            "t order.payment_mismatch   A-2 payment=P-9 paid=500 in=EUR"
        );
        assert_eq!(
            describe_event("order.paid", b"\xff not json"),
            "order.paid               (not a JSON object: \u{fffd} not json)"
        );
    }
}
