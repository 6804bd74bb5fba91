//! A three-node RabbitMQ cluster beside the machine's own broker, started
//! with `rabbit/cluster.sh`, and the node-loss drill run on it: orders keep
//! coming while the node paywait is connected to goes away and comes back,
//! then the node leading the check queue.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use paywait::{
    configuration::{Settings, Sources},
    db::Database,
    domain::{OrderId, OrderStatus},
};

use crate::{Client, Daemon, Log, ResilientClient, Sandbox, bodies, http_get};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rabbit/cluster.sh");

/// Three nodes, `NAME-1@localhost` to `NAME-3@localhost`, stopped and their
/// data removed when dropped.
pub struct Cluster {
    name: String,
    environment: Vec<(String, String)>,
    urls: Vec<String>,
}

impl Cluster {
    /// Starts the nodes; node N listens for AMQP on `port + N`.
    pub fn start(name: &str, port: u16) -> Self {
        let mut cluster = Self {
            name: name.to_owned(),
            environment: vec![
                ("CLUSTER_DIR".into(), format!("/tmp/{name}")),
                ("CLUSTER_NAME".into(), name.to_owned()),
                ("CLUSTER_PORT".into(), port.to_string()),
            ],
            urls: Vec::new(),
        };
        cluster.urls = cluster
            .script(&["start"])
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(cluster.urls.len(), 3, "{:?}", cluster.urls);
        cluster
    }

    /// The nodes' AMQP URLs, node 1 first.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The Erlang name of node `n`.
    pub fn node_name(&self, n: usize) -> String {
        format!("{}-{n}@localhost", self.name)
    }

    pub fn stop_node(&self, n: usize) {
        self.script(&["stop-node", &n.to_string()]);
    }

    pub fn start_node(&self, n: usize) {
        self.script(&["start-node", &n.to_string()]);
    }

    /// `rabbitmqctl list_queues name type members`, as text.
    pub fn queues(&self) -> String {
        self.script(&["queues"])
    }

    /// The node paywait is connected to.
    pub fn node_of_paywait(&self) -> usize {
        (1..=3)
            .find(|n| {
                self.script(&["connections", &n.to_string()])
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
                    > 0
            })
            .expect("paywait is connected to no node")
    }

