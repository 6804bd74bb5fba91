//! Settings: built-in defaults, an optional TOML file, then the environment.
//!
//! Each setting is declared once, as a field of a typed struct that serde
//! fills straight from the sources: a value that does not make a valid
//! field is refused at start-up with its key's name, and the rest of the
//! program only sees valid values.

use std::{
    fmt,
    net::SocketAddr,
    num::{NonZeroU16, NonZeroU32, NonZeroUsize},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer, de::Error as _};

use crate::domain::{Attempt, Limits, Schedule, Timers, parse_duration};

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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    #[serde(deserialize_with = "amqp_url")]
    pub url: SecretUrl,
    /// The nodes of a cluster, tried in turn; when given, `url` is not used.
    #[serde(deserialize_with = "amqp_urls")]
    pub urls: Vec<SecretUrl>,
    /// A file whose content (less a trailing newline) is the password,
    /// in place of the URL's.
    #[serde(deserialize_with = "optional_path")]
    pub password_file: Option<PathBuf>,
    /// TLS beyond the system's roots, for `amqps://` URLs.
    pub tls: AmqpTlsSettings,
    /// How many unacknowledged messages each consumer may hold.
    pub prefetch: NonZeroU16,
    /// How long a publish may wait for the broker's confirm.
    #[serde(deserialize_with = "duration")]
    pub confirm_timeout: Duration,
    /// A broker link silent for twice this long is dead.
    #[serde(deserialize_with = "heartbeat")]
    pub heartbeat: Duration,
}

impl AmqpSettings {
    /// The heartbeat paywait asks the broker for, in whole seconds: four
    /// fifths of `heartbeat`. The client checks for silence every half
    /// heartbeat and gives up after two, so a silent link is found within
    /// 2.5 of the heartbeat asked for: within twice `heartbeat`.
    pub fn heartbeat_asked(&self) -> u16 {
        let seconds = self.heartbeat.as_secs() * 4 / 5;
        u16::try_from(seconds.max(1)).unwrap_or(u16::MAX)
    }

    /// The broker's nodes: `urls`, or `url` alone.
    pub fn nodes(&self) -> &[SecretUrl] {
        if self.urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.urls
        }
    }
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretUrl::parse(DEFAULT_AMQP_URL, AMQP_SCHEMES).expect("the default is valid"),
            urls: Vec::new(),
            password_file: None,
            tls: AmqpTlsSettings::default(),
            prefetch: NonZeroU16::new(256).expect("not zero"),
            confirm_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// The certificates of a TLS connection to the broker, as PEM files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpTlsSettings {
    /// The certificate authorities the broker's certificate may chain to,
    /// besides the system's.
    #[serde(deserialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// paywait's own certificate, for brokers that ask for one.
    #[serde(deserialize_with = "optional_path")]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PKCS #8).
    #[serde(deserialize_with = "optional_path")]
    pub key_file: Option<PathBuf>,
}

