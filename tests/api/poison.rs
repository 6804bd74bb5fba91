//! Values PostgreSQL would refuse are refused first, by the parser, each with
//! its own reason; should the database still refuse a message's data, that
//! message alone is parked and the messages beside it go on.

use std::time::{Duration, Instant};

use lapin::BasicProperties;
use paywait::domain::{CloseReason, OrderStatus};
use paywait_testkit::{ORDERS_EXCHANGE, TestApp};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

/// How long the test waits for a third message in the dead queue, to see
/// that there is none.
const NO_MORE: Duration = Duration::from_secs(2);

async fn place(app: &TestApp, order_id: &str) {
    app.publish(
        "order.placed",
        json!({"order_id": order_id}).to_string().as_bytes(),
    )
    .await;
}

/// Parked messages by the reason counted for them.
async fn expect_parked(app: &TestApp, reasons: &[(&str, f64)]) {
    for (reason, count) in reasons {
        let series = format!(r#"paywait_messages_dead_total{{reason="{reason}"}}"#);
        app.expect_metric(&series, *count).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_values_are_parked_at_once_while_the_orders_beside_them_close_on_time() {
    let app = TestApp::spawn("2s").await;
    let good: Vec<String> = (0..30).map(|n| format!("G-{n:02}")).collect();
    let started = Instant::now();
    for (n, order_id) in good.iter().enumerate() {
        place(&app, order_id).await;
        if n == 10 {
            // With an expiration of its own, which the parked copy must
            // not keep.
            app.publish_to(
                ORDERS_EXCHANGE,
                "order.placed",
                br#"{"order_id":"P-WINDOW","placed_at":"2026-12-07T08:00:00Z","expires_at":"2026-12-07T08:00:00.0000001Z"}"#,
                BasicProperties::default().with_expiration("600000".into()),
            )
            .await;
        }
        if n == 20 {
            app.publish(
                "order.cancelled",
                br#"{"order_id":"NOPE-1","reason":"a\u0000b"}"#,
            )
            .await;
        }
    }
    let published = started.elapsed();
    let parked = app.take_messages(app.topology.dead_queue(), 2, SOON).await;
    let parked_within = started.elapsed();
    assert_eq!(parked.len(), 2, "the two poison messages");
    println!(
        "both poison messages parked {parked_within:?} after the first message, \
         {:?} after the last was published",
        parked_within.saturating_sub(published)
    );
    assert!(
        app.take_messages(app.topology.dead_queue(), 1, NO_MORE)
            .await
            .is_empty(),
        "a good message was parked"
    );
    let error_of = |order_id: &str| {
        parked
            .iter()
            .find(|m| String::from_utf8_lossy(&m.body).contains(order_id))
            .and_then(|m| m.header("x-paywait-error"))
            .unwrap_or_else(|| panic!("{order_id} parked with its error"))
    };
    assert!(error_of("P-WINDOW").contains("microsecond"));
    assert!(parked.iter().all(|m| m.properties.expiration().is_none()));
    assert!(error_of("NOPE-1").contains("NUL"));
    expect_parked(&app, &[("deadline_too_close", 1.0), ("nul_character", 1.0)]).await;
    // Refused messages leave nothing behind.
    assert!(app.order("P-WINDOW").await.is_none());
    assert_eq!(
        app.sandbox
            .count_by("SELECT order_id AS key, count(*) AS n FROM cancellations GROUP BY 1")
            .await,
        []
    );

    for order_id in &good {
        let order = app
            .wait_for_status(order_id, OrderStatus::Closed, SOON)
            .await;
        assert_eq!(order.close_reason, Some(CloseReason::Expired));
        let lateness = order.closed_at.unwrap() - order.expires_at;
        assert!(
            lateness >= chrono::TimeDelta::zero() && lateness < chrono::TimeDelta::seconds(3),
            "{order_id} closed {lateness} after its deadline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_the_database_refuses_parks_its_message_alone() {
    let app = TestApp::spawn("30s").await;
    // A database stricter than the parser: a constraint (SQLSTATE class
    // 23) and a narrower column (class 22) that paywait does not know of.
    app.sandbox
        .execute(&[
            "ALTER TABLE orders ADD CONSTRAINT refuse_poison CHECK (order_id NOT LIKE 'POISON%')",
            "ALTER TABLE cancellations ALTER COLUMN reason TYPE varchar(8)",
        ])
        .await;
    let good: Vec<String> = (0..40).map(|n| format!("B-{n:02}")).collect();
    for (n, order_id) in good.iter().enumerate() {
        place(&app, order_id).await;
        if n == 20 {
            place(&app, "POISON-1").await;
        }
    }
    for (order_id, reason) in [("C-OK", "short"), ("C-LONG", "far too long for eight")] {
        app.publish(
            "order.cancelled",
            json!({"order_id": order_id, "reason": reason})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    let parked = app
        .take_messages(app.topology.dead_queue(), 3, NO_MORE * 3)
        .await;
    assert_eq!(parked.len(), 2, "the two refused messages, and only those");
    for (order_id, says) in [("POISON-1", "refuse_poison"), ("C-LONG", "too long")] {
        let message = parked
            .iter()
            .find(|m| String::from_utf8_lossy(&m.body).contains(order_id))
            .unwrap_or_else(|| panic!("{order_id} parked"));
        let error = message.header("x-paywait-error").unwrap();
        assert!(
            error.contains("PostgreSQL refused") && error.contains(says),
            "{order_id}: {error}"
        );
    }
    expect_parked(&app, &[("refused_by_database", 2.0)]).await;
    for order_id in &good {
        app.wait_for_status(order_id, OrderStatus::Pending, SOON)
            .await;
    }
    assert_eq!(
        app.sandbox
            .count_by("SELECT order_id AS key, count(*) AS n FROM cancellations GROUP BY 1")
            .await,
        [("C-OK".to_owned(), 1)]
    );
    assert_eq!(app.get("/readyz").await.0, 200);
}
