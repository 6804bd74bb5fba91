//! The alerting rules and the dashboard that ship in `deploy/`: the rules
//! pass their own unit tests, and every metric either of them reads is one
//! the daemon exports.

use std::{collections::BTreeSet, process::Command};

use paywait_testkit::TestApp;
use serde_json::Value;

fn path(relative: &str) -> String {
    format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("promtool ({error}): install it with `apt-get install prometheus`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() {
    let checked = promtool(&[
        "check",
        "rules",
        &path("deploy/prometheus/paywait.rules.yml"),
    ]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&[
        "test",
        "rules",
        &path("deploy/prometheus/paywait.rules.test.yml"),
    ]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every `paywait_…` name in a PromQL expression.
fn metric_names(expression: &str, into: &mut BTreeSet<String>) {
    let mut rest = expression;
    while let Some(start) = rest.find("paywait_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        into.insert(name);
    }
}

/// Every string under an `expr` key, however deep.
fn expressions(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expression)) => into.push(expression.clone()),
                    _ => expressions(value, into),
                }
            }
        }
        Value::Array(values) => values.iter().for_each(|value| expressions(value, into)),
        _ => {}
    }
}

/// The series names `/metrics` exposes: `# TYPE` lines name the families,
/// whose samples carry the suffixes of their type.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(family), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{family}{suffix}"));
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_and_the_dashboard_read_only_metrics_the_daemon_exports() {
    let mut expressions_used = Vec::new();
    let rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(path("deploy/prometheus/paywait.rules.yml")).unwrap(),
    )
    .unwrap();
    expressions(&rules, &mut expressions_used);
    let rule_count = expressions_used.len();
    assert!(rule_count >= 9, "{rules}");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(path("deploy/grafana/paywait.json")).unwrap(),
    )
    .unwrap();
    expressions(&dashboard, &mut expressions_used);
    assert!(expressions_used.len() > rule_count + 10, "{dashboard}");

    let mut used = BTreeSet::new();
    for expression in &expressions_used {
        metric_names(expression, &mut used);
    }
    let app = TestApp::spawn("1m").await;
    let (_, text) = app.get("/metrics").await;
    let exported = exported(&text);
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "not exported: {unknown:?}; /metrics has {exported:?}"
    );
    // The alerts this deployment is promised.
    for alert in [
        "PaywaitNotReady",
        "PaywaitChecksOverdue",
        "PaywaitCloseLatenessHigh",
        "PaywaitParkedMessagesGrowing",
        "PaywaitReconnectStorm",
        "PaywaitGatewayFailing",
    ] {
        assert!(rules.to_string().contains(alert), "no {alert}");
    }
    for gauge in [
        "paywait_ready",
        "paywait_orders_pending",
        "paywait_checks_overdue",
        "paywait_events_owed",
    ] {
        assert!(used.contains(gauge), "{gauge} is not used");
    }
}
