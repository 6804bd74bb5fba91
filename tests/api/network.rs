//! Networks that fail quietly. The daemon reaches RabbitMQ and PostgreSQL
//! through a fault proxy each, with orders in flight (half of them paid long
//! before their deadlines, more placed and paid during the fault); the
//! proxy silences links for good, partitions them, resets and refuses them,
//! or slows them. Whatever it does, every order ends in its right state
//! with its event announced, no paid order is closed, none closes early,
//! `/readyz` says 503 while the daemon cannot work, and it works again
//! within a minute. Each test prints how soon the fault was found and how
//! soon the daemon was back (RELIABILITY.md keeps the figures).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use paywait::{
    db::Database,
    domain::{CloseReason, OrderId, OrderStatus},
};
use paywait_testkit::{BROKER, FaultProxy, Sandbox, TestApp};

/// Each order's deadline: timers come due during the longer faults.
const SCHEDULE: &str = "20s";
/// Orders placed before the fault, and during it.
const BEFORE: usize = 10;
const DURING: usize = 4;
/// The longest the daemon may take to work again after a fault.
const BACK_WITHIN: Duration = Duration::from_secs(60);

/// What the proxies do to the links.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The links open now go silent for good (half-open); new ones pass.
    Silent { broker: bool, database: bool },
    /// The database is partitioned away, then back.
    DatabaseCut(Duration),
    /// Every broker connection is reset, and new ones refused, for a while.
    BrokerRefused(Duration),
    /// Both links slowed, each way, for a while.
    Latency(Duration, Duration),
}

impl Fault {
    /// Whether the daemon cannot work during the fault (so `/readyz` must
    /// say so); a slow link still works.
    fn stops_work(self) -> bool {
        !matches!(self, Self::Latency(..))
    }
}

/// `/readyz` as sampled every 100 ms.
#[derive(Clone, Default)]
struct Samples(Arc<Mutex<Vec<(Instant, u16)>>>);

