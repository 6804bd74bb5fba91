//! A three-node RabbitMQ cluster beside the machine's own broker, started
//! with `rabbit/cluster.sh`: paywait's quorum queues get a replica on every
//! node, and paywait reaches the cluster through another node when one is
//! away.

use std::process::{Command, Output};

struct Cluster {
    environment: Vec<(String, String)>,
}

impl Cluster {
    fn script(&self, args: &[&str]) -> Output {
        let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rabbit/cluster.sh"))
            .args(args)
            .envs(
                self.environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rabbit/cluster.sh"))
            .arg("stop")
            .envs(
                self.environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .output();
    }
}

fn topology(urls: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paywait"))
        .arg("topology")
        .env_clear()
        .env("PAYWAIT_AMQP__URLS", urls)
        .output()
        .unwrap()
}

#[test]
fn quorum_queues_live_on_every_node_and_a_node_away_is_passed_over() {
    let id = std::process::id();
    let cluster = Cluster {
        environment: vec![
            (
                "CLUSTER_DIR".into(),
                format!("/tmp/paywait-cluster-test-{id}"),
            ),
            ("CLUSTER_NAME".into(), format!("paywait-test-{id}")),
            ("CLUSTER_PORT".into(), "5790".into()),
        ],
    };
    let started = cluster.script(&["start"]);
    let urls: Vec<String> = String::from_utf8_lossy(&started.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(urls.len(), 3, "{urls:?}");
    let urls = urls.join(",");

    let declared = topology(&urls);
    assert!(
        declared.status.success(),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    let queues = String::from_utf8_lossy(&cluster.script(&["queues"]).stdout).into_owned();
    let checks = queues
        .lines()
        .find(|line| line.starts_with("paywait.checks\t"))
        .unwrap_or_else(|| panic!("no paywait.checks in {queues}"));
    for n in 1..=3 {
        assert!(
            checks.contains(&format!("paywait-test-{id}-{n}@localhost")),
            "paywait.checks has no replica on node {n}: {checks}"
        );
    }

    // The first node is away: the next one is used.
    cluster.script(&["stop-node", "1"]);
    let declared = topology(&urls);
    assert!(
        declared.status.success(),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    cluster.script(&["start-node", "1"]);
}

impl Cluster {
    /// The number (1 to 3) of the node named `node`.
    fn number(&self, node: &str) -> usize {
        node.trim()
            .split('@')
            .next()
            .and_then(|name| name.rsplit('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a node of the cluster: {node:?}"))
    }

    /// The node paywait is connected to.
    fn node_of_paywait(&self) -> usize {
        (1..=3)
            .find(|n| {
                let listed = self.script(&["connections", &n.to_string()]);
                String::from_utf8_lossy(&listed.stdout)
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
                    > 0
            })
            .expect("paywait is connected to no node")
    }

    /// The node leading `queue`.
    fn leader(&self, queue: &str) -> usize {
        self.number(&String::from_utf8_lossy(
            &self.script(&["leader", queue]).stdout,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lost_under_load_lose_nothing() {
    use std::{
        collections::HashMap,
        time::{Duration, Instant},
    };

    use paywait::domain::OrderStatus;
    use paywait_testkit::{Client, Daemon, Log, Sandbox};

    let id = std::process::id();
    let cluster = Cluster {
        environment: vec![
            (
                "CLUSTER_DIR".into(),
                format!("/tmp/paywait-cluster-load-{id}"),
            ),
            ("CLUSTER_NAME".into(), format!("paywait-load-{id}")),
            ("CLUSTER_PORT".into(), "5800".into()),
        ],
    };
    let started = cluster.script(&["start"]);
    let urls: Vec<String> = String::from_utf8_lossy(&started.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let sandbox = Sandbox::create().await;
    let environment: Vec<(String, String)> = [
        ("PAYWAIT_AMQP__URLS", urls.join(",")),
        ("PAYWAIT_DATABASE__URL", sandbox.database_url()),
        ("PAYWAIT_CHECKS__SCHEDULE", "8s".to_owned()),
        ("PAYWAIT_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let migrated = Command::new(env!("CARGO_BIN_EXE_paywait"))
        .arg("migrate")
        .env_clear()
        .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let mut daemon = Daemon::start(
        env!("CARGO_BIN_EXE_paywait").as_ref(),
        &environment,
        Log::Discard,
    );
    daemon.wait_ready(Duration::from_secs(30)).await;

    // Orders, half of them paid, all still waiting for their deadline.
    const ORDERS: usize = 200;
    {
        let client = Client::connect(&urls[2]).await;
        for i in 0..ORDERS {
            let order_id = format!("C-{i:03}");
            client.place(&order_id).await;
            if i % 2 == 0 {
                client.pay(&order_id, &format!("PAY-{order_id}")).await;
            }
        }
        client.close().await;
    }

    // The node paywait is connected to goes away, and comes back.
    let mut recoveries = Vec::new();
    let connected = cluster.node_of_paywait();
    cluster.script(&["stop-node", &connected.to_string()]);
    let lost = Instant::now();
    // Until paywait has noticed, it may still say ready.
    tokio::time::sleep(Duration::from_secs(1)).await;
    daemon.wait_ready(Duration::from_secs(30)).await;
    recoveries.push(("the node paywait was connected to stopped", lost.elapsed()));
    cluster.script(&["start-node", &connected.to_string()]);

    // Then the node leading the check queue.
    let leader = cluster.leader("paywait.checks");
    cluster.script(&["stop-node", &leader.to_string()]);
    let lost = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    daemon.wait_ready(Duration::from_secs(30)).await;
    recoveries.push(("the check queue's leader stopped", lost.elapsed()));
    tokio::time::sleep(Duration::from_secs(9)).await;
    cluster.script(&["start-node", &leader.to_string()]);

    // Every order ends as it must, each with its event.
    let db = paywait::db::Database::new(
        &paywait::configuration::Settings::load(&paywait::configuration::Sources {
            file: None,
            environment: environment.clone(),
        })
        .unwrap()
        .database,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..ORDERS {
        let order_id = paywait::domain::OrderId::parse(format!("C-{i:03}")).unwrap();
        loop {
            let order = db
                .find(&order_id)
                .await
                .unwrap()
                .expect("an order was lost");
            let expected = if i % 2 == 0 {
                OrderStatus::Paid
            } else {
                OrderStatus::Closed
            };
            if order.status == expected && order.event_published_at.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{order:?} never ended as {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let client = Client::connect(&urls[leader % 3]).await;
    let events = client
        .take_messages("paywait.unrouted", ORDERS * 2, Duration::from_secs(5))
        .await;
    let mut by_order: HashMap<String, Vec<String>> = HashMap::new();
    for event in &events {
        let body: serde_json::Value = serde_json::from_slice(&event.body).unwrap();
        by_order
            .entry(body["order_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(event.routing_key.clone());
    }
    for i in 0..ORDERS {
        let names = by_order
            .get(&format!("C-{i:03}"))
            .cloned()
            .unwrap_or_default();
        let expected = if i % 2 == 0 {
            "order.paid"
        } else {
            "order.closed"
        };
        assert!(
            names.iter().any(|name| name == expected),
            "C-{i:03}: {names:?}"
        );
    }
    for (fault, took) in &recoveries {
        println!("{fault}: ready again in {took:?}");
        assert!(*took < Duration::from_secs(30), "{fault}: {took:?}");
    }
    daemon.terminate().await;
}
