use crate::{configuration::ConfigError, domain::OrderId};

/// Everything that can go wrong in paywait, by what failed.
///
/// Messages name the address that failed and never a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("cannot connect to RabbitMQ at {address}: {message}")]
    AmqpConnect { address: String, message: String },

    #[error("RabbitMQ: {context}: {source}")]
    Amqp {
        context: String,
        #[source]
        source: lapin::Error,
    },

    #[error("RabbitMQ did not confirm {what} within {timeout:?}")]
    ConfirmTimeout {
        what: String,
        timeout: std::time::Duration,
    },

    #[error("RabbitMQ could not route {what}: {reason}")]
    Unroutable { what: String, reason: String },

    #[error("cannot connect to PostgreSQL at {address}: {message}")]
    DatabaseConnect { address: String, message: String },

    #[error("PostgreSQL: {0}")]
    Database(#[from] diesel::result::Error),

    /// A batched statement failed for every request in the batch.
    #[error("{0}")]
    Batch(String),

    #[error("PostgreSQL migrations failed: {0}")]
    Migration(String),

    #[error("PostgreSQL holds a row paywait cannot read: {0}")]
    CorruptRow(String),

    #[error("order {0} is not known")]
    OrderNotFound(OrderId),

    #[error("cannot serve HTTP on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub fn amqp(context: impl Into<String>) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Amqp {
            context: context.into(),
            source,
        }
    }

    /// The process exit status for this error (sysexits.h where one fits).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 78,
            Self::AmqpConnect { .. } | Self::DatabaseConnect { .. } | Self::Listen { .. } => 69,
            Self::OrderNotFound(_) => 1,
            Self::Migration(_) | Self::CorruptRow(_) => 65,
            Self::Amqp { .. }
            | Self::ConfirmTimeout { .. }
            | Self::Unroutable { .. }
            | Self::Database(_)
            | Self::Batch(_)
            | Self::Other(_) => 70,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
