//! paywait itself: a burst of orders, then a steady rate for timer precision.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use chrono::{SecondsFormat, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywait::{
    configuration::{Settings, Sources},
    topology::Topology,
};
use serde_json::json;

use paywait_testkit::{Daemon, Log};

use crate::{
    Options,
    client::{self, Pipeline},
    stats::{self, Lateness, PaywaitRun},
};

const PREFIX: &str = "paywait_bench";
const DATABASE: &str = "paywait_bench";
const PUBLISH_WINDOW: usize = 1_000;

pub fn environment(options: &Options, database: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("AMQP_URL", options.amqp_url.clone()),
        ("DATABASE_URL", format!("{}/{database}", options.postgres)),
        ("PAYWAIT_TOPOLOGY__PREFIX", prefix.to_owned()),
        ("PAYWAIT_CHECKS__SCHEDULE", "1s".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(options.daemon_env.iter().cloned())
    .collect()
}

pub fn settings(environment: &[(String, String)]) -> anyhow::Result<Settings> {
    Ok(Settings::load(&Sources {
        file: None,
        environment: environment.to_vec(),
    })?)
}

/// Drops and re-creates a database with paywait's schema.
pub async fn fresh_database(options: &Options, settings: &Settings) -> anyhow::Result<()> {
    let name = settings.database.name();
    let mut conn = AsyncPgConnection::establish(&format!("{}/postgres", options.postgres)).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    paywait::db::migrate(&settings.database.url, &name).await?;
    Ok(())
}

pub async fn run(options: &Options, binary: &Path) -> anyhow::Result<PaywaitRun> {
    let environment = environment(options, DATABASE, PREFIX);
    let settings = settings(&environment)?;
    let topology = Topology::from_settings(&settings);
    let client = client::connect(&options.amqp_url).await?;
    let channel = client.channel();
    client::delete_topology(channel, &topology).await?;
    fresh_database(options, &settings).await?;

    let mut daemon_environment = environment.clone();
    daemon_environment.push(("RUST_LOG".to_owned(), "warn".to_owned()));
    let mut daemon = Daemon::start(binary, &daemon_environment, Log::Inherit);
    daemon
        .try_wait_ready(Duration::from_secs(60))
        .await
        .map_err(anyhow::Error::msg)?;
    let mut events = client::event_sink(&client, &topology).await?;
    let mut pipeline = Pipeline::new(client.publisher().clone(), PUBLISH_WINDOW);

    // Burst: every order at once, every other one paid right after it.
    let cpu_before = cpu_seconds(&daemon)?;
    let started = Instant::now();
    for i in 0..options.orders {
        let order_id = format!("B-{i}");
        pipeline
            .publish(
                topology.orders_exchange(),
                "order.placed",
                json!({"order_id": order_id}).to_string().as_bytes(),
            )
            .await?;
        if i % 2 == 0 {
            pipeline
                .publish(
                    topology.orders_exchange(),
                    "payment.succeeded",
                    json!({"order_id": order_id, "payment_id": format!("PAY-{i}")})
                        .to_string()
                        .as_bytes(),
                )
                .await?;
        }
    }
    pipeline.finish().await?;

    let mut terminal: HashMap<String, String> = HashMap::new();
    let mut seen_ids = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut last = started;
    let deadline = Instant::now() + Duration::from_secs(300);
    while terminal.len() < options.orders {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let received = tokio::time::timeout(remaining, events.recv())
            .await
            .ok()
            .flatten()
            .with_context(|| {
                format!(
                    "only {} of {} orders were resolved",
                    terminal.len(),
                    options.orders
                )
            })?;
        if !seen_ids.insert(received.message_id.clone()) {
            duplicates += 1;
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&received.body)?;
        let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();
        let event = body["event"].as_str().unwrap_or_default().to_owned();
        if let Some(previous) = terminal.insert(order_id.clone(), event.clone()) {
            anyhow::bail!("{order_id} was resolved twice: {previous}, then {event}");
        }
        last = received.at;
    }
    let burst_seconds = (last - started).as_secs_f64();
    let cpu_seconds = cpu_seconds(&daemon)? - cpu_before;
    for (i, kind) in (0..options.orders).map(|i| (i, &terminal[&format!("B-{i}")])) {
        let expected = if i % 2 == 0 {
            "order.paid"
        } else {
            "order.closed"
        };
        ensure!(kind == expected, "B-{i} ended {kind}, expected {expected}");
    }

    // Let the burst's last timers (those of paid orders) fire before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Precision: unpaid orders at a steady rate, stamped with when they were placed.
    let precision_orders = options.precision_orders();
    pipeline
        .place_steadily(
            topology.orders_exchange(),
            options.rate,
            precision_orders,
            |i| {
                let placed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
                json!({"order_id": format!("P-{i}"), "placed_at": placed_at})
            },
        )
        .await?;
    let mut closed = 0;
    while closed < precision_orders {
        let received = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .ok()
            .flatten()
            .context("the precision orders were not all closed")?;
        if seen_ids.insert(received.message_id.clone()) {
            closed += 1;
        }
    }
    let mut conn = AsyncPgConnection::establish(settings.database.url.expose()).await?;
    let samples = stats::close_lateness(&mut conn, "P-").await?;
    ensure!(
        samples.len() == precision_orders,
        "some precision orders are not closed"
    );

    let peak_rss_mib = daemon
        .peak_rss_mib()
        .context("reading the daemon's memory from /proc")?;
    ensure!(
        daemon.terminate().await.success(),
        "paywait did not stop cleanly on SIGTERM"
    );
    // Its exclusive sink queue goes with the connection.
    client.close().await;
    Ok(PaywaitRun {
        orders_per_second: options.orders as f64 / burst_seconds,
        duplicates,
        lateness: Lateness::of(&samples),
        cpu_ms_per_order: cpu_seconds * 1000.0 / options.orders as f64,
        peak_rss_mib,
    })
}

fn cpu_seconds(daemon: &Daemon) -> anyhow::Result<f64> {
    daemon
        .cpu_seconds()
        .context("reading the daemon's CPU time from /proc")
}
