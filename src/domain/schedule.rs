use std::time::Duration;

use chrono::TimeDelta;

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

    /// The time from placing an order to its deadline, unless the order
    /// states its own.
    pub fn total(&self) -> Duration {
        self.waits.iter().sum()
    }

    /// The most checks an order whose deadline is `deadline` after it was
    /// placed can be given: every planned one, and one at the deadline.
    pub fn most_checks(&self, deadline: Duration) -> u128 {
        let last = self.waits.last().expect("a schedule is never empty");
        let beyond = deadline.saturating_sub(self.total());
        self.waits.len() as u128 + beyond.as_nanos().div_ceil(last.as_nanos()) + 1
    }

    /// Each distinct wait once, shortest first.
    pub fn distinct_waits(&self) -> Vec<Duration> {
        let mut waits = self.waits.clone();
        waits.sort_unstable();
        waits.dedup();
        waits
    }

    /// When the next check is due, as an offset from the order's
    /// `placed_at`, for an order whose deadline is `deadline` after it was
    /// placed, `elapsed` after it was placed (negative when `placed_at` is
    /// ahead of this clock).
    ///
    /// The planned checks are the schedule's offsets that fall before the
    /// deadline — the waits added up, the last one repeating once the list is
    /// used up — then the deadline itself. The next is the first planned
    /// strictly after `elapsed`; checks missed while nothing ran are skipped,
    /// not made one after the other.
    pub fn next_offset(&self, elapsed: TimeDelta, deadline: Duration) -> Duration {
        let Ok(elapsed) = elapsed.to_std() else {
            return self.waits[0].min(deadline);
        };
        if elapsed >= deadline {
            return deadline;
        }
        let mut offset = Duration::ZERO;
        for wait in &self.waits {
            offset += *wait;
            if offset > elapsed {
                return offset.min(deadline);
            }
        }
        let last = *self.waits.last().expect("a schedule is never empty");
        let repeats = (elapsed - offset).as_nanos() / last.as_nanos() + 1;
        let beyond = last.saturating_mul(u32::try_from(repeats).unwrap_or(u32::MAX));
        offset.saturating_add(beyond).min(deadline)
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
    fn deadline_is_the_sum_and_waits_are_distinct() {
        let s = schedule(&["1m", "4m", "10m", "15m", "4m"]);
        assert_eq!(s.total(), Duration::from_secs(34 * 60));
        assert_eq!(
            s.distinct_waits(),
            [60, 240, 600, 900].map(Duration::from_secs)
        );
    }

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    fn at(minutes: i64, seconds: i64) -> TimeDelta {
        TimeDelta::minutes(minutes) + TimeDelta::seconds(seconds)
    }

    #[test]
    fn the_most_checks_an_order_can_be_given() {
        let s = schedule(&["1m", "4m"]);
        // 1 and 5 minutes in, then the deadline.
        assert_eq!(s.most_checks(minutes(5)), 3);
        assert_eq!(s.most_checks(minutes(2)), 3);
        // Then every 4 minutes: 9, 13, 17, and 20.
        assert_eq!(s.most_checks(minutes(20)), 7);
        assert_eq!(
            schedule(&["1ms"]).most_checks(Duration::from_secs(30 * 24 * 3600)),
            2_592_000_001
        );
    }

    #[test]
    fn checks_follow_the_schedule_to_its_deadline() {
        let s = schedule(&["1m", "4m", "10m", "15m"]);
        let deadline = s.total();
        let planned: Vec<Duration> = [at(0, 0), at(1, 0), at(5, 0), at(15, 0), at(29, 59)]
            .into_iter()
            .map(|elapsed| s.next_offset(elapsed, deadline))
            .collect();
        assert_eq!(planned, [1, 5, 15, 30, 30].map(minutes));
        // Just before an offset, that offset; at it, the next one.
        assert_eq!(s.next_offset(at(4, 59), deadline), minutes(5));
        assert_eq!(s.next_offset(at(5, 0), deadline), minutes(15));
        // placed_at ahead of this clock: the first check.
        assert_eq!(s.next_offset(at(-2, 0), deadline), minutes(1));
    }

    #[test]
    fn a_deadline_of_its_own_cuts_the_schedule_or_repeats_its_last_wait() {
        let s = schedule(&["1m", "4m"]);
        // Shorter: the offsets before it, then the deadline.
        let short = Duration::from_secs(150);
        assert_eq!(s.next_offset(at(0, 0), short), minutes(1));
        assert_eq!(s.next_offset(at(1, 0), short), short);
        // Shorter than the first wait: the deadline at once.
        assert_eq!(
            s.next_offset(at(0, 0), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        // Longer: the last wait repeats, then the deadline.
        let long = minutes(20);
        let planned: Vec<Duration> = [at(1, 0), at(5, 0), at(9, 0), at(13, 0), at(17, 30)]
            .into_iter()
            .map(|elapsed| s.next_offset(elapsed, long))
            .collect();
        assert_eq!(planned, [5, 9, 13, 17, 20].map(minutes));
    }

    #[test]
    fn missed_checks_are_skipped_and_a_past_deadline_is_due_now() {
        let s = schedule(&["1m", "4m"]);
        let deadline = minutes(60);
        // Down from minute 3 to minute 40: the next planned after 40 is 41.
        assert_eq!(s.next_offset(at(40, 0), deadline), minutes(41));
        assert_eq!(s.next_offset(at(61, 0), deadline), deadline);
        assert_eq!(s.next_offset(at(60, 0), deadline), deadline);
        let three_days = Duration::from_secs(3 * 24 * 3600);
        let long = schedule(&["1m"]);
        assert_eq!(
            long.next_offset(
                TimeDelta::hours(71) + TimeDelta::milliseconds(1),
                three_days
            ),
            minutes(71 * 60 + 1)
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
