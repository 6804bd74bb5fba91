//! Asking the payment gateway before a close, against a real HTTP server in
//! the test process that answers paid, unpaid, pending, slowly, with 500,
//! or with garbage.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use paywait::domain::OrderStatus;
use paywait_testkit::TestApp;
use serde_json::{Value, json};

/// A gateway whose answer depends on the order id, noting every question.
#[derive(Clone, Default)]
struct FakeGateway {
    questions: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// How long a slow answer takes.
    slowness: Duration,
}

impl FakeGateway {
    async fn start(slowness: Duration) -> (Self, SocketAddr) {
        let gateway = Self {
            slowness,
            ..Self::default()
        };
        let app = Router::new()
            .route("/ask", post(answer))
            .with_state(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, app).into_future());
        (gateway, address)
    }

    fn asked(&self, order_id: &str) -> Vec<Value> {
        self.questions
            .lock()
            .unwrap()
            .get(order_id)
            .cloned()
            .unwrap_or_default()
    }
}

async fn answer(State(gateway): State<FakeGateway>, Json(question): Json<Value>) -> Response {
    let order_id = question["order_id"].as_str().unwrap_or_default().to_owned();
    let asked = {
        let mut questions = gateway.questions.lock().unwrap();
        let list = questions.entry(order_id.clone()).or_default();
        list.push(question.clone());
        list.len()
    };
    let status = |status: &str| Json(json!({"status": status})).into_response();
    if order_id.contains("WRONG") {
        Json(json!({"status": "paid", "payment_id": format!("GW-{order_id}"), "amount_cents": 1}))
            .into_response()
    } else if order_id.contains("UNPAID") {
        status("unpaid")
    } else if order_id.contains("PAID") {
        Json(json!({
            "status": "paid", "payment_id": format!("GW-{order_id}"),
            "amount_cents": question["amount_cents"], "currency": question["currency"],
        }))
        .into_response()
    } else if order_id.contains("THEN") {
        status(if asked == 1 { "pending" } else { "unpaid" })
    } else if order_id.contains("PENDING") {
        status("pending")
    } else if order_id.contains("SLOW") {
        tokio::time::sleep(gateway.slowness).await;
        status("unpaid")
    } else if order_id.contains("ERROR") {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    } else {
        (StatusCode::OK, "<html>not json</html>").into_response()
    }
}

