//! Reminders before the close (`checks.remind_before`): one
//! `order.expiring` per offset and deadline, before the deadline, for a
//! pending order only, and again for a deadline moved later.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use paywait::domain::OrderStatus;
use paywait_testkit::{ReceivedEvent, TestApp, bodies};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

async fn spawn() -> TestApp {
    TestApp::spawn_with("1m", true, &[("PAYWAIT_CHECKS__REMIND_BEFORE", "2s,1s")]).await
}

/// Places `order_id` due `window` from now; returns its deadline.
async fn place_due_in(app: &TestApp, order_id: &str, window: TimeDelta) -> DateTime<Utc> {
    let expires_at = paywait::domain::to_the_microsecond(Utc::now() + window);
    let body = json!({
        "order_id": order_id,
        "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    });
    app.publish("order.placed", body.to_string().as_bytes())
        .await;
    expires_at
}

fn message_id(event: &ReceivedEvent) -> String {
    event
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

fn time(event: &ReceivedEvent, field: &str) -> DateTime<Utc> {
    event.body[field].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_offset_reminds_a_pending_order_once_before_its_deadline() {
    let mut app = spawn().await;
    let due = place_due_in(&app, "R-1", TimeDelta::milliseconds(3_500)).await;
    // Paid at once: never reminded.
    place_due_in(&app, "R-2", TimeDelta::milliseconds(3_500)).await;
    app.wait_for_status("R-2", OrderStatus::Pending, SOON).await;
    app.pay("R-2", "PAY-R-2").await;

    let mut reminders = Vec::new();
    loop {
        let event = app.expect_event(SOON).await;
        match (event.order_id(), event.name()) {
            ("R-2", "order.paid") => {}
            ("R-1", "order.expiring") => reminders.push(event),
            ("R-1", "order.closed") => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let told: Vec<(String, String)> = reminders
        .iter()
        .map(|event| {
            (
                event.body["remind_before"].as_str().unwrap().to_owned(),
                message_id(event),
            )
        })
        .collect();
    let expires_at = reminders[0].body["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(
        told,
        [
            (
                "2s".to_owned(),
                format!("R-1/order.expiring/{expires_at}/2s")
            ),
            (
                "1s".to_owned(),
                format!("R-1/order.expiring/{expires_at}/1s")
            ),
        ]
    );
    for (event, before) in reminders.iter().zip([2, 1]) {
        assert_eq!(time(event, "expires_at"), due);
        assert_eq!(time(event, "occurred_at"), due - TimeDelta::seconds(before));
    }
    app.expect_metric(
        r#"paywait_events_published_total{event="order.expiring"}"#,
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_moved_later_is_reminded_again_under_new_ids() {
    let mut app = spawn().await;
    let first = place_due_in(&app, "R-3", TimeDelta::milliseconds(2_600)).await;
    // The two-second reminder of the first deadline comes.
    let reminded = app.expect_event(SOON).await;
    assert_eq!(reminded.name(), "order.expiring");
    assert_eq!(reminded.body["remind_before"], "2s");
    assert_eq!(time(&reminded, "expires_at"), first);
    let moved = first + TimeDelta::seconds(3);
    app.publish(
        "order.deadline_changed",
        &bodies::deadline_changed("R-3", moved),
    )
    .await;
    let mut after = Vec::new();
    loop {
        let event = app.expect_event(SOON).await;
        if event.name() == "order.closed" {
            break;
        }
        after.push(event);
    }
    // The first deadline's one-second reminder finds the deadline moved
    // (unless it came before the change did); the new deadline gets both,
    // under ids of its own.
    let names: Vec<(String, DateTime<Utc>)> = after
        .iter()
        .filter(|event| event.name() == "order.expiring" && time(event, "expires_at") == moved)
        .map(|event| {
            (
                event.body["remind_before"].as_str().unwrap().to_owned(),
                time(event, "expires_at"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("2s".to_owned(), moved), ("1s".to_owned(), moved)],
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .any(|event| event.name() == "order.deadline_changed")
    );
    let ids: std::collections::BTreeSet<String> = after.iter().map(message_id).collect();
    assert!(!ids.contains(&message_id(&reminded)));
}
