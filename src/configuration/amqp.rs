//! `[amqp]` and `[topology]`: the broker, its TLS, and the names and queue type
//! of everything paywait declares.

use std::{num::NonZeroU16, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::*;

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
    pub(super) fn check(&self, url: &SecretUrl) -> Result<(), ConfigError> {
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