    /// The node leading `queue`.
    pub fn leader(&self, queue: &str) -> usize {
        let node = self.script(&["leader", queue]);
        node.trim()
            .split('@')
            .next()
            .and_then(|name| name.rsplit('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a node of the cluster: {node:?}"))
    }

    fn command(&self) -> Command {
        let mut command = Command::new(SCRIPT);
        command.envs(
            self.environment
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        command
    }

    /// Runs the script; its standard output.
    fn script(&self, args: &[&str]) -> String {
        let output: Output = self.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command().arg("stop").output();
    }
}

/// How paywait came through one lost node.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub fault: &'static str,
    /// From the node's stop until `/readyz` answered 200 for good (zero
    /// when it never stopped answering 200).
    pub not_ready: Duration,
    /// The longest time from the node's stop, or from one confirmed order,
    /// until the next order the publishing client got confirmed.
    pub publishing_stalled: Duration,
}

/// What the drill found.
#[derive(Debug)]
pub struct DrillReport {
    /// Orders the broker confirmed, all of which paywait must resolve.
    pub orders: usize,
    pub recoveries: Vec<Recovery>,
    /// Orders that did not end as they must (paid ones paid, the others
    /// closed, the event published), with what was found.
    pub wrong: Vec<String>,
    /// Orders whose event never reached `paywait.unrouted`.
    pub without_event: Vec<String>,
}

/// How long an order waits for its deadline in the drill.
const DEADLINE: &str = "8s";

/// Runs the drill on a cluster of its own, named `name`, its nodes on
/// `port + 1` to `port + 3`, with the daemon `binary`. Orders are placed
/// (every other one paid) for the whole drill, at about `rate` per second.
pub async fn node_loss_drill(binary: &Path, name: &str, port: u16, rate: u32) -> DrillReport {
    let cluster = Cluster::start(name, port);
    let sandbox = Sandbox::create().await;
    let environment: Vec<(String, String)> = [
        ("PAYWAIT_AMQP__URLS", cluster.urls().join(",")),
        ("PAYWAIT_DATABASE__URL", sandbox.database_url()),
        ("PAYWAIT_CHECKS__SCHEDULE", DEADLINE.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let migrated = Command::new(binary)
        .arg("migrate")
        .env_clear()
        .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let mut daemon = Daemon::start(binary, &environment, Log::Discard);
    daemon.wait_ready(Duration::from_secs(30)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let readiness = ReadinessProbe::start(daemon.port(), stop.clone());
    // The order service is given the nodes in the other order, so it does not
    // lose the same node as paywait.
    let mut order_service_nodes = cluster.urls().to_vec();
    order_service_nodes.reverse();
    let orders = tokio::spawn(place_orders(order_service_nodes, rate, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let connected = cluster.node_of_paywait();
    let first = Instant::now();
    cluster.stop_node(connected);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.start_node(connected);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The check queue's leader goes away while timers expire into it.
    let leader = cluster.leader("paywait.checks");
    let second = Instant::now();
    cluster.stop_node(leader);
    tokio::time::sleep(Duration::from_secs(9)).await;
    cluster.start_node(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;

    stop.store(true, Ordering::Relaxed);
    let confirmed = orders.await.expect("the order service's task");
    let ready = readiness.finish();
    let recoveries = vec![
        Recovery {
            fault: "the node paywait was connected to stopped",
            not_ready: not_ready_after(&ready, first, second),
            publishing_stalled: stalled_after(&confirmed, first, second),
        },
        Recovery {
            fault: "the check queue's leader stopped",
            not_ready: not_ready_after(&ready, second, Instant::now()),
            publishing_stalled: stalled_after(&confirmed, second, Instant::now()),
        },
    ];

    let settings = Settings::load(&Sources {
        file: None,
        environment: environment.clone(),
    })
    .expect("the drill's settings");
    let db = Database::new(&settings.database).expect("the drill's database");
    let wrong = unresolved(&db, confirmed.len(), Duration::from_secs(60)).await;
    let client = Client::connect(&cluster.urls()[leader % 3]).await;
    let events = client
        .take_messages("paywait.unrouted", usize::MAX, Duration::from_secs(3))
        .await;
    let announced: HashSet<(String, String)> = events
        .iter()
        .filter_map(|event| {
            let body: serde_json::Value = serde_json::from_slice(&event.body).ok()?;
            Some((
                body["order_id"].as_str()?.to_owned(),
                event.routing_key.clone(),
            ))
        })
        .collect();
    let without_event = (0..confirmed.len())
        .map(|i| (order_id(i), expected(i)))
        .filter(|(order_id, (_, event))| {
            !announced.contains(&(order_id.clone(), (*event).to_owned()))
        })
        .map(|(order_id, _)| order_id)
        .collect();
    client.close().await;
    daemon.terminate().await;
    DrillReport {
        orders: confirmed.len(),
        recoveries,
        wrong,
        without_event,
    }
}

fn order_id(i: usize) -> String {
    format!("N-{i:05}")
}

/// How order `i` must end, and its event.
fn expected(i: usize) -> (OrderStatus, &'static str) {
    if i.is_multiple_of(2) {
        (OrderStatus::Paid, "order.paid")
    } else {
        (OrderStatus::Closed, "order.closed")
    }
}

/// Places orders `N-00000`, `N-00001`, ... (paying the even ones), each
/// published again, to the next node, until the broker confirms it; the
/// instant each order and its payment were confirmed.
async fn place_orders(nodes: Vec<String>, rate: u32, stop: Arc<AtomicBool>) -> Vec<Instant> {
    let mut client = ResilientClient::over(nodes);
    let mut confirmed = Vec::new();
    let every = Duration::from_secs(1) / rate.max(1);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let i = confirmed.len();
        let order_id = order_id(i);
        client
            .publish_inbound("order.placed", &bodies::placed(&order_id))
            .await;
        if expected(i).0 == OrderStatus::Paid {
            client
                .publish_inbound(
                    "payment.succeeded",
                    &bodies::paid(&order_id, &format!("PAY-{order_id}")),
                )
                .await;
        }
        confirmed.push(Instant::now());
        next += every;
        tokio::time::sleep_until(next.into()).await;
    }
    confirmed
}

/// The orders among the first `count` that have not ended as they must
/// once `within` has passed.
async fn unresolved(db: &Database, count: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut waiting: HashMap<usize, String> = (0..count).map(|i| (i, String::new())).collect();
    loop {
        let mut still = HashMap::new();
        for (i, _) in waiting {
            let id = OrderId::parse(order_id(i)).expect("a valid order id");
            let found = db.find(&id).await;
            let done = matches!(
                &found,
                Ok(Some(order)) if order.status == expected(i).0 && order.event_published_at.is_some()
            );
            if !done {
                still.insert(i, format!("{}: {found:?}", order_id(i)));
            }
        }
        waiting = still;
        if waiting.is_empty() || Instant::now() > deadline {
            let mut wrong: Vec<String> = waiting.into_values().collect();
            wrong.sort();
            return wrong;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `/readyz`, asked every 20 ms on a thread of its own.
struct ReadinessProbe {
    samples: Arc<Mutex<Vec<(Instant, bool)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl ReadinessProbe {
    fn start(port: u16, stop: Arc<AtomicBool>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let recorded = samples.clone();
        let thread = std::thread::spawn(move || {
            let url = format!("http://127.0.0.1:{port}/readyz");
            while !stop.load(Ordering::Relaxed) {
                let ready = http_get(&url).0 == 200;
                recorded.lock().unwrap().push((Instant::now(), ready));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { samples, thread }
    }

    fn finish(self) -> Vec<(Instant, bool)> {
        self.thread.join().expect("the readiness probe");
        Arc::try_unwrap(self.samples)
            .expect("the probe has stopped")
            .into_inner()
            .unwrap()
    }
}

/// From `from` until the first 200 after the last answer in `[from, until)`
/// that was not 200.
fn not_ready_after(samples: &[(Instant, bool)], from: Instant, until: Instant) -> Duration {
    let window: Vec<_> = samples
        .iter()
        .filter(|(at, _)| *at >= from && *at < until)
        .collect();
    match window.iter().rposition(|(_, ready)| !ready) {
        None => Duration::ZERO,
        Some(last) => window
            .get(last + 1)
            .map_or(until - from, |(at, _)| *at - from),
    }
}

/// The longest wait, within `[from, until)`, for the next confirmed order,
/// counted from `from` or from the confirmation before.
fn stalled_after(confirmed: &[Instant], from: Instant, until: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for at in confirmed.iter().filter(|at| **at > from && **at < until) {
        longest = longest.max(*at - last);
        last = *at;
    }
    if last == from { until - from } else { longest }
}