impl Samples {
    fn spawn(http: std::net::SocketAddr) -> (Self, tokio::task::JoinHandle<()>) {
        let samples = Self::default();
        let kept = samples.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            loop {
                let status = match client.get(format!("http://{http}/readyz")).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                kept.0.lock().unwrap().push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (samples, task)
    }

    fn first_not_ready_after(&self, from: Instant) -> Option<Duration> {
        let samples = self.0.lock().unwrap();
        samples
            .iter()
            .find(|(at, status)| *at >= from && *status != 200)
            .map(|(at, _)| *at - from)
    }

    /// After `from`, when the last sample that was not 200 was taken.
    fn last_not_ready(&self, from: Instant) -> Option<Instant> {
        let samples = self.0.lock().unwrap();
        samples
            .iter()
            .filter(|(at, status)| *at >= from && *status != 200)
            .map(|(at, _)| *at)
            .next_back()
    }
}

/// Puts the daemon through `fault`, checks that it lost nothing and came
/// back within [`BACK_WITHIN`] of the fault's end (its start, for a
/// half-open link, which never ends); returns how long after the fault's
/// start `/readyz` first said 503.
/// A daemon that reaches the broker and the database through a proxy each.
struct BehindProxies {
    app: TestApp,
    broker: FaultProxy,
    database: FaultProxy,
    /// The test's own view of the database, around the proxy.
    direct: Database,
}

impl BehindProxies {
    async fn start() -> Self {
        let sandbox = Sandbox::create().await;
        let direct = Database::new(&sandbox.settings_for(SCHEDULE).database).unwrap();
        let broker = FaultProxy::start(BROKER.parse().unwrap()).await;
        let database = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
        let amqp_url = format!("amqp://guest:guest@{}/{}", broker.address(), sandbox.vhost);
        let database_url = format!(
            "postgres://postgres@{}/{}",
            database.address(),
            sandbox.database
        );
        let app = TestApp::spawn_in(
            sandbox,
            SCHEDULE,
            true,
            &[
                ("PAYWAIT_AMQP__URL", &amqp_url),
                ("PAYWAIT_DATABASE__URL", &database_url),
            ],
        )
        .await;
        Self {
            app,
            broker,
            database,
            direct,
        }
    }
}

async fn survives(name: &str, fault: Fault) -> Option<Duration> {
    let BehindProxies {
        mut app,
        broker,
        database,
        direct,
    } = BehindProxies::start().await;

    let order = |i: usize| format!("NET-{i}");
    let paid = |i: usize| i.is_multiple_of(2);
    for i in 0..BEFORE {
        app.place(&order(i)).await;
        if paid(i) {
            app.pay(&order(i), &format!("PAY-{i}")).await;
        }
    }
    // The payments are in before the fault: long before the deadlines.
    let settled = Instant::now() + Duration::from_secs(20);
    for i in (0..BEFORE).filter(|i| paid(*i)) {
        let id = OrderId::parse(order(i)).unwrap();
        while direct.find(&id).await.unwrap().map(|o| o.status) != Some(OrderStatus::Paid) {
            assert!(
                Instant::now() < settled,
                "{} was not paid in time",
                order(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let (samples, sampler) = Samples::spawn(app.http);
    let started = Instant::now();
    let ended = match fault {
        Fault::Silent {
            broker: on_broker,
            database: on_database,
        } => {
            if on_broker {
                broker.silence_open_connections();
            }
            if on_database {
                database.silence_open_connections();
            }
            started
        }
        Fault::DatabaseCut(length) => {
            database.stall();
            place_during(&app, &order, &paid).await;
            tokio::time::sleep_until((started + length).into()).await;
            database.pass();
            Instant::now()
        }
        Fault::BrokerRefused(length) => {
            broker.reset_and_refuse(length);
            tokio::time::sleep_until((started + length).into()).await;
            Instant::now()
        }
        Fault::Latency(latency, length) => {
            broker.set_latency(latency);
            database.set_latency(latency);
            place_during(&app, &order, &paid).await;
            tokio::time::sleep_until((started + length).into()).await;
            broker.pass();
            database.pass();
            Instant::now()
        }
    };
    if matches!(fault, Fault::Silent { .. } | Fault::BrokerRefused(_)) {
        place_during(&app, &order, &paid).await;
    }

    // Every order ends in its right state, its event announced.
    let all: Vec<usize> = (0..BEFORE + DURING).collect();
    let finished_by = ended + BACK_WITHIN + Duration::from_secs(40);
    let mut orders = Vec::new();
    for &i in &all {
        let id = OrderId::parse(order(i)).unwrap();
        loop {
            match direct.find(&id).await {
                Ok(Some(found))
                    if found.status != OrderStatus::Pending
                        && found.event_published_at.is_some() =>
                {
                    orders.push((i, found));
                    break;
                }
                found => assert!(
                    Instant::now() < finished_by,
                    "{name}: {} did not end in time: {found:?}",
                    order(i)
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (i, found) in &orders {
        if paid(*i) {
            assert_eq!(found.status, OrderStatus::Paid, "{name}: {found:?}");
        } else {
            assert_eq!(found.status, OrderStatus::Closed, "{name}: {found:?}");
            assert_eq!(found.close_reason, Some(CloseReason::Expired), "{name}");
            let closed_at = found.closed_at.expect("a closed order has its time");
            assert!(
                closed_at >= found.expires_at,
                "{name}: {} closed early: {found:?}",
                order(*i)
            );
        }
    }
    // And downstream heard of each.
    let mut heard = BTreeSet::new();
    while heard.len() < all.len() {
        let event = app.expect_event(Duration::from_secs(30)).await;
        heard.insert(event.order_id().to_owned());
    }

    // Readiness told the truth, and the daemon is back.
    let now = Instant::now();
    let found_after = samples.first_not_ready_after(started);
    if fault.stops_work() {
        assert!(found_after.is_some(), "{name}: /readyz never said 503");
    }
    let back_at = samples.last_not_ready(started).unwrap_or(started);
    let back_after = back_at.saturating_duration_since(ended);
    assert!(
        back_after <= BACK_WITHIN,
        "{name}: ready again only {back_after:?} after the fault"
    );
    assert!(now > back_at);
    sampler.abort();
    app.wait_for_readiness(200, Duration::from_secs(5)).await;
    println!("{name}: found after {found_after:?}, working again {back_after:?} after the fault");
    found_after
}

/// Places the orders of the fault's time straight at the broker (not
/// through the proxy), paying half of them at once.
async fn place_during(
    app: &TestApp,
    order: &impl Fn(usize) -> String,
    paid: &impl Fn(usize) -> bool,
) {
    for i in BEFORE..BEFORE + DURING {
        app.place(&order(i)).await;
        if paid(i) {
            app.pay(&order(i), &format!("PAY-{i}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_link_gone_silent_loses_nothing() {
    let fault = Fault::Silent {
        broker: true,
        database: false,
    };
    let found_after = survives("broker silent", fault).await;
    // Twice the default heartbeat, and the sampling.
    assert!(found_after.unwrap() <= Duration::from_secs(21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_links_gone_silent_lose_nothing() {
    let fault = Fault::Silent {
        broker: false,
        database: true,
    };
    let found_after = survives("database silent", fault).await;
    assert!(found_after.unwrap() <= Duration::from_secs(21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_links_gone_silent_lose_nothing() {
    let fault = Fault::Silent {
        broker: true,
        database: true,
    };
    let found_after = survives("both silent", fault).await;
    assert!(found_after.unwrap() <= Duration::from_secs(21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_off_for_30_seconds_loses_nothing() {
    let found_after = survives(
        "database cut 30 s",
        Fault::DatabaseCut(Duration::from_secs(30)),
    )
    .await;
    assert!(found_after.unwrap() <= Duration::from_secs(21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_reset_and_refused_for_10_seconds_loses_nothing() {
    let found_after = survives(
        "broker reset, refused 10 s",
        Fault::BrokerRefused(Duration::from_secs(10)),
    )
    .await;
    assert!(found_after.unwrap() <= Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_links_slowed_by_200_ms_for_30_seconds_lose_nothing() {
    survives(
        "200 ms latency on both, 30 s",
        Fault::Latency(Duration::from_millis(200), Duration::from_secs(30)),
    )
    .await;
}

/// How the broker link fails while payments wait for the daemon.
#[derive(Debug, Clone, Copy)]
enum PaymentsFault {
    /// The daemon's broker link goes silent for good before the payments
    /// come; it finds out and reconnects after the deadline.
    Silent,
    /// The broker link is slowed by this much each way, from before the
    /// payments until after the deadline.
    Slow(Duration),
}

/// On time is when the payment reached the broker: `orders` orders share a
/// deadline, and their payments reach the broker straight (not through the
/// proxy) just before it, while the daemon's own link is `fault`y, so the
/// daemon is behind on payments when the orders come due. Every order whose
/// payment the broker confirmed before the deadline must end paid.
async fn payments_behind_a_faulty_link_pay(name: &str, fault: PaymentsFault, orders: usize) {
    use chrono::{SecondsFormat, Utc};
    use serde_json::json;

    use crate::on_time::{Backlog, count, pay_in_one_burst_before};

    let BehindProxies {
        app,
        broker,
        database: _database,
        direct,
    } = BehindProxies::start().await;
    let order = |i: usize| format!("LATE-{i}");
    let deadline = Utc::now() + chrono::Duration::seconds(10);
    let expires_at = deadline.to_rfc3339_opts(SecondsFormat::Millis, true);
    app.client
        .publish_inbound_burst(
            "order.placed",
            (0..orders)
                .map(|i| json!({"order_id": order(i), "expires_at": expires_at}).to_string()),
        )
        .await;
    let stored_by = Instant::now() + Duration::from_secs(8);
    while count(
        &app.sandbox,
        "SELECT 'orders' AS key, count(*) AS n FROM orders",
    )
    .await
        < orders as i64
    {
        assert!(
            Instant::now() < stored_by,
            "{name}: the orders were not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let paying_from = match fault {
        PaymentsFault::Silent => {
            broker.silence_open_connections();
            Utc::now()
        }
        PaymentsFault::Slow(latency) => {
            broker.set_latency(latency);
            deadline - chrono::Duration::milliseconds(500)
        }
    };
    if let Ok(wait) = (paying_from - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let Backlog {
        in_time,
        handled_at_deadline,
    } = pay_in_one_burst_before(&app, orders, &order, deadline).await;
    if let PaymentsFault::Slow(_) = fault {
        tokio::time::sleep(Duration::from_secs(5)).await;
        broker.pass();
    }

    let settled_by = Instant::now() + BACK_WITHIN + Duration::from_secs(60);
    while count(
        &app.sandbox,
        "SELECT 'pending' AS key, count(*) AS n FROM orders WHERE status = 'pending'",
    )
    .await
        > 0
    {
        assert!(Instant::now() < settled_by, "{name}: orders still pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut closed = Vec::new();
    for &i in &in_time {
        let found = direct
            .find(&OrderId::parse(order(i)).unwrap())
            .await
            .unwrap()
            .expect("stored");
        if found.status != OrderStatus::Paid {
            closed.push(found);
        }
    }
    assert!(
        closed.is_empty(),
        "{name}: {} orders paid in time were not paid ({handled_at_deadline} of {} payments handled at the deadline): {:?}",
        closed.len(),
        in_time.len(),
        closed.first()
    );
    println!(
        "{name}: {} of {orders} paid in time, {handled_at_deadline} handled at the deadline, all paid",
        in_time.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_sent_while_the_broker_link_is_silent_pay_their_orders() {
    payments_behind_a_faulty_link_pay("payments behind a silent link", PaymentsFault::Silent, 300)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_behind_a_slow_broker_link_pay_their_orders() {
    payments_behind_a_faulty_link_pay(
        "payments behind a 200 ms link",
        PaymentsFault::Slow(Duration::from_millis(200)),
        2_000,
    )
    .await;
}

/// What `ss` shows of the established TCP connections to `port`, one line
/// each, with their timers.
fn connections_to(port: u16) -> Vec<String> {
    let shown = std::process::Command::new("ss")
        .args([
            "-tnoH",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .expect("ss, from iproute2");
    String::from_utf8_lossy(&shown.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The time left on a connection's keepalive timer, as `ss` shows it.
fn keepalive_left(line: &str) -> Option<Duration> {
    let timer = line.split("timer:(keepalive,").nth(1)?;
    let left = timer.split(',').next()?;
    let (number, unit) = left.split_at(left.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "sec" => number,
        "min" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

#[test]
fn keepalive_timers_are_read_as_ss_writes_them() {
    let line = "0 0 127.0.0.1:39726 127.0.0.1:5432 timer:(keepalive,4.2sec,0)";
    assert_eq!(keepalive_left(line), Some(Duration::from_millis(4200)));
    assert_eq!(
        keepalive_left("… timer:(keepalive,119min,0)"),
        Some(Duration::from_secs(119 * 60))
    );
    assert_eq!(keepalive_left("… timer:(on,200ms,0)"), None);
    assert_eq!(keepalive_left("0 0 127.0.0.1:1 127.0.0.1:2"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_links_are_watched_by_tcp_keepalives_within_seconds() {
    let links = BehindProxies::start().await;
    // Some work, so that the pools hold connections.
    links.app.place("KA-1").await;
    links.app.pay("KA-1", "PAY-KA-1").await;
    links
        .app
        .wait_for_status("KA-1", OrderStatus::Paid, Duration::from_secs(20))
        .await;
    for (server, proxy) in [("RabbitMQ", &links.broker), ("PostgreSQL", &links.database)] {
        // A connection busy at that instant shows its retransmission timer
        // instead: look a few times.
        let mut shown = Vec::new();
        let mut watched = false;
        for _ in 0..50 {
            shown = connections_to(proxy.address().port());
            watched = !shown.is_empty()
                && shown.iter().all(|line| {
                    keepalive_left(line).is_some_and(|left| left <= Duration::from_secs(5))
                });
            if watched {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            watched,
            "{server}: connections without a keepalive of 5 s: {shown:#?}"
        );
    }
}
