use std::sync::Arc;

use crate::{configuration::ConfigError, domain::OrderId};

/// An error of a client library (lapin's, for RabbitMQ), kept whole as the
/// source of the error that wraps it, opaque outside the shell that uses
/// the library.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ClientError(Box<dyn std::error::Error + Send + Sync>);

impl ClientError {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

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
        source: ClientError,
    },

    #[error("RabbitMQ did not confirm {what} within {timeout:?}")]
    ConfirmTimeout {
        what: String,
        timeout: std::time::Duration,
    },

    #[error("RabbitMQ could not route {what}: {reason}")]
    Unroutable { what: String, reason: String },

    #[error("not healthy: {0}")]
    Unhealthy(String),

    #[error("RabbitMQ cancelled paywait's consumer on {queue}")]
    ConsumerCancelled { queue: String },

    #[error("the channel paywait publishes on was closed")]
    PublishingChannelClosed,

    #[error("cannot connect to PostgreSQL at {address}: {message}")]
    DatabaseConnect { address: String, message: String },

    #[error("PostgreSQL at {address} did not answer within {after:?}")]
    DatabaseTimeout {
        address: String,
        after: std::time::Duration,
    },

    #[error("PostgreSQL: {0}")]
    Database(#[source] Arc<diesel::result::Error>),

    /// What one batched statement met, for each request of the batch.
    #[error(transparent)]
    Shared(Arc<Error>),

    #[error("payments are not being handled: a close waited {waited:?} for those ahead of it")]
    PaymentsBehind { waited: std::time::Duration },

    #[error("the database batcher has stopped")]
    BatcherStopped,

    #[error("PostgreSQL migrations failed: {0}")]
    Migration(String),

    #[error("PostgreSQL holds a row paywait cannot read: {0}")]
    CorruptRow(String),

    #[error("order {0} is not known")]
    OrderNotFound(OrderId),

    #[error("cannot set up {what}: {message}")]
    Setup { what: &'static str, message: String },

    #[error("cannot serve HTTP on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen for stop signals: {0}")]
    Signal(#[source] std::io::Error),

    #[error("{task} ended unexpectedly: {message}")]
    TaskFailed { task: &'static str, message: String },
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(Arc::new(error))
    }
}

/// Words of PostgreSQL's messages for the data exceptions (SQLSTATE class
/// 22) a message's values could meet. diesel names the kind of every
/// integrity violation (class 23) but reports other SQLSTATEs as `Unknown`,
/// so these are told by their message, as the server writes it in English.
const DATA_EXCEPTIONS: [&str; 7] = [
    "invalid byte sequence",
    "out of range",
    "value too long",
    "invalid input syntax",
    "unsupported Unicode escape",
    "null character not permitted",
    "invalid input value",
];

impl Error {
    /// What PostgreSQL said, when it refused the data of a statement itself
    /// (SQLSTATE classes 22 and 23): the same data would be refused again,
    /// however often it is tried. `None` for every other failure.
    pub fn refused_data(&self) -> Option<String> {
        use diesel::result::{DatabaseErrorKind as Kind, Error as Diesel};
        match self {
            Self::Shared(error) => error.refused_data(),
            Self::Database(error) => match error.as_ref() {
                Diesel::DatabaseError(
                    Kind::UniqueViolation
                    | Kind::ForeignKeyViolation
                    | Kind::RestrictViolation
                    | Kind::ExclusionViolation
                    | Kind::NotNullViolation
                    | Kind::CheckViolation,
                    info,
                ) => Some(info.message().to_owned()),
                Diesel::DatabaseError(Kind::Unknown, info)
                    if DATA_EXCEPTIONS
                        .iter()
                        .any(|words| info.message().contains(words)) =>
                {
                    Some(info.message().to_owned())
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the server answered a statement with an error that one
    /// request of a batch may have caused alone (a refused value, rather
    /// than a lost connection): the batch's requests are then tried one by
    /// one, so that the others go on.
    pub fn may_be_one_requests_fault(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error as Diesel};
        match self {
            Self::Shared(error) => error.may_be_one_requests_fault(),
            Self::Database(error) => matches!(
                error.as_ref(),
                Diesel::DatabaseError(kind, _)
                    if !matches!(kind, Kind::UnableToSendCommand | Kind::ClosedConnection)
            ),
            _ => false,
        }
    }

    /// The process exit status for this error (sysexits.h where one fits).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 78,
            Self::AmqpConnect { .. }
            | Self::DatabaseConnect { .. }
            | Self::DatabaseTimeout { .. }
            | Self::Listen { .. } => 69,
            Self::OrderNotFound(_) | Self::Unhealthy(_) => 1,
            Self::Migration(_) | Self::CorruptRow(_) => 65,
            Self::Signal(_) => 71,
            Self::Shared(error) => error.exit_code(),
            Self::Amqp { .. }
            | Self::ConfirmTimeout { .. }
            | Self::Unroutable { .. }
            | Self::ConsumerCancelled { .. }
            | Self::PublishingChannelClosed
            | Self::Database(_)
            | Self::BatcherStopped
            | Self::PaymentsBehind { .. }
            | Self::Setup { .. }
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
        let unreachable = Error::DatabaseConnect {
            address: "db:5432".into(),
            message: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 69);
        // A batch's error keeps its kind for every request it served.
        let shared = Error::Shared(Arc::new(unreachable));
        assert_eq!(shared.exit_code(), 69);
        assert_eq!(
            shared.to_string(),
            "cannot connect to PostgreSQL at db:5432: refused"
        );
        assert_eq!(
            Error::OrderNotFound(OrderId::parse("A-1").unwrap()).exit_code(),
            1
        );
        assert_eq!(Error::Migration("x".into()).exit_code(), 65);
        assert_eq!(Error::BatcherStopped.exit_code(), 70);
    }
}