impl AmqpTlsSettings {
    /// Refuses files that cannot be read, a certificate without its key,
    /// and certificates for a connection without TLS.
    fn check(&self, url: &SecretUrl) -> Result<(), ConfigError> {
        let files = [
            ("amqp.tls.ca_file", &self.ca_file),
            ("amqp.tls.cert_file", &self.cert_file),
            ("amqp.tls.key_file", &self.key_file),
        ];
        for (key, file) in files {
            let Some(path) = file else { continue };
            if url.url().scheme() != "amqps" {
                return Err(ConfigError::invalid(
                    key,
                    "is for TLS, but the broker's URL is not an amqps:// URL".into(),
                ));
            }
            std::fs::File::open(path).map_err(|error| {
                ConfigError::invalid(key, format!("cannot read {}: {error}", path.display()))
            })?;
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError::invalid(
                "amqp.tls.key_file",
                "must be set with amqp.tls.cert_file".into(),
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "amqp.tls.cert_file",
                "must be set with amqp.tls.key_file".into(),
            )),
            _ => Ok(()),
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologySettings {
    /// The start of every RabbitMQ name.
    #[serde(deserialize_with = "prefix")]
    pub prefix: String,
    pub queue_type: QueueType,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            prefix: "paywait".into(),
            queue_type: QueueType::Quorum,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckSettings {
    #[serde(deserialize_with = "schedule")]
    pub schedule: Schedule,
    /// The longest deadline an `order.placed` may state, after its `placed_at`.
    #[serde(deserialize_with = "positive_duration")]
    pub max_deadline: Duration,
    /// How far ahead of paywait's clock a `placed_at` may be before it is
    /// taken as now.
    #[serde(deserialize_with = "duration")]
    pub max_clock_skew: Duration,
    /// How early a timer is planned to arrive; it waits out the rest in
    /// process, so that the broker's delays do not make checks late.
    #[serde(deserialize_with = "early_margin")]
    pub early_margin: Duration,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            schedule: Schedule::parse(&["1m", "4m", "10m", "15m"]).expect("the default is valid"),
            max_deadline: Duration::from_secs(30 * 24 * 3600),
            max_clock_skew: Duration::from_secs(60),
            early_margin: Duration::from_millis(400),
        }
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long in-flight messages may take to finish after SIGTERM.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

/// The safety net that re-arms timers lost outside paywait.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweeperSettings {
    /// How often to look for overdue checks.
    #[serde(deserialize_with = "positive_duration")]
    pub interval: Duration,
    /// How late a check must be before its timer counts as lost.
    #[serde(deserialize_with = "duration")]
    pub grace: Duration,
    /// How many orders one sweep re-arms at most.
    pub batch: NonZeroU32,
}

impl Default for SweeperSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            grace: Duration::from_secs(60),
            batch: NonZeroU32::new(500).expect("not zero"),
        }
    }
}

/// Who may say "paid".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// RabbitMQ users whose `payment.succeeded` (with the `user_id`
    /// property naming them) is believed; empty: anyone's.
    #[serde(deserialize_with = "user_names")]
    pub trusted_users: Vec<String>,
}

/// The payment gateway asked before an unpaid order is closed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Where to POST the question; unset: no gateway is asked.
    #[serde(deserialize_with = "gateway_url")]
    pub url: Option<SecretUrl>,
    /// How long one question may take.
    #[serde(deserialize_with = "positive_duration")]
    pub timeout: Duration,
    /// The wait before asking again after `pending` or no usable answer.
    #[serde(deserialize_with = "positive_duration")]
    pub retry: Duration,
    /// How many more times to ask before closing as `unverified`.
    pub max_retries: u32,
    /// How many questions may be in flight at once; one more counts as no
    /// usable answer, so that a slow gateway holds up nothing else.
    pub concurrency: NonZeroUsize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            url: None,
            timeout: Duration::from_secs(2),
            retry: Duration::from_secs(30),
            max_retries: 3,
            concurrency: NonZeroUsize::new(16).expect("not zero"),
        }
    }
}

/// The RabbitMQ queue type of every queue paywait declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
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

impl TryFrom<String> for QueueType {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            other => Err(format!("{other:?} is neither \"quorum\" nor \"classic\"")),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is neither \"text\" nor \"json\"")),
        }
    }
}

/// A configuration value that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Load(config::ConfigError),
}

impl ConfigError {
    fn invalid(key: &str, message: String) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            message,
        }
    }
}

impl From<config::ConfigError> for ConfigError {
    /// Moves the key the config crate appends to its messages to the front.
    fn from(error: config::ConfigError) -> Self {
        match error {
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => Self::Invalid {
                key,
                message: error.to_string(),
            },
            config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => Self::Invalid {
                key,
                message: format!("found {unexpected}, expected {expected}"),
            },
            other => Self::Load(other),
        }
    }
}

const AMQP_SCHEMES: &[&str] = &["amqp", "amqps"];
const GATEWAY_SCHEMES: &[&str] = &["http", "https"];
const DATABASE_SCHEMES: &[&str] = &["postgres", "postgresql"];

