//! What can go wrong talking to RabbitMQ.

use std::{path::PathBuf, time::Duration};

/// A failure of the RabbitMQ shell, wrapping lapin's error where it has
/// one. Addresses are written without their password.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("cannot connect to RabbitMQ at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: lapin::Error,
    },

    #[error("cannot connect to RabbitMQ at {address}: no connection within {after:?}")]
    ConnectTimeout { address: String, after: Duration },

    #[error("the RabbitMQ connection pool is closed")]
    PoolClosed,

    #[error("RabbitMQ: {context}: {source}")]
    Client {
        context: String,
        #[source]
        source: lapin::Error,
    },

    #[error("RabbitMQ did not confirm {what} within {timeout:?}")]
    ConfirmTimeout { what: String, timeout: Duration },

    #[error("RabbitMQ could not route {what}: {reason}")]
    Unroutable { what: String, reason: String },

    #[error("RabbitMQ cancelled paywait's consumer on {queue}")]
    ConsumerCancelled { queue: String },

    #[error("the channel paywait publishes on was closed")]
    PublishingChannelClosed,

    #[error("cannot set up the RabbitMQ connection: not an AMQP URL: {0}")]
    NotAnAmqpUrl(String),

    #[error("cannot set up the RabbitMQ TLS settings: cannot read {}: {source}", path.display())]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot set up the RabbitMQ connection pool: {0}")]
    Pool(#[source] deadpool::managed::BuildError),
}

impl AmqpError {
    /// The process exit status for this error (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } => 69,
            _ => 70,
        }
    }
}

/// What the RabbitMQ shell's operations return.
pub type Result<T, E = AmqpError> = std::result::Result<T, E>;
