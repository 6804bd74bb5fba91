//! Bad messages are parked in the dead queue with the reason, and never stop
//! the daemon.

use std::time::Duration;

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString},
};
use paywait::domain::{Inbox, OrderStatus};

use paywait_testkit::TestApp;

const SOON: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_inbound_message_is_parked_with_its_reason() {
    let app = TestApp::spawn("30s").await;
    let oversized = {
        let mut body = br#"{"order_id":"A-1","pad":""#.to_vec();
        body.resize(64 * 1024 + 10, b'x');
        body
    };
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "order.placed",
            b"\xff\xfe\xfd".to_vec(),
            "not_utf8",
            "UTF-8",
        ),
        (
            "order.placed",
            b"{not json".to_vec(),
            "not_json",
            "not JSON",
        ),
        (
            "order.placed",
            br#"{"amount_cents":5}"#.to_vec(),
            "missing_field",
            "order_id",
        ),
        (
            "order.placed",
            br#"{"order_id":42}"#.to_vec(),
            "wrong_type",
            "order_id",
        ),
        (
            "order.placed",
            br#"{"order_id":"has space"}"#.to_vec(),
            "invalid_order_id",
            "order_id",
        ),
        (
            "order.placed",
            br#"{"order_id":"A-1","amount_cents":"12"}"#.to_vec(),
            "wrong_type",
            "amount_cents",
        ),
        (
            "order.placed",
            br#"{"order_id":"A-1","placed_at":"noon"}"#.to_vec(),
            "invalid_field",
            "placed_at",
        ),
        ("order.placed", oversized.clone(), "too_large", "bytes"),
        (
            "payment.succeeded",
            br#"{"order_id":"A-1"}"#.to_vec(),
            "missing_field",
            "payment_id",
        ),
        (
            "payment.succeeded",
            br#"{"order_id":"A-1","payment_id":7}"#.to_vec(),
            "wrong_type",
            "payment_id",
        ),
    ];
    for (routing_key, body, _, _) in &cases {
        app.publish(routing_key, body).await;
    }
    // A good order after the bad ones is still processed.
    app.place("A-GOOD").await;
    app.wait_for_status("A-GOOD", OrderStatus::Pending, SOON)
        .await;

    let dead = app.topology.dead_queue().to_owned();
    let parked = app.take_messages(&dead, cases.len() + 1, SOON).await;
    assert_eq!(
        parked.len(),
        cases.len(),
        "every bad message, and only those, parked"
    );
    for (_, body, reason, mention) in &cases {
        let message = parked
            .iter()
            .find(|m| &m.body == body)
            .unwrap_or_else(|| panic!("{reason} message not parked with its body untouched"));
        let error = message
            .header("x-paywait-error")
            .expect("x-paywait-error is set");
        assert!(
            error.contains(mention),
            "{reason}: {error:?} should mention {mention:?}"
        );
        assert!(message.header("x-paywait-queue").is_some());
    }
    for reason in [
        "not_utf8",
        "not_json",
        "missing_field",
        "wrong_type",
        "invalid_order_id",
        "invalid_field",
        "too_large",
    ] {
        let expected = cases.iter().filter(|(_, _, r, _)| *r == reason).count() as f64;
        let series = format!(r#"paywait_messages_dead_total{{reason="{reason}"}}"#);
        app.expect_metric(&series, expected).await;
    }
    // Nothing was requeued in a loop: the intake queues are empty.
    assert_eq!(app.queue_depth(app.topology.queue(Inbox::Placed)).await, 0);
    assert_eq!(
        app.queue_depth(app.topology.queue(Inbox::Payments)).await,
        0
    );
    assert_eq!(app.get("/readyz").await.0, 200);
}

