//! Building and running the daemon: one supervised session per connection
//! to RabbitMQ, reconnecting with capped, jittered backoff when it is lost.

use chrono::Utc;
use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::Topology,
    amqp::{AmqpError, Broker, ConsumeSettings, Session},
    backoff,
    configuration::Settings,
    db::{self, Database},
    domain::Inbox,
    error::{Error, Result},
    gateway::Gateway,
    http::{self, HttpState, Readiness},
    metrics::Metrics,
    progress::Progress,
    service,
    worker::{self, AskGateway, Barriers, ChecksInFlight, Live, Worker},
};

/// The daemon, with its HTTP listener bound and nothing else started yet.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// How a session with the broker ended, when not by a stop.
struct Lost {
    error: Error,
    /// Whether the session got as far as consuming.
    was_consuming: bool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self> {
        let address = settings.http.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen { address, source })?;
        Ok(Self {
            settings,
            listener,
            metrics: Arc::new(Metrics::new()),
            readiness: Readiness::default(),
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn http_address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Declares the topology, consumes, sweeps and serves HTTP until `stop`
    /// is cancelled, then drains in-flight messages and returns.
    ///
    /// A broker or database that cannot be reached at start-up is an error,
    /// so a misconfigured daemon fails fast. Once it has consumed, losing the
    /// broker only makes it reconnect.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<()> {
        let Self {
            settings,
            listener,
            metrics,
            readiness,
        } = self;
        let db = Database::new(&settings.database)?;
        if settings.database.migrate {
            for migration in db::migrate(&settings.database).await? {
                tracing::info!(%migration, "applied a migration");
            }
        } else {
            db::ensure_migrated(&settings.database).await?;
        }
        let broker = Broker::new(&settings.amqp)?;
        let gateway = Gateway::from_settings(&settings.gateway, metrics.clone())?.map(Arc::new);
        if settings.payments.trusted_users.is_empty() {
            tracing::warn!(
                "payments.trusted_users is not set: anyone who may publish to the orders \
                 exchange can mark orders paid"
            );
        }
        let services = Services {
            db: db.clone(),
            gateway,
            metrics: metrics.clone(),
            progress: Progress::default(),
            barriers: Arc::new(Barriers::new(settings.amqp.confirm_timeout)),
            topology: Arc::new(Topology::from_settings(&settings)),
        };

        let http_stop = CancellationToken::new();
        let state = HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            db: db.clone(),
            broker: broker.clone(),
            topology: services.topology.clone(),
            barriers: services.barriers.clone(),
            address: listener
                .local_addr()
                .map_or_else(|_| settings.http.listen.to_string(), |a| a.to_string()),
        };
        let server = tokio::spawn(http::serve(listener, state, http_stop.clone()));

        let watchdog = CancellationToken::new();
        service::keep_watchdog_fed(
            watchdog.clone(),
            services.progress.clone(),
            settings.stuck_after(),
        );
        // Reconnects for as long as it takes once it has consumed: a daemon
        // is there to come back. Each wait is capped, and a stop ends it;
        // one that never got going exits at once instead.
        let mut delays = backoff::delays(backoff::RECONNECT_CAP);
        let mut ever_consumed = false;
        let result = loop {
            service::status("connecting to RabbitMQ");
            let lost = match session(&settings, &broker, &services, &readiness, &stop).await {
                Ok(()) => break Ok(()),
                Err(lost) => lost,
            };
            readiness.stopped();
            if !ever_consumed && !lost.was_consuming {
                break Err(lost.error);
            }
            if lost.was_consuming {
                ever_consumed = true;
                delays = backoff::delays(backoff::RECONNECT_CAP);
            }
            let wait = delays.next().unwrap_or(backoff::RECONNECT_CAP);
            tracing::warn!(error = %lost.error, retry_in = ?wait, "lost RabbitMQ; reconnecting");
            service::status(&format!(
                "lost RabbitMQ ({}); reconnecting in {wait:.1?}",
                lost.error
            ));
            tokio::select! {
                () = tokio::time::sleep(wait) => metrics.reconnected(),
                () = stop.cancelled() => break Ok(()),
            }
        };
        readiness.stopped();
        http_stop.cancel();
        watchdog.cancel();
        let _ = server.await;
        broker.close();
        if result.is_ok() {
            tracing::info!("paywait stopped");
        }
        result
    }
}