/// A connection URL whose password never leaves this type unless asked for.
///
/// A PostgreSQL URL may name several hosts, as libpq's do
/// (`postgres://db-1:5432,db-2:5432/paywait?target_session_attrs=read-write`);
/// the first is kept in the parsed URL, the others beside it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: url::Url,
    more_hosts: Vec<String>,
}

impl SecretUrl {
    /// Parses a URL of one of `schemes` that names a host. The error never
    /// repeats the URL, which may hold a password.
    fn parse(text: &str, schemes: &[&str]) -> Result<Self, String> {
        let (first, more_hosts) = match text.split_once("://") {
            Some((scheme, _)) if scheme.starts_with("postgres") => split_hosts(text),
            _ => (text.to_owned(), Vec::new()),
        };
        let url = url::Url::parse(&first).map_err(|error| format!("not a URL ({error})"))?;
        if !schemes.contains(&url.scheme()) {
            return Err(format!(
                "scheme {:?} is not one of {}",
                url.scheme(),
                schemes.join(", ")
            ));
        }
        if url.host_str().is_none_or(str::is_empty) || more_hosts.iter().any(String::is_empty) {
            return Err("the URL names no host".into());
        }
        Ok(Self { url, more_hosts })
    }

    /// The full URL, password included: for connecting, never for printing.
    pub fn expose(&self) -> String {
        self.render(&self.url)
    }

    /// The URL of the first host.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The same URL (every host kept), changed by `edit`.
    pub fn edited(&self, edit: impl FnOnce(&mut url::Url)) -> Self {
        let mut url = self.url.clone();
        edit(&mut url);
        Self {
            url,
            more_hosts: self.more_hosts.clone(),
        }
    }

    /// `url` with the other hosts after its own.
    fn render(&self, url: &url::Url) -> String {
        let text = url.as_str();
        if self.more_hosts.is_empty() {
            return text.to_owned();
        }
        let end = authority_end(text);
        format!(
            "{},{}{}",
            &text[..end],
            self.more_hosts.join(","),
            &text[end..]
        )
    }

    /// The user name, percent-decoded (`guest` when the URL names none).
    pub fn username(&self) -> String {
        match self.url.username() {
            "" => "guest".to_owned(),
            user => percent_decode(user),
        }
    }

    /// `host:port`, every host's, for messages about what could not be reached.
    pub fn address(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let first = match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        std::iter::once(first)
            .chain(self.more_hosts.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The same URL with another password (percent-encoded as needed).
    fn with_password(&self, password: &str) -> Result<Self, ()> {
        let mut url = self.url.clone();
        url.set_password(Some(password))?;
        Ok(Self {
            url,
            more_hosts: self.more_hosts.clone(),
        })
    }

    /// The same URL with another path (another database or vhost).
    pub fn with_path(&self, path: &str) -> Self {
        self.edited(|url| url.set_path(path))
    }
}

/// Where the authority (user, password, hosts) of a URL ends.
fn authority_end(text: &str) -> usize {
    let start = text.find("://").map_or(0, |at| at + 3);
    text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |at| start + at)
}

/// `text` with only the first of its comma-separated hosts, and the others.
fn split_hosts(text: &str) -> (String, Vec<String>) {
    let end = authority_end(text);
    let hosts_start = text[..end]
        .rfind('@')
        .map_or_else(|| text.find("://").map_or(0, |at| at + 3), |at| at + 1);
    let mut hosts = text[hosts_start..end].split(',');
    let first = hosts.next().unwrap_or_default();
    let more: Vec<String> = hosts.map(str::to_owned).collect();
    (
        format!("{}{first}{}", &text[..hosts_start], &text[end..]),
        more,
    )
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(&self.render(&shown))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
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

fn amqp_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretUrl, D::Error> {
    let text = String::deserialize(deserializer)?;
    SecretUrl::parse(&text, AMQP_SCHEMES).map_err(D::Error::custom)
}

/// A list of broker URLs, or one string of them separated by commas.
fn amqp_urls<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretUrl>, D::Error> {
    list_or_comma_separated(deserializer)?
        .iter()
        .map(|text| SecretUrl::parse(text, AMQP_SCHEMES))
        .collect::<Result<_, _>>()
        .map_err(D::Error::custom)
}

fn database_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretUrl, D::Error> {
    let text = String::deserialize(deserializer)?;
    let url = SecretUrl::parse(&text, DATABASE_SCHEMES).map_err(D::Error::custom)?;
    let name = url.url().path().trim_start_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(D::Error::custom(
            "the URL must name one database, as in postgres://host/paywait",
        ));
    }
    crate::db::Target::new(&url).map_err(D::Error::custom)?;
    Ok(url)
}

/// A path; empty for none.
fn optional_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

fn gateway_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SecretUrl>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    SecretUrl::parse(&text, GATEWAY_SCHEMES)
        .map(Some)
        .map_err(D::Error::custom)
}

