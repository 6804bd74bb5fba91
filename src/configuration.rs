//! Settings: built-in defaults, an optional TOML file, then the environment.
//!
//! Everything is validated here, once, at start-up: the rest of the program
//! only sees typed values, and an invalid one is refused with its key's name.

use std::{fmt, net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::domain::{InvalidSchedule, Schedule, parse_duration};

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/paywait";

/// Validated settings of every paywait command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub database: DatabaseSettings,
    pub topology: TopologySettings,
    pub checks: CheckSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub sweeper: SweeperSettings,
}

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    pub url: SecretUrl,
    /// How many unacknowledged messages each consumer may hold.
    pub prefetch: u16,
    /// How long a publish may wait for the broker's confirm.
    pub confirm_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretUrl,
    pub pool_size: usize,
}

#[derive(Debug, Clone)]
pub struct TopologySettings {
    pub prefix: String,
    pub queue_type: QueueType,
}

#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub schedule: Schedule,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    /// How long in-flight messages may take to finish after SIGTERM.
    pub timeout: Duration,
}

/// The safety net that re-arms timers lost outside paywait.
#[derive(Debug, Clone)]
pub struct SweeperSettings {
    /// How often to look for overdue checks.
    pub interval: Duration,
    /// How late a check must be before its timer counts as lost.
    pub grace: Duration,
    /// How many orders one sweep re-arms at most.
    pub batch: i64,
}

/// The RabbitMQ queue type of every queue paywait declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated, with at-least-once dead-lettering: no timer is lost
    /// between a TTL queue and the check queue.
    Quorum,
    /// Classic queues, whose dead-lettering is at-most-once.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration value that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
}

impl ConfigError {
    fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            message: message.into(),
        }
    }
}

/// A connection URL whose password never leaves this type unless asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(url::Url);

impl SecretUrl {
    fn parse(key: &'static str, text: &str, schemes: &[&str]) -> Result<Self, ConfigError> {
        let url = url::Url::parse(text)
            .map_err(|error| ConfigError::invalid(key, format!("not a URL ({error})")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "scheme {:?} is not one of {}",
                    url.scheme(),
                    schemes.join(", ")
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(key, "the URL names no host"));
        }
        Ok(Self(url))
    }

    /// The full URL, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// `host:port`, for messages about what could not be reached.
    pub fn address(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// The same URL with another path (another database or vhost).
    pub fn with_path(&self, path: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(path);
        Self(url)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// The settings as written, before validation.
#[derive(Debug, Deserialize)]
struct RawSettings {
    amqp: RawAmqp,
    database: RawDatabase,
    topology: RawTopology,
    checks: RawChecks,
    http: RawHttp,
    log: RawLog,
    shutdown: RawShutdown,
    sweeper: RawSweeper,
}

#[derive(Debug, Deserialize)]
struct RawSweeper {
    interval: String,
    grace: String,
    batch: i64,
}

#[derive(Debug, Deserialize)]
struct RawAmqp {
    url: String,
    prefetch: u16,
    confirm_timeout: String,
}

#[derive(Debug, Deserialize)]
struct RawDatabase {
    url: String,
    pool_size: usize,
}

#[derive(Debug, Deserialize)]
struct RawTopology {
    prefix: String,
    queue_type: String,
}

#[derive(Debug, Deserialize)]
struct RawChecks {
    #[serde(deserialize_with = "list_or_comma_separated")]
    schedule: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawHttp {
    listen: String,
}

#[derive(Debug, Deserialize)]
struct RawLog {
    format: String,
}

#[derive(Debug, Deserialize)]
struct RawShutdown {
    timeout: String,
}

fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
    })
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
        let env_value = |name: &str| {
            sources
                .environment
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };

        let mut builder = config::Config::builder()
            .set_default("amqp.url", DEFAULT_AMQP_URL)?
            .set_default("amqp.prefetch", 256)?
            .set_default("amqp.confirm_timeout", "30s")?
            .set_default("database.url", DEFAULT_DATABASE_URL)?
            .set_default("database.pool_size", 16)?
            .set_default("topology.prefix", "paywait")?
            .set_default("topology.queue_type", "quorum")?
            .set_default("checks.schedule", vec!["1m", "4m", "10m", "15m"])?
            .set_default("http.listen", "127.0.0.1:9464")?
            .set_default("log.format", "text")?
            .set_default("shutdown.timeout", "10s")?
            .set_default("sweeper.interval", "30s")?
            .set_default("sweeper.grace", "1m")?
            .set_default("sweeper.batch", 500)?;
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
        let prefixed: config::Map<String, String> = sources
            .environment
            .iter()
            .filter(|(key, _)| key.starts_with("PAYWAIT_"))
            .cloned()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("PAYWAIT")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("checks.schedule")
                .try_parsing(true)
                .source(Some(prefixed)),
        );
        if let Some(url) = env_value("PAYWAIT_AMQP__URL") {
            builder = builder.set_override("amqp.url", url)?;
        }
        if let Some(url) = env_value("PAYWAIT_DATABASE__URL") {
            builder = builder.set_override("database.url", url)?;
        }

