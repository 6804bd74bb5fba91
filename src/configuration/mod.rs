//! Settings: built-in defaults, an optional TOML file, then the environment.
//!
//! Each setting is declared once, as a field of a typed struct that serde
//! fills straight from the sources: a value that does not make a valid
//! field is refused at start-up with its key's name, and the rest of the
//! program only sees valid values.

use std::{path::Path, time::Duration};

use serde::Deserialize;

use crate::domain::{Attempt, Limits, Timers};

mod amqp;
mod checks;
mod database;
mod error;
mod fields;
mod postgres;
mod secret_url;
mod service;
#[cfg(test)]
mod tests;

pub use amqp::*;
pub use checks::*;
pub use database::*;
pub use error::*;
use fields::*;
pub use postgres::{SslMode, Target, set_query};
pub use secret_url::*;
use secret_url::{AMQP_SCHEMES, DATABASE_SCHEMES, GATEWAY_SCHEMES};
pub use service::*;

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/paywait";

/// Validated settings of every paywait command.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub database: DatabaseSettings,
    pub topology: TopologySettings,
    pub checks: CheckSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub sweeper: SweeperSettings,
    pub payments: PaymentSettings,
    pub gateway: GatewaySettings,
}

impl Settings {
    /// The timers of these settings: a queue for each wait of the schedule
    /// and of the gateway's retry, and the ladder.
    pub fn timers(&self) -> Timers {
        let mut other_waits = Vec::new();
        if self.gateway.url.is_some() {
            other_waits.push(self.gateway.retry);
        }
        Timers::new(
            &self.checks.schedule,
            &other_waits,
            self.checks.early_margin,
        )
    }

    /// How long one piece of work (a message, a sweep round, setting up a
    /// session) may run before the daemon counts as stuck: a timer's early
    /// margin, and room for four database calls and four publishes each
    /// running out its time; at least a minute.
    pub fn stuck_after(&self) -> Duration {
        let calls = 4 * (self.database.statement_timeout + self.amqp.confirm_timeout);
        (self.checks.early_margin + calls).max(Duration::from_secs(60))
    }

    /// What paywait accepts of the times an order service states.
    pub fn limits(&self) -> Limits {
        Limits {
            max_deadline: self.checks.max_deadline,
            max_clock_skew: self.checks.max_clock_skew,
        }
    }
}

/// Where the settings come from, in rising precedence.
#[derive(Debug, Default, Clone)]
pub struct Sources<'a> {
    /// A TOML file (`--config` or `PAYWAIT_CONFIG`).
    pub file: Option<&'a Path>,
    /// The process environment, as `(name, value)` pairs.
    pub environment: Vec<(String, String)>,
}

impl<'a> Sources<'a> {
    /// The file, if any, and this process's environment.
    pub fn from_process(file: Option<&'a Path>) -> Self {
        Self {
            file,
            environment: std::env::vars().collect(),
        }
    }
}

impl Settings {
    /// Loads and validates the settings.
    pub fn load(sources: &Sources<'_>) -> Result<Self, ConfigError> {
        // The last of several values for one name wins, as when a later
        // assignment shadows an earlier one.
        let env_value = |name: &str| {
            sources
                .environment
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };

        let mut builder = config::Config::builder();
        if let Some(file) = sources.file {
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // The conventional variables sit between the file and PAYWAIT_*.
        builder = builder
            .set_override_option("amqp.url", env_value("AMQP_URL"))?
            .set_override_option("database.url", env_value("DATABASE_URL"))?;
        // Only PAYWAIT_<SECTION>__<KEY> names a setting (PAYWAIT_CONFIG
        // names the file); a misspelt one is refused like a key in the file.
        let prefixed: config::Map<String, String> = sources
            .environment
            .iter()
            .filter(|(key, _)| key.starts_with("PAYWAIT_") && key.contains("__"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("PAYWAIT")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("checks.schedule")
                .with_list_parse_key("checks.remind_before")
                .with_list_parse_key("payments.trusted_users")
                .with_list_parse_key("amqp.urls")
                .try_parsing(true)
                .source(Some(prefixed)),
        );
        // URLs exactly as written, above the conventional variables.
        if let Some(url) = env_value("PAYWAIT_AMQP__URL") {
            builder = builder.set_override("amqp.url", url)?;
        }
        if let Some(url) = env_value("PAYWAIT_DATABASE__URL") {
            builder = builder.set_override("database.url", url)?;
        }
        let mut settings: Self = builder.build()?.try_deserialize()?;
        let amqp_password = settings.amqp.password_file.clone();
        for url in std::iter::once(&mut settings.amqp.url).chain(&mut settings.amqp.urls) {
            *url = with_password_from(url.clone(), amqp_password.as_deref())
                .map_err(|message| ConfigError::invalid("amqp.password_file", message))?;
        }
        let schemes: std::collections::BTreeSet<&str> = settings
            .amqp
            .nodes()
            .iter()
            .map(|url| url.url().scheme())
            .collect();
        if schemes.len() > 1 {
            return Err(ConfigError::invalid(
                "amqp.urls",
                "mixes amqp:// and amqps:// nodes".into(),
            ));
        }
        settings.amqp.tls.check(&settings.amqp.nodes()[0])?;
        let most_checks = settings
            .checks
            .schedule
            .most_checks(settings.checks.max_deadline)
            + u128::from(settings.gateway.max_retries);
        if most_checks > u128::from(Attempt::MAX) {
            return Err(ConfigError::invalid(
                "checks.schedule",
                format!(
                    "an order due checks.max_deadline after it was placed could be checked \
                     {most_checks} times, more than the {} counted: make the last wait longer \
                     or checks.max_deadline shorter",
                    Attempt::MAX
                ),
            ));
        }
        settings.database.url = with_password_from(
            settings.database.url,
            settings.database.password_file.as_deref(),
        )
        .map_err(|message| ConfigError::invalid("database.password_file", message))?;
        Ok(settings)
    }
}

/// `url` with the password read from `file`, if one is named: as systemd's
/// credentials and compose's secrets provide it, one line. Errors name the
/// file, never its content.
fn with_password_from(url: SecretUrl, file: Option<&Path>) -> Result<SecretUrl, String> {
    let Some(file) = file else {
        return Ok(url);
    };
    let content = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let password = content
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(&content);
    if password.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    if password.contains(['\n', '\r']) {
        return Err(format!("{} holds more than one line", file.display()));
    }
    url.with_password(password)
        .map_err(|()| format!("the URL cannot carry a password from {}", file.display()))
}