/// A list of RabbitMQ user names, or one string of them separated by commas.
fn user_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let names = list_or_comma_separated(deserializer)?;
    if names.iter().any(String::is_empty) {
        return Err(D::Error::custom("a user name is empty"));
    }
    Ok(names)
}

fn list_or_comma_separated<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    // The environment's lists arrive split on commas but not trimmed.
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items.iter().map(|s| s.trim().to_owned()).collect(),
        ListOrText::Text(text) if text.trim().is_empty() => Vec::new(),
        ListOrText::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
    })
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(|_| {
        D::Error::custom(format!(
            "{text:?} is not a duration such as 250ms, 5s, 1m or 2h"
        ))
    })
}

fn positive_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = duration(deserializer)?;
    if value.is_zero() {
        return Err(D::Error::custom("must be longer than zero"));
    }
    Ok(value)
}

/// The bounds of a database time-out: shorter than a round trip could be,
/// or longer than a day, is a mistake.
const DATABASE_TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);

fn database_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = duration(deserializer)?;
    if !DATABASE_TIMEOUTS.contains(&value) {
        return Err(D::Error::custom("must be from 100ms to 24h"));
    }
    Ok(value)
}

/// A timer waits out its early margin in process, holding one of the
/// consumer's `amqp.prefetch` places all along.
const MAX_EARLY_MARGIN: Duration = Duration::from_secs(60);

/// The AMQP heartbeat counts whole seconds, at most 65,535.
const MAX_HEARTBEAT: Duration = Duration::from_secs(65_535);

fn heartbeat<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = positive_duration(deserializer)?;
    if value < Duration::from_secs(2) || value > MAX_HEARTBEAT || value.subsec_nanos() != 0 {
        return Err(D::Error::custom(
            "must be whole seconds from 2s to 65535s: AMQP heartbeats count seconds",
        ));
    }
    Ok(value)
}

fn early_margin<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = positive_duration(deserializer)?;
    if value > MAX_EARLY_MARGIN {
        return Err(D::Error::custom(
            "must be at most 1m: an early timer waits in process, holding a place of amqp.prefetch",
        ));
    }
    Ok(value)
}

/// A list of waits, or one string of them separated by commas.
fn schedule<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Schedule, D::Error> {
    let waits = list_or_comma_separated(deserializer)?;
    Schedule::parse(&waits).map_err(D::Error::custom)
}

fn listen_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map_err(|_| D::Error::custom(format!("{text:?} is not an address such as 127.0.0.1:9464")))
}

