//! How single fields are read from the sources: each parser refuses what
//! its field cannot hold, with a message that says why.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, de::Error as _};

use super::*;
use crate::domain::{Schedule, parse_duration, reminder::RemindBefore};

pub(super) fn amqp_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretUrl, D::Error> {
    let text = String::deserialize(deserializer)?;
    SecretUrl::parse(&text, AMQP_SCHEMES).map_err(D::Error::custom)
}

/// A list of broker URLs, or one string of them separated by commas.
pub(super) fn amqp_urls<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretUrl>, D::Error> {
    list_or_comma_separated(deserializer)?
        .iter()
        .map(|text| SecretUrl::parse(text, AMQP_SCHEMES))
        .collect::<Result<_, _>>()
        .map_err(D::Error::custom)
}

pub(super) fn database_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SecretUrl, D::Error> {
    let text = String::deserialize(deserializer)?;
    let url = SecretUrl::parse(&text, DATABASE_SCHEMES).map_err(D::Error::custom)?;
    let name = url.url().path().trim_start_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(D::Error::custom(
            "the URL must name one database, as in postgres://host/paywait",
        ));
    }
    super::Target::new(&url).map_err(D::Error::custom)?;
    Ok(url)
}

/// A path; empty for none.
pub(super) fn optional_path<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

pub(super) fn gateway_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretUrl>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    SecretUrl::parse(&text, GATEWAY_SCHEMES)
        .map(Some)
        .map_err(D::Error::custom)
}

/// A list of RabbitMQ user names, or one string of them separated by commas.
pub(super) fn user_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let names = list_or_comma_separated(deserializer)?;
    if names.iter().any(String::is_empty) {
        return Err(D::Error::custom("a user name is empty"));
    }
    Ok(names)
}

pub(super) fn list_or_comma_separated<'de, D: Deserializer<'de>>(
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

pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(|_| {
        D::Error::custom(format!(
            "{text:?} is not a duration such as 250ms, 5s, 1m or 2h"
        ))
    })
}

pub(super) fn positive_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let value = duration(deserializer)?;
    if value.is_zero() {
        return Err(D::Error::custom("must be longer than zero"));
    }
    Ok(value)
}

/// The bounds of a database time-out: shorter than a round trip could be,
/// or longer than a day, is a mistake.
pub(super) const DATABASE_TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);

pub(super) fn database_timeout<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let value = duration(deserializer)?;
    if !DATABASE_TIMEOUTS.contains(&value) {
        return Err(D::Error::custom("must be from 100ms to 24h"));
    }
    Ok(value)
}

/// A timer waits out its early margin in process, holding one of the
/// consumer's `amqp.prefetch` places all along.
pub(super) const MAX_EARLY_MARGIN: Duration = Duration::from_secs(60);

/// The AMQP heartbeat counts whole seconds, at most 65,535.
pub(super) const MAX_HEARTBEAT: Duration = Duration::from_secs(65_535);

pub(super) fn heartbeat<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = positive_duration(deserializer)?;
    if value < Duration::from_secs(2) || value > MAX_HEARTBEAT || value.subsec_nanos() != 0 {
        return Err(D::Error::custom(
            "must be whole seconds from 2s to 65535s: AMQP heartbeats count seconds",
        ));
    }
    Ok(value)
}

pub(super) fn early_margin<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let value = positive_duration(deserializer)?;
    if value > MAX_EARLY_MARGIN {
        return Err(D::Error::custom(
            "must be at most 1m: an early timer waits in process, holding a place of amqp.prefetch",
        ));
    }
    Ok(value)
}

/// A list of waits, or one string of them separated by commas.
pub(super) fn schedule<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Schedule, D::Error> {
    let waits = list_or_comma_separated(deserializer)?;
    Schedule::parse(&waits).map_err(D::Error::custom)
}

pub(super) fn remind_before<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RemindBefore, D::Error> {
    let texts = list_or_comma_separated(deserializer)?;
    let offsets = texts
        .iter()
        .map(|text| {
            parse_duration(text)
                .map_err(|error| D::Error::custom(format!("{text:?} is not a duration: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RemindBefore::new(offsets).map_err(D::Error::custom)
}

pub(super) fn listen_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map_err(|_| D::Error::custom(format!("{text:?} is not an address such as 127.0.0.1:9464")))
}

pub(super) fn prefix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
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
