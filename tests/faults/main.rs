//! Fault injection against the real binary: under a steady load of orders
//! (every other one paid), the daemon is killed with SIGKILL several times,
//! the broker is restarted, the database is stopped cleanly and crashed, a
//! second daemon comes and goes, timers are deleted behind paywait's back,
//! and the broker blocks publishers while the daemon has publishes to make.
//! Afterwards every order must be in exactly one terminal state that matches
//! what happened to it, with its events, none closed before its deadline,
//! and the sweeper must have re-armed no timer but those deleted on purpose.
//! A queue of the test's own receives a copy of every timer that came due:
//! every timer the daemons armed (whether its order was paid later or not)
//! must have come, and none later than the broker's outages explain.
//!
//! PostgreSQL is a server of the test's own (`initdb`, `pg_ctl`), so that it
//! can be crashed; the broker is the machine's, restarted and put back as it
//! was. That disturbs everything on this machine, so this is a test binary of
//! its own: cargo runs test binaries one at a time.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lapin::{options::BasicGetOptions, types::AMQPValue};
use paywait::domain::{OrderId, OrderStatus};
use paywait_testkit::{Daemon, Log, ResilientClient, Sandbox, Stop, ThrowawayPostgres};
use serde_json::Value;

/// The steady load: one order every 10 ms, 100 a second for 20 seconds.
const STEADY_ORDERS: usize = 2_000;
const ORDER_SPACING: Duration = Duration::from_millis(10);
/// Orders published while no daemon runs, taken in while the broker blocks
/// publishers.
const TAIL_ORDERS: usize = 100;
const ORDERS: usize = STEADY_ORDERS + TAIL_ORDERS;
const SCHEDULE: &str = "1s,1s";
/// Longer than any outage here delays a timer (the broker is away for up to
/// 15 s in all), so that the sweeper re-arms only timers that are gone.
const SWEEPER_GRACE: Duration = Duration::from_secs(30);
/// Once the last fault is over, everything must settle within this.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
const DOWNSTREAM: &str = "downstream.audit";
/// Bound to the exchange expired timers are dead-lettered to: a copy of
/// every timer that came due.
const TIMER_AUDIT: &str = "timers.audit";
/// How late a timer may come due: more than the broker is away in all.
const TIMER_LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(25);
/// Where the schedule's timers wait: 1 s less the early margin.
const WAIT_QUEUE: &str = "paywait.timer.600ms";

/// Starts `paywait run` with its JSON log in a file of its own, noted in `logs`.
fn start_daemon(environment: &[(String, String)], name: &str, logs: &mut Vec<PathBuf>) -> Daemon {
    let log = std::env::temp_dir().join(format!(
        "paywait-faults-{}-{name}-{}.log",
        std::process::id(),
        logs.len() + 1
    ));
    logs.push(log.clone());
    Daemon::start(
        env!("CARGO_BIN_EXE_paywait").as_ref(),
        environment,
        Log::File(log),
    )
}

fn order_id(i: usize) -> String {
    format!("F-{i:05}")
}

fn payment_id(order_id: &str) -> String {
    format!("PAY-{order_id}")
}

