//! A three-node RabbitMQ cluster beside the machine's own broker, started
//! with `rabbit/cluster.sh`: paywait's quorum queues get a replica on every
//! node, paywait reaches the cluster through another node when one is away,
//! and losing nodes while orders come in loses nothing.

use std::process::{Command, Output};

use paywait_testkit::{Cluster, node_loss_drill};

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
    let cluster = Cluster::start(
        &format!("paywait-cluster-test-{}", std::process::id()),
        5790,
    );
    let urls = cluster.urls().join(",");

    let declared = topology(&urls);
    assert!(
        declared.status.success(),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    let queues = cluster.queues();
    let checks = queues
        .lines()
        .find(|line| line.starts_with("paywait.checks\t"))
        .unwrap_or_else(|| panic!("no paywait.checks in {queues}"));
    for n in 1..=3 {
        assert!(
            checks.contains(&cluster.node_name(n)),
            "paywait.checks has no replica on node {n}: {checks}"
        );
    }

    // The first node is away: the next one is used.
    cluster.stop_node(1);
    let declared = topology(&urls);
    assert!(
        declared.status.success(),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    cluster.start_node(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lost_while_orders_come_in_lose_nothing() {
    let report = node_loss_drill(
        env!("CARGO_BIN_EXE_paywait").as_ref(),
        &format!("paywait-cluster-drill-{}", std::process::id()),
        5800,
        50,
    )
    .await;
    println!("{report:#?}");
    assert!(report.orders > 500, "too few orders placed: {report:?}");
    assert!(
        report.wrong.is_empty(),
        "orders lost or wrong: {:?}",
        report.wrong
    );
    assert!(
        report.without_event.is_empty(),
        "orders without their event: {:?}",
        report.without_event
    );
    for recovery in &report.recoveries {
        assert!(
            recovery.not_ready < std::time::Duration::from_secs(30),
            "{recovery:?}"
        );
    }
}
