//! `[checks]`: the schedule of checks and the limits on deadlines.

use std::time::Duration;

use serde::Deserialize;

use super::*;
use crate::domain::{Schedule, reminder::RemindBefore};

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
    /// How long before its deadline a pending order's reminders
    /// (`order.expiring`) come.
    #[serde(deserialize_with = "remind_before")]
    pub remind_before: RemindBefore,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            schedule: Schedule::parse(&["1m", "4m", "10m", "15m"]).expect("the default is valid"),
            max_deadline: Duration::from_secs(30 * 24 * 3600),
            max_clock_skew: Duration::from_secs(60),
            early_margin: Duration::from_millis(400),
            remind_before: RemindBefore::default(),
        }
    }
}
