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
