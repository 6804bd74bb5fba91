//! The daemon's own sections: `[http]`, `[log]`, `[shutdown]`, `[sweeper]`,
//! `[payments]` and `[gateway]`.

use std::{
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
    time::Duration,
};

use serde::Deserialize;

use super::*;

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
