//! Building and running the daemon.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::{self, Broker, Publisher},
    configuration::Settings,
    db::{self, Database},
    error::{Error, Result},
    http::{self, HttpState, Readiness},
    metrics::Metrics,
    topology::Topology,
    worker::{self, Inbox, Worker},
};

/// The daemon, with its HTTP listener bound and nothing else started yet.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
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

    /// Declares the topology, consumes, and serves HTTP until `stop` is
    /// cancelled (then drains in-flight messages) or a consumer fails.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<()> {
        let Self {
            settings,
            listener,
            metrics,
            readiness,
        } = self;
        let db = Database::new(&settings.database)?;
        db::ensure_migrated(&settings.database.url).await?;

        let http_stop = CancellationToken::new();
        let app = http::router(HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            db: db.clone(),
        });
        let server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(http_stop.clone().cancelled_owned())
                .into_future(),
        );

        let result = consume(&settings, db, metrics, &readiness, stop).await;
        readiness.stopped();
        http_stop.cancel();
        let _ = server.await;
        result
    }
}

async fn consume(
    settings: &Settings,
    db: Database,
    metrics: Arc<Metrics>,
    readiness: &Readiness,
    stop: CancellationToken,
) -> Result<()> {
    let broker = Broker::new(&settings.amqp)?;
    let connection = broker.connection().await?;
    let topology = Arc::new(Topology::from_settings(settings));
    let setup = connection
        .create_channel()
        .await
        .map_err(Error::amqp("opening a channel"))?;
    amqp::declare(&setup, &topology).await?;
    let _ = setup.close(200, "topology declared".into()).await;

    let publisher_channel = connection
        .create_channel()
        .await
        .map_err(Error::amqp("opening a channel"))?;
    let publisher = Publisher::new(publisher_channel, settings.amqp.confirm_timeout).await?;
    let worker = Arc::new(Worker {
        db,
        publisher: publisher.clone(),
        topology,
        schedule: settings.checks.schedule.clone(),
        metrics,
    });

    let session = stop.child_token();
    let mut consumers = JoinSet::new();
    for inbox in Inbox::ALL {
        let channel = connection
            .create_channel()
            .await
            .map_err(Error::amqp("opening a channel"))?;
        consumers.spawn(worker::consume(
            worker.clone(),
            inbox,
            channel,
            settings.amqp.prefetch,
            session.clone(),
            settings.shutdown.timeout,
        ));
    }
    readiness.consuming(connection.status().clone());
    tracing::info!("paywait is running");

    let mut result = Ok(());
    while let Some(joined) = consumers.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(panic) => Error::Other(anyhow::anyhow!("a consumer panicked: {panic}")),
        };
        readiness.stopped();
        session.cancel();
        if result.is_ok() {
            result = Err(failure);
        }
    }
    readiness.stopped();
    let _ = publisher
        .channel()
        .close(200, "paywait stopping".into())
        .await;
    let _ = connection.close(200, "paywait stopping".into()).await;
    broker.close();
    if result.is_ok() {
        tracing::info!("paywait stopped");
    }
    result
}
