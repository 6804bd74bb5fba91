//! Money is checked, not trusted: a payment settles its order only if it
//! matches it, every payment that does not is announced once under its own
//! id, a customer can cancel, and only trusted publishers may say "paid".

use std::time::Duration;

use lapin::BasicProperties;
use paywait::domain::{Inbox, OrderStatus, PaymentOutcome};
use paywait_testkit::{ORDERS_EXCHANGE, ReceivedEvent, TestApp};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

async fn place_priced(app: &TestApp, order_id: &str) {
    app.publish(
        "order.placed",
        json!({"order_id": order_id, "amount_cents": 12900, "currency": "CNY"})
            .to_string()
            .as_bytes(),
    )
    .await;
    app.wait_for_status(order_id, OrderStatus::Pending, SOON)
        .await;
}

async fn pay_with(app: &TestApp, order_id: &str, payment_id: &str, payment: serde_json::Value) {
    let mut body = payment;
    body["order_id"] = json!(order_id);
    body["payment_id"] = json!(payment_id);
    app.publish("payment.succeeded", body.to_string().as_bytes())
        .await;
}

fn assert_event(event: &ReceivedEvent, name: &str, message_id: &str) {
    assert_eq!(event.name(), name, "{event:?}");
    assert_eq!(event.routing_key, name);
    assert_eq!(
        event.properties.message_id().as_ref().unwrap().as_str(),
        message_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_for_the_wrong_amount_is_announced_and_leaves_the_order_pending() {
    let mut app = TestApp::spawn("30s").await;
    place_priced(&app, "M-1").await;

    pay_with(&app, "M-1", "PAY-CENT", json!({"amount_cents": 1})).await;
    let mismatch = app.expect_event(SOON).await;
    assert_event(
        &mismatch,
        "order.payment_mismatch",
        "M-1/order.payment_mismatch/PAY-CENT",
    );
    assert_eq!(mismatch.body["status"], "pending");
    assert_eq!(mismatch.body["amount_cents"], 12900);
    assert_eq!(mismatch.body["currency"], "CNY");
    assert_eq!(mismatch.body["payment_amount_cents"], 1);
    assert!(mismatch.body["payment_currency"].is_null());
    assert_eq!(mismatch.body["payment_id"], "PAY-CENT");
    app.wait_until_recorded("PAY-CENT", PaymentOutcome::Mismatch)
        .await;
    assert_eq!(app.order("M-1").await.unwrap().status, OrderStatus::Pending);

    // The right amount in the wrong currency does not settle it either.
    pay_with(
        &app,
        "M-1",
        "PAY-USD",
        json!({"amount_cents": 12900, "currency": "USD"}),
    )
    .await;
    let mismatch = app.expect_event(SOON).await;
    assert_event(
        &mismatch,
        "order.payment_mismatch",
        "M-1/order.payment_mismatch/PAY-USD",
    );
    assert_eq!(mismatch.body["payment_currency"], "USD");
    assert_eq!(app.order("M-1").await.unwrap().status, OrderStatus::Pending);

    // A correct payment still settles it.
    pay_with(
        &app,
        "M-1",
        "PAY-OK",
        json!({"amount_cents": 12900, "currency": "CNY"}),
    )
    .await;
    let paid = app.expect_event(SOON).await;
    assert_event(&paid, "order.paid", "M-1/order.paid");
    assert_eq!(paid.body["payment_id"], "PAY-OK");
    let order = app.order("M-1").await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.payment_id.as_ref().map(|id| id.as_str()),
        Some("PAY-OK")
    );

    // The mismatched payment again is the same payment: nothing new.
    pay_with(&app, "M-1", "PAY-CENT", json!({"amount_cents": 1})).await;
    app.expect_handled(Inbox::Payments, 4).await;
    assert!(app.next_event(Duration::from_millis(500)).await.is_none());
    app.expect_metric(
        r#"paywait_events_published_total{event="order.payment_mismatch"}"#,
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_paid_only_with_the_wrong_amount_closes_at_its_deadline() {
    let mut app = TestApp::spawn("1s").await;
    place_priced(&app, "M-2").await;
    pay_with(&app, "M-2", "PAY-LOW", json!({"amount_cents": 100})).await;
    assert_eq!(
        app.expect_event(SOON).await.name(),
        "order.payment_mismatch"
    );
    let closed = app.expect_event(SOON).await;
    assert_event(&closed, "order.closed", "M-2/order.closed");
    assert_eq!(closed.body["reason"], "expired");
    assert!(closed.body["payment_id"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_payment_for_a_paid_order_is_announced_for_a_refund() {
    let mut app = TestApp::spawn("30s").await;
    place_priced(&app, "M-3").await;
    pay_with(&app, "M-3", "PAY-1", json!({"amount_cents": 12900})).await;
    assert_eq!(app.expect_event(SOON).await.name(), "order.paid");

    pay_with(&app, "M-3", "PAY-2", json!({"amount_cents": 12900})).await;
    let twice = app.expect_event(SOON).await;
    assert_event(&twice, "order.paid_twice", "M-3/order.paid_twice/PAY-2");
    assert_eq!(twice.body["status"], "paid");
    assert_eq!(twice.body["payment_id"], "PAY-2");

    // A third is a third refund, under an id of its own.
    pay_with(&app, "M-3", "PAY-3", json!({})).await;
    let third = app.expect_event(SOON).await;
    assert_event(&third, "order.paid_twice", "M-3/order.paid_twice/PAY-3");

    // The same second payment again publishes nothing new.
    pay_with(&app, "M-3", "PAY-2", json!({"amount_cents": 12900})).await;
    app.expect_handled(Inbox::Payments, 4).await;
    assert!(app.next_event(Duration::from_millis(500)).await.is_none());
    let order = app.order("M-3").await.unwrap();
    assert_eq!(
        order.payment_id.as_ref().map(|id| id.as_str()),
        Some("PAY-1")
    );
    let outcomes: Vec<_> = app
        .db
        .payments_of(&order.order_id)
        .await
        .unwrap()
        .into_iter()
        .map(|payment| (payment.payment_id.as_str().to_owned(), payment.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("PAY-1".to_owned(), Some(PaymentOutcome::Settled)),
            ("PAY-2".to_owned(), Some(PaymentOutcome::Twice)),
            ("PAY-3".to_owned(), Some(PaymentOutcome::Twice)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_closes_at_once_and_a_later_payment_is_after_the_close() {
    let mut app = TestApp::spawn("30s").await;
    place_priced(&app, "C-1").await;
    app.publish(
        "order.cancelled",
        br#"{"order_id":"C-1","reason":"customer"}"#,
    )
    .await;
    let closed = app.expect_event(SOON).await;
    assert_event(&closed, "order.closed", "C-1/order.closed");
    assert_eq!(closed.body["reason"], "cancelled");
    assert_eq!(closed.body["status"], "closed");
    let order = app.order("C-1").await.unwrap();
    assert_eq!(order.status, OrderStatus::Closed);
    assert!(
        order.closed_at.unwrap() < order.expires_at,
        "closed at once"
    );
    app.expect_metric("paywait_orders_cancelled_total", 1.0)
        .await;

    pay_with(&app, "C-1", "PAY-LATE", json!({"amount_cents": 12900})).await;
    let late = app.expect_event(SOON).await;
    assert_event(
        &late,
        "order.paid_after_close",
        "C-1/order.paid_after_close/PAY-LATE",
    );

    // Cancelling again, or cancelling a paid order, changes nothing.
    app.publish("order.cancelled", br#"{"order_id":"C-1"}"#)
        .await;
    place_priced(&app, "C-2").await;
    pay_with(&app, "C-2", "PAY-C2", json!({})).await;
    assert_eq!(app.expect_event(SOON).await.name(), "order.paid");
    app.publish("order.cancelled", br#"{"order_id":"C-2"}"#)
        .await;
    app.expect_handled(Inbox::Cancellations, 3).await;
    assert!(app.next_event(Duration::from_millis(500)).await.is_none());
    assert_eq!(app.order("C-2").await.unwrap().status, OrderStatus::Paid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_before_its_order_is_applied_when_the_order_arrives() {
    let mut app = TestApp::spawn("2s").await;
    app.publish("order.cancelled", br#"{"order_id":"C-EARLY"}"#)
        .await;
    app.expect_handled(Inbox::Cancellations, 1).await;
    assert!(app.order("C-EARLY").await.is_none());

    app.place("C-EARLY").await;
    let closed = app.expect_event(SOON).await;
    assert_event(&closed, "order.closed", "C-EARLY/order.closed");
    assert_eq!(closed.body["reason"], "cancelled");
    // No timer was armed for it: nothing more happens at its deadline.
    assert_eq!(app.timers_waiting().await, 0);
    assert!(app.next_event(Duration::from_millis(2500)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_before_their_order_are_played_in_the_order_they_came() {
    let mut app = TestApp::spawn("30s").await;
    pay_with(&app, "E-1", "PAY-WRONG", json!({"amount_cents": 5})).await;
    pay_with(&app, "E-1", "PAY-RIGHT", json!({"amount_cents": 12900})).await;
    pay_with(&app, "E-1", "PAY-AGAIN", json!({"amount_cents": 12900})).await;
    app.expect_handled(Inbox::Payments, 3).await;
    app.publish(
        "order.placed",
        br#"{"order_id":"E-1","amount_cents":12900,"currency":"CNY"}"#,
    )
    .await;

    let mut names: Vec<(String, String)> = Vec::new();
    for _ in 0..3 {
        let event = app.expect_event(SOON).await;
        names.push((
            event.name().to_owned(),
            event.body["payment_id"].as_str().unwrap().to_owned(),
        ));
    }
    names.sort();
    assert_eq!(
        names,
        [
            ("order.paid".to_owned(), "PAY-RIGHT".to_owned()),
            ("order.paid_twice".to_owned(), "PAY-AGAIN".to_owned()),
            ("order.payment_mismatch".to_owned(), "PAY-WRONG".to_owned()),
        ]
    );
    assert_eq!(app.order("E-1").await.unwrap().status, OrderStatus::Paid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_publishers_may_say_paid() {
    let mut app = TestApp::spawn_with(
        "30s",
        true,
        &[("PAYWAIT_PAYMENTS__TRUSTED_USERS", "payment-service,guest")],
    )
    .await;
    app.place("T-1").await;
    app.place("T-2").await;
    app.expect_handled(Inbox::Placed, 2).await;

    // Without user_id: refused, parked with the reason.
    app.pay("T-1", "PAY-ANON").await;
    let parked = app.take_parked(1).await;
    assert!(
        parked[0]
            .header("x-paywait-error")
            .unwrap()
            .contains("user_id"),
        "{:?}",
        parked[0].header("x-paywait-error")
    );
    app.expect_metric(
        r#"paywait_messages_dead_total{reason="untrusted_publisher"}"#,
        1.0,
    )
    .await;
    assert_eq!(app.order("T-1").await.unwrap().status, OrderStatus::Pending);

    // The broker refuses a user_id that is not the connection's own.
    let forged = app
        .client
        .try_publish(
            ORDERS_EXCHANGE,
            "payment.succeeded",
            br#"{"order_id":"T-1","payment_id":"PAY-FORGED"}"#,
            BasicProperties::default().with_user_id("payment-service".into()),
        )
        .await;
    assert!(forged.is_err(), "the broker accepted a forged user_id");

    // The connection's own user, trusted: accepted.
    let own = TestApp::client_for(&app.sandbox).await;
    own.publish(
        ORDERS_EXCHANGE,
        "payment.succeeded",
        br#"{"order_id":"T-2","payment_id":"PAY-TRUSTED"}"#,
        BasicProperties::default().with_user_id("guest".into()),
    )
    .await;
    let paid = app.expect_event(SOON).await;
    assert_event(&paid, "order.paid", "T-2/order.paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_not_among_the_trusted_is_refused() {
    let app = TestApp::spawn_with(
        "30s",
        true,
        &[("PAYWAIT_PAYMENTS__TRUSTED_USERS", "payment-service")],
    )
    .await;
    app.place("T-3").await;
    app.expect_handled(Inbox::Placed, 1).await;
    app.client
        .publish(
            ORDERS_EXCHANGE,
            "payment.succeeded",
            br#"{"order_id":"T-3","payment_id":"PAY-GUEST"}"#,
            BasicProperties::default().with_user_id("guest".into()),
        )
        .await;
    let parked = app.take_parked(1).await;
    let error = parked[0].header("x-paywait-error").unwrap();
    assert!(
        error.contains("\"guest\"") && error.contains("trusted_users"),
        "{error}"
    );
    // Parked by paywait's own user: the publisher is kept in a header.
    assert_eq!(
        parked[0].header("x-paywait-user-id").as_deref(),
        Some("guest")
    );
    assert_eq!(app.order("T-3").await.unwrap().status, OrderStatus::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_paid_in_sql_takes_its_first_matching_payment_and_refunds_every_other() {
    let mut app = TestApp::spawn("30s").await;
    place_priced(&app, "S-1").await;
    app.sandbox
        .execute(&["UPDATE orders SET status = 'paid', paid_at = now() WHERE order_id = 'S-1' AND status = 'pending'"])
        .await;

    // Of any amount, a payment before the matching one is a second payment.
    pay_with(&app, "S-1", "PAY-0", json!({"amount_cents": 5})).await;
    let twice = app.expect_event(SOON).await;
    assert_event(&twice, "order.paid_twice", "S-1/order.paid_twice/PAY-0");
    // PAY-0 found the order.paid owed and announced it too, or did not:
    // the next payment must, being the one that paid it.
    pay_with(&app, "S-1", "PAY-1", json!({"amount_cents": 12900})).await;
    app.wait_until_recorded("PAY-1", PaymentOutcome::Settled)
        .await;
    pay_with(&app, "S-1", "PAY-2", json!({"amount_cents": 12900})).await;
    pay_with(&app, "S-1", "PAY-3", json!({"amount_cents": 1})).await;
    // PAY-1 again is the same payment: nothing new.
    pay_with(&app, "S-1", "PAY-1", json!({"amount_cents": 12900})).await;
    app.expect_handled(Inbox::Payments, 5).await;

    let mut events = Vec::new();
    while let Some(event) = app.next_event(Duration::from_secs(2)).await {
        events.push(event);
    }
    let mut ids: Vec<String> = events
        .iter()
        .map(|event| event.properties.message_id().as_ref().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        [
            "S-1/order.paid",
            "S-1/order.paid_twice/PAY-2",
            "S-1/order.paid_twice/PAY-3",
        ],
        "{events:?}"
    );
    for event in &events {
        if event.name() == "order.paid_twice" {
            assert_eq!(event.body["status"], "paid");
        } else {
            // The order was paid in SQL: its event names no payment.
            assert!(event.body["payment_id"].is_null(), "{event:?}");
        }
    }
    for (payment_id, outcome) in [
        ("PAY-0", PaymentOutcome::Twice),
        ("PAY-1", PaymentOutcome::Settled),
        ("PAY-2", PaymentOutcome::Twice),
        ("PAY-3", PaymentOutcome::Twice),
    ] {
        app.wait_until_recorded(payment_id, outcome).await;
    }
    let order = app.order("S-1").await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.payment_id, None);
    assert_eq!(
        order.adopted_payment_id.as_ref().map(|id| id.as_str()),
        Some("PAY-1")
    );
}
