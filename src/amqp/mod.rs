//! The RabbitMQ shell, and the only module that knows the AMQP client:
//! the topology (every exchange, queue and binding, named once), connections, declaring it, publishing with confirms, the
//! consume loop that turns deliveries into [`crate::domain::Inbound`]
//! values and acknowledges them last, and reading the dead queue.

mod backlog;
mod connector;
mod consumer;
mod dead;
mod declare;
mod error;
mod publisher;
mod session;
pub mod topology;
mod watch;

pub use backlog::queue_figures;
use connector::Connection;
pub use consumer::{ConsumeSettings, Handler, attempt_header, due_at_header, record_order};
pub use dead::{ParkedMessage, ReplayMode, Replayed, replay_parked};
pub use declare::{declare, passive_declare};
pub use error::AmqpError;
use error::Result;
pub use publisher::{
    ERROR_HEADER, Outgoing, PARKED_ID_HEADER, PendingConfirm, Publisher, SOURCE_QUEUE_HEADER,
    USER_ID_HEADER,
};
pub use session::Session;
pub use topology::Topology;
pub use watch::watch_events;

use std::time::Duration;

use deadpool::managed::{PoolError, Timeouts};
use lapin::{Channel, ConnectionStatus};

use crate::configuration::AmqpSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest paywait waits for the broker to take a courtesy (cancelling
/// a consumer, closing a channel or a connection, an acknowledgement): on a
/// link gone silent it would wait for ever, and a session being torn down
/// must not.
const COURTESY_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for `courtesy` no longer than [`COURTESY_TIMEOUT`]; `None` when it
/// did not finish in time.
async fn briefly<T>(courtesy: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(COURTESY_TIMEOUT, courtesy).await.ok()
}

/// Wraps a client error with what paywait was doing.
fn failed(context: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
    move |source| AmqpError::Client {
        context: context.into(),
        source,
    }
}

/// A pool of connections to the broker.
#[derive(Clone)]
pub struct Broker {
    pool: connector::Pool,
    address: String,
}

impl Broker {
    pub fn new(settings: &AmqpSettings) -> Result<Self> {
        let connector = connector::Connector::new(settings)?;
        let address = connector.addresses();
        let pool = connector::Pool::builder(connector)
            .max_size(4)
            .runtime(deadpool::Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(CONNECT_TIMEOUT),
                create: None,
                recycle: Some(CONNECT_TIMEOUT),
            })
            .build()
            .map_err(AmqpError::Pool)?;
        Ok(Self { pool, address })
    }

    /// A live connection: a pooled one that is still connected, or a new one.
    async fn connection(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Backend(source) => AmqpError::Connect {
                address: self.address.clone(),
                source,
            },
            PoolError::Timeout(_) => AmqpError::ConnectTimeout {
                address: self.address.clone(),
                after: CONNECT_TIMEOUT,
            },
            // Closed, or a hook or runtime this pool does not have.
            _ => AmqpError::PoolClosed,
        })
    }

    pub(crate) async fn channel(&self) -> Result<Channel> {
        self.connection()
            .await?
            .create_channel()
            .await
            .map_err(failed("opening a channel"))
    }

    /// A publisher on a channel of its own, in confirm mode.
    pub async fn publisher(&self, confirm_timeout: Duration) -> Result<Publisher> {
        Publisher::new(self.channel().await?, confirm_timeout).await
    }

    /// Declares every exchange, queue and binding of `topology` on a
    /// channel of its own.
    pub async fn declare(&self, topology: &crate::amqp::Topology) -> Result<()> {
        let channel = self.channel().await?;
        declare(&channel, topology).await?;
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    }

    /// Closes every pooled connection.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Whether a connection to the broker is still up, as `/readyz` asks.
#[derive(Clone)]
pub struct ConnectionHealth(ConnectionStatus);

impl ConnectionHealth {
    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}