        let raw: RawSettings = builder.build()?.try_deserialize()?;
        Self::validate(raw)
    }

    fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let schedule =
            Schedule::parse(&raw.checks.schedule).map_err(|error: InvalidSchedule| {
                ConfigError::invalid("checks.schedule", error.to_string())
            })?;
        Ok(Self {
            amqp: AmqpSettings {
                url: SecretUrl::parse("amqp.url", &raw.amqp.url, &["amqp", "amqps"])?,
                prefetch: positive("amqp.prefetch", raw.amqp.prefetch)?,
                confirm_timeout: duration("amqp.confirm_timeout", &raw.amqp.confirm_timeout)?,
            },
            database: DatabaseSettings {
                url: database_url(&raw.database.url)?,
                pool_size: positive("database.pool_size", raw.database.pool_size)?,
            },
            topology: TopologySettings {
                prefix: prefix(&raw.topology.prefix)?,
                queue_type: match raw.topology.queue_type.as_str() {
                    "quorum" => QueueType::Quorum,
                    "classic" => QueueType::Classic,
                    other => {
                        return Err(ConfigError::invalid(
                            "topology.queue_type",
                            format!("{other:?} is neither \"quorum\" nor \"classic\""),
                        ));
                    }
                },
            },
            checks: CheckSettings { schedule },
            http: HttpSettings {
                listen: raw.http.listen.parse().map_err(|_| {
                    ConfigError::invalid(
                        "http.listen",
                        format!(
                            "{:?} is not an address such as 127.0.0.1:9464",
                            raw.http.listen
                        ),
                    )
                })?,
            },
            log: LogSettings {
                format: match raw.log.format.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(ConfigError::invalid(
                            "log.format",
                            format!("{other:?} is neither \"text\" nor \"json\""),
                        ));
                    }
                },
            },
            shutdown: ShutdownSettings {
                timeout: duration("shutdown.timeout", &raw.shutdown.timeout)?,
            },
            sweeper: SweeperSettings {
                interval: positive_duration("sweeper.interval", &raw.sweeper.interval)?,
                grace: duration("sweeper.grace", &raw.sweeper.grace)?,
                batch: positive("sweeper.batch", raw.sweeper.batch)?,
            },
        })
    }
}

fn positive<N: PartialOrd + Default + fmt::Display>(
    key: &'static str,
    value: N,
) -> Result<N, ConfigError> {
    if value > N::default() {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} is not a positive number"),
        ))
    }
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not a duration such as 250ms, 5s, 1m or 2h"),
        )
    })
}

fn positive_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let value = duration(key, text)?;
    if value.is_zero() {
        return Err(ConfigError::invalid(key, "must be longer than zero"));
    }
    Ok(value)
}

fn database_url(text: &str) -> Result<SecretUrl, ConfigError> {
    const KEY: &str = "database.url";
    let url = SecretUrl::parse(KEY, text, &["postgres", "postgresql"])?;
    let name = url.url().path().trim_start_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(ConfigError::invalid(
            KEY,
            "the URL must name one database, as in postgres://host/paywait",
        ));
    }
    Ok(url)
}

fn prefix(text: &str) -> Result<String, ConfigError> {
    let valid = !text.is_empty()
        && text.len() <= 100
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(ConfigError::invalid(
            "topology.prefix",
            format!("{text:?} must be 1 to 100 characters of A-Z, a-z, 0-9, . _ -"),
        ))
    }
}

