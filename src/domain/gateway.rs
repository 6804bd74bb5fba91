//! Asking the payment gateway before a close, as RocketMQ's transaction
//! check-back does: a payment that succeeded a second before the deadline,
//! whose notification is still on its way, must not turn into a close.
//!
//! At the deadline of an unpaid order, the worker asks the gateway (when one
//! is configured) and does what [`after_answer`] says. The waits between asks
//! are broker timers like every other check.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{CloseReason, Currency, Order, PaymentId, PaymentSucceeded};

/// How the gateway is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskPolicy {
    /// The wait before asking again.
    pub retry: Duration,
    /// How many more times to ask after the first, at most.
    pub max_retries: u32,
}

impl AskPolicy {
    /// How much later than `retry` an ask may come, at most, as a share of
    /// it: orders due together are asked about again spread over this.
    pub const SPREAD: f64 = 0.2;

    /// The wait before asking again, `spread` (from 0 to 1, drawn at
    /// random by the caller) of the way from `retry` to its latest: never
    /// sooner than `retry`, so that a burst of deadlines does not come back
    /// as one.
    pub fn wait_before_asking_again(&self, spread: f64) -> Duration {
        self.retry
            .mul_f64(1.0 + Self::SPREAD * spread.clamp(0.0, 1.0))
    }
}

/// What the gateway said about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayAnswer {
    /// The customer paid: this payment.
    Paid {
        payment_id: PaymentId,
        amount_cents: Option<i64>,
        currency: Option<Currency>,
    },
    Unpaid,
    /// Not decided yet at the gateway.
    Pending,
    /// No usable answer: a time-out, a status other than 200, a body that
    /// does not parse. Why, for the log.
    Unusable(String),
}

impl GatewayAnswer {
    /// Every [`GatewayAnswer::label`].
    pub const LABELS: [&'static str; 4] = ["paid", "unpaid", "pending", "unusable"];

    /// The short label of the answer, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Paid { .. } => "paid",
            Self::Unpaid => "unpaid",
            Self::Pending => "pending",
            Self::Unusable(_) => "unusable",
        }
    }

    /// Reads the gateway's HTTP answer: status 200 with
    /// `{"status": "paid" | "unpaid" | "pending", "payment_id", "amount_cents", "currency"}`.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Answer {
            status: String,
            payment_id: Option<String>,
            amount_cents: Option<i64>,
            currency: Option<String>,
        }
        if status != 200 {
            return Self::Unusable(format!("HTTP status {status}"));
        }
        let answer: Answer = match serde_json::from_slice(body) {
            Ok(answer) => answer,
            Err(error) => return Self::Unusable(format!("the body does not parse: {error}")),
        };
        match answer.status.as_str() {
            "unpaid" => Self::Unpaid,
            "pending" => Self::Pending,
            "paid" => {
                let payment_id = match answer.payment_id.as_deref().map(PaymentId::parse) {
                    Some(Ok(payment_id)) => payment_id,
                    Some(Err(why)) => return Self::Unusable(format!("payment_id: {why}")),
                    None => return Self::Unusable("\"paid\" without a payment_id".into()),
                };
                if answer.amount_cents.is_some_and(|cents| cents < 0) {
                    return Self::Unusable("a negative amount_cents".into());
                }
                let currency = match answer.currency.as_deref().map(Currency::parse) {
                    Some(Ok(currency)) => Some(currency),
                    Some(Err(why)) => return Self::Unusable(format!("currency: {why}")),
                    None => None,
                };
                Self::Paid {
                    payment_id,
                    amount_cents: answer.amount_cents,
                    currency,
                }
            }
            other => Self::Unusable(format!("an unknown status {other:?}")),
        }
    }
}

/// The body of the question about `order`.
pub fn question(order: &Order) -> Value {
    json!({
        "order_id": order.order_id,
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "placed_at": order.placed_at,
        "expires_at": order.expires_at,
    })
}

/// What the check does with the gateway's answer about `order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAnswer {
    /// The same as a `payment.succeeded` with this payment: the amount
    /// checks apply. An order still pending after it is closed, `expired`.
    Pay(PaymentSucceeded),
    Close(CloseReason),
    /// Ask again after the policy's wait.
    AskAgain,
}

