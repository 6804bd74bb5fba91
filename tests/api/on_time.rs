//! On time is when the payment reached the broker: orders paid before their
//! deadlines while paywait was killed, or was behind on a burst of
//! payments, are paid, however the check queue and the payments queue
//! drain side by side.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use paywait::{
    db::Database,
    domain::{Inbox, OrderId, OrderStatus},
};
use paywait_testkit::{Client, Daemon, Log, Sandbox, TestApp, bodies, metric_value};
use serde_json::json;

const ORDERS: usize = 600;
/// Orders in the burst test, each paid by one payment of the burst.
const BURST: usize = 20_000;

/// Places the orders, kills the daemon (SIGKILL) once they are stored, pays
/// every other one while it is down (each before its deadline, and half of
/// those are then cancelled), lets every deadline pass, and starts it again
/// — with a second daemon beside it when `with_sibling`. Checks that every
/// paid order is paid and every other one closed, and that no payment was
/// taken for one after the close.
async fn paid_while_down(with_sibling: bool) {
    // The deadline: long enough to place and pay every order before it.
    let sandbox = Sandbox::create().await;
    let environment = sandbox.environment("20s");
    let start = || {
        Daemon::start(
            env!("CARGO_BIN_EXE_paywait").as_ref(),
            &environment,
            Log::Discard,
        )
    };
    let mut daemon = start();
    daemon.wait_ready(Duration::from_secs(60)).await;
    let client = Client::connect(&sandbox.amqp_url()).await;
    let db = Database::new(&sandbox.settings_for("20s").database).unwrap();
    let order = |i: usize| format!("OT-{i}");
    client
        .publish_inbound_burst(
            "order.placed",
            (0..ORDERS).map(|i| json!({"order_id": order(i)}).to_string()),
        )
        .await;
    let placed = Instant::now();
    let stored_by = placed + Duration::from_secs(30);
    while count(
        &sandbox,
        "SELECT 'orders' AS key, count(*) AS n FROM orders",
    )
    .await
        < ORDERS as i64
    {
        assert!(Instant::now() < stored_by, "the orders were not all stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill();
    for i in (0..ORDERS).step_by(2) {
        client.pay(&order(i), &format!("PAY-{i}")).await;
        // Paid, then cancelled: the cancellation of a paid order changes
        // nothing, whichever queue paywait reads first.
        if i % 4 == 0 {
            let cancelled = json!({"order_id": order(i)}).to_string();
            client
                .publish_inbound("order.cancelled", cancelled.as_bytes())
                .await;
        }
    }
    assert!(
        placed.elapsed() < Duration::from_secs(15),
        "the payments took too long to publish: they must reach the broker before the deadlines"
    );
    // Every timer comes due while nothing consumes.
    tokio::time::sleep_until((placed + Duration::from_secs(22)).into()).await;
    let mut daemon = start();
    let sibling = with_sibling.then(start);

    let settled_by = Instant::now() + Duration::from_secs(90);
    for i in 0..ORDERS {
        let id = OrderId::parse(order(i)).unwrap();
        let found = loop {
            let found = db.find(&id).await.unwrap().expect("stored");
            if found.status != OrderStatus::Pending && found.event_published_at.is_some() {
                break found;
            }
            assert!(
                Instant::now() < settled_by,
                "{} did not end in time: {found:?}",
                order(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let expected = if i % 2 == 0 {
            OrderStatus::Paid
        } else {
            OrderStatus::Closed
        };
        assert_eq!(found.status, expected, "{found:?}");
    }
    let after_close = sandbox
        .count_by(
            "SELECT coalesce(outcome, 'undecided') AS key, count(*) AS n \
             FROM payments GROUP BY 1",
        )
        .await;
    assert!(
        after_close
            .iter()
            .all(|(outcome, _)| outcome != "after_close"),
        "payments that reached the broker in time were taken as after the close: {after_close:?}"
    );
    let mut waited = 0.0;
    for running in std::iter::once(&daemon).chain(sibling.as_ref()) {
        let (_, metrics) = running.get("/metrics").await;
        waited += metric_value(&metrics, "paywait_close_wait_seconds_count");
    }
    assert!(waited > 0.0, "no close waited for the payments");
    daemon.terminate().await;
    if let Some(mut sibling) = sibling {
        sibling.terminate().await;
    }
}

async fn stored(app: &TestApp) -> i64 {
    count(
        &app.sandbox,
        "SELECT 'orders' AS key, count(*) AS n FROM orders",
    )
    .await
}

pub(crate) async fn count(sandbox: &Sandbox, query: &str) -> i64 {
    sandbox.count_by(query).await.first().map_or(0, |(_, n)| *n)
}

/// 20,000 orders share one deadline; 20,000 payments for them reach the
/// broker in one burst that ends just before it, while the daemon runs, so
/// that the daemon is still working through the payments when the orders
/// come due. Every order whose payment the broker confirmed before the
/// deadline must end paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_payments_just_before_the_deadline_pays_every_order_it_reached_in_time() {
    let app = TestApp::spawn_with("10m", false, &[]).await;
    let order = |i: usize| format!("BU-{i}");
    let began = Instant::now();
    let deadline = Utc::now() + chrono::Duration::seconds(75);
    let expires_at = deadline.to_rfc3339_opts(SecondsFormat::Millis, true);
    app.client
        .publish_inbound_burst(
            "order.placed",
            (0..BURST).map(|i| json!({"order_id": order(i), "expires_at": expires_at}).to_string()),
        )
        .await;
    let placing = began.elapsed();
    let stored_by = Instant::now() + Duration::from_secs(50);
    while stored(&app).await < BURST as i64 {
        assert!(Instant::now() < stored_by, "the orders were not all stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The burst takes about as long as placing did: it starts so as to end
    // a second before the deadline.
    let lead = chrono::Duration::from_std(placing + Duration::from_secs(1)).unwrap();
    let start = deadline - lead;
    assert!(
        Utc::now() < start,
        "placing and storing took too long ({placing:?} to place) to time the burst"
    );
    tokio::time::sleep((start - Utc::now()).to_std().unwrap()).await;
    let Backlog {
        in_time,
        handled_at_deadline,
    } = pay_in_one_burst_before(&app, BURST, &order, deadline).await;
    eprintln!(
        "burst: placed in {placing:?}; {} of {BURST} payments confirmed before the deadline, \
         {handled_at_deadline} handled by then",
        in_time.len()
    );
    let settled_by = Instant::now() + Duration::from_secs(240);
    while count(
        &app.sandbox,
        "SELECT 'pending' AS key, count(*) AS n FROM orders WHERE status = 'pending'",
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < settled_by,
            "orders still pending long after their deadline"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let not_paid: std::collections::HashSet<String> = app
        .sandbox
        .count_by("SELECT order_id AS key, 1::bigint AS n FROM orders WHERE status <> 'paid'")
        .await
        .into_iter()
        .map(|(order_id, _)| order_id)
        .collect();
    let wrongly_closed: Vec<String> = in_time
        .iter()
        .map(|i| order(*i))
        .filter(|order_id| not_paid.contains(order_id))
        .collect();
    assert!(
        wrongly_closed.is_empty(),
        "{} orders closed although their payment reached the broker before the deadline, \
         with {handled_at_deadline} of {} handled at the deadline: {:?}",
        wrongly_closed.len(),
        in_time.len(),
        &wrongly_closed[..wrongly_closed.len().min(10)]
    );
    // Closes that waited longer than the confirm timeout gave up and were
    // tried again; by then their orders were paid, so none may have been
    // counted as a finished wait.
    let waits = app.metric("paywait_close_wait_seconds_count").await;
    let waited = app.metric("paywait_close_wait_seconds_sum").await;
    eprintln!(
        "burst: all paid; {waits} closes finished waiting for the payments ahead, {waited:.1} s in all"
    );
}

/// Payments that reached the broker before a deadline and the daemon behind
/// on them at that moment.
pub(crate) struct Backlog {
    /// The orders whose payment the broker confirmed before the deadline.
    pub in_time: Vec<usize>,
    /// Payments the daemon had recorded at the deadline.
    pub handled_at_deadline: i64,
}

/// Pays orders `0..orders` (`order(i)`, payment `PAY-i`) in one burst
/// straight to the broker, then waits for `deadline`. Fails unless at least
/// a quarter reached the broker before it (the burst is timed from how fast
/// the broker took the orders, and a broker that slows down midway takes
/// the rest after the deadline) and the daemon was behind on them then —
/// otherwise there was no backlog to test.
pub(crate) async fn pay_in_one_burst_before(
    app: &TestApp,
    orders: usize,
    order: &impl Fn(usize) -> String,
    deadline: DateTime<Utc>,
) -> Backlog {
    let confirmed = app
        .client
        .publish_inbound_burst(
            "payment.succeeded",
            (0..orders).map(|i| {
                json!({"order_id": order(i), "payment_id": format!("PAY-{i}")}).to_string()
            }),
        )
        .await;
    let in_time: Vec<usize> = (0..orders).filter(|i| confirmed[*i] < deadline).collect();
    assert!(
        in_time.len() >= orders / 4,
        "only {} of {orders} payments reached the broker before the deadline: the burst was too slow to test anything",
        in_time.len()
    );
    if let Ok(wait) = (deadline - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let handled_at_deadline = count(
        &app.sandbox,
        "SELECT 'payments' AS key, count(*) AS n FROM payments",
    )
    .await;
    assert!(
        handled_at_deadline < in_time.len() as i64,
        "the daemon had every payment in hand at the deadline ({handled_at_deadline}): no backlog was tested"
    );
    Backlog {
        in_time,
        handled_at_deadline,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_paid_on_time_while_paywait_was_down_are_paid() {
    paid_while_down(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_daemons_orders_paid_on_time_while_down_are_paid() {
    paid_while_down(true).await;
}

/// Places `order_id` (due 2 s later) while payments cannot get through,
/// and sees its close held: the order stays pending, and after a minute
/// `/readyz` says why and the gauge the alert watches has passed 60.
async fn place_and_see_its_close_held(app: &TestApp, order_id: &str) {
    app.place(order_id).await;
    let placed = Instant::now();
    let body = app.wait_for_readiness(503, Duration::from_secs(90)).await;
    assert!(body.contains("payments queue"), "{body}");
    assert!(placed.elapsed() > Duration::from_secs(60));
    let order = app.order(order_id).await.unwrap();
    assert_eq!(
        order.status,
        OrderStatus::Pending,
        "closed without its barrier"
    );
    assert!(
        app.metric("paywait_closes_waiting_for_payments_seconds")
            .await
            > 60.0
    );
}

/// Something else than the daemon is the payments queue's active consumer,
/// and never acknowledges: a consumer stuck elsewhere, until the
/// connection is closed. Taken while the daemon is stopped, which it
/// then starts again.
pub(crate) async fn hold_payments(app: &mut TestApp) -> (lapin::Connection, lapin::Consumer) {
    use lapin::{options::BasicConsumeOptions, types::FieldTable};

    app.stop().await.unwrap();
    let payments = app.topology.queue(Inbox::Payments).to_owned();
    let connection = lapin::DefaultConnectionBuilder::new()
        .unwrap()
        .with_uri_str(app.sandbox.amqp_url())
        .connect()
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let holder = channel
        .basic_consume(
            payments.as_str().into(),
            "stuck-elsewhere".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    app.restart().await;
    (connection, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_ahead_of_a_cancellation_before_its_order_pays_it() {
    let mut app = TestApp::spawn_with("1h", false, &[]).await;
    let (connection, holder) = hold_payments(&mut app).await;
    // The payment reaches the broker first, then the cancellation; the
    // payments are behind, and the order comes last.
    app.pay("AHEAD-1", "PAY-AHEAD-1").await;
    app.publish("order.cancelled", &bodies::cancelled("AHEAD-1"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(holder);
    connection.close(200, "done".into()).await.unwrap();
    app.expect_handled(Inbox::Cancellations, 1).await;
    app.place("AHEAD-1").await;
    let order = app
        .wait_for_status("AHEAD-1", OrderStatus::Paid, Duration::from_secs(30))
        .await;
    assert_eq!(
        order.payment_id.as_ref().map(|id| id.as_str()),
        Some("PAY-AHEAD-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_wait_while_no_one_reads_payments_and_readiness_says_why() {
    let mut app = TestApp::spawn_with("2s", false, &[]).await;
    let (connection, holder) = hold_payments(&mut app).await;
    // The close waits for a barrier that never passes: /readyz says why.
    place_and_see_its_close_held(&app, "STUCK-1").await;
    let (_, page) = app.get("/").await;
    assert!(page.contains("closes waiting now, for"), "{page}");

    // The holder goes away, giving back what it held: the daemon takes the
    // queue over and closes.
    drop(holder);
    connection.close(200, "done".into()).await.unwrap();
    app.wait_for_status("STUCK-1", OrderStatus::Closed, Duration::from_secs(30))
        .await;
    app.wait_for_readiness(200, Duration::from_secs(30)).await;
}

/// A quorum queue's Raft server suspended, as when its replicas have lost
/// their quorum: nothing published to it is confirmed, nothing delivered
/// from it, until it is resumed (at the latest when this is dropped).
struct Suspended {
    vhost: String,
    queue: String,
}

impl Suspended {
    fn queue(vhost: &str, queue: &str) -> Self {
        let suspended = Self {
            vhost: vhost.to_owned(),
            queue: queue.to_owned(),
        };
        suspended.call("suspend");
        suspended
    }

    fn call(&self, function: &str) {
        let expression = format!(
            "{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"{}\">>, queue, <<\"{}\">>)), \
             {{Name, _}} = amqqueue:get_pid(Q), sys:{function}(Name).",
            self.vhost, self.queue
        );
        let output = std::process::Command::new("rabbitmqctl")
            .args(["eval", &expression])
            .output()
            .expect("running rabbitmqctl");
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "ok",
            "{function} {}: {}{}",
            self.queue,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        self.call("resume");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_wait_while_the_payments_queue_is_unreachable_and_readiness_says_why() {
    let app = TestApp::spawn_with("2s", false, &[("PAYWAIT_AMQP__CONFIRM_TIMEOUT", "5s")]).await;
    let payments = app
        .topology
        .queue(paywait::domain::Inbox::Payments)
        .to_owned();
    // The payments queue confirms nothing: no barrier gets through it, and
    // each close gives up after the confirm timeout, to be tried again.
    let suspended = Suspended::queue(&app.sandbox.vhost, &payments);
    place_and_see_its_close_held(&app, "UNREACHABLE-1").await;

    drop(suspended);
    app.wait_for_status(
        "UNREACHABLE-1",
        OrderStatus::Closed,
        Duration::from_secs(60),
    )
    .await;
    app.wait_for_readiness(200, Duration::from_secs(30)).await;
    assert_eq!(
        app.metric("paywait_closes_waiting_for_payments_seconds")
            .await,
        0.0
    );
}