async fn spawn_with_gateway(address: SocketAddr, extra: &[(&str, &str)]) -> TestApp {
    let url = format!("http://{address}/ask");
    let mut settings = vec![
        ("PAYWAIT_GATEWAY__URL", url.as_str()),
        ("PAYWAIT_GATEWAY__TIMEOUT", "500ms"),
        ("PAYWAIT_GATEWAY__RETRY", "400ms"),
        ("PAYWAIT_GATEWAY__MAX_RETRIES", "2"),
    ];
    settings.extend_from_slice(extra);
    TestApp::spawn_with("300ms", true, &settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_of_the_gateway_decides_how_the_order_ends() {
    let (gateway, address) = FakeGateway::start(Duration::from_secs(3)).await;
    let mut app = spawn_with_gateway(address, &[]).await;
    // order id → (terminal event, close reason, questions asked)
    let cases: [(&str, &str, Option<&str>, usize); 8] = [
        ("G-PAID", "order.paid", None, 1),
        ("G-WRONG", "order.closed", Some("expired"), 1),
        ("G-UNPAID", "order.closed", Some("expired"), 1),
        ("G-THEN", "order.closed", Some("expired"), 2),
        ("G-PENDING", "order.closed", Some("unverified"), 3),
        ("G-SLOW", "order.closed", Some("unverified"), 3),
        ("G-ERROR", "order.closed", Some("unverified"), 3),
        ("G-GARBAGE", "order.closed", Some("unverified"), 3),
    ];
    for (id, _, _, _) in &cases {
        app.publish(
            "order.placed",
            json!({"order_id": id, "amount_cents": 12900, "currency": "CNY"})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    // Paid before its deadline: the gateway is never asked about it.
    app.place("G-SETTLED").await;
    app.pay("G-SETTLED", "PAY-SETTLED").await;

    let mut events: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.values().map(Vec::len).sum::<usize>() < cases.len() + 2 {
        assert!(Instant::now() < deadline, "events so far: {events:?}");
        if let Some(event) = app.next_event(Duration::from_secs(5)).await {
            events
                .entry(event.order_id().to_owned())
                .or_default()
                .push(event.body);
        }
    }
    for (id, event, reason, questions) in cases {
        let terminal = events[id]
            .iter()
            .find(|e| e["event"] == "order.paid" || e["event"] == "order.closed")
            .unwrap_or_else(|| panic!("{id}: {:?}", events[id]));
        assert_eq!(terminal["event"], event, "{id}");
        assert_eq!(terminal["reason"].as_str(), reason, "{id}");
        let order = app.order(id).await.unwrap();
        assert_eq!(
            order.close_reason.map(|reason| reason.as_str()),
            reason,
            "{id}"
        );
        assert!(
            order
                .closed_at
                .is_none_or(|closed| closed >= order.expires_at),
            "{id} closed before its deadline"
        );
        assert_eq!(gateway.asked(id).len(), questions, "{id}");
    }
    // The gateway's payment is a payment like any other.
    let paid = &events["G-PAID"][0];
    assert_eq!(paid["payment_id"], "GW-G-PAID");
    let wrong = events["G-WRONG"]
        .iter()
        .find(|e| e["event"] == "order.payment_mismatch")
        .expect("the gateway's wrong amount is announced");
    assert_eq!(wrong["payment_amount_cents"], 1);
    assert_eq!(events["G-SETTLED"].len(), 1);
    assert!(
        gateway.asked("G-SETTLED").is_empty(),
        "a paid order was asked about"
    );

    let question = &gateway.asked("G-UNPAID")[0];
    let order = app.order("G-UNPAID").await.unwrap();
    assert_eq!(question["amount_cents"], 12900);
    assert_eq!(question["currency"], "CNY");
    assert_eq!(
        question["expires_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        order.expires_at
    );
    assert_eq!(
        question["placed_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        order.placed_at
    );
    for (answer, count) in [("paid", 2.0), ("unpaid", 2.0), ("pending", 4.0)] {
        app.expect_metric(
            &format!(r#"paywait_gateway_requests_total{{answer="{answer}"}}"#),
            count,
        )
        .await;
    }
    // Slow, 500 and garbage: three questions each.
    app.expect_metric(r#"paywait_gateway_requests_total{answer="unusable"}"#, 9.0)
        .await;
    app.expect_metric("paywait_gateway_request_duration_seconds_count", 17.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_gateway_holds_up_neither_payments_nor_other_checks() {
    let (gateway, address) = FakeGateway::start(Duration::from_secs(3)).await;
    let mut app = spawn_with_gateway(
        address,
        &[
            ("PAYWAIT_GATEWAY__TIMEOUT", "20s"),
            ("PAYWAIT_GATEWAY__CONCURRENCY", "1"),
        ],
    )
    .await;
    app.place("SLOW-1").await;
    let asked = Instant::now();
    while gateway.asked("SLOW-1").is_empty() {
        assert!(asked.elapsed() < Duration::from_secs(10), "never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While that question is open: a payment settles another order at once…
    app.place("FAST-1").await;
    app.pay("FAST-1", "PAY-FAST").await;
    let paid = app.expect_event(Duration::from_secs(2)).await;
    assert_eq!(paid.order_id(), "FAST-1");
    assert_eq!(paid.name(), "order.paid");
    // …and another order at its deadline waits for the only place to ask:
    // not asked yet is no answer, so it is neither closed unverified nor
    // asked again, but asked once the first question is answered.
    app.place("SLOW-2").await;
    let first = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!(first.order_id(), "SLOW-1");
    assert_eq!(first.body["reason"], "expired");
    assert_eq!(
        app.order("SLOW-2").await.unwrap().status,
        OrderStatus::Pending,
        "SLOW-2 was decided before it could be asked"
    );
    let second = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!(second.order_id(), "SLOW-2");
    assert_eq!(second.body["reason"], "expired");
    assert_eq!(gateway.asked("SLOW-2").len(), 1);
    app.expect_metric(r#"paywait_gateway_requests_total{answer="unusable"}"#, 0.0)
        .await;
    app.expect_metric(r#"paywait_gateway_requests_total{answer="unpaid"}"#, 2.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deadlines_is_asked_about_in_full_and_closed_expired() {
    let (gateway, address) = FakeGateway::start(Duration::from_millis(50)).await;
    let app = spawn_with_gateway(address, &[("PAYWAIT_CHECKS__MAX_CLOCK_SKEW", "1m")]).await;
    let placed_at = chrono::Utc::now();
    let expires_at = placed_at + chrono::TimeDelta::seconds(4);
    let orders: Vec<String> = (0..300).map(|n| format!("BURST-SLOW-{n:03}")).collect();
    for order_id in &orders {
        app.publish(
            "order.placed",
            json!({"order_id": order_id, "placed_at": placed_at, "expires_at": expires_at})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    for order_id in &orders {
        let order = app
            .wait_for_status(order_id, OrderStatus::Closed, Duration::from_secs(60))
            .await;
        assert_eq!(
            order.close_reason,
            Some(paywait::domain::CloseReason::Expired),
            "{order_id}"
        );
        assert_eq!(gateway.asked(order_id).len(), 1, "{order_id}");
    }
    app.expect_metric(r#"paywait_gateway_requests_total{answer="unusable"}"#, 0.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_timer_could_not_be_armed_is_armed_when_its_check_comes_again() {
    let (gateway, address) = FakeGateway::start(Duration::from_millis(10)).await;
    let mut app = spawn_with_gateway(
        address,
        &[
            ("PAYWAIT_GATEWAY__RETRY", "3s"),
            ("PAYWAIT_GATEWAY__MAX_RETRIES", "1"),
            // The sweeper would find the order overdue only long after the
            // test: the retry must not be left to it.
            ("PAYWAIT_SWEEPER__GRACE", "5m"),
        ],
    )
    .await;
    // No TTL queue: the first check (due within the early margin) comes
    // without one, but the gateway's retry cannot be armed.
    for queue in app.topology.wait_queues() {
        app.channel
            .queue_delete(queue.name.as_str().into(), Default::default())
            .await
            .unwrap();
    }
    app.place("G-PENDING-ARM").await;
    let asked = Instant::now();
    while gateway.asked("G-PENDING-ARM").is_empty() {
        assert!(asked.elapsed() < Duration::from_secs(10), "never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The ask is recorded; its retry's timer comes back unroutable, so the
    // check is not acknowledged and comes again.
    let checks = app
        .topology
        .queue(paywait::domain::Inbox::Checks)
        .to_owned();
    let retries = format!(r#"paywait_message_retries_total{{queue="{checks}"}}"#);
    app.expect_metric_at_least(&retries, 2.0).await;
    paywait::amqp::declare(&app.channel, &app.topology)
        .await
        .unwrap();
    // Armed once the queue is back: asked again after the retry's wait,
    // then closed, unverified, with no more asks than allowed.
    let closed = app.expect_event(Duration::from_secs(20)).await;
    assert_eq!(closed.order_id(), "G-PENDING-ARM");
    assert_eq!(closed.body["reason"], "unverified");
    assert_eq!(gateway.asked("G-PENDING-ARM").len(), 2);
    assert_eq!(
        app.order("G-PENDING-ARM").await.unwrap().status,
        OrderStatus::Closed
    );
}