fn attempt_headers(value: AMQPValue) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-attempt".into(), value);
    BasicProperties::default().with_headers(headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_check_messages_are_parked_unless_their_order_waits_for_them() {
    let mut app = TestApp::spawn("30s").await;
    app.place("A-KNOWN").await;
    app.wait_for_status("A-KNOWN", OrderStatus::Pending, SOON)
        .await;
    app.place("A-SETTLED").await;
    app.pay("A-SETTLED", "PAY-SETTLED").await;
    app.wait_for_status("A-SETTLED", OrderStatus::Paid, SOON)
        .await;
    assert_eq!(app.expect_event(SOON).await.name(), "order.paid");
    let checks = app.topology.queue(Inbox::Checks).to_owned();
    let settled = br#"{"order_id":"A-SETTLED"}"#.to_vec();
    let parked_cases: Vec<(Vec<u8>, BasicProperties, &str)> = vec![
        (settled.clone(), BasicProperties::default(), "bad_attempt"),
        (
            settled.clone(),
            attempt_headers(AMQPValue::LongInt(0)),
            "bad_attempt",
        ),
        (
            settled.clone(),
            attempt_headers(AMQPValue::LongString(LongString::from("two"))),
            "bad_attempt",
        ),
        (
            br#"{"order_id":"A-UNKNOWN"}"#.to_vec(),
            attempt_headers(AMQPValue::LongInt(1)),
            "unknown_order",
        ),
        (
            br#"{"order_id":"A-UNKNOWN"}"#.to_vec(),
            BasicProperties::default(),
            "bad_attempt",
        ),
        (
            b"[]".to_vec(),
            attempt_headers(AMQPValue::LongInt(1)),
            "not_json",
        ),
    ];
    for (body, properties, _) in &parked_cases {
        app.publish_to("", &checks, body, properties.clone()).await;
    }
    // One more is taken than expected, to see that there is no other.
    let parked = app
        .take_messages(
            app.topology.dead_queue(),
            parked_cases.len() + 1,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(parked.len(), parked_cases.len());
    for reason in ["bad_attempt", "unknown_order", "not_json"] {
        let expected = parked_cases.iter().filter(|(_, _, r)| *r == reason).count() as f64;
        let series = format!(r#"paywait_messages_dead_total{{reason="{reason}"}}"#);
        app.expect_metric(&series, expected).await;
    }
    let unknown = parked
        .iter()
        .find(|m| m.header("x-paywait-error").unwrap().contains("A-UNKNOWN"))
        .expect("the check of an unknown order names it");
    assert_eq!(unknown.body, br#"{"order_id":"A-UNKNOWN"}"#);
    assert_eq!(
        app.order("A-SETTLED").await.unwrap().status,
        OrderStatus::Paid
    );

    // A check of a pending order is never refused for its number: it is
    // made as the order's next check.
    let unusable = [
        attempt_headers(AMQPValue::LongInt(0)),
        attempt_headers(AMQPValue::LongLongInt(i64::MAX)),
        attempt_headers(AMQPValue::LongString(LongString::from("two"))),
        BasicProperties::default(),
    ];
    for (made, properties) in (1..).zip(unusable) {
        app.publish_to("", &checks, br#"{"order_id":"A-KNOWN"}"#, properties)
            .await;
        let deadline = std::time::Instant::now() + SOON;
        while app.order("A-KNOWN").await.unwrap().attempts < made {
            assert!(
                std::time::Instant::now() < deadline,
                "check {made} was not made"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let order = app.order("A-KNOWN").await.unwrap();
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.attempts, 4);
    assert!(
        app.take_messages(app.topology.dead_queue(), 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "a check of a pending order was parked"
    );
    assert!(app.next_event(Duration::from_millis(200)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_id_reused_for_another_order_is_parked() {
    let mut app = TestApp::spawn("30s").await;
    app.place("A-1").await;
    app.place("A-2").await;
    app.wait_for_status("A-2", OrderStatus::Pending, SOON).await;
    app.pay("A-1", "PAY-1").await;
    assert_eq!(app.expect_event(SOON).await.name(), "order.paid");
    app.pay("A-2", "PAY-1").await;
    let parked = app.take_parked(1).await;
    assert!(parked[0].header("x-paywait-error").unwrap().contains("A-1"));
    assert_eq!(app.order("A-2").await.unwrap().status, OrderStatus::Pending);
}