fn prefix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    let valid = !text.is_empty()
        && text.len() <= 100
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(text)
    } else {
        Err(D::Error::custom(format!(
            "{text:?} must be 1 to 100 characters of A-Z, a-z, 0-9, . _ -"
        )))
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
            (
                "PAYWAIT_DATABASE__URL",
                "postgres://host/db?sslmode=allow",
                "database.url",
            ),
            (
                "PAYWAIT_DATABASE__URL",
                "postgres://host/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem",
                "database.url",
            ),
            ("PAYWAIT_SHUTDOWN__TIMEOUT", "later", "shutdown.timeout"),
            // Counted every millisecond for 30 days: past what attempts hold.
            ("PAYWAIT_CHECKS__SCHEDULE", "1ms", "checks.schedule"),
            ("PAYWAIT_AMQP__PREFETCH", "0", "amqp.prefetch"),
            ("PAYWAIT_AMQP__HEARTBEAT", "1s", "amqp.heartbeat"),
            ("PAYWAIT_AMQP__HEARTBEAT", "2500ms", "amqp.heartbeat"),
            ("PAYWAIT_AMQP__HEARTBEAT", "0s", "amqp.heartbeat"),
            (
                "PAYWAIT_DATABASE__STATEMENT_TIMEOUT",
                "0s",
                "database.statement_timeout",
            ),
            (
                "PAYWAIT_DATABASE__STATEMENT_TIMEOUT",
                "2d",
                "database.statement_timeout",
            ),
            (
                "PAYWAIT_DATABASE__CONNECT_TIMEOUT",
                "10ms",
                "database.connect_timeout",
            ),
            (
                "PAYWAIT_DATABASE__CONNECT_TIMEOUT",
                "soon",
                "database.connect_timeout",
            ),
            ("PAYWAIT_SWEEPER__INTERVAL", "0s", "sweeper.interval"),
            ("PAYWAIT_SWEEPER__GRACE", "soon", "sweeper.grace"),
            ("PAYWAIT_SWEEPER__BATCH", "-1", "sweeper.batch"),
            ("PAYWAIT_CHECKS__EARLY_MARGIN", "0s", "checks.early_margin"),
            ("PAYWAIT_CHECKS__EARLY_MARGIN", "61s", "checks.early_margin"),
            ("PAYWAIT_CHECKS__MAX_DEADLINE", "0s", "checks.max_deadline"),
            (
                "PAYWAIT_CHECKS__MAX_CLOCK_SKEW",
                "ahead",
                "checks.max_clock_skew",
            ),
        ];
        for (name, value, key) in cases {
            let error = load(&[(name, value)]).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid configuration: {key}: ")),
                "{name}={value} gave {error}"
            );
        }
    }

    #[test]
    fn passwords_come_from_files_in_place_of_the_urls() {
        let dir = tempfile::tempdir().unwrap();
        let amqp = dir.path().join("amqp-password");
        let database = dir.path().join("database-password");
        std::fs::write(&amqp, "s3cret/with@signs\n").unwrap();
        std::fs::write(&database, "db-secret\r\n").unwrap();
        let settings = load(&[
            ("AMQP_URL", "amqp://shop:in-the-url@broker:5672/%2f"),
            ("PAYWAIT_AMQP__PASSWORD_FILE", amqp.to_str().unwrap()),
            ("DATABASE_URL", "postgres://shop@db/orders"),
            (
                "PAYWAIT_DATABASE__PASSWORD_FILE",
                database.to_str().unwrap(),
            ),
        ])
        .unwrap();
        let url = settings.amqp.url.url();
        assert_eq!(url.username(), "shop");
        assert_eq!(url.password(), Some("s3cret%2Fwith%40signs"));
        assert_eq!(settings.amqp.url.address(), "broker:5672");
        assert_eq!(settings.database.url.url().password(), Some("db-secret"));
        assert_eq!(settings.database.name(), "orders");
        for shown in [
            settings.amqp.url.to_string(),
            format!("{:?}", settings.database),
        ] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("db-secret"),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_unusable_password_file_is_refused_naming_its_key_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let empty = dir.path().join("empty");
        let two_lines = dir.path().join("two-lines");
        std::fs::write(&empty, "\n").unwrap();
        std::fs::write(&two_lines, "first-secret\nsecond-secret\n").unwrap();
        for (name, key) in [
            ("PAYWAIT_AMQP__PASSWORD_FILE", "amqp.password_file"),
            ("PAYWAIT_DATABASE__PASSWORD_FILE", "database.password_file"),
        ] {
            for (file, why) in [
                (&missing, "cannot read"),
                (&empty, "is empty"),
                (&two_lines, "more than one line"),
            ] {
                let error = load(&[(name, file.to_str().unwrap())])
                    .unwrap_err()
                    .to_string();
                assert!(
                    error.starts_with(&format!("invalid configuration: {key}: ")),
                    "{error}"
                );
                assert!(
                    error.contains(why) && error.contains(file.to_str().unwrap()),
                    "{error}"
                );
                assert!(!error.contains("secret"), "{error}");
            }
        }
    }

    #[test]
    fn broker_certificates_are_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let cert = cert.to_str().unwrap();
        let tls_url = ("PAYWAIT_AMQP__URL", "amqps://u:p@broker/%2f");
        for (settings, key, why) in [
            (
                vec![tls_url, ("PAYWAIT_AMQP__TLS__CERT_FILE", cert)],
                "amqp.tls.key_file",
                "must be set with amqp.tls.cert_file",
            ),
            (
                vec![
                    tls_url,
                    ("PAYWAIT_AMQP__TLS__CA_FILE", "/nonexistent/ca.pem"),
                ],
                "amqp.tls.ca_file",
                "cannot read /nonexistent/ca.pem",
            ),
            (
                vec![("PAYWAIT_AMQP__TLS__CA_FILE", cert)],
                "amqp.tls.ca_file",
                "the broker's URL is not an amqps:// URL",
            ),
        ] {
            let error = load(&settings).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid configuration: {key}: "))
                    && error.contains(why),
                "{error}"
            );
        }
        let settings = load(&[
            tls_url,
            ("PAYWAIT_AMQP__TLS__CA_FILE", cert),
            ("PAYWAIT_AMQP__TLS__CERT_FILE", cert),
            ("PAYWAIT_AMQP__TLS__KEY_FILE", cert),
        ])
        .unwrap();
        assert_eq!(
            settings.amqp.tls.ca_file.as_deref(),
            Some(std::path::Path::new(cert))
        );
    }

    #[test]
    fn several_broker_nodes_share_one_password_and_one_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "from-file\n").unwrap();
        let settings = load(&[
            (
                "PAYWAIT_AMQP__URLS",
                "amqp://shop@node-1:5672/%2f, amqp://shop@node-2:5672/%2f",
            ),
            ("PAYWAIT_AMQP__PASSWORD_FILE", password.to_str().unwrap()),
        ])
        .unwrap();
        let nodes: Vec<(String, Option<&str>)> = settings
            .amqp
            .nodes()
            .iter()
            .map(|url| (url.address(), url.url().password()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("node-1:5672".to_owned(), Some("from-file")),
                ("node-2:5672".to_owned(), Some("from-file")),
            ]
        );
        // Without urls, the one url is the only node.
        let one = load(&[]).unwrap();
        assert_eq!(one.amqp.nodes(), std::slice::from_ref(&one.amqp.url));

        let error = load(&[("PAYWAIT_AMQP__URLS", "amqp://a/%2f,amqps://b/%2f")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid configuration: amqp.urls: "),
            "{error}"
        );
        let error = load(&[("PAYWAIT_AMQP__URLS", "amqp://a/%2f,http://b")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid configuration: amqp.urls: "),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_naming_them() {
        for (name, value, named) in [
            ("PAYWAIT_GATWAY__URL", "http://gateway/ask", "`gatway`"),
            ("PAYWAIT_CHECKS__SCHEDUL", "1s", "`schedul`"),
            ("PAYWAIT_PAYMENTS__TRUSTED", "ops", "`trusted`"),
        ] {
            let error = load(&[(name, value)]).unwrap_err().to_string();
            assert!(
                error.contains(named) && error.contains("unknown field"),
                "{name} gave {error}"
            );
        }
        // Variables that name no setting are not settings.
        load(&[("PAYWAIT_CONFIG", "/etc/paywait.toml"), ("PAYWAIT_X", "1")]).unwrap();
    }

    #[test]
    fn a_misspelt_section_in_a_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("paywait-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("paywait.toml");
        std::fs::write(&file, "[gatway]\nurl = \"http://gateway/ask\"\n").unwrap();
        let error = Settings::load(&Sources {
            file: Some(&file),
            environment: vec![],
        })
        .unwrap_err()
        .to_string();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(error.contains("`gatway`"), "{error}");
    }

    #[test]
    fn the_heartbeat_asked_for_finds_a_silent_link_within_twice_the_setting() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.amqp.heartbeat, Duration::from_secs(10));
        for (setting, asked) in [("10s", 8), ("2s", 1), ("3s", 2), ("1m", 48)] {
            let settings = load(&[("PAYWAIT_AMQP__HEARTBEAT", setting)]).unwrap();
            assert_eq!(settings.amqp.heartbeat_asked(), asked, "{setting}");
            // Given up after two heartbeats asked, checked every half one.
            let found_within = Duration::from_secs(u64::from(asked)).mul_f64(2.5);
            assert!(found_within <= settings.amqp.heartbeat * 2, "{setting}");
        }
    }

    #[test]
    fn payments_and_the_gateway_are_configured_like_everything_else() {
        let settings = load(&[]).unwrap();
        assert!(settings.payments.trusted_users.is_empty());
        assert!(settings.gateway.url.is_none());
        assert_eq!(settings.gateway.timeout, Duration::from_secs(2));
        assert_eq!(settings.gateway.retry, Duration::from_secs(30));
        assert_eq!(settings.gateway.max_retries, 3);

        let settings = load(&[
            (
                "PAYWAIT_PAYMENTS__TRUSTED_USERS",
                "payment-service, gateway",
            ),
            (
                "PAYWAIT_GATEWAY__URL",
                "https://pay:s3cret@gateway.example/ask",
            ),
            ("PAYWAIT_GATEWAY__TIMEOUT", "500ms"),
            ("PAYWAIT_GATEWAY__RETRY", "10s"),
            ("PAYWAIT_GATEWAY__MAX_RETRIES", "0"),
            ("PAYWAIT_GATEWAY__CONCURRENCY", "4"),
        ])
        .unwrap();
        assert_eq!(
            settings.payments.trusted_users,
            ["payment-service", "gateway"]
        );
        let url = settings.gateway.url.as_ref().unwrap();
        assert_eq!(url.address(), "gateway.example:443");
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert_eq!(settings.gateway.timeout, Duration::from_millis(500));
        assert_eq!(settings.gateway.retry, Duration::from_secs(10));
        assert_eq!(settings.gateway.max_retries, 0);
        assert_eq!(settings.gateway.concurrency.get(), 4);

        for (name, value, key) in [
            ("PAYWAIT_GATEWAY__URL", "ftp://gateway/", "gateway.url"),
            ("PAYWAIT_GATEWAY__TIMEOUT", "0s", "gateway.timeout"),
            ("PAYWAIT_GATEWAY__RETRY", "soon", "gateway.retry"),
            ("PAYWAIT_GATEWAY__CONCURRENCY", "0", "gateway.concurrency"),
            (
                "PAYWAIT_PAYMENTS__TRUSTED_USERS",
                "a,,b",
                "payments.trusted_users",
            ),
        ] {
            let error = load(&[(name, value)]).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid configuration: {key}: ")),
                "{name}={value} gave {error}"
            );
        }
    }

    #[test]
    fn the_broker_user_is_read_from_the_url() {
        let settings = load(&[("AMQP_URL", "amqp://payment%2Dsvc:pw@broker/%2f")]).unwrap();
        assert_eq!(settings.amqp.url.username(), "payment-svc");
        let settings = load(&[("AMQP_URL", "amqp://broker/%2f")]).unwrap();
        assert_eq!(settings.amqp.url.username(), "guest");
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