impl DatabaseSettings {
    /// The database's name, from the URL's path.
    pub fn name(&self) -> String {
        let encoded = self.url.url().path().trim_start_matches('/');
        percent_decode(encoded)
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(environment: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(&Sources {
            file: None,
            environment: environment
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn defaults_run_against_localhost() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.amqp.url.expose(), DEFAULT_AMQP_URL);
        assert_eq!(settings.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(settings.database.name(), "paywait");
        assert_eq!(settings.topology.prefix, "paywait");
        assert_eq!(settings.topology.queue_type, QueueType::Quorum);
        assert_eq!(
            settings.checks.schedule.total(),
            Duration::from_secs(30 * 60)
        );
        assert_eq!(settings.http.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_with_comma_separated_lists() {
        let settings = load(&[
            ("PAYWAIT_CHECKS__SCHEDULE", "200ms,300ms"),
            ("PAYWAIT_TOPOLOGY__QUEUE_TYPE", "classic"),
            ("PAYWAIT_HTTP__LISTEN", "0.0.0.0:9999"),
            ("PAYWAIT_LOG__FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(
            settings.checks.schedule.waits(),
            [Duration::from_millis(200), Duration::from_millis(300)]
        );
        assert_eq!(settings.topology.queue_type, QueueType::Classic);
        assert_eq!(settings.http.listen.port(), 9999);
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn a_single_wait_in_the_environment_is_a_list_of_one() {
        let settings = load(&[("PAYWAIT_CHECKS__SCHEDULE", "1s")]).unwrap();
        assert_eq!(settings.checks.schedule.waits(), [Duration::from_secs(1)]);
    }

    #[test]
    fn conventional_urls_are_honoured_below_prefixed_ones() {
        let settings = load(&[
            ("AMQP_URL", "amqp://u:p@broker:5672/%2f"),
            ("DATABASE_URL", "postgres://db/orders"),
        ])
        .unwrap();
        assert_eq!(settings.amqp.url.address(), "broker:5672");
        assert_eq!(settings.database.name(), "orders");

        let settings = load(&[
            ("DATABASE_URL", "postgres://db/orders"),
            ("PAYWAIT_DATABASE__URL", "postgres://db/other"),
        ])
        .unwrap();
        assert_eq!(settings.database.name(), "other");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("PAYWAIT_CHECKS__SCHEDULE", "1m,never", "checks.schedule"),
            ("PAYWAIT_CHECKS__SCHEDULE", "0s", "checks.schedule"),
            (
                "PAYWAIT_TOPOLOGY__QUEUE_TYPE",
                "stream",
                "topology.queue_type",
            ),
            ("PAYWAIT_TOPOLOGY__PREFIX", "a b", "topology.prefix"),
            ("PAYWAIT_HTTP__LISTEN", "localhost", "http.listen"),
            ("PAYWAIT_LOG__FORMAT", "xml", "log.format"),
            ("PAYWAIT_AMQP__URL", "http://x", "amqp.url"),
            ("PAYWAIT_DATABASE__URL", "postgres://host", "database.url"),
            ("PAYWAIT_SHUTDOWN__TIMEOUT", "later", "shutdown.timeout"),
            ("PAYWAIT_AMQP__PREFETCH", "0", "amqp.prefetch"),
            ("PAYWAIT_SWEEPER__INTERVAL", "0s", "sweeper.interval"),
            ("PAYWAIT_SWEEPER__GRACE", "soon", "sweeper.grace"),
            ("PAYWAIT_SWEEPER__BATCH", "-1", "sweeper.batch"),
        ];
        for (name, value, key) in cases {
            let error = load(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(key), "{name}={value} gave {error}");
        }
    }

    #[test]
    fn passwords_are_never_displayed() {
        let settings = load(&[
            ("AMQP_URL", "amqp://user:s3cret@broker:5672/%2f"),
            ("DATABASE_URL", "postgres://user:s3cret@db/paywait"),
        ])
        .unwrap();
        let shown = format!(
            "{settings:?} {} {}",
            settings.amqp.url, settings.database.url
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("user:***@broker"), "{shown}");
        assert!(settings.amqp.url.expose().contains("s3cret"));

        let error = load(&[("AMQP_URL", "ftp://user:s3cret@broker/")])
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn a_toml_file_is_read() {
        let dir = std::env::temp_dir().join(format!("paywait-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("paywait.toml");
        std::fs::write(
            &file,
            "[checks]\nschedule = [\"5s\", \"10s\"]\n[topology]\nprefix = \"shop\"\n",
        )
        .unwrap();
        let settings = Settings::load(&Sources {
            file: Some(&file),
            environment: vec![],
        })
        .unwrap();
        assert_eq!(settings.topology.prefix, "shop");
        assert_eq!(settings.checks.schedule.total(), Duration::from_secs(15));

        let missing = dir.join("missing.toml");
        assert!(
            Settings::load(&Sources {
                file: Some(&missing),
                environment: vec![],
            })
            .is_err()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
