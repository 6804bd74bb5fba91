//! Fault injection against the real binary: under a steady load of orders
//! (about half of them paid), the daemon is killed with SIGKILL several
//! times, the broker and the database are restarted, a second daemon comes
//! and goes, and the timers are purged behind paywait's back. Afterwards every
//! order must be in exactly one terminal state that matches what happened to
//! it, with its event, and none closed before its deadline.
//!
//! The broker and database restarts disturb everything on this machine, so
//! this is a test binary of its own: cargo runs test binaries one at a time.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
        QueueDeclareOptions, QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable, LongString},
};
use paywait::domain::{OrderId, OrderStatus};

use helpers::{Sandbox, http_get};

/// The steady load: one order every 10 ms, 100 a second for 20 seconds.
const STEADY_ORDERS: usize = 2_000;
const ORDER_SPACING: Duration = Duration::from_millis(10);
/// A last second of orders from 23 s on, whose checks fall due while the
/// broker blocks publishers (from 24 s), so that the daemon has publishes in
/// flight then.
const TAIL_ORDERS: usize = 100;
const TAIL_START: Duration = Duration::from_secs(23);
const ORDERS: usize = STEADY_ORDERS + TAIL_ORDERS;
const SCHEDULE: &str = "1s,1s";
const DOWNSTREAM: &str = "downstream.audit";

