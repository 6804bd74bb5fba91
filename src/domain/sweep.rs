//! The safety net: which overdue orders get their timer armed again, and how.
//!
//! A timer can be lost outside paywait (a classic queue's at-most-once
//! dead-lettering, a purged queue). Every order whose event is still owed
//! records when its next check is due; the sweeper claims those overdue by
//! more than a grace and arms their next check again, due at once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Attempt, time_delta};

/// One round of the sweeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Orders whose check was due before this are overdue.
    pub cutoff: DateTime<Utc>,
    /// When the re-armed checks are due: now. Should their timer be lost
    /// again, they are overdue again after the grace.
    pub due_at: DateTime<Utc>,
}

impl Sweep {
    pub fn at(now: DateTime<Utc>, grace: Duration) -> Self {
        Self {
            cutoff: now - time_delta(grace),
            due_at: now,
        }
    }

    /// The check a re-armed timer is for: the one after the `checks_made`
    /// (at most [`Attempt::MAX`], which the configuration keeps out of reach).
    pub fn next_attempt(checks_made: u32) -> Attempt {
        Attempt::new(checks_made.saturating_add(1).min(Attempt::MAX)).unwrap_or(Attempt::FIRST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_checks_are_due_at_once() {
        let now: DateTime<Utc> = "2026-11-27T08:00:00Z".parse().unwrap();
        assert_eq!(
            Sweep::at(now, Duration::from_secs(30)),
            Sweep {
                cutoff: "2026-11-27T07:59:30Z".parse().unwrap(),
                due_at: now,
            }
        );
    }

    #[test]
    fn a_rearmed_timer_is_for_the_next_check() {
        assert_eq!(Sweep::next_attempt(0), Attempt::FIRST);
        assert_eq!(Sweep::next_attempt(3).get(), 4);
        // Never back to the first check, which would be dropped as stale.
        let last = Attempt::new(Attempt::MAX).unwrap();
        assert_eq!(Sweep::next_attempt(Attempt::MAX - 1), last);
        assert_eq!(Sweep::next_attempt(Attempt::MAX), last);
        assert_eq!(Sweep::next_attempt(u32::MAX), last);
    }
}
