use std::time::Duration;

use super::Attempt;

/// The waits before each check of an order, in order: `["1m", "4m"]` checks one
/// minute after the order was placed and again four minutes later, which is
/// also the deadline.
///
/// Never empty and never holds a zero wait, so every order has a deadline
/// strictly after the moment it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    waits: Vec<Duration>,
}

/// Why a list of waits is not a [`Schedule`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSchedule {
    #[error("the schedule is empty; it needs at least one wait")]
    Empty,
    #[error("wait #{position} is zero; every wait must be longer than that")]
    ZeroWait { position: usize },
    #[error("wait #{position} ({text:?}) is not a duration such as 250ms, 5s, 1m or 2h")]
    NotADuration { position: usize, text: String },
    #[error("the schedule adds up to more than {max} seconds")]
    TooLong { max: u64 },
}

impl Schedule {
    /// RabbitMQ's `x-message-ttl` is a 32-bit count of milliseconds.
    const MAX_TOTAL: Duration = Duration::from_millis(u32::MAX as u64);

    pub fn new(waits: Vec<Duration>) -> Result<Self, InvalidSchedule> {
        if waits.is_empty() {
            return Err(InvalidSchedule::Empty);
        }
        if let Some(index) = waits.iter().position(|w| w.is_zero()) {
            return Err(InvalidSchedule::ZeroWait {
                position: index + 1,
            });
        }
        if waits.iter().sum::<Duration>() > Self::MAX_TOTAL {
            return Err(InvalidSchedule::TooLong {
                max: Self::MAX_TOTAL.as_secs(),
            });
        }
        Ok(Self { waits })
    }

    /// Parses waits written as `250ms`, `5s`, `1m`, `2h`.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, InvalidSchedule> {
        let waits = texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                parse_duration(text.as_ref()).map_err(|_| InvalidSchedule::NotADuration {
                    position: index + 1,
                    text: text.as_ref().to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(waits)
    }

    pub fn waits(&self) -> &[Duration] {
        &self.waits
    }

    /// The wait before the first check.
    pub fn first_wait(&self) -> Duration {
        self.waits[0]
    }

    /// The shortest wait of the schedule.
    pub fn shortest_wait(&self) -> Duration {
        *self.waits.iter().min().expect("a schedule is never empty")
    }

    /// The time from placing an order to its deadline.
    pub fn total(&self) -> Duration {
        self.waits.iter().sum()
    }

    /// The number of checks an order gets when everything runs on time.
    pub fn checks(&self) -> u32 {
        self.waits.len() as u32
    }

    /// Each distinct wait once, shortest first: one TTL queue each.
    pub fn distinct_waits(&self) -> Vec<Duration> {
        let mut waits = self.waits.clone();
        waits.sort_unstable();
        waits.dedup();
        waits
    }

    /// The wait between check `attempt` and the next one, for an order whose
    /// deadline is still `remaining` away.
    ///
    /// Inside the schedule this is simply the next planned wait. A check can run
    /// out of planned waits before the deadline (an order stamped with a
    /// `placed_at` ahead of this clock, or a schedule shortened while timers were
    /// waiting); then the shortest wait that reaches the deadline is used, or the
    /// longest one there is, so the order is checked again as soon as the fixed
    /// TTL queues allow and never closed early.
    pub fn wait_after(&self, attempt: Attempt, remaining: Duration) -> Duration {
        if let Some(planned) = self.waits.get(attempt.get() as usize) {
            return *planned;
        }
        let distinct = self.distinct_waits();
        distinct
            .iter()
            .copied()
            .find(|wait| *wait >= remaining)
            .unwrap_or_else(|| *distinct.last().expect("a schedule is never empty"))
    }
}

/// Parses a duration written as `250ms`, `5s`, `1m`, `2h` (or combinations
/// such as `1m30s`).
pub fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text.trim())
}

/// A wait as a [`chrono::TimeDelta`], to add to timestamps.
///
/// Waits come from a [`Schedule`], which bounds them far below its range.
pub fn time_delta(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

/// Writes a duration the way the configuration does: `250ms`, `1m`, `1m30s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(texts: &[&str]) -> Schedule {
        Schedule::parse(texts).unwrap()
    }

    fn attempt(n: u32) -> Attempt {
        Attempt::new(n).unwrap()
    }

    #[test]
    fn parses_the_documented_units() {
        let s = schedule(&["250ms", "5s", "1m", "2h"]);
        assert_eq!(
            s.waits(),
            [
                Duration::from_millis(250),
                Duration::from_secs(5),
                Duration::from_secs(60),
                Duration::from_secs(7200)
            ]
        );
    }

    #[test]
    fn refuses_empty_zero_and_garbage() {
        assert_eq!(Schedule::parse::<&str>(&[]), Err(InvalidSchedule::Empty));
        assert_eq!(
            Schedule::parse(&["1m", "0s"]),
            Err(InvalidSchedule::ZeroWait { position: 2 })
        );
        assert!(matches!(
            Schedule::parse(&["1m", "soon"]),
            Err(InvalidSchedule::NotADuration { position: 2, .. })
        ));
        assert!(matches!(
            Schedule::parse(&["1m", "-5s"]),
            Err(InvalidSchedule::NotADuration { position: 2, .. })
        ));
        assert!(matches!(
            Schedule::parse(&["30d", "30d"]),
            Err(InvalidSchedule::TooLong { .. })
        ));
    }

    #[test]
    fn deadline_is_the_sum_and_queues_are_distinct() {
        let s = schedule(&["1m", "4m", "10m", "15m", "4m"]);
        assert_eq!(s.total(), Duration::from_secs(34 * 60));
        assert_eq!(s.first_wait(), Duration::from_secs(60));
        assert_eq!(s.checks(), 5);
        assert_eq!(s.shortest_wait(), Duration::from_secs(60));
        assert_eq!(
            s.distinct_waits(),
            [60, 240, 600, 900].map(Duration::from_secs)
        );
    }

    #[test]
    fn next_wait_follows_the_plan() {
        let s = schedule(&["1m", "4m", "10m"]);
        let far = Duration::from_secs(3600);
        assert_eq!(s.wait_after(attempt(1), far), Duration::from_secs(240));
        assert_eq!(s.wait_after(attempt(2), far), Duration::from_secs(600));
    }

    #[test]
    fn past_the_plan_the_shortest_wait_that_reaches_the_deadline_is_used() {
        let s = schedule(&["1m", "4m", "10m"]);
        assert_eq!(
            s.wait_after(attempt(3), Duration::from_secs(30)),
            Duration::from_secs(60)
        );
        assert_eq!(
            s.wait_after(attempt(3), Duration::from_secs(200)),
            Duration::from_secs(240)
        );
        assert_eq!(
            s.wait_after(attempt(9), Duration::from_secs(5000)),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn waits_convert_to_time_deltas() {
        assert_eq!(
            time_delta(Duration::from_millis(1500)),
            chrono::TimeDelta::milliseconds(1500)
        );
        assert_eq!(time_delta(Duration::MAX), chrono::TimeDelta::MAX);
    }

    #[test]
    fn formats_like_the_configuration() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }
}