/// What outlives a connection to the broker.
struct Services {
    db: Database,
    gateway: Option<Arc<Gateway>>,
    metrics: Arc<Metrics>,
    progress: Progress,
    barriers: Arc<Barriers>,
    /// Built once, for every session and the HTTP endpoints.
    topology: Arc<Topology>,
}

/// One connection's life: declare, consume and sweep until `stop` (then
/// `Ok`) or until the connection or a channel fails (then `Lost`).
async fn session(
    settings: &Settings,
    broker: &Broker,
    services: &Services,
    readiness: &Readiness,
    stop: &CancellationToken,
) -> std::result::Result<(), Lost> {
    let Services {
        db,
        gateway,
        metrics,
        progress,
        barriers,
        topology,
    } = services;
    let setting_up = progress.begin();
    let not_consuming = |error: AmqpError| Lost {
        error: error.into(),
        was_consuming: false,
    };
    let session = Session::open(broker, topology.clone(), settings.amqp.confirm_timeout)
        .await
        .map_err(not_consuming)?;
    let worker = Arc::new(Worker {
        store: db.clone(),
        bus: Live {
            publisher: session.publisher().clone(),
            topology: topology.clone(),
            barriers: barriers.clone(),
            db: db.clone(),
        },
        clock: Utc::now,
        schedule: settings.checks.schedule.clone(),
        remind_before: settings.checks.remind_before.clone(),
        timers: settings.timers(),
        limits: settings.limits(),
        metrics: metrics.clone(),
        trusted_users: settings.payments.trusted_users.clone(),
        gateway: gateway
            .clone()
            .map(|gateway| gateway as Arc<dyn AskGateway>),
        checks_in_flight: ChecksInFlight::default(),
        progress: progress.clone(),
    });

    let stop_session = stop.child_token();
    let consume = ConsumeSettings {
        prefetch: settings.amqp.prefetch.get(),
        drain: settings.shutdown.timeout,
    };
    let mut consumers = JoinSet::new();
    for inbox in Inbox::ALL {
        let consumer = session
            .consumer(
                inbox,
                worker.clone(),
                metrics.clone(),
                consume,
                stop_session.clone(),
            )
            .await
            .map_err(not_consuming)?;
        consumers.spawn(consumer);
    }
    let sweeper = tokio::spawn(worker::sweep_periodically(
        worker.clone(),
        settings.sweeper.clone(),
        stop_session.clone(),
    ));
    let backlog = tokio::spawn(
        session
            .backlog_poller(metrics.clone(), stop_session.clone())
            .await
            .map_err(not_consuming)?,
    );
    readiness.consuming(session.health());
    drop(setting_up);
    tracing::info!("paywait is running");
    let queues: Vec<&str> = Inbox::ALL
        .iter()
        .map(|inbox| topology.queue(*inbox))
        .collect();
    service::ready(&format!("consuming from {}", queues.join(", ")));

    let mut failure = None;
    while let Some(joined) = consumers.join_next().await {
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error.into(),
            Err(panic) => Error::TaskFailed {
                task: "a consumer",
                message: panic.to_string(),
            },
        };
        readiness.stopped();
        stop_session.cancel();
        failure.get_or_insert(error);
    }
    readiness.stopped();
    for (task, handle) in [("the sweeper", sweeper), ("the backlog poller", backlog)] {
        join_within(handle, settings.shutdown.timeout, task).await;
    }
    session.close().await;

    if stop.is_cancelled() {
        return Ok(());
    }
    Err(Lost {
        error: failure.unwrap_or(AmqpError::PublishingChannelClosed.into()),
        was_consuming: true,
    })
}

/// Waits for a task of an ending session, no longer than `limit`: one stuck
/// in I/O (a link gone silent) is aborted rather than waited for.
async fn join_within(
    mut handle: tokio::task::JoinHandle<()>,
    limit: std::time::Duration,
    task: &str,
) {
    if tokio::time::timeout(limit, &mut handle).await.is_err() {
        tracing::warn!(task, ?limit, "did not stop in time; aborting it");
        handle.abort();
        let _ = handle.await;
    }
}
