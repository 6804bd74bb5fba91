//! What an operator relies on: systemd notifications, JSON logs, the queue
//! and check metrics, replaying parked messages, and the scripts in rabbit/.

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use paywait::domain::{CloseReason, OrderStatus};
use paywait_testkit::{Daemon, Log, Sandbox, TestApp, metric_value};

fn paywait_binary() -> &'static Path {
    env!("CARGO_BIN_EXE_paywait").as_ref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let sandbox = Sandbox::create().await;
    let socket_path =
        std::env::temp_dir().join(format!("paywait-notify-{}.sock", sandbox.database));
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut environment = sandbox.environment("1m");
    environment.extend([
        (
            "NOTIFY_SOCKET".to_owned(),
            socket_path.display().to_string(),
        ),
        ("WATCHDOG_USEC".to_owned(), "200000".to_owned()),
    ]);
    let mut daemon = Daemon::start(paywait_binary(), &environment, Log::Discard);

    let receive = || {
        let mut buffer = [0u8; 4096];
        let length = socket
            .recv(&mut buffer)
            .expect("a notification within 30 s");
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    };
    let mut before_ready = Vec::new();
    let ready = loop {
        let message = receive();
        if message.lines().any(|line| line == "READY=1") {
            break message;
        }
        before_ready.push(message);
    };
    assert!(
        before_ready
            .iter()
            .any(|m| m.contains("STATUS=connecting to RabbitMQ")),
        "{before_ready:?}"
    );
    assert!(
        ready.contains("STATUS=consuming from paywait.intake.placed"),
        "{ready}"
    );
    // READY comes once the topology is declared.
    let client = TestApp::client_for(&sandbox).await;
    assert!(client.queue_exists("paywait.checks").await);

    let mut pings = 0;
    while pings < 2 {
        if receive().lines().any(|line| line == "WATCHDOG=1") {
            pings += 1;
        }
    }
    assert_eq!(daemon.terminate().await.code(), Some(0));
    let mut stopping = false;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    while let Ok(length) = socket.recv(&mut buffer) {
        stopping |= String::from_utf8_lossy(&buffer[..length]).contains("STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1");
    let _ = std::fs::remove_file(socket_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_order_id() {
    let sandbox = Sandbox::create().await;
    let log = std::env::temp_dir().join(format!("paywait-json-{}.log", sandbox.database));
    let mut environment = sandbox.environment("200ms");
    environment.push(("PAYWAIT_LOG__FORMAT".to_owned(), "json".to_owned()));
    let mut daemon = Daemon::start(paywait_binary(), &environment, Log::File(log.clone()));
    daemon.wait_ready(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = TestApp::client_for(&sandbox).await;
    client.place("J-1").await;
    client.publish_inbound("order.placed", b"not json").await;
    let db = paywait::db::Database::new(&sandbox.settings_for("1m").database).unwrap();
    let order_id = paywait::domain::OrderId::parse("J-1").unwrap();
    while db.find(&order_id).await.unwrap().map(|o| o.status) != Some(OrderStatus::Closed) {
        assert!(Instant::now() < deadline, "J-1 never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while metric_value(
        &daemon.get("/metrics").await.1,
        r#"paywait_messages_dead_total{reason="not_json"}"#,
    ) != 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the bad message was never parked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(daemon.terminate().await.code(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let about_j1: Vec<_> = lines.iter().filter(|l| l["order_id"] == "J-1").collect();
    assert!(
        about_j1.iter().any(|l| l["message"] == "order placed")
            && about_j1
                .iter()
                .any(|l| l["message"] == "order closed" && l["reason"] == "expired"),
        "{text}"
    );
    // Each line logged while a message is handled carries its delivery's
    // fields: the queue, the check's number and the order.
    let closed = about_j1
        .iter()
        .find(|l| l["message"] == "order closed")
        .unwrap();
    assert_eq!(closed["queue"], "paywait.checks", "{closed}");
    assert!(closed["attempt"].is_u64(), "{closed}");
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["reason"] == "not_json"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "credentials in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_backlog_per_queue_and_check_durations() {
    let app = TestApp::spawn("30s,30s").await;
    for i in 0..3 {
        app.place(&format!("M-{i}")).await;
    }
    let wait_queue = app.timer_queue_for(Duration::from_secs(30));
    let series = format!(r#"paywait_queue_messages{{queue="{wait_queue}"}}"#);
    // The poller runs every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, text) = app.get("/metrics").await;
        if metric_value(&text, &series) == 3.0 {
            assert!(text.contains(r#"paywait_queue_messages{queue="paywait.dead"}"#));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached 3:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    app.fire_timer("M-0", 1).await;
    app.expect_metric("paywait_check_duration_seconds_count", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_is_replayed_once_what_failed_is_fixed() {
    let app = TestApp::spawn("30s").await;
    // A timer for an order the database does not know yet is parked.
    app.fire_timer("RP-1", 1).await;
    app.expect_metric(
        r#"paywait_messages_dead_total{reason="unknown_order"}"#,
        1.0,
    )
    .await;
    let environment = app.sandbox.environment("30s");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_paywait"))
            .args(args)
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    };

    let listed = run(&["replay", "--dry-run"]);
    assert!(listed.status.success());
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains("paywait.checks") && listing.contains("RP-1"),
        "{listing}"
    );
    assert_eq!(
        app.queue_depth(app.topology.dead_queue()).await,
        1,
        "a dry run keeps it"
    );

    // The fix: the order arrives. The replayed check now finds it.
    app.place("RP-1").await;
    app.wait_for_status("RP-1", OrderStatus::Pending, Duration::from_secs(10))
        .await;
    let replayed = run(&["replay"]);
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(String::from_utf8_lossy(&replayed.stdout).contains("replayed 1 message"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.order("RP-1").await.unwrap().attempts != 1 {
        assert!(Instant::now() < deadline, "the replayed check was not made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.queue_depth(app.topology.dead_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rabbitmqadmin_scripts_inject_and_read_back() {
    let app = TestApp::spawn("20s").await;
    let script = |name: &str, args: &[&str]| {
        let output = Command::new(format!("{}/rabbit/{name}", env!("CARGO_MANIFEST_DIR")))
            .args(args)
            .env("RABBITMQ_VHOST", &app.sandbox.vhost)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    script("watch-events.sh", &["1"]);
    script("place-order.sh", &["OP-1", "12900", "CNY"]);
    let order = app
        .wait_for_status("OP-1", OrderStatus::Pending, Duration::from_secs(10))
        .await;
    assert_eq!(order.amount_cents, Some(12900));
    script("pay-order.sh", &["OP-1", "PAY-OP-1"]);
    app.wait_for_status("OP-1", OrderStatus::Paid, Duration::from_secs(10))
        .await;
    script("place-order.sh", &["OP-2"]);
    app.wait_for_status("OP-2", OrderStatus::Pending, Duration::from_secs(10))
        .await;
    let later = (app.order("OP-2").await.unwrap().expires_at + chrono::TimeDelta::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    script("change-deadline.sh", &["OP-2", &later]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .order("OP-2")
        .await
        .unwrap()
        .expires_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        != later
    {
        assert!(Instant::now() < deadline, "the deadline never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    script("cancel-order.sh", &["OP-2", "customer"]);
    let cancelled = app
        .wait_for_status("OP-2", OrderStatus::Closed, Duration::from_secs(10))
        .await;
    assert_eq!(cancelled.close_reason, Some(CloseReason::Cancelled));
    script("publish-bad-message.sh", &[]);
    app.expect_metric(r#"paywait_messages_dead_total{reason="not_json"}"#, 1.0)
        .await;

    let dead = script("read-dead.sh", &[]);
    assert!(dead.contains("not JSON"), "{dead}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = script("watch-events.sh", &["10"]);
        if events.contains("order.paid") && events.contains("OP-1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order.paid never reached the watch queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    script("watch-events.sh", &["--delete"]);
}