/// Decides what the answer to ask number `order.gateway_asks + 1` means.
pub fn after_answer(order: &Order, answer: GatewayAnswer, policy: &AskPolicy) -> AfterAnswer {
    match answer {
        GatewayAnswer::Paid {
            payment_id,
            amount_cents,
            currency,
        } => AfterAnswer::Pay(PaymentSucceeded {
            order_id: order.order_id.clone(),
            payment_id,
            amount_cents,
            currency,
            paid_at: None,
        }),
        GatewayAnswer::Unpaid => AfterAnswer::Close(CloseReason::Expired),
        GatewayAnswer::Pending | GatewayAnswer::Unusable(_) => {
            // Every ask before this one that was not the last scheduled a retry.
            let retries_scheduled = order.gateway_asks;
            if retries_scheduled < policy.max_retries {
                AfterAnswer::AskAgain
            } else {
                AfterAnswer::Close(CloseReason::Unverified)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderStatus, test_order};

    fn policy() -> AskPolicy {
        AskPolicy {
            retry: Duration::from_secs(30),
            max_retries: 3,
        }
    }

    #[test]
    fn answers_are_read_from_status_200_json() {
        let paid = GatewayAnswer::parse(
            200,
            br#"{"status":"paid","payment_id":"PAY-G","amount_cents":12900,"currency":"CNY"}"#,
        );
        assert_eq!(
            paid,
            GatewayAnswer::Paid {
                payment_id: PaymentId::parse("PAY-G").unwrap(),
                amount_cents: Some(12900),
                currency: Some(Currency::parse("CNY").unwrap()),
            }
        );
        assert_eq!(paid.label(), "paid");
        assert_eq!(
            GatewayAnswer::parse(200, br#"{"status":"unpaid"}"#),
            GatewayAnswer::Unpaid
        );
        assert_eq!(
            GatewayAnswer::parse(200, br#"{"status":"pending","extra":1}"#),
            GatewayAnswer::Pending
        );
        assert_eq!(
            GatewayAnswer::parse(200, br#"{"status":"paid","payment_id":"P"}"#),
            GatewayAnswer::Paid {
                payment_id: PaymentId::parse("P").unwrap(),
                amount_cents: None,
                currency: None,
            }
        );
        assert!(matches!(
            GatewayAnswer::parse(
                200,
                br#"{"status":"paid","payment_id":"P","amount_cents":0}"#
            ),
            GatewayAnswer::Paid {
                amount_cents: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn asks_again_after_the_retry_spread_over_a_fifth_of_it() {
        let policy = policy();
        assert_eq!(
            policy.wait_before_asking_again(0.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            policy.wait_before_asking_again(0.5),
            Duration::from_secs(33)
        );
        assert_eq!(
            policy.wait_before_asking_again(1.0),
            Duration::from_secs(36)
        );
        // Out of range draws are held to it.
        assert_eq!(
            policy.wait_before_asking_again(-1.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            policy.wait_before_asking_again(7.0),
            Duration::from_secs(36)
        );
    }

    #[test]
    fn anything_else_is_no_usable_answer() {
        let cases: [(u16, &[u8], &str); 8] = [
            (500, br#"{"status":"paid","payment_id":"P"}"#, "500"),
            (404, b"", "404"),
            (200, b"<html>", "does not parse"),
            (200, br#"{"status":"maybe"}"#, "maybe"),
            (200, br#"{"status":"paid"}"#, "payment_id"),
            (200, br#"{"status":"paid","payment_id":""}"#, "payment_id"),
            (
                200,
                br#"{"status":"paid","payment_id":"P","currency":"cny"}"#,
                "currency",
            ),
            (
                200,
                br#"{"status":"paid","payment_id":"P","amount_cents":-1}"#,
                "negative",
            ),
        ];
        for (status, body, says) in cases {
            let answer = GatewayAnswer::parse(status, body);
            let GatewayAnswer::Unusable(why) = &answer else {
                panic!(
                    "{status} {:?} gave {answer:?}",
                    String::from_utf8_lossy(body)
                );
            };
            assert!(why.contains(says), "{why}");
            assert_eq!(answer.label(), "unusable");
        }
    }

    #[test]
    fn the_question_names_the_order_its_amount_and_its_deadline() {
        let order = test_order(OrderStatus::Pending);
        assert_eq!(
            question(&order),
            json!({
                "order_id": "A-1001", "amount_cents": 12900, "currency": "CNY",
                "placed_at": "2026-11-27T08:00:00Z", "expires_at": "2026-11-27T08:30:00Z"
            })
        );
    }

    #[test]
    fn what_each_answer_does() {
        let order = test_order(OrderStatus::Pending);
        let paid = GatewayAnswer::Paid {
            payment_id: PaymentId::parse("PAY-G").unwrap(),
            amount_cents: Some(12900),
            currency: None,
        };
        let AfterAnswer::Pay(payment) = after_answer(&order, paid, &policy()) else {
            panic!("a paid answer pays");
        };
        assert_eq!(payment.order_id, order.order_id);
        assert_eq!(payment.payment_id.as_str(), "PAY-G");
        assert_eq!(payment.amount_cents, Some(12900));
        assert_eq!(
            after_answer(&order, GatewayAnswer::Unpaid, &policy()),
            AfterAnswer::Close(CloseReason::Expired)
        );
        for answer in [GatewayAnswer::Pending, GatewayAnswer::Unusable("x".into())] {
            assert_eq!(
                after_answer(&order, answer, &policy()),
                AfterAnswer::AskAgain
            );
        }
    }

    #[test]
    fn after_the_last_retry_an_unsure_order_closes_unverified() {
        let asked = |asks: u32| Order {
            gateway_asks: asks,
            ..test_order(OrderStatus::Pending)
        };
        // The first ask and three retries: four asks in all.
        for asks_before in 0..3 {
            assert_eq!(
                after_answer(&asked(asks_before), GatewayAnswer::Pending, &policy()),
                AfterAnswer::AskAgain,
                "{asks_before}"
            );
        }
        assert_eq!(
            after_answer(&asked(3), GatewayAnswer::Pending, &policy()),
            AfterAnswer::Close(CloseReason::Unverified)
        );
        // A pending followed by unpaid closes as expired.
        assert_eq!(
            after_answer(&asked(2), GatewayAnswer::Unpaid, &policy()),
            AfterAnswer::Close(CloseReason::Expired)
        );
        let never_again = AskPolicy {
            max_retries: 0,
            ..policy()
        };
        assert_eq!(
            after_answer(&asked(0), GatewayAnswer::Unusable("x".into()), &never_again),
            AfterAnswer::Close(CloseReason::Unverified)
        );
    }
}
