//! The order's life, path by path.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use paywait::domain::{Inbox, OrderStatus, PaymentOutcome};

use paywait_testkit::{ReceivedEvent, TestApp};

const SOON: Duration = Duration::from_secs(10);

fn time(value: &serde_json::Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

fn assert_event_properties(event: &ReceivedEvent, name: &str, order_id: &str) {
    assert_event_properties_with_id(event, name, order_id, &format!("{order_id}/{name}"));
}

fn assert_event_properties_with_id(
    event: &ReceivedEvent,
    name: &str,
    order_id: &str,
    message_id: &str,
) {
    assert_eq!(event.routing_key, name);
    assert_eq!(event.name(), name);
    assert_eq!(event.order_id(), order_id);
    let properties = &event.properties;
    assert_eq!(properties.kind().as_ref().unwrap().as_str(), name);
    assert_eq!(
        properties.message_id().as_ref().unwrap().as_str(),
        message_id
    );
    assert_eq!(
        properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_order_is_checked_on_schedule_and_closed_at_its_deadline() {
    let mut app = TestApp::spawn("200ms,300ms,200ms").await;
    app.publish(
        "order.placed",
        br#"{"order_id":"A-1001","amount_cents":12900,"currency":"CNY"}"#,
    )
    .await;

    let event = app.expect_event(SOON).await;
    assert_event_properties(&event, "order.closed", "A-1001");
    let order = app.order("A-1001").await.unwrap();
    assert_eq!(order.status, OrderStatus::Closed);
    assert_eq!(order.attempts, 3);
    let closed_at = order.closed_at.unwrap();
    assert!(closed_at >= order.expires_at, "closed before the deadline");
    assert_eq!(
        order.expires_at - order.placed_at,
        chrono::TimeDelta::milliseconds(700)
    );

    let body = &event.body;
    assert_eq!(body["status"], "closed");
    assert_eq!(body["attempts"], 3);
    assert_eq!(body["amount_cents"], 12900);
    assert_eq!(body["currency"], "CNY");
    assert!(body["payment_id"].is_null());
    assert_eq!(time(&body["occurred_at"]), closed_at);
    assert_eq!(time(&body["expires_at"]), order.expires_at);
    assert_eq!(time(&body["placed_at"]), order.placed_at);

    app.expect_metric(r#"paywait_checks_total{outcome="rescheduled"}"#, 2.0)
        .await;
    app.expect_metric(r#"paywait_checks_total{outcome="closed"}"#, 1.0)
        .await;
    app.expect_metric("paywait_orders_placed_total", 1.0).await;
    app.expect_metric(
        r#"paywait_events_published_total{event="order.closed"}"#,
        1.0,
    )
    .await;
    app.expect_metric("paywait_close_lateness_seconds_count", 1.0)
        .await;
    assert!(
        app.next_event(Duration::from_millis(500)).await.is_none(),
        "one event only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_message_publishes_order_paid_at_once() {
    let mut app = TestApp::spawn("20s").await;
    app.place("A-2").await;
    app.wait_for_status("A-2", OrderStatus::Pending, SOON).await;
    app.publish(
        "payment.succeeded",
        br#"{"order_id":"A-2","payment_id":"PAY-77","amount_cents":100,"paid_at":"2026-11-27T08:03:10Z"}"#,
    )
    .await;

    let event = app.expect_event(Duration::from_secs(5)).await;
    assert_event_properties(&event, "order.paid", "A-2");
    assert_eq!(event.body["status"], "paid");
    assert_eq!(event.body["payment_id"], "PAY-77");
    assert_eq!(event.body["occurred_at"], "2026-11-27T08:03:10Z");
    let order = app.order("A-2").await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.payment_id.as_ref().map(|id| id.as_str()),
        Some("PAY-77")
    );
    app.wait_until_announced("A-2").await;

    // The same payment again is one payment: no second event, no second count.
    app.pay("A-2", "PAY-77").await;
    assert!(app.next_event(Duration::from_millis(700)).await.is_none());
    app.expect_metric("paywait_payments_total", 1.0).await;
    assert_eq!(app.db.payments_of(&order.order_id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_made_in_sql_is_announced_by_the_next_check() {
    // The first check comes 3 s after the order: time enough for the update.
    let mut app = TestApp::spawn("3s,30s").await;
    app.place("A-3").await;
    app.wait_for_status("A-3", OrderStatus::Pending, SOON).await;
    {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&app.sandbox.database_url())
            .await
            .unwrap();
        let changed = diesel::sql_query(
            "UPDATE orders SET status = 'paid', paid_at = now() WHERE order_id = 'A-3' AND status = 'pending'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(changed, 1);
    }
    let event = app.expect_event(Duration::from_secs(15)).await;
    assert_event_properties(&event, "order.paid", "A-3");
    // The checks made before it was paid: none. Whoever announces the event
    // says what the row says, so every copy of it is the same.
    assert_eq!(event.body["attempts"], 0);
    assert!(event.body["payment_id"].is_null());
    app.expect_metric(r#"paywait_checks_total{outcome="paid"}"#, 1.0)
        .await;
    let order = app.wait_until_announced("A-3").await;
    assert_eq!(order.attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_after_the_close_is_kept_and_announced() {
    let mut app = TestApp::spawn("200ms").await;
    app.place("A-4").await;
    let closed = app.expect_event(SOON).await;
    assert_eq!(closed.name(), "order.closed");

    app.pay("A-4", "PAY-LATE").await;
    let late = app.expect_event(SOON).await;
    assert_event_properties_with_id(
        &late,
        "order.paid_after_close",
        "A-4",
        "A-4/order.paid_after_close/PAY-LATE",
    );
    assert_eq!(late.body["status"], "closed");
    assert_eq!(late.body["payment_id"], "PAY-LATE");

    // A second late payment is a second refund, under an id of its own.
    app.pay("A-4", "PAY-LATER").await;
    let later = app.expect_event(SOON).await;
    assert_event_properties_with_id(
        &later,
        "order.paid_after_close",
        "A-4",
        "A-4/order.paid_after_close/PAY-LATER",
    );

    let order = app.order("A-4").await.unwrap();
    assert_eq!(order.status, OrderStatus::Closed, "the order stays closed");
    let payments = app.db.payments_of(&order.order_id).await.unwrap();
    assert_eq!(payments.len(), 2);
    assert!(
        payments
            .iter()
            .all(|payment| payment.outcome == Some(PaymentOutcome::AfterClose))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_before_its_order_makes_the_order_paid_on_arrival() {
    let mut app = TestApp::spawn("30s").await;
    app.pay("A-5", "PAY-EARLY").await;
    // The payment is recorded though the order is unknown.
    let deadline = std::time::Instant::now() + SOON;
    let order_id = paywait::domain::OrderId::parse("A-5").unwrap();
    while app.db.payments_of(&order_id).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the early payment was not kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.order("A-5").await.is_none());

    app.place("A-5").await;
    let event = app.expect_event(SOON).await;
    assert_event_properties(&event, "order.paid", "A-5");
    assert_eq!(event.body["payment_id"], "PAY-EARLY");
    let order = app.order("A-5").await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    // Paid on arrival: no timer was armed for it (one would wait 30 s in a
    // TTL queue), and nothing more is published.
    app.expect_handled(Inbox::Placed, 1).await;
    assert_eq!(app.timers_waiting().await, 0);
    assert!(app.next_event(Duration::from_millis(800)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_order_changes_nothing_and_starts_no_second_timer() {
    let app = TestApp::spawn("30s").await;
    app.publish("order.placed", br#"{"order_id":"A-6","amount_cents":100}"#)
        .await;
    app.wait_for_status("A-6", OrderStatus::Pending, SOON).await;
    app.publish("order.placed", br#"{"order_id":"A-6","amount_cents":999}"#)
        .await;
    app.place("A-7").await;
    // All three messages are acknowledged, the repeat included.
    app.expect_handled(Inbox::Placed, 3).await;

    let order = app.order("A-6").await.unwrap();
    assert_eq!(order.amount_cents, Some(100));
    assert_eq!(app.timers_waiting().await, 2, "one timer per order");
    app.expect_metric("paywait_orders_placed_total", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placed_at_sets_the_deadline() {
    let app = TestApp::spawn("10m,20m").await;
    // Five minutes ago, written in another time zone.
    let placed_at = Utc::now().with_nanosecond(0).unwrap() - chrono::TimeDelta::minutes(5);
    let written = placed_at
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339();
    assert!(written.ends_with("+08:00"), "{written}");
    app.publish(
        "order.placed",
        format!(r#"{{"order_id":"A-8","placed_at":"{written}"}}"#).as_bytes(),
    )
    .await;
    let order = app.wait_for_status("A-8", OrderStatus::Pending, SOON).await;
    assert_eq!(order.placed_at, placed_at);
    assert_eq!(order.expires_at, placed_at + chrono::TimeDelta::minutes(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_unrouted_while_no_downstream_queue_is_bound() {
    let app = TestApp::spawn_with("200ms", false, &[]).await;
    app.place("A-9").await;
    app.wait_for_status("A-9", OrderStatus::Closed, SOON).await;
    let unrouted = app.topology.unrouted_queue().to_owned();
    let messages = app.take_messages(&unrouted, 1, SOON).await;
    assert_eq!(messages.len(), 1, "the event was kept in {unrouted}");
    let body: serde_json::Value = serde_json::from_slice(&messages[0].body).unwrap();
    assert_eq!(body["event"], "order.closed");
    assert_eq!(body["order_id"], "A-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_health_readiness_and_metrics() {
    let app = TestApp::spawn("1m").await;
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "paywait_orders_placed_total",
        "paywait_payments_total",
        r#"paywait_checks_total{outcome="paid"}"#,
        r#"paywait_checks_total{outcome="rescheduled"}"#,
        r#"paywait_checks_total{outcome="closed"}"#,
        r#"paywait_events_published_total{event="order.paid"}"#,
        "paywait_close_lateness_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(!metrics.contains("guest"), "no credentials in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_the_broker() {
    let app = TestApp::spawn("1m").await;
    let within = Duration::from_secs(20);

    app.sandbox.set_database_reachable(false).await;
    let body = app.wait_for_readiness(503, within).await;
    assert!(body.contains("PostgreSQL"), "{body}");
    assert_eq!(app.get("/healthz").await.0, 200, "alive all the same");
    app.sandbox.set_database_reachable(true).await;
    app.wait_for_readiness(200, within).await;

    // The broker refuses the daemon: its connection is closed and it may
    // not open another until the permissions are back.
    let vhost = app.sandbox.vhost.clone();
    tokio::task::spawn_blocking(move || {
        paywait_testkit::set_guest_permissions(&vhost, false);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while paywait_testkit::close_connections_named(&vhost, "paywait") == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon's connection never showed up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let body = app.wait_for_readiness(503, within).await;
    assert!(body.contains("RabbitMQ"), "{body}");
    assert_eq!(app.get("/healthz").await.0, 200, "alive all the same");
    let vhost = app.sandbox.vhost.clone();
    tokio::task::spawn_blocking(move || paywait_testkit::set_guest_permissions(&vhost, true))
        .await
        .unwrap();
    app.wait_for_readiness(200, within).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_timer_is_a_failure_and_the_order_message_is_not_acknowledged() {
    // Long enough that the timer goes through a TTL queue however slow the
    // intake is: a timer (nearly) due goes straight to the check queue.
    let mut app = TestApp::spawn("5s").await;
    for queue in app.topology.wait_queues() {
        app.channel
            .queue_delete(queue.name.as_str().into(), Default::default())
            .await
            .unwrap();
    }

    app.place("A-RET").await;
    // The order is stored, but its timer comes back unroutable: the message
    // stays unacknowledged and is retried.
    app.wait_for_status("A-RET", OrderStatus::Pending, SOON)
        .await;
    let placed = app.topology.queue(Inbox::Placed).to_owned();
    let retries = format!(r#"paywait_message_retries_total{{queue="{placed}"}}"#);
    let deadline = std::time::Instant::now() + SOON;
    while app.metric(&retries).await < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the order was not retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handled = format!(r#"paywait_messages_handled_total{{queue="{placed}"}}"#);
    assert_eq!(
        app.metric(&handled).await,
        0.0,
        "acknowledged without a timer"
    );
    assert_eq!(app.metric("paywait_orders_placed_total").await, 0.0);
    assert!(app.next_event(Duration::from_millis(10)).await.is_none());

    // Once the queue is back, the retry arms the timer and the order closes.
    paywait::amqp::declare(&app.channel, &app.topology)
        .await
        .unwrap();
    let event = app.expect_event(Duration::from_secs(15)).await;
    assert_eq!(event.name(), "order.closed");
    assert_eq!(event.order_id(), "A-RET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_queues_work_end_to_end() {
    let mut app = TestApp::spawn_with(
        "200ms",
        true,
        &[("PAYWAIT_TOPOLOGY__QUEUE_TYPE", "classic")],
    )
    .await;
    for queue in app.topology.queues() {
        let path = format!(
            "queues/{}/{}",
            paywait_testkit::urlencode(&app.sandbox.vhost),
            paywait_testkit::urlencode(&queue.name)
        );
        let info = tokio::task::spawn_blocking(move || paywait_testkit::management_json(&path))
            .await
            .unwrap();
        assert_eq!(info["type"], "classic", "{}: {info}", queue.name);
        assert!(
            info["arguments"].get("x-dead-letter-strategy").is_none(),
            "{}: {info}",
            queue.name
        );
    }
    app.place("A-CL").await;
    let event = app.expect_event(SOON).await;
    assert_eq!(event.name(), "order.closed");
    assert_eq!(event.body["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_racing_their_orders_are_never_left_unapplied() {
    let mut app = TestApp::spawn("5s").await;
    let second = TestApp::client_for(&app.sandbox).await;
    let ids: Vec<String> = (0..100).map(|i| format!("RACE-{i:03}")).collect();
    // Each order and its payment leave at the same moment, on two connections.
    for id in &ids {
        let payment =
            serde_json::json!({"order_id": id, "payment_id": format!("PAY-{id}")}).to_string();
        tokio::join!(
            app.place(id),
            second.publish_inbound("payment.succeeded", payment.as_bytes())
        );
    }
    let mut paid = std::collections::HashSet::new();
    while paid.len() < ids.len() {
        let event = app.expect_event(Duration::from_secs(4)).await;
        assert_eq!(event.name(), "order.paid", "{event:?}");
        paid.insert(event.order_id().to_owned());
    }
    for id in &ids {
        assert_eq!(
            app.order(id).await.unwrap().status,
            OrderStatus::Paid,
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_timer_arm_one_successor() {
    let app = TestApp::spawn("30s,30s").await;
    app.place("T-DUP").await;
    app.expect_handled(Inbox::Placed, 1).await;
    assert_eq!(app.timers_waiting().await, 1, "the order's own first timer");
    // Three copies of check 1 at once, as a lost timer re-armed beside the
    // original would bring.
    for _ in 0..3 {
        app.fire_timer("T-DUP", 1).await;
    }
    app.expect_handled(Inbox::Checks, 3).await;
    let order = app.order("T-DUP").await.unwrap();
    assert_eq!(order.attempts, 1);
    assert_eq!(
        app.timers_waiting().await,
        2,
        "the first timer and one successor, not one per copy"
    );
}
