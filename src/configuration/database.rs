//! `[database]`: the PostgreSQL server, its pool and its time limits.

use std::{num::NonZeroUsize, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(deserialize_with = "database_url")]
    pub url: SecretUrl,
    /// A file whose content (less a trailing newline) is the password,
    /// in place of the URL's.
    #[serde(deserialize_with = "optional_path")]
    pub password_file: Option<PathBuf>,
    pub pool_size: NonZeroUsize,
    /// Whether `paywait run` creates the database and applies pending
    /// migrations at start-up.
    pub migrate: bool,
    /// The longest opening a connection may take.
    #[serde(deserialize_with = "database_timeout")]
    pub connect_timeout: Duration,
    /// The longest any database call may take, waiting for a connection
    /// included; enforced by paywait itself, since a server that is gone
    /// cannot enforce its own.
    #[serde(deserialize_with = "database_timeout")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretUrl::parse(DEFAULT_DATABASE_URL, DATABASE_SCHEMES)
                .expect("the default is valid"),
            password_file: None,
            pool_size: NonZeroUsize::new(16).expect("not zero"),
            migrate: true,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

impl DatabaseSettings {
    /// The database's name, from the URL's path.
    pub fn name(&self) -> String {
        let encoded = self.url.url().path().trim_start_matches('/');
        percent_decode(encoded)
    }
}
