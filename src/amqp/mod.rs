//! The RabbitMQ shell: connections, declaring the topology, publishing with
//! confirms.

mod dead;
mod publisher;

pub use dead::{Parked, take_parked};
pub use publisher::{ERROR_HEADER, Publisher, SOURCE_QUEUE_HEADER};

use std::time::Duration;

use deadpool_lapin::{Config, PoolConfig, Runtime, Timeouts};
use lapin::{
    Channel, ConnectionProperties,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::{
    configuration::AmqpSettings,
    error::{Error, Result},
    topology::{Argument, ExchangeKind, Topology},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of connections to the broker.
#[derive(Clone)]
pub struct Broker {
    pool: deadpool_lapin::Pool,
    address: String,
}

impl Broker {
    pub fn new(settings: &AmqpSettings) -> Result<Self> {
        let mut pool = PoolConfig::new(4);
        pool.timeouts = Timeouts {
            wait: Some(CONNECT_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        };
        let config = Config {
            url: Some(settings.url.expose().to_owned()),
            pool: Some(pool),
        };
        let pool = config
            .create_pool(
                || ConnectionProperties::default().with_connection_name("paywait".into()),
                Runtime::Tokio1,
            )
            .map_err(|error| Error::Other(anyhow::anyhow!("AMQP pool: {error}")))?;
        Ok(Self {
            pool,
            address: settings.url.address(),
        })
    }

    /// A live connection: a pooled one that is still connected, or a new one.
    pub async fn connection(&self) -> Result<deadpool_lapin::Connection> {
        self.pool.get().await.map_err(|error| Error::AmqpConnect {
            address: self.address.clone(),
            message: describe_pool_error(error),
        })
    }

    pub async fn channel(&self) -> Result<Channel> {
        let connection = self.connection().await?;
        connection
            .create_channel()
            .await
            .map_err(Error::amqp("opening a channel"))
    }

    /// Closes every pooled connection.
    pub fn close(&self) {
        self.pool.close();
    }
}

fn describe_pool_error(error: deadpool_lapin::PoolError) -> String {
    match error {
        deadpool_lapin::PoolError::Backend(error) => error.to_string(),
        deadpool_lapin::PoolError::Timeout(_) => "timed out".to_owned(),
        other => other.to_string(),
    }
}

fn field_table(arguments: &[(&'static str, Argument)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in arguments {
        let value = match value {
            Argument::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
            Argument::Number(number) => AMQPValue::LongLongInt(*number),
        };
        table.insert(ShortString::from(*key), value);
    }
    table
}

/// Declares every exchange, queue and binding of `topology`, idempotently,
/// then checks that the dead-letter path of the TTL queues exists.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<()> {
    for exchange in topology.exchanges() {
        let kind = match exchange.kind {
            ExchangeKind::Direct => lapin::ExchangeKind::Direct,
            ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeKind::Topic => lapin::ExchangeKind::Topic,
        };
        channel
            .exchange_declare(
                exchange.name.as_str().into(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                field_table(&exchange.arguments),
            )
            .await
            .map_err(Error::amqp(format!("declaring exchange {}", exchange.name)))?;
    }
    for queue in topology.queues() {
        channel
            .queue_declare(
                queue.name.as_str().into(),
                QueueDeclareOptions::durable(),
                field_table(&queue.arguments),
            )
            .await
            .map_err(Error::amqp(format!("declaring queue {}", queue.name)))?;
    }
    for binding in topology.bindings() {
        channel
            .queue_bind(
                binding.queue.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::amqp(format!(
                "binding queue {} to exchange {}",
                binding.queue, binding.exchange
            )))?;
    }
    verify_dead_letter_path(channel, topology).await
}

async fn verify_dead_letter_path(channel: &Channel, topology: &Topology) -> Result<()> {
    channel
        .exchange_declare(
            topology.expired_exchange.as_str().into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp(format!(
            "checking dead-letter exchange {}",
            topology.expired_exchange
        )))?;
    channel
        .queue_declare(
            topology.checks_queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp(format!(
            "checking check queue {}",
            topology.checks_queue
        )))?;
    Ok(())
}
