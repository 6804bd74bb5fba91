//! The bodies the tests publish, written by paywait's own messages (the
//! counterpart of the parser the daemon reads them with). Tests of bodies
//! paywait must refuse write theirs by hand.

use paywait::domain::{
    CheckDue, DeadlineChanged, Message, OrderCancelled, OrderId, OrderPlaced, PaymentId,
    PaymentSucceeded,
};

fn order_id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap_or_else(|why| panic!("{text:?} is no order id: {why}"))
}

/// `order.placed` for `order_id`, with nothing else.
pub fn placed(order_id_text: &str) -> Vec<u8> {
    Message::Placed(OrderPlaced {
        order_id: order_id(order_id_text),
        amount_cents: None,
        currency: None,
        placed_at: None,
        expires_at: None,
    })
    .to_body()
}

/// `payment.succeeded` of `payment_id` for `order_id`, with nothing else.
pub fn paid(order_id_text: &str, payment_id: &str) -> Vec<u8> {
    let payment_id = PaymentId::parse(payment_id)
        .unwrap_or_else(|why| panic!("{payment_id:?} is no payment id: {why}"));
    Message::Payment(PaymentSucceeded {
        order_id: order_id(order_id_text),
        payment_id,
        amount_cents: None,
        currency: None,
        paid_at: None,
    })
    .to_body()
}

/// A timer's body, for a check of `order_id`.
pub fn timer(order_id_text: &str) -> Vec<u8> {
    Message::Check(CheckDue {
        order_id: order_id(order_id_text),
        attempt: Ok(paywait::domain::Attempt::FIRST),
        due_at: None,
    })
    .to_body()
}

/// `order.cancelled` for `order_id`, with no reason.
pub fn cancelled(order_id_text: &str) -> Vec<u8> {
    Message::Cancelled(OrderCancelled {
        order_id: order_id(order_id_text),
        reason: None,
    })
    .to_body()
}

/// `order.deadline_changed` moving `order_id`'s deadline to `expires_at`.
pub fn deadline_changed(order_id_text: &str, expires_at: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    Message::DeadlineChanged(DeadlineChanged {
        order_id: order_id(order_id_text),
        expires_at: paywait::domain::to_the_microsecond(expires_at),
    })
    .to_body()
}
