//! One paywait daemon for one run: its own topology and database, created
//! fresh and removed afterwards, a sink on its events, and a pipelined
//! publisher for the load.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywait::{
    amqp::Topology,
    configuration::{Settings, Sources},
};
use paywait_testkit::{Client, Daemon, Log, metric_value};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    Options,
    client::{self, Pipeline, Received},
};

/// The topology prefix and database name of every paywait run.
pub const NAME: &str = "paywait_bench";
const PUBLISH_WINDOW: usize = 1_000;

/// The daemon's environment for a run of `schedule`, with the options'
/// extra settings last (they win).
pub fn environment(
    options: &Options,
    database: &str,
    prefix: &str,
    schedule: &str,
) -> Vec<(String, String)> {
    [
        ("AMQP_URL", options.amqp_url.clone()),
        ("DATABASE_URL", format!("{}/{database}", options.postgres)),
        ("PAYWAIT_TOPOLOGY__PREFIX", prefix.to_owned()),
        ("PAYWAIT_CHECKS__SCHEDULE", schedule.to_owned()),
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
    drop_database(&options.postgres, &settings.database.name()).await?;
    paywait::db::migrate(&settings.database).await?;
    Ok(())
}

/// Drops database `name` of the PostgreSQL server at `postgres`.
pub async fn drop_database(postgres: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(&format!("{postgres}/postgres")).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// How each order ended, as a downstream queue saw it.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// The order's terminal event and when it was received.
    pub by_order: HashMap<String, Ended>,
    /// Events received again under a message id already seen.
    pub duplicates: usize,
    /// Events that end no order (reminders, deadline changes), first
    /// copies only, with when they were received.
    pub others: Vec<(Value, DateTime<Utc>)>,
    /// When the last first-seen event arrived.
    pub last: Option<std::time::Instant>,
}

#[derive(Debug, Clone)]
pub struct Ended {
    pub event: String,
    pub received_at: DateTime<Utc>,
}

/// A daemon started for one run, and what the run needs around it.
pub struct Harness {
    pub daemon: Daemon,
    pub client: Client,
    pub topology: Topology,
    pub settings: Settings,
    pub pipeline: Pipeline,
    events: UnboundedReceiver<Received>,
    seen: HashSet<Option<String>>,
    postgres: String,
}

impl Harness {
    /// A fresh topology and database, and the daemon consuming them with
    /// `schedule`.
    pub async fn start(options: &Options, binary: &Path, schedule: &str) -> anyhow::Result<Self> {
        Self::start_with(options, binary, schedule, &[]).await
    }

    /// The same, with `extra` settings for the daemon (the options' own
    /// still win).
    pub async fn start_with(
        options: &Options,
        binary: &Path,
        schedule: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut environment = environment(options, NAME, NAME, schedule);
        let from_options = environment.split_off(environment.len() - options.daemon_env.len());
        environment.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        environment.extend(from_options);
        let settings = settings(&environment)?;
        let topology = Topology::from_settings(&settings);
        let client = client::connect(&options.amqp_url).await?;
        client::delete_topology(client.channel(), &topology).await?;
        fresh_database(options, &settings).await?;

        let mut daemon_environment = environment;
        daemon_environment.push(("RUST_LOG".to_owned(), "warn".to_owned()));
        let mut daemon = Daemon::start(binary, &daemon_environment, Log::Inherit);
        daemon
            .try_wait_ready(Duration::from_secs(60))
            .await
            .map_err(anyhow::Error::msg)?;
        let events = client::event_sink(&client, &topology).await?;
        let pipeline = Pipeline::new(client.publisher().clone(), PUBLISH_WINDOW);
        Ok(Self {
            daemon,
            client,
            topology,
            settings,
            pipeline,
            events,
            seen: HashSet::new(),
            postgres: options.postgres.clone(),
        })
    }

    /// Publishes an `order.placed` (confirmed by the time the pipeline
    /// finishes).
    pub async fn place(&mut self, body: &Value) -> anyhow::Result<()> {
        let exchange = self.topology.orders_exchange().to_owned();
        self.pipeline
            .publish(&exchange, "order.placed", body.to_string().as_bytes())
            .await
    }

    /// Publishes a `payment.succeeded`.
    pub async fn pay(&mut self, body: &Value) -> anyhow::Result<()> {
        let exchange = self.topology.orders_exchange().to_owned();
        self.pipeline
            .publish(&exchange, "payment.succeeded", body.to_string().as_bytes())
            .await
    }

    /// Receives events until `orders` more orders have ended, each once, or
    /// `within` passes. Every order must end with one event only.
    pub async fn await_outcomes(
        &mut self,
        orders: usize,
        within: Duration,
    ) -> anyhow::Result<Outcomes> {
        let mut outcomes = Outcomes::default();
        let give_up = tokio::time::Instant::now() + within;
        while outcomes.by_order.len() < orders {
            let received = tokio::time::timeout_at(give_up, self.events.recv())
                .await
                .ok()
                .flatten()
                .with_context(|| {
                    format!(
                        "only {} of {orders} orders ended within {within:?}",
                        outcomes.by_order.len()
                    )
                })?;
            if !self.seen.insert(received.message_id.clone()) {
                outcomes.duplicates += 1;
                continue;
            }
            let body: Value = serde_json::from_slice(&received.body)?;
            let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();
            let event = body["event"].as_str().unwrap_or_default().to_owned();
            if !matches!(event.as_str(), "order.paid" | "order.closed") {
                outcomes.others.push((body, received.wall));
                continue;
            }
            let ended = Ended {
                event: event.clone(),
                received_at: received.wall,
            };
            if let Some(previous) = outcomes.by_order.insert(order_id.clone(), ended) {
                anyhow::bail!("{order_id} ended twice: {}, then {event}", previous.event);
            }
            outcomes.last = Some(received.at);
        }
        // Duplicates of these events arrive right behind them, if at all.
        while let Ok(Some(received)) =
            tokio::time::timeout(Duration::from_millis(500), self.events.recv()).await
        {
            if !self.seen.insert(received.message_id.clone()) {
                outcomes.duplicates += 1;
            } else if let Ok(body) = serde_json::from_slice::<Value>(&received.body) {
                outcomes.others.push((body, received.wall));
            }
        }
        Ok(outcomes)
    }

    /// A connection to the run's database.
    pub async fn database(&self) -> anyhow::Result<AsyncPgConnection> {
        Ok(AsyncPgConnection::establish(&self.settings.database.url.expose()).await?)
    }

    /// One series of the daemon's metrics.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.daemon.get("/metrics").await;
        metric_value(&text, series)
    }

    /// The share of timers that arrived before they were due (and so could
    /// wait out the rest in process).
    pub async fn arrived_in_time(&self) -> f64 {
        let (_, text) = self.daemon.get("/metrics").await;
        let early = metric_value(&text, "paywait_timer_arrival_seconds_bucket{le=\"0.0\"}");
        let all = metric_value(&text, "paywait_timer_arrival_seconds_count");
        early / all.max(1.0)
    }

    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        self.daemon
            .peak_rss_mib()
            .context("reading the daemon's memory from /proc")
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        self.daemon
            .cpu_seconds()
            .context("reading the daemon's CPU time from /proc")
    }

    /// Stops the daemon (it must stop cleanly) and removes the run's
    /// topology and database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        ensure!(
            self.daemon.terminate().await.success(),
            "paywait did not stop cleanly on SIGTERM"
        );
        client::delete_topology(self.client.channel(), &self.topology).await?;
        self.client.close().await;
        drop_database(&self.postgres, &self.settings.database.name()).await
    }
}
