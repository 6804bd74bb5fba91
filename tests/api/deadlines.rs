//! Any deadline, on time: an order's own deadline, timers of any length
//! through the ladder of TTL queues, timers that arrive early and wait out
//! the rest in process — and never a close before the deadline.

use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta, Utc};
use paywait::domain::{Inbox, OrderStatus};
use paywait_testkit::{Daemon, Log, Sandbox, TestApp};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

fn rfc3339(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Publishes an `order.placed` that gives its own deadline.
async fn place_until(
    app: &TestApp,
    order_id: &str,
    placed_at: chrono::DateTime<Utc>,
    expires_at: chrono::DateTime<Utc>,
) {
    let body = json!({
        "order_id": order_id,
        "placed_at": rfc3339(placed_at),
        "expires_at": rfc3339(expires_at),
    });
    app.publish("order.placed", body.to_string().as_bytes())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_its_own_deadline_closes_then_not_at_the_schedules() {
    let mut app = TestApp::spawn("1m").await;
    let placed_at = Utc::now();
    let expires_at = placed_at + TimeDelta::milliseconds(1_500);
    place_until(&app, "D-1", placed_at, expires_at).await;
    let closed = app.expect_event(SOON).await;
    assert_eq!((closed.order_id(), closed.name()), ("D-1", "order.closed"));
    assert_eq!(closed.body["reason"], "expired");
    let order = app.order("D-1").await.unwrap();
    assert_eq!(
        order.expires_at.timestamp_millis(),
        expires_at.timestamp_millis()
    );
    let closed_at = order.closed_at.unwrap();
    assert!(closed_at >= order.expires_at, "closed before its deadline");
    assert!(
        closed_at - order.expires_at < TimeDelta::seconds(5),
        "closed {} after its deadline",
        closed_at - order.expires_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_deadline_is_checked_on_schedule_through_the_timers() {
    let app = TestApp::spawn("1m").await;
    let placed_at = Utc::now();
    let expires_at = placed_at + TimeDelta::days(3);
    place_until(&app, "D-3D", placed_at, expires_at).await;
    app.expect_handled(Inbox::Placed, 1).await;
    let order = app.order("D-3D").await.unwrap();
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(
        order.expires_at.timestamp_millis(),
        expires_at.timestamp_millis()
    );
    // The first check: a minute after it was placed, as the schedule says.
    assert_eq!(
        order.next_check_at.unwrap().timestamp_millis(),
        (order.placed_at + TimeDelta::minutes(1)).timestamp_millis()
    );
    // Its timer waits in the schedule's queue and says when it is due.
    let queue = app.timer_queue_for(Duration::from_secs(60));
    let timers = app.take_messages(&queue, 1, SOON).await;
    assert_eq!(timers.len(), 1, "no timer in {queue}");
    assert_eq!(
        timers[0].header("x-due-at"),
        Some(format!(
            "LongLongInt({})",
            order.next_check_at.unwrap().timestamp_millis()
        ))
    );
    assert_eq!(
        timers[0].header("x-attempt").as_deref(),
        Some("LongLongInt(1)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_already_past_closes_at_once_and_an_impossible_one_is_refused() {
    let mut app = TestApp::spawn("1m").await;
    let now = Utc::now();
    app.publish(
        "order.placed",
        json!({
            "order_id": "D-PAST",
            "placed_at": rfc3339(now - TimeDelta::hours(2)),
            "expires_at": rfc3339(now - TimeDelta::hours(1)),
        })
        .to_string()
        .as_bytes(),
    )
    .await;
    let closed = app.expect_event(SOON).await;
    assert_eq!(
        (closed.order_id(), closed.name()),
        ("D-PAST", "order.closed")
    );

    for (id, placed_at, expires_at, says) in [
        ("D-FAR", now, now + TimeDelta::days(31), "max_deadline"),
        ("D-BACK", now, now - TimeDelta::seconds(1), "not after"),
    ] {
        place_until(&app, id, placed_at, expires_at).await;
        let parked = app.take_parked(1).await;
        let error = parked[0].header("x-paywait-error").unwrap();
        assert!(
            error.contains("expires_at") && error.contains(says),
            "{error}"
        );
        assert!(app.order(id).await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_at_far_ahead_of_the_clock_is_taken_as_now() {
    let app = TestApp::spawn("1m").await;
    app.publish(
        "order.placed",
        br#"{"order_id":"D-9999","placed_at":"9999-12-31T23:59:59Z"}"#,
    )
    .await;
    let order = app
        .wait_for_status("D-9999", OrderStatus::Pending, SOON)
        .await;
    assert!((Utc::now() - order.placed_at).abs() < TimeDelta::seconds(10));
    assert_eq!(order.expires_at - order.placed_at, TimeDelta::minutes(1));
    app.expect_metric("paywait_clock_skew_total", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_deadline_is_reached_through_the_ladder() {
    let mut app = TestApp::spawn("1h").await;
    let expires_at = Utc::now() + TimeDelta::milliseconds(1_700);
    app.publish(
        "order.placed",
        json!({"order_id": "D-ODD", "expires_at": rfc3339(expires_at)})
            .to_string()
            .as_bytes(),
    )
    .await;
    let closed = app.expect_event(SOON).await;
    assert_eq!(
        (closed.order_id(), closed.name()),
        ("D-ODD", "order.closed")
    );
    let order = app.order("D-ODD").await.unwrap();
    assert!(order.closed_at.unwrap() >= order.expires_at);
    // 1.7 s is no wait of the schedule: it took hops through the ladder.
    app.expect_metric_at_least("paywait_timer_hops_total", 1.0)
        .await;
}

/// Timers arrive early by design. One for a check before the deadline is
/// decided at once, as of its due time; one for the check that may close
/// the order waits in process until the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_timer_waits_only_when_its_check_may_close() {
    // Timers come up to 30 s early: everything below arrives early.
    let mut app = TestApp::spawn_with("1h", true, &[("PAYWAIT_CHECKS__EARLY_MARGIN", "30s")]).await;
    let expires_at = Utc::now() + TimeDelta::seconds(12);
    app.publish(
        "order.placed",
        json!({"order_id": "D-EARLY", "expires_at": rfc3339(expires_at)})
            .to_string()
            .as_bytes(),
    )
    .await;
    app.expect_handled(Inbox::Placed, 1).await;

    // A timer for a check 8 s ahead, before the deadline.
    let due = Utc::now() + TimeDelta::seconds(8);
    let mut headers = lapin::types::FieldTable::default();
    headers.insert("x-attempt".into(), lapin::types::AMQPValue::LongInt(7));
    headers.insert(
        "x-due-at".into(),
        lapin::types::AMQPValue::LongLongInt(due.timestamp_millis()),
    );
    app.publish_to(
        "",
        app.topology.queue(Inbox::Checks),
        br#"{"order_id":"D-EARLY"}"#,
        lapin::BasicProperties::default().with_headers(headers),
    )
    .await;
    app.expect_handled(Inbox::Checks, 1).await;
    let checked = app.order("D-EARLY").await.unwrap();
    assert!(Utc::now() < due, "the early check waited for its due time");
    assert_eq!(checked.status, OrderStatus::Pending);
    assert_eq!(checked.attempts, 7);
    // Its successor is the check at the deadline.
    assert_eq!(
        checked.next_check_at.unwrap().timestamp_millis(),
        expires_at.timestamp_millis()
    );

    // The check at the deadline arrived early too, and waited.
    let closed = app.expect_event(Duration::from_secs(30)).await;
    assert_eq!(
        (closed.order_id(), closed.name()),
        ("D-EARLY", "order.closed")
    );
    let order = app.order("D-EARLY").await.unwrap();
    assert!(order.closed_at.unwrap() >= order.expires_at);
    assert!(Utc::now() >= expires_at);
}

/// The daemon dies while a timer waits out its last moments: the broker
/// delivers it again, and it waits again; the order still closes at, and
/// not before, its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_timer_waits_loses_nothing() {
    let sandbox = Sandbox::create().await;
    let mut environment = sandbox.environment("1h");
    // Timers come 3 s early, so one is surely waiting when the daemon dies.
    environment.push(("PAYWAIT_CHECKS__EARLY_MARGIN".into(), "3s".into()));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_paywait"));
    let mut daemon = Daemon::start(binary, &environment, Log::Discard);
    daemon.wait_ready(SOON).await;
    let client = TestApp::client_for(&sandbox).await;
    let expires_at = Utc::now() + TimeDelta::seconds(5);
    client
        .publish_inbound(
            "order.placed",
            json!({"order_id": "D-CRASH", "expires_at": rfc3339(expires_at)})
                .to_string()
                .as_bytes(),
        )
        .await;
    let db = paywait::db::Database::new(&sandbox.settings_for("1h").database).unwrap();
    let id = paywait::domain::OrderId::parse("D-CRASH").unwrap();
    // Wait until the timer is held in process: it arrives about 3 s early.
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let (_, metrics) = daemon.get("/metrics").await;
        let arrived =
            paywait_testkit::metric_value(&metrics, "paywait_timer_arrival_seconds_count");
        if arrived >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timer never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Utc::now() < expires_at - TimeDelta::milliseconds(500));
    daemon.kill();
    assert_eq!(
        db.find(&id).await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
    let mut daemon = Daemon::start(binary, &environment, Log::Discard);
    daemon.wait_ready(SOON).await;
    let deadline = std::time::Instant::now() + SOON;
    let order = loop {
        let order = db.find(&id).await.unwrap().unwrap();
        if order.status == OrderStatus::Closed {
            break order;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never closed: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let closed_at = order.closed_at.unwrap();
    assert!(closed_at >= order.expires_at, "closed before its deadline");
    assert!(closed_at - order.expires_at < TimeDelta::seconds(2));
    daemon.terminate().await;
}