/// The daemon as a child process, with its log kept in a file.
struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(environment: &[(String, String)], name: &str, generation: &mut u32) -> Self {
        *generation += 1;
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "paywait-faults-{}-{name}-{generation}.log",
            std::process::id()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_paywait"))
            .arg("run")
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PAYWAIT_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("starting paywait run");
        Self { child, port, log }
    }

    async fn ready_status(&self) -> u16 {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        tokio::task::spawn_blocking(move || http_get(&url).0)
            .await
            .unwrap()
    }

    /// Waits until `/readyz` answers 200; returns how long that took.
    async fn wait_ready(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        loop {
            let probe = url.clone();
            let (status, _) = tokio::task::spawn_blocking(move || http_get(&probe))
                .await
                .unwrap();
            if status == 200 {
                return started.elapsed();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "paywait exited with {status} before it was ready; log: {}",
                    self.log.display()
                );
            }
            assert!(
                started.elapsed() < within,
                "paywait was not ready within {within:?}; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "SIGTERM did not stop paywait"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client that outlives broker restarts: it reconnects and publishes
/// again until the broker confirms.
struct Client {
    url: String,
    channel: Option<(Connection, Channel)>,
}

impl Client {
    fn new(url: String) -> Self {
        Self { url, channel: None }
    }

    async fn channel(&mut self) -> Result<&Channel, lapin::Error> {
        if self
            .channel
            .as_ref()
            .is_none_or(|(_, channel)| !channel.status().connected())
        {
            let connection =
                Connection::connect(&self.url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            self.channel = Some((connection, channel));
        }
        Ok(&self.channel.as_ref().unwrap().1)
    }

    async fn try_publish(
        &mut self,
        exchange: &str,
        key: &str,
        body: &[u8],
    ) -> Result<bool, lapin::Error> {
        let channel = self.channel().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        match tokio::time::timeout(Duration::from_secs(5), confirm).await {
            Ok(Ok(confirmation)) => {
                Ok(confirmation.is_ack() && confirmation.take_message().is_none())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Ok(false),
        }
    }

    async fn publish(&mut self, exchange: &str, key: &str, body: &[u8]) {
        let started = Instant::now();
        loop {
            match self.try_publish(exchange, key, body).await {
                Ok(true) => return,
                Ok(false) | Err(_) => {
                    self.channel = None;
                    assert!(
                        started.elapsed() < Duration::from_secs(90),
                        "the broker never came back"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// What the load generator did to one order.
#[derive(Debug, Clone, Copy)]
struct Plan {
    placed_after: Duration,
    paid_after: Option<Duration>,
}

fn plans() -> Vec<Plan> {
    (0..ORDERS)
        .map(|i| {
            let placed_after = if i < STEADY_ORDERS {
                ORDER_SPACING * i as u32
            } else {
                TAIL_START + ORDER_SPACING * (i - STEADY_ORDERS) as u32
            };
            // Even orders are paid 0 to 2.6 s after being placed: before, at and
            // after their 2 s deadline.
            let paid_after = (i % 2 == 0)
                .then(|| placed_after + Duration::from_millis((i as u64 * 7919) % 2600));
            Plan {
                placed_after,
                paid_after,
            }
        })
        .collect()
}

fn order_id(i: usize) -> String {
    format!("F-{i:05}")
}

async fn generate_load(url: String, plans: Vec<Plan>) {
    let mut steps: Vec<(Duration, usize, bool)> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        steps.push((plan.placed_after, i, false));
        if let Some(paid_after) = plan.paid_after {
            steps.push((paid_after, i, true));
        }
    }
    steps.sort();
    let mut client = Client::new(url);
    let started = tokio::time::Instant::now();
    for (at, i, is_payment) in steps {
        tokio::time::sleep_until(started + at).await;
        let id = order_id(i);
        if is_payment {
            let body = serde_json::json!({"order_id": id, "payment_id": format!("PAY-{id}")});
            client
                .publish(
                    "paywait.orders",
                    "payment.succeeded",
                    body.to_string().as_bytes(),
                )
                .await;
        } else {
            let body = serde_json::json!({"order_id": id});
            client
                .publish(
                    "paywait.orders",
                    "order.placed",
                    body.to_string().as_bytes(),
                )
                .await;
        }
    }
}

fn broker_ctl(command: &str) {
    broker_ctl_args(&[command]);
}

fn broker_ctl_args(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

fn postgres_ctl(action: &str) {
    let cluster = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .unwrap();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &cluster, "main", action])
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action}");
}

async fn wait_for_postgres() {
    let started = Instant::now();
    loop {
        use diesel_async::{AsyncConnection, AsyncPgConnection};
        if AsyncPgConnection::establish(&format!("{}/postgres", helpers::POSTGRES))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "PostgreSQL did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Puts the broker back in service however the test ends: a failed
/// assertion must not leave it stopped or blocking publishers.
struct BrokerRestorer;

impl Drop for BrokerRestorer {
    fn drop(&mut self) {
        for args in [
            &["start_app"][..],
            &["set_vm_memory_high_watermark", "0.4"][..],
        ] {
            let _ = Command::new("rabbitmqctl")
                .arg("-q")
                .args(args)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Starts PostgreSQL again however the test ends.
struct PostgresRestorer;

impl Drop for PostgresRestorer {
    fn drop(&mut self) {
        if let Some(cluster) = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|entry| entry.ok())
        {
            let _ = Command::new("pg_ctlcluster")
                .args([
                    "--skip-systemctl-redirect",
                    &cluster.file_name().to_string_lossy(),
                    "main",
                    "start",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_order_timer_or_event_is_lost_through_crashes_and_restarts() {
    let _restorer = BrokerRestorer;
    let sandbox = Sandbox::create().await;
    let mut environment = sandbox.environment(SCHEDULE);
    environment.retain(|(key, _)| key != "PAYWAIT_HTTP__LISTEN");
    environment.extend(
        [
            ("PAYWAIT_SWEEPER__INTERVAL", "1s"),
            ("PAYWAIT_SWEEPER__GRACE", "3s"),
            ("PAYWAIT_SHUTDOWN__TIMEOUT", "3s"),
            ("PAYWAIT_AMQP__CONFIRM_TIMEOUT", "2s"),
            ("RUST_LOG", "info"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut generation = 0;
    let mut primary = Daemon::start(&environment, "primary", &mut generation);
    primary.wait_ready(Duration::from_secs(30)).await;

    // Downstream: a durable queue, so events survive the broker restart.
    let mut client = Client::new(sandbox.amqp_url());
    {
        let channel = client.channel().await.unwrap();
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        channel
            .queue_declare(DOWNSTREAM.into(), QueueDeclareOptions::durable(), arguments)
            .await
            .unwrap();
        channel
            .queue_bind(
                DOWNSTREAM.into(),
                "paywait.events".into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    let started = Instant::now();
    let load = tokio::spawn(generate_load(sandbox.amqp_url(), plans()));
    let mut figures = Figures::default();
    let at = |seconds: u64| {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started + Duration::from_secs(seconds),
        ))
    };

    for seconds in [2, 5] {
        at(seconds).await;
        primary.kill();
        let restarted = Instant::now();
        primary = Daemon::start(&environment, "primary", &mut generation);
        primary.wait_ready(Duration::from_secs(30)).await;
        figures.fault("SIGKILL of the daemon", restarted.elapsed());
    }

    at(8).await;
    broker_ctl("stop_app");
    let down = Instant::now();
    while primary.ready_status().await == 200 {
        assert!(
            down.elapsed() < Duration::from_secs(3),
            "/readyz still 200 without a broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        primary.child.try_wait().unwrap().is_none(),
        "the daemon exited without its broker"
    );
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(down.elapsed())).await;
    broker_ctl("start_app");
    let back = Instant::now();
    primary.wait_ready(Duration::from_secs(90)).await;
    figures.fault("broker restart (stop_app, 3 s, start_app)", back.elapsed());

    at(14).await;
    postgres_ctl("stop");
    let _postgres = PostgresRestorer;
    let down = Instant::now();
    while primary.ready_status().await == 200 {
        assert!(
            down.elapsed() < Duration::from_secs(5),
            "/readyz still 200 without PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        primary.child.try_wait().unwrap().is_none(),
        "the daemon exited without its database"
    );
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down.elapsed())).await;
    postgres_ctl("start");
    let back = Instant::now();
    wait_for_postgres().await;
    primary.wait_ready(Duration::from_secs(60)).await;
    figures.fault("PostgreSQL restart (stop, 2 s, start)", back.elapsed());

    at(16).await;
    let mut second = Daemon::start(&environment, "second", &mut generation);
    let ready_in = second.wait_ready(Duration::from_secs(30)).await;
    at(19).await;
    let status = second.terminate().await;
    assert_eq!(status.code(), Some(0), "the second daemon's SIGTERM exit");
    figures.fault("second daemon started, then stopped with SIGTERM", ready_in);

    at(20).await;
    let purged = client
        .channel()
        .await
        .unwrap()
        .queue_purge("paywait.wait.1s".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert!(purged > 0, "the purge deleted no timer");
    figures.fault("TTL queue purged (timers deleted)", Duration::ZERO);

    at(22).await;
    primary.kill();
    let restarted = Instant::now();
    primary = Daemon::start(&environment, "primary", &mut generation);
    primary.wait_ready(Duration::from_secs(30)).await;
    figures.fault("SIGKILL of the daemon", restarted.elapsed());

    load.await.expect("the load generator finished");

    // A broker that stops answering: a memory alarm blocks every publisher.
    // The daemon's publishes must time out and be retried, not hang it.
    // The alarm takes effect a moment after it is set, so it stays on until
    // the daemon has seen a publish time out, and for 5 s at least.
    at(24).await;
    broker_ctl_args(&["set_vm_memory_high_watermark", "0"]);
    let blocked = Instant::now();
    while blocked.elapsed() < Duration::from_secs(5)
        || !std::fs::read_to_string(&primary.log)
            .unwrap()
            .contains("did not confirm")
    {
        assert!(
            blocked.elapsed() < Duration::from_secs(30),
            "no publish timed out while the broker blocked publishers"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    broker_ctl_args(&["set_vm_memory_high_watermark", "0.4"]);
    let unblocked = Instant::now();
    primary.wait_ready(Duration::from_secs(30)).await;
    figures.fault(
        "broker blocks publishers for 5 s (memory alarm)",
        unblocked.elapsed(),
    );

    // Settle: every order terminal and announced, every late payment announced.
    let db = paywait::db::Database::new(&sandbox.settings_for(SCHEDULE).database).unwrap();
    let ids: Vec<OrderId> = (0..ORDERS)
        .map(|i| OrderId::parse(order_id(i)).unwrap())
        .collect();
    let settle_deadline = Instant::now() + Duration::from_secs(120);
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
            Instant::now() < settle_deadline,
            "{} orders never settled, e.g. {:?}; log: {}",
            unsettled.len(),
            db.find(&unsettled[0]).await.unwrap(),
            primary.log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled_in = started.elapsed();
    assert_eq!(
        primary.terminate().await.code(),
        Some(0),
        "SIGTERM exit status"
    );
    let log = std::fs::read_to_string(&primary.log).unwrap();
    let timeouts = log.matches("did not confirm").count();
    println!(
        "publishes that timed out while the broker blocked them, then were retried: {timeouts}"
    );
    assert!(timeouts > 0, "no publish timed out during the memory alarm");

    // Read every event downstream received.
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    let mut message_ids = HashSet::new();
    let mut delivered = 0usize;
    let channel = client.channel().await.unwrap();
    while let Some(message) = channel
        .basic_get(DOWNSTREAM.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        delivered += 1;
        let delivery = message.delivery;
        message_ids.insert(
            delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        events
            .entry(body["order_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["event"].as_str().unwrap().to_owned());
    }

    let plans = plans();
    let (mut paid, mut closed_then_paid, mut closed_unpaid) = (0, 0, 0);
    let mut lost = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let order = db.find(id).await.unwrap();
        let names = events.get(id.as_str()).cloned().unwrap_or_default();
        let has = |name: &str| names.iter().any(|n| n == name);
        let Some(order) = order else {
            lost.push(format!("{id}: no row"));
            continue;
        };
        assert!(
            !(has("order.paid") && has("order.closed")),
            "{id}: both paid and closed: {names:?}"
        );
        if let Some(closed_at) = order.closed_at {
            assert!(
                closed_at >= order.expires_at,
                "{id} was closed before its deadline"
            );
        }
        let payments = db.payments_of(id).await.unwrap();
        match (plans[i].paid_after.is_some(), order.status) {
            (true, OrderStatus::Paid) if has("order.paid") => paid += 1,
            (true, OrderStatus::Closed)
                if has("order.closed") && has("order.paid_after_close") && payments.len() == 1 =>
            {
                closed_then_paid += 1
            }
            (false, OrderStatus::Closed) if has("order.closed") && payments.is_empty() => {
                closed_unpaid += 1
            }
            (was_paid, status) => lost.push(format!(
                "{id}: paid={was_paid} status={status} events={names:?}"
            )),
        }
    }

    let duplicates = delivered - message_ids.len();
    println!(
        "\nfault test: {ORDERS} orders, schedule {SCHEDULE}, settled {settled_in:.1?} after the load began"
    );
    println!("| fault | times | worst time to ready again |\n| --- | --- | --- |");
    for (kind, times) in &figures.faults {
        println!("| {kind} | {times} | {:.2?} |", figures.recovery[kind]);
    }
    println!(
        "timers deleted by the purge (every order settled, so the sweeper re-armed them): {purged}"
    );
    println!(
        "orders: {paid} paid, {closed_then_paid} closed then paid after close, {closed_unpaid} closed unpaid; \
         lost: {}; events delivered: {delivered}, duplicates: {duplicates}",
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
