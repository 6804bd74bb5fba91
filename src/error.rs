//! paywait's one error type: what failed, by shell, and the exit status a
//! command ends with.

use crate::{
    amqp::AmqpError, configuration::ConfigError, db::DbError, domain::OrderId,
    gateway::GatewayError,
};

/// Everything that can go wrong in paywait: each shell's own error, and
/// what the daemon itself meets.
///
/// Messages name the address that failed and never a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Amqp(#[from] AmqpError),

    #[error(transparent)]
    Database(#[from] DbError),

    #[error(transparent)]
    Gateway(#[from] GatewayError),

    #[error("not healthy: {0}")]
    Unhealthy(String),

    #[error("payments are not being handled: a close waited {waited:?} for those ahead of it")]
    PaymentsBehind { waited: std::time::Duration },

    #[error("order {0} is not known")]
    OrderNotFound(OrderId),

    #[error("cannot serve HTTP on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen for stop signals: {0}")]
    Signal(#[source] std::io::Error),

    /// A message whose plans did not come to an end: a fault of paywait's
    /// own, which its next delivery may not meet.
    #[error("{0}; the message is tried again")]
    Unfinished(&'static str),

    #[error("{task} ended unexpectedly: {message}")]
    TaskFailed { task: &'static str, message: String },
}

impl Error {
    /// What PostgreSQL said, when it refused the data of a statement itself
    /// (see [`DbError::refused_data`]). `None` for every other failure.
    pub fn refused_data(&self) -> Option<String> {
        match self {
            Self::Database(error) => error.refused_data(),
            _ => None,
        }
    }

    /// The process exit status for this error (sysexits.h where one fits).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 78,
            Self::Amqp(error) => error.exit_code(),
            Self::Database(error) => error.exit_code(),
            Self::Listen { .. } => 69,
            Self::OrderNotFound(_) | Self::Unhealthy(_) => 1,
            Self::Signal(_) => 71,
            Self::Gateway(_)
            | Self::PaymentsBehind { .. }
            | Self::Unfinished(_)
            | Self::TaskFailed { .. } => 70,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_say_what_failed() {
        let unreachable = Error::from(DbError::Timeout {
            address: "db:5432".into(),
            after: std::time::Duration::from_secs(1),
        });
        assert_eq!(unreachable.exit_code(), 69);
        assert_eq!(
            Error::from(AmqpError::ConnectTimeout {
                address: "mq:5672".into(),
                after: std::time::Duration::from_secs(10),
            })
            .exit_code(),
            69
        );
        assert_eq!(
            Error::OrderNotFound(OrderId::parse("A-1").unwrap()).exit_code(),
            1
        );
        assert_eq!(Error::from(DbError::MigrationsMissing).exit_code(), 65);
        assert_eq!(
            Error::from(AmqpError::PublishingChannelClosed).exit_code(),
            70
        );
    }
}
