//! The operator's commands beside the daemon: `paywait status` and
//! `paywait watch`, and the figures they read.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use chrono::{SecondsFormat, Utc};
use paywait::domain::{Inbox, OrderStatus};
use paywait_testkit::TestApp;
use serde_json::{Value, json};

/// The sandbox's environment, the daemon's HTTP listener at `http`.
fn environment(app: &TestApp, http: &str) -> Vec<(String, String)> {
    let mut environment = app.sandbox.environment("1s");
    environment.retain(|(key, _)| key != "PAYWAIT_HTTP__LISTEN");
    environment.push(("PAYWAIT_HTTP__LISTEN".to_owned(), http.to_owned()));
    environment
}

fn paywait(environment: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paywait"))
        .args(args)
        .env_clear()
        .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running paywait")
}

fn status_json(environment: &[(String, String)]) -> (Option<i32>, Value, String) {
    let output = paywait(environment, &["status", "--json"]);
    let document = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "status --json is not JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output.status.code(),
        document,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn in_seconds(seconds: i64) -> String {
    (Utc::now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_what_the_database_and_broker_hold_and_exits_by_health() {
    let app = TestApp::spawn("1s").await;
    let live = environment(&app, &app.http.to_string());

    // Paid, closed (expired and cancelled), pending due soon and later, parked.
    app.place("T-paid").await;
    app.pay("T-paid", "PAY-T").await;
    app.place("T-expired").await;
    app.place("T-cancelled").await;
    app.publish(
        "order.cancelled",
        json!({"order_id": "T-cancelled"}).to_string().as_bytes(),
    )
    .await;
    for (order_id, seconds) in [("T-minute", 40), ("T-hour", 1800), ("T-day", 86_400)] {
        app.publish(
            "order.placed",
            json!({"order_id": order_id, "expires_at": in_seconds(seconds)})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    app.publish("order.placed", b"{\"order_id\": 7}").await;
    app.publish("payment.succeeded", b"not json").await;
    app.wait_for_status("T-expired", OrderStatus::Closed, Duration::from_secs(10))
        .await;
    app.wait_until_announced("T-expired").await;
    app.wait_until_announced("T-cancelled").await;
    app.wait_until_announced("T-paid").await;
    app.expect_handled(Inbox::Placed, 7).await;
    app.expect_handled(Inbox::Payments, 2).await;

    let (code, document, stderr) = status_json(&live);
    assert_eq!(code, Some(0), "{document:#}{stderr}");
    assert_eq!(document["healthy"], true, "{document:#}");
    let by_status = app
        .sandbox
        .count_by(
            "SELECT status || coalesce(':' || close_reason, '') AS key, count(*) AS n \
         FROM orders GROUP BY 1",
        )
        .await;
    let table = |key: &str| {
        by_status
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(document["pending"], table("pending"), "{document:#}");
    assert_eq!(document["pending"], 3);
    assert_eq!(document["orders"]["paid"], table("paid"));
    assert_eq!(
        document["orders"]["closed_by_reason"],
        json!({"expired": table("closed:expired"), "cancelled": table("closed:cancelled")})
    );
    assert_eq!(document["orders"]["due_next_minute"], 1, "{document:#}");
    assert_eq!(document["orders"]["due_next_hour"], 2, "{document:#}");
    assert_eq!(document["overdue"], 0);
    assert_eq!(document["events_owed"], 0);
    assert_eq!(
        document["parked"],
        json!({"wrong_type": 1, "not_json": 1}),
        "{document:#}"
    );
    let queue = |name: &str| {
        document["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|queue| queue["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {document:#}"))
    };
    let dead = queue("paywait.dead");
    assert_eq!(dead["messages"], 2, "{dead}");
    let checks = queue("paywait.checks");
    assert_eq!(checks["consumers"], 1, "{checks}");
    assert_eq!(document["daemon"]["ready"], true);
    // The daemon exports the same figures as gauges.
    app.expect_metric("paywait_ready", 1.0).await;
    app.expect_metric("paywait_orders_pending", 3.0).await;
    app.expect_metric("paywait_checks_overdue", 0.0).await;
    app.expect_metric("paywait_events_owed", 0.0).await;

    let text = paywait(&live, &["status"]);
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(shown.starts_with("paywait: healthy\n"), "{shown}");
    assert!(
        shown.contains("pending     3 orders: 1 due in the next minute, 2 in the next hour"),
        "{shown}"
    );
    assert!(shown.contains("parked      2 messages"), "{shown}");

    // No daemon where http.listen points: not healthy, and said so.
    let nobody = environment(&app, &format!("127.0.0.1:{}", paywait_testkit::free_port()));
    let (code, document, stderr) = status_json(&nobody);
    assert_eq!(code, Some(1), "{document:#}");
    assert_eq!(document["healthy"], false);
    assert!(stderr.contains("no daemon answers"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_discarded_messages_leave_the_parked_figures() {
    let app = TestApp::spawn("1m").await;
    let live = environment(&app, &app.http.to_string());
    app.publish("order.placed", b"{\"order_id\": \"bad id!\"}")
        .await;
    app.expect_handled(Inbox::Placed, 1).await;
    let (_, document, _) = status_json(&live);
    assert_eq!(document["parked"], json!({"invalid_order_id": 1}));

    // Replayed, it is parked again: one message, one record.
    let replayed = paywait(&live, &["replay"]);
    assert!(replayed.status.success(), "{replayed:?}");
    app.expect_handled(Inbox::Placed, 2).await;
    let (_, document, _) = status_json(&live);
    assert_eq!(document["parked"], json!({"invalid_order_id": 1}));
    let records = app
        .sandbox
        .count_by("SELECT reason AS key, count(*) AS n FROM parked_messages GROUP BY 1")
        .await;
    assert_eq!(records, [("invalid_order_id".to_owned(), 1)]);

    // A message that is simply wrong is discarded, record and all.
    let discarded = paywait(&live, &["replay", "--discard"]);
    assert!(
        String::from_utf8_lossy(&discarded.stdout).contains("discarded 1 message(s)"),
        "{discarded:?}"
    );
    let (code, document, _) = status_json(&live);
    assert_eq!(document["parked"], json!({}));
    assert_eq!(code, Some(0));
    assert_eq!(app.queue_depth("paywait.dead").await, 0);
    let both = paywait(&live, &["replay", "--discard", "--dry-run"]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

/// `paywait watch` as a child, its lines sent on as they come.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watcher {
    fn start(environment: &[(String, String)], args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paywait"))
            .arg("watch")
            .args(args)
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.starts_with("watching paywait.events"), "{first}");
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let (sender, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(15))
            .expect("paywait watch printed nothing")
    }

    /// Interrupts it, as Ctrl-C does; its exit status.
    fn interrupt(mut self) -> Option<i32> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap().code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_event_as_it_is_published_until_interrupted() {
    let app = TestApp::spawn("1s").await;
    let live = environment(&app, &app.http.to_string());
    let watcher = Watcher::start(&live, &[]);
    let bodies = Watcher::start(&live, &["--json"]);

    app.place("W-1").await;
    app.pay("W-1", "PAY-W1").await;
    let line = watcher.next_line();
    assert!(line.contains(" order.paid "), "{line}");
    assert!(line.contains(" W-1 payment=PAY-W1"), "{line}");
    let body: Value = serde_json::from_str(&bodies.next_line()).unwrap();
    assert_eq!(body["event"], "order.paid");
    assert_eq!(body["order_id"], "W-1");

    app.place("W-2").await;
    let line = watcher.next_line();
    assert!(line.contains(" order.closed "), "{line}");
    assert!(line.ends_with(" W-2 reason=expired"), "{line}");

    assert_eq!(watcher.interrupt(), Some(0));
    assert_eq!(bodies.interrupt(), Some(0));
}
