//! Deadlines that move: `order.deadline_changed` later, earlier and into
//! the past, racing other messages, before its order, and what it leaves
//! alone — each announced under an id of its own deadline.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use paywait::domain::{Inbox, OrderStatus};
use paywait_testkit::{ReceivedEvent, TestApp, bodies};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

/// Places `order_id`, due `window` from now; returns its deadline.
async fn place_due_in(app: &TestApp, order_id: &str, window: TimeDelta) -> DateTime<Utc> {
    let placed_at = Utc::now();
    let expires_at = placed_at + window;
    let body = json!({
        "order_id": order_id,
        "placed_at": placed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    });
    app.publish("order.placed", body.to_string().as_bytes())
        .await;
    app.wait_for_status(order_id, OrderStatus::Pending, SOON)
        .await;
    paywait::domain::to_the_microsecond(expires_at)
}

async fn change(app: &TestApp, order_id: &str, expires_at: DateTime<Utc>) {
    app.publish(
        "order.deadline_changed",
        &bodies::deadline_changed(order_id, expires_at),
    )
    .await;
}

fn message_id(event: &ReceivedEvent) -> String {
    event
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

fn changes(outcome: &str) -> String {
    format!(r#"paywait_deadline_changes_total{{outcome="{outcome}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_moved_later_holds_the_close_until_then_and_is_announced() {
    let mut app = TestApp::spawn("1m").await;
    let first = place_due_in(&app, "M-1", TimeDelta::milliseconds(1_500)).await;
    let moved = first + TimeDelta::milliseconds(2_000);
    change(&app, "M-1", moved).await;

    let announced = app.expect_event(SOON).await;
    assert_eq!(announced.name(), "order.deadline_changed");
    assert_eq!(announced.body["status"], "pending");
    let expires_at = announced.body["expires_at"].as_str().unwrap();
    assert_eq!(expires_at.parse::<DateTime<Utc>>().unwrap(), moved);
    assert_eq!(
        message_id(&announced),
        format!("M-1/order.deadline_changed/{expires_at}")
    );
    assert_eq!(
        announced.properties.kind().as_ref().map(|k| k.as_str()),
        Some("order.deadline_changed")
    );

    // The timer armed for the first deadline finds nothing to do.
    let closed = app.expect_event(SOON).await;
    assert_eq!((closed.order_id(), closed.name()), ("M-1", "order.closed"));
    let order = app.order("M-1").await.unwrap();
    assert_eq!(order.expires_at, moved);
    assert!(
        order.closed_at.unwrap() >= moved,
        "closed at {:?}, before its new deadline {moved}",
        order.closed_at
    );
    assert_eq!(closed.body["expires_at"], announced.body["expires_at"]);
    app.expect_metric(&changes("applied"), 1.0).await;

    // The order's story tells the change and its event.
    let (status, text) = app.get("/api/orders/M-1").await;
    assert_eq!(status, 200);
    let story: serde_json::Value = serde_json::from_str(&text).unwrap();
    let told = &story["deadline_changes"];
    assert_eq!(told.as_array().map(Vec::len), Some(1), "{story}");
    assert_eq!(
        told[0]["expires_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        moved
    );
    let ids: Vec<&str> = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["message_id"].as_str())
        .collect();
    assert!(ids.contains(&message_id(&announced).as_str()), "{ids:?}");
    let (_, page) = app.get("/orders/M-1").await;
    assert!(page.contains("Deadline changes"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_moved_earlier_closes_then_and_one_already_past_closes_at_once() {
    let mut app = TestApp::spawn("1m").await;
    let first = place_due_in(&app, "M-2", TimeDelta::minutes(10)).await;
    let sooner = Utc::now() + TimeDelta::milliseconds(1_000);
    change(&app, "M-2", sooner).await;
    let announced = app.expect_event(SOON).await;
    assert_eq!(announced.name(), "order.deadline_changed");
    let closed = app.expect_event(SOON).await;
    assert_eq!((closed.order_id(), closed.name()), ("M-2", "order.closed"));
    let order = app.order("M-2").await.unwrap();
    let sooner = paywait::domain::to_the_microsecond(sooner);
    assert_eq!(order.expires_at, sooner);
    let closed_at = order.closed_at.unwrap();
    assert!(closed_at >= sooner, "closed before its deadline");
    assert!(
        closed_at - sooner < TimeDelta::seconds(3),
        "closed {} after its new deadline (the old one was {first})",
        closed_at - sooner
    );

    place_due_in(&app, "M-3", TimeDelta::minutes(10)).await;
    let past = Utc::now() - TimeDelta::milliseconds(1);
    change(&app, "M-3", past).await;
    let names: Vec<String> = [app.expect_event(SOON).await, app.expect_event(SOON).await]
        .iter()
        .map(|event| format!("{} {}", event.order_id(), event.name()))
        .collect();
    assert_eq!(names, ["M-3 order.deadline_changed", "M-3 order.closed"]);
    assert_eq!(app.order("M-3").await.unwrap().status, OrderStatus::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_change_leaves_alone_and_what_it_refuses() {
    let mut app = TestApp::spawn("1m").await;
    let due = place_due_in(&app, "M-4", TimeDelta::minutes(10)).await;
    // The same deadline again: nothing.
    change(&app, "M-4", due).await;
    app.expect_metric(&changes("same"), 1.0).await;
    // Paid: nothing, and not parked.
    app.pay("M-4", "PAY-M4").await;
    assert_eq!(app.expect_event(SOON).await.name(), "order.paid");
    change(&app, "M-4", due + TimeDelta::minutes(5)).await;
    app.expect_metric(&changes("settled"), 1.0).await;
    // Further than checks.max_deadline from placed_at: parked, saying why.
    place_due_in(&app, "M-5", TimeDelta::minutes(10)).await;
    change(&app, "M-5", Utc::now() + TimeDelta::days(31)).await;
    let parked = app.take_parked(1).await;
    let error = parked[0].header("x-paywait-error").unwrap();
    assert!(
        error.contains("expires_at") && error.contains("max_deadline"),
        "{error}"
    );
    // Without a deadline: parked as such.
    app.publish("order.deadline_changed", br#"{"order_id":"M-5"}"#)
        .await;
    let parked = app.take_parked(1).await;
    assert!(
        parked[0]
            .header("x-paywait-error")
            .unwrap()
            .contains("expires_at")
    );
    assert!(app.next_event(Duration::from_millis(500)).await.is_none());
    assert_eq!(app.order("M-4").await.unwrap().expires_at, due);
    assert_eq!(app.metric(&changes("applied")).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_before_its_order_applies_when_the_order_arrives() {
    let mut app = TestApp::spawn("1m").await;
    let moved = Utc::now() + TimeDelta::milliseconds(1_500);
    change(&app, "M-6", moved).await;
    app.expect_metric(&changes("waiting"), 1.0).await;
    // Placed with the schedule's deadline, a minute away.
    app.place("M-6").await;
    let announced = app.expect_event(SOON).await;
    assert_eq!(
        (announced.order_id(), announced.name()),
        ("M-6", "order.deadline_changed")
    );
    let closed = app.expect_event(SOON).await;
    assert_eq!((closed.order_id(), closed.name()), ("M-6", "order.closed"));
    let order = app.order("M-6").await.unwrap();
    assert_eq!(order.expires_at, paywait::domain::to_the_microsecond(moved));
    assert!(order.closed_at.unwrap() >= order.expires_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_apply_in_the_order_they_were_delivered() {
    let mut app = TestApp::spawn("1m").await;
    let due = place_due_in(&app, "M-7", TimeDelta::minutes(10)).await;
    let last = due + TimeDelta::minutes(30);
    for minutes in 1..=20 {
        change(&app, "M-7", due + TimeDelta::seconds(minutes)).await;
    }
    change(&app, "M-7", last).await;
    app.expect_handled(Inbox::Payments, 21).await;
    assert_eq!(app.order("M-7").await.unwrap().expires_at, last);
    let applied = app.metric(&changes("applied")).await;
    let superseded = app.metric(&changes("superseded")).await;
    assert_eq!(applied + superseded, 21.0);
    // Every applied change was announced, the last one among them.
    let mut announced = Vec::new();
    for _ in 0..applied as usize {
        let event = app.expect_event(SOON).await;
        assert_eq!(event.name(), "order.deadline_changed");
        announced.push(
            event.body["expires_at"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
        );
    }
    assert!(announced.contains(&last), "{announced:?}");
    assert!(app.next_event(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_change_is_replayed_as_a_change() {
    use lapin::{
        BasicProperties,
        types::{AMQPValue, FieldTable, LongString},
    };
    let mut app = TestApp::spawn("1m").await;
    let due = place_due_in(&app, "M-9", TimeDelta::minutes(10)).await;
    let later = due + TimeDelta::minutes(5);
    // As paywait parks it: replayed to its queue, under the queue's name,
    // it is read by the routing key it first came under.
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("x-paywait-queue", app.topology.queue(Inbox::Payments)),
        ("x-paywait-routing-key", "order.deadline_changed"),
        ("x-paywait-error", "PostgreSQL refused the message's data"),
        ("x-paywait-parked-id", "parked-M-9"),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    let dead = app.topology.dead_queue().to_owned();
    app.publish_to(
        "",
        &dead,
        &bodies::deadline_changed("M-9", later),
        BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2),
    )
    .await;
    let replayed = std::process::Command::new(env!("CARGO_BIN_EXE_paywait"))
        .arg("replay")
        .env_clear()
        .envs(app.sandbox.environment("1m"))
        .output()
        .unwrap();
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let announced = app.expect_event(SOON).await;
    assert_eq!(announced.name(), "order.deadline_changed");
    assert_eq!(app.order("M-9").await.unwrap().expires_at, later);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_deadline_that_reached_the_broker_before_the_close_keeps_the_order_open() {
    let mut app = TestApp::spawn("1m").await;
    let first = place_due_in(&app, "R-1", TimeDelta::seconds(5)).await;
    let (connection, holder) = crate::on_time::hold_payments(&mut app).await;
    // The change reaches the broker before the deadline, but the payments
    // queue, which it shares, is not being read.
    assert!(Utc::now() < first, "the test took too long to set up");
    let moved = first + TimeDelta::seconds(3);
    change(&app, "R-1", moved).await;
    let wait = (first - Utc::now() + TimeDelta::seconds(1))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    // The check at the first deadline waits for the queue.
    assert_eq!(app.order("R-1").await.unwrap().status, OrderStatus::Pending);
    drop(holder);
    connection.close(200, "done".into()).await.unwrap();

    let announced = app.expect_event(SOON).await;
    assert_eq!(announced.name(), "order.deadline_changed");
    let closed = app.expect_event(SOON).await;
    assert_eq!((closed.order_id(), closed.name()), ("R-1", "order.closed"));
    let order = app.order("R-1").await.unwrap();
    assert!(
        order.closed_at.unwrap() >= moved,
        "closed at {:?}, before its new deadline {moved}",
        order.closed_at
    );
}