/// Every other order is paid.
fn is_paid(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// The steady load: order `i` placed at `i` × 10 ms; the paid ones paid 0 to
/// 2.6 s after, before, at and after their 2 s deadline. Returns when the
/// broker confirmed each payment, by order.
async fn generate_load(url: String) -> HashMap<String, chrono::DateTime<chrono::Utc>> {
    let mut confirmed = HashMap::new();
    let mut steps: Vec<(Duration, usize, bool)> = Vec::new();
    for i in 0..STEADY_ORDERS {
        let placed_after = ORDER_SPACING * i as u32;
        steps.push((placed_after, i, false));
        if is_paid(i) {
            let paid_after = placed_after + Duration::from_millis((i as u64 * 7919) % 2600);
            steps.push((paid_after, i, true));
        }
    }
    steps.sort();
    let mut client = ResilientClient::new(url);
    let started = tokio::time::Instant::now();
    for (at, i, is_payment) in steps {
        tokio::time::sleep_until(started + at).await;
        if is_payment {
            pay(&mut client, &order_id(i)).await;
            confirmed.insert(order_id(i), chrono::Utc::now());
        } else {
            place(&mut client, &order_id(i)).await;
        }
    }
    confirmed
}

async fn place(client: &mut ResilientClient, id: &str) {
    let body = serde_json::json!({"order_id": id});
    client
        .publish_inbound("order.placed", body.to_string().as_bytes())
        .await;
}

async fn pay(client: &mut ResilientClient, id: &str) {
    let body = serde_json::json!({"order_id": id, "payment_id": payment_id(id)});
    client
        .publish_inbound("payment.succeeded", body.to_string().as_bytes())
        .await;
}

fn broker_ctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl {args:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Puts the broker back as it was however the test ends: running, with its
/// memory watermark, so that a failed assertion cannot leave it stopped or
/// blocking publishers.
struct BrokerRestorer {
    watermark: Vec<String>,
}

impl BrokerRestorer {
    fn new() -> Self {
        // `0.4`, or `{absolute,1073741824}`.
        let current = broker_ctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
        let watermark = match current.strip_prefix("{absolute,") {
            Some(bytes) => vec![
                "absolute".to_owned(),
                bytes.trim_end_matches('}').to_owned(),
            ],
            None => vec![current],
        };
        Self { watermark }
    }

    fn set_watermark(&self) {
        let mut args = vec!["set_vm_memory_high_watermark"];
        args.extend(self.watermark.iter().map(String::as_str));
        broker_ctl(&args);
    }
}

impl Drop for BrokerRestorer {
    fn drop(&mut self) {
        let mut restore = vec!["set_vm_memory_high_watermark"];
        restore.extend(self.watermark.iter().map(String::as_str));
        for args in [&["start_app"][..], &restore[..]] {
            let _ = Command::new("rabbitmqctl")
                .arg("-q")
                .args(args)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Waits until the broker reports its memory alarm on (or off).
async fn wait_for_memory_alarm(on: bool) {
    let started = Instant::now();
    loop {
        let nodes = tokio::task::spawn_blocking(|| paywait_testkit::management_json("nodes"))
            .await
            .unwrap();
        if nodes
            .as_array()
            .into_iter()
            .flatten()
            .all(|node| node["mem_alarm"] == on)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the memory alarm never became {on}: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Figures {
    faults: BTreeMap<&'static str, u32>,
    recovery: BTreeMap<&'static str, Duration>,
}

impl Figures {
    fn fault(&mut self, kind: &'static str, recovered_in: Duration) {
        *self.faults.entry(kind).or_default() += 1;
        let worst = self.recovery.entry(kind).or_default();
        *worst = (*worst).max(recovered_in);
    }
}

/// The lines of every daemon's JSON log.
fn log_lines(logs: &[PathBuf]) -> Vec<Value> {
    logs.iter()
        .flat_map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Takes every timer from the TTL queue, as an operator's mistake would;
/// returns the orders whose timer was deleted.
async fn delete_timers(client: &mut ResilientClient) -> HashSet<String> {
    let channel = client.client().await.unwrap().channel();
    let mut deleted = HashSet::new();
    while let Some(message) = channel
        .basic_get(WAIT_QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
        deleted.insert(body["order_id"].as_str().unwrap().to_owned());
        if deleted.len() >= 500 {
            break;
        }
    }
    deleted
}

/// One event as downstream received it, for comparing copies.
/// What the copies of the timers that came due say.
struct TimerAudit {
    /// (order, check) of every timer that came due.
    seen: HashSet<(String, u32)>,
    copies: usize,
    /// The latest a timer was dead-lettered after its due time (to the
    /// second, as `x-death` tells it).
    latest: chrono::TimeDelta,
}

/// Reads the copy of every timer that came due.
async fn audit_timers(channel: &lapin::Channel) -> TimerAudit {
    let mut audit = TimerAudit {
        seen: HashSet::new(),
        copies: 0,
        latest: chrono::TimeDelta::zero(),
    };
    while let Some(message) = channel
        .basic_get(TIMER_AUDIT.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        audit.copies += 1;
        let delivery = message.delivery;
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let integer = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongLongInt(n)) => Some(*n),
            Some(AMQPValue::LongInt(n)) => Some(i64::from(*n)),
            _ => None,
        };
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        let order_id = body["order_id"].as_str().unwrap().to_owned();
        let attempt = integer("x-attempt").expect("a timer has its x-attempt") as u32;
        audit.seen.insert((order_id, attempt));
        // Dead-lettered by a TTL queue: when, against when it was due.
        let died = match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
                Some(AMQPValue::FieldTable(death)) => match death.inner().get("time") {
                    Some(AMQPValue::Timestamp(seconds)) => Some(*seconds as i64),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        if let (Some(died), Some(due)) = (died, integer("x-due-at")) {
            let late = chrono::TimeDelta::milliseconds(died * 1000 - due);
            audit.latest = audit.latest.max(late);
        }
    }
    audit
}

#[derive(Debug, PartialEq)]
struct EventCopy {
    routing_key: String,
    body: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_order_timer_or_event_is_lost_through_crashes_and_restarts() {
    let broker = BrokerRestorer::new();
    let postgres = ThrowawayPostgres::start();
    let sandbox = Sandbox::create_on(&postgres.url()).await;
    let mut environment = sandbox.environment(SCHEDULE);
    environment.retain(|(key, _)| key != "PAYWAIT_HTTP__LISTEN");
    environment.extend(
        [
            ("PAYWAIT_SWEEPER__INTERVAL", "1s".to_owned()),
            (
                "PAYWAIT_SWEEPER__GRACE",
                format!("{}s", SWEEPER_GRACE.as_secs()),
            ),
            ("PAYWAIT_SHUTDOWN__TIMEOUT", "3s".to_owned()),
            ("PAYWAIT_AMQP__CONFIRM_TIMEOUT", "2s".to_owned()),
            ("PAYWAIT_LOG__FORMAT", "json".to_owned()),
            // Every timer armed is logged, for the audit of timers.
            ("RUST_LOG", "info,paywait::worker=debug".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut logs = Vec::new();
    let mut primary = start_daemon(&environment, "primary", &mut logs);
    primary.wait_ready(Duration::from_secs(30)).await;

    // Downstream: a durable queue, so events survive the broker restart.
    let mut client = ResilientClient::new(sandbox.amqp_url());
    {
        let client = client.client().await.unwrap();
        client
            .declare_bound_queue(DOWNSTREAM, "quorum", "paywait.events", "#")
            .await;
        client
            .declare_bound_queue(TIMER_AUDIT, "quorum", "paywait.expired", "")
            .await;
    }

    let started = Instant::now();
    let load = tokio::spawn(generate_load(sandbox.amqp_url()));
    let mut figures = Figures::default();
    let at = |seconds: f64| {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started + Duration::from_secs_f64(seconds),
        ))
    };

    for seconds in [2.0, 5.0] {
        at(seconds).await;
        primary.kill();
        let restarted = Instant::now();
        primary = start_daemon(&environment, "primary", &mut logs);
        primary.wait_ready(Duration::from_secs(30)).await;
        figures.fault("SIGKILL of the daemon", restarted.elapsed());
    }

    // Early, while the load certainly has timers waiting: the faults after
    // it may shift the rest of the timeline by several seconds.
    at(6.5).await;
    let deleted = delete_timers(&mut client).await;
    assert!(!deleted.is_empty(), "no timer was waiting to be deleted");
    figures.fault("timers deleted from the TTL queue", Duration::ZERO);

    at(8.0).await;
    broker_ctl(&["stop_app"]);
    let down = Instant::now();
    primary
        .wait_unready(Duration::from_secs(3), "a broker")
        .await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(down.elapsed())).await;
    broker_ctl(&["start_app"]);
    let back = Instant::now();
    primary.wait_ready(Duration::from_secs(90)).await;
    figures.fault("broker restart (stop_app, 3 s, start_app)", back.elapsed());

    at(14.0).await;
    postgres.stop(Stop::Fast);
    let down = Instant::now();
    primary
        .wait_unready(Duration::from_secs(5), "PostgreSQL")
        .await;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down.elapsed())).await;
    postgres.resume();
    let back = Instant::now();
    primary.wait_ready(Duration::from_secs(60)).await;
    figures.fault("PostgreSQL clean stop (fast, 2 s down)", back.elapsed());

    at(16.0).await;
    let mut second = start_daemon(&environment, "second", &mut logs);
    let ready_in = second.wait_ready(Duration::from_secs(30)).await;
    figures.fault("second daemon started, then stopped with SIGTERM", ready_in);

    // A crash under load, with both daemons writing: every process of the
    // server quits at once, and the restart replays the WAL.
    at(17.5).await;
    postgres.stop(Stop::Immediate);
    postgres.resume();
    let back = Instant::now();
    primary.wait_ready(Duration::from_secs(60)).await;
    second.wait_ready(Duration::from_secs(60)).await;
    figures.fault(
        "PostgreSQL crash (immediate stop, restarted at once)",
        back.elapsed(),
    );

    at(19.0).await;
    let status = second.terminate().await;
    assert_eq!(status.code(), Some(0), "the second daemon's SIGTERM exit");

    at(22.0).await;
    primary.kill();
    let restarted = Instant::now();
    primary = start_daemon(&environment, "primary", &mut logs);
    primary.wait_ready(Duration::from_secs(30)).await;
    figures.fault("SIGKILL of the daemon", restarted.elapsed());

    let payments_confirmed = load.await.expect("the load generator finished");

    // A broker that stops answering: a memory alarm blocks every publisher.
    // With no daemon running, the tail orders wait in the intake queue; the
    // daemon starts once the alarm is on, so its first publishes are blocked
    // for certain. They must time out and be retried, not hang it.
    assert_eq!(primary.terminate().await.code(), Some(0), "SIGTERM exit");
    for i in STEADY_ORDERS..ORDERS {
        place(&mut client, &order_id(i)).await;
        if is_paid(i) {
            pay(&mut client, &order_id(i)).await;
        }
    }
    broker_ctl(&["set_vm_memory_high_watermark", "0"]);
    wait_for_memory_alarm(true).await;
    primary = start_daemon(&environment, "primary", &mut logs);
    primary.wait_ready(Duration::from_secs(30)).await;
    let blocked = Instant::now();
    while !primary.log_text().contains("did not confirm") {
        assert!(
            blocked.elapsed() < Duration::from_secs(30),
            "no publish timed out while the broker blocked publishers; log: {:?}",
            primary.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.set_watermark();
    wait_for_memory_alarm(false).await;
    let unblocked = Instant::now();
    primary.wait_ready(Duration::from_secs(30)).await;
    figures.fault(
        "broker blocks publishers (memory alarm) while the daemon has publishes to make",
        unblocked.elapsed(),
    );
    let last_fault_over = Instant::now();

    // Settle: every order terminal and announced, every late payment announced.
    let db = paywait::db::Database::new(&sandbox.settings_for(SCHEDULE).database).unwrap();
    let ids: Vec<OrderId> = (0..ORDERS)
        .map(|i| OrderId::parse(order_id(i)).unwrap())
        .collect();
    let mut unsettled: Vec<OrderId> = ids.clone();
    while !unsettled.is_empty() {
        let mut still = Vec::new();
        for id in &unsettled {
            let settled = match db.find(id).await.unwrap() {
                Some(order)
                    if order.status != OrderStatus::Pending
                        && order.event_published_at.is_some() =>
                {
                    order.status != OrderStatus::Closed
                        || db
                            .payments_of(id)
                            .await
                            .unwrap()
                            .iter()
                            .all(|p| p.event_published_at.is_some())
                }
                _ => false,
            };
            if !settled {
                still.push(id.clone());
            }
        }
        unsettled = still;
        if unsettled.is_empty() {
            break;
        }
        assert!(
            last_fault_over.elapsed() < SETTLE_WITHIN,
            "{} orders not settled {SETTLE_WITHIN:?} after the last fault, e.g. {:?}; log: {:?}",
            unsettled.len(),
            db.find(&unsettled[0]).await.unwrap(),
            primary.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled_in = last_fault_over.elapsed();
    assert_eq!(
        primary.terminate().await.code(),
        Some(0),
        "SIGTERM exit status"
    );

    // What the daemons said: publishes that timed out, timers re-armed.
    let lines = log_lines(&logs);
    let timeouts = lines
        .iter()
        .filter(|line| {
            line["error"]
                .as_str()
                .is_some_and(|e| e.contains("did not confirm"))
        })
        .count();
    let rearmed: HashSet<String> = lines
        .iter()
        .filter(|line| line["message"] == "re-armed a lost timer")
        .map(|line| line["order_id"].as_str().unwrap().to_owned())
        .collect();
    let wrongly_rearmed: Vec<&String> = rearmed.difference(&deleted).collect();
    assert!(
        wrongly_rearmed.is_empty(),
        "the sweeper re-armed {} timers that were never deleted (a timer was lost), e.g. {:?}",
        wrongly_rearmed.len(),
        &wrongly_rearmed[..wrongly_rearmed.len().min(10)]
    );
    assert!(
        !rearmed.is_empty(),
        "the sweeper re-armed none of the {} deleted timers",
        deleted.len()
    );

    // Read every event downstream received. Copies of one message_id must
    // be the same event.
    let mut events: HashMap<String, HashSet<String>> = HashMap::new();
    let mut copies: HashMap<String, EventCopy> = HashMap::new();
    let mut delivered = 0usize;
    let channel = client.client().await.unwrap().channel();
    while let Some(message) = channel
        .basic_get(DOWNSTREAM.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        delivered += 1;
        let delivery = message.delivery;
        paywait_testkit::contract::validate_event_delivery(
            delivery.routing_key.as_str(),
            &delivery.properties,
            &delivery.data,
        );
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .expect("every event has a message_id")
            .to_string();
        let copy = EventCopy {
            routing_key: delivery.routing_key.to_string(),
            body: serde_json::from_slice(&delivery.data).unwrap(),
        };
        let order = copy.body["order_id"].as_str().unwrap().to_owned();
        if let Some(first) = copies.get(&message_id) {
            assert_eq!(
                first, &copy,
                "two different events share the message_id {message_id}"
            );
        }
        events.entry(order).or_default().insert(message_id.clone());
        copies.insert(message_id, copy);
    }

    let (mut paid, mut closed_then_paid, mut closed_unpaid) = (0, 0, 0);
    let mut lost = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let Some(order) = db.find(id).await.unwrap() else {
            lost.push(format!("{id}: no row"));
            continue;
        };
        if let Some(closed_at) = order.closed_at {
            assert!(
                closed_at >= order.expires_at,
                "{id} was closed before its deadline"
            );
        }
        let received = events.remove(id.as_str()).unwrap_or_default();
        let expect = |names: &[&String]| {
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<HashSet<_>>()
        };
        let paid_event = format!("{id}/order.paid");
        let closed_event = format!("{id}/order.closed");
        let refund_event = format!("{id}/order.paid_after_close/{}", payment_id(id.as_str()));
        let payments = db.payments_of(id).await.unwrap();
        match (is_paid(i), order.status) {
            (true, OrderStatus::Paid) if received == expect(&[&paid_event]) => paid += 1,
            // Only a payment that reached the broker after the deadline may
            // come after the close, whatever paywait went through meanwhile.
            (true, OrderStatus::Closed)
                if received == expect(&[&closed_event, &refund_event])
                    && payments.len() == 1
                    && payments_confirmed
                        .get(id.as_str())
                        .is_some_and(|confirmed| *confirmed >= order.expires_at) =>
            {
                closed_then_paid += 1
            }
            (false, OrderStatus::Closed)
                if received == expect(&[&closed_event]) && payments.is_empty() =>
            {
                closed_unpaid += 1
            }
            (was_paid, status) => lost.push(format!(
                "{id}: paid={was_paid} status={status} events={received:?}"
            )),
        }
    }
    assert!(events.is_empty(), "events for unknown orders: {events:?}");

    // Every timer a daemon armed (and said so before it could be killed)
    // came due, whatever its order had become by then; none too late.
    let audit = audit_timers(client.client().await.unwrap().channel()).await;
    let armed: HashSet<(String, u32)> = lines
        .iter()
        .filter(|line| line["message"] == "timer armed")
        .map(|line| {
            (
                line["order_id"].as_str().unwrap().to_owned(),
                line["attempt"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    assert!(
        armed.len() >= ORDERS / 2,
        "only {} timers armed: are they logged?",
        armed.len()
    );
    let mut missing: Vec<&(String, u32)> = armed
        .iter()
        .filter(|(order_id, _)| !deleted.contains(order_id))
        .filter(|timer| !audit.seen.contains(*timer))
        .collect();
    missing.sort();
    println!(
        "timers come due: {} copies; latest {:.1?} s after its due time",
        audit.copies,
        audit.latest.num_milliseconds() as f64 / 1000.0
    );
    assert!(
        missing.is_empty(),
        "{} timers armed never came due (lost), e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        audit.latest <= TIMER_LATE,
        "a timer came due {} s late",
        audit.latest.num_seconds()
    );

    let duplicates = delivered - copies.len();
    println!(
        "\nfault test: {ORDERS} orders, schedule {SCHEDULE}, sweeper grace {SWEEPER_GRACE:?}; \
         settled {settled_in:.1?} after the last fault"
    );
    println!("| fault | times | worst time to ready again |\n| --- | --- | --- |");
    for (kind, times) in &figures.faults {
        println!("| {kind} | {times} | {:.2?} |", figures.recovery[kind]);
    }
    println!(
        "timers deleted: {}; re-armed by the sweeper: {} (all among the deleted); \
         publishes timed out during the memory alarm, then retried: {timeouts}",
        deleted.len(),
        rearmed.len()
    );
    println!(
        "orders: {paid} paid, {closed_then_paid} closed then paid after close, {closed_unpaid} closed unpaid; \
         lost or wrong: {}; events delivered: {delivered}, duplicates (same message_id, same event): {duplicates}",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} orders lost or wrong: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(paid + closed_then_paid + closed_unpaid, ORDERS);
    assert!(paid > 0 && closed_then_paid + closed_unpaid > 0);
}
