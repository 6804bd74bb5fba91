//! What can go wrong talking to PostgreSQL.

use std::{sync::Arc, time::Duration};

use diesel_async::pooled_connection::PoolError as ManagerError;

/// A failure of the database shell, wrapping diesel's error where it has
/// one. Addresses are written without their password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to PostgreSQL at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: diesel::ConnectionError,
    },

    #[error("cannot connect to PostgreSQL at {address}: {source}")]
    NoConnection {
        address: String,
        #[source]
        source: deadpool::managed::PoolError<ManagerError>,
    },

    #[error("PostgreSQL at {address} did not answer within {after:?}")]
    Timeout { address: String, after: Duration },

    #[error("PostgreSQL: {0}")]
    Query(#[from] diesel::result::Error),

    /// What one batched statement met, for each request of the batch.
    #[error(transparent)]
    Shared(Arc<DbError>),

    #[error("the database batcher has stopped")]
    BatcherStopped,

    #[error("a batched statement answered nothing for its request")]
    Unanswered,

    #[error("PostgreSQL migrations failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),

    #[error(
        "PostgreSQL migrations failed: the database lacks migrations: run `paywait migrate` first"
    )]
    MigrationsMissing,

    #[error("the migration harness ended unexpectedly: {0}")]
    MigrationHarness(#[source] tokio::task::JoinError),

    #[error("PostgreSQL holds a row paywait cannot read: {0}")]
    CorruptRow(String),

    #[error("cannot set up the PostgreSQL connection: {0}")]
    InvalidTarget(String),

    #[error("cannot set up the PostgreSQL connection pool: {0}")]
    Pool(#[source] deadpool::managed::BuildError),
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

impl DbError {
    /// What PostgreSQL said, when it refused the data of a statement itself
    /// (SQLSTATE classes 22 and 23): the same data would be refused again,
    /// however often it is tried. `None` for every other failure.
    pub fn refused_data(&self) -> Option<String> {
        use diesel::result::{DatabaseErrorKind as Kind, Error as Diesel};
        match self {
            Self::Shared(error) => error.refused_data(),
            Self::Query(Diesel::DatabaseError(
                Kind::UniqueViolation
                | Kind::ForeignKeyViolation
                | Kind::RestrictViolation
                | Kind::ExclusionViolation
                | Kind::NotNullViolation
                | Kind::CheckViolation,
                info,
            )) => Some(info.message().to_owned()),
            Self::Query(Diesel::DatabaseError(Kind::Unknown, info))
                if DATA_EXCEPTIONS
                    .iter()
                    .any(|words| info.message().contains(words)) =>
            {
                Some(info.message().to_owned())
            }
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
            Self::Query(Diesel::DatabaseError(kind, _)) => {
                !matches!(kind, Kind::UnableToSendCommand | Kind::ClosedConnection)
            }
            _ => false,
        }
    }

    /// The process exit status for this error (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Connect { .. } | Self::NoConnection { .. } | Self::Timeout { .. } => 69,
            Self::Migration(_) | Self::MigrationsMissing | Self::CorruptRow(_) => 65,
            Self::Shared(error) => error.exit_code(),
            _ => 70,
        }
    }
}

/// What the database shell's operations return.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_say_what_failed() {
        let unreachable = DbError::Timeout {
            address: "db:5432".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(unreachable.exit_code(), 69);
        // A batch's error keeps its kind for every request it served.
        let shared = DbError::Shared(Arc::new(unreachable));
        assert_eq!(shared.exit_code(), 69);
        assert_eq!(
            shared.to_string(),
            "PostgreSQL at db:5432 did not answer within 1s"
        );
        assert_eq!(DbError::MigrationsMissing.exit_code(), 65);
        assert_eq!(DbError::CorruptRow("x".into()).exit_code(), 65);
        assert_eq!(DbError::BatcherStopped.exit_code(), 70);
    }
}
