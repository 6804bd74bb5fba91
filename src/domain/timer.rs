//! Timers of any length, on time, from a fixed set of TTL queues.
//!
//! A timer carries the absolute time it is due (`x-due-at`). Each hop is
//! planned from that time, never from the previous hop: it goes through the
//! longest TTL queue that still brings it back a little early, and once it
//! is within [`Timers::early`] of its due time it waits out the rest in
//! process, unacknowledged (a crash then loses nothing: the broker delivers
//! it again, and it waits again). So neither the intake's queueing nor the
//! number of hops adds to how late a check runs.
//!
//! The TTL queues are a ladder of powers of four, from 64 ms to about 12
//! days, which composes any wait in a few hops (at most three per rung),
//! plus one queue for each wait of the schedule (shortened by the early
//! margin), so that the usual check takes one hop. Each queue is a quorum
//! queue, which costs the broker some memory even when empty: the ladder
//! is kept short.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Schedule;

/// The ladder's rungs: 64 ms × 4^k, from 64 ms to 2^30 ms (about 12.4 days).
fn ladder() -> impl Iterator<Item = Duration> {
    (0..13).map(|rung| Duration::from_millis(64 << (2 * rung)))
}

/// Where a timer goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the TTL queue of this wait.
    Hop(Duration),
    /// Nearly due: wait this long in process, then act.
    Hold(Duration),
    /// Due now (or overdue).
    Due,
}

/// The TTL queues timers travel through, and how a timer picks its next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// Every TTL, shortest first.
    ttls: Vec<Duration>,
    /// A timer this close to its due time waits in process.
    early: Duration,
}

impl Timers {
    /// The timers of `schedule` and of the `other_waits` paywait plans
    /// (the gateway's retry), arriving up to `early` before they are due.
    pub fn new(schedule: &Schedule, other_waits: &[Duration], early: Duration) -> Self {
        let mut ttls: Vec<Duration> = ladder().collect();
        let rung = ttls[0];
        ttls.extend(
            schedule
                .distinct_waits()
                .into_iter()
                .chain(other_waits.iter().copied())
                .filter_map(|wait| wait.checked_sub(early))
                .filter(|ttl| *ttl >= rung),
        );
        ttls.sort_unstable();
        ttls.dedup();
        Self { ttls, early }
    }

    /// Every TTL, shortest first: one queue each.
    pub fn ttls(&self) -> &[Duration] {
        &self.ttls
    }

    pub fn early(&self) -> Duration {
        self.early
    }

    /// Where a timer due at `due_at` goes at `now`: through the longest
    /// TTL queue that brings it back at least a quarter of the early margin
    /// before it is due, so that the broker's own delay is absorbed by the
    /// wait in process. Only a quarter: the intake's queueing already ate
    /// into the margin of a schedule's queue, and a timer that no longer
    /// fits it takes several hops down the ladder, which loads the broker
    /// most when it is already slow.
    pub fn route(&self, due_at: DateTime<Utc>, now: DateTime<Utc>) -> Route {
        let Ok(remaining) = (due_at - now).to_std() else {
            return Route::Due;
        };
        if remaining.is_zero() {
            return Route::Due;
        }
        if remaining <= self.early {
            return Route::Hold(remaining);
        }
        let aim = remaining - self.early / 4;
        match self.ttls.iter().rev().find(|ttl| **ttl <= aim) {
            Some(ttl) => Route::Hop(*ttl),
            None => Route::Hold(remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timers(schedule: &[&str]) -> Timers {
        Timers::new(&Schedule::parse(schedule).unwrap(), &[], ms(100))
    }

    fn now() -> DateTime<Utc> {
        "2026-11-27T08:00:00Z".parse().unwrap()
    }

    fn route(timers: &Timers, remaining_ms: i64) -> Route {
        timers.route(now() + TimeDelta::milliseconds(remaining_ms), now())
    }

    #[test]
    fn a_ladder_of_powers_of_two_and_a_queue_per_wait_of_the_schedule() {
        let t = timers(&["1s", "1m", "1s"]);
        let ttls = t.ttls();
        assert_eq!(ttls.first(), Some(&ms(64)));
        assert_eq!(ttls.last(), Some(&ms(1 << 30)));
        assert!(ttls.contains(&ms(256)) && ttls.contains(&ms(16_777_216)));
        assert!(ttls.contains(&ms(900)) && ttls.contains(&ms(59_900)));
        assert_eq!(ttls.len(), 13 + 2);
        assert!(ttls.windows(2).all(|pair| pair[0] < pair[1]));
        // A wait no longer than the margin needs no queue of its own.
        assert_eq!(timers(&["100ms"]).ttls().len(), 13);
        let with_retry = Timers::new(
            &Schedule::parse(&["1s"]).unwrap(),
            &[Duration::from_secs(30)],
            ms(100),
        );
        assert!(with_retry.ttls().contains(&ms(29_900)));
    }

    #[test]
    fn the_usual_check_takes_one_hop_then_waits_out_the_margin() {
        let t = timers(&["1s"]);
        // Planned from the intake, a few ms after the order was placed.
        assert_eq!(route(&t, 995), Route::Hop(ms(900)));
        assert_eq!(route(&t, 951), Route::Hop(ms(900)));
        // A slow intake still fits the schedule's queue...
        assert_eq!(route(&t, 925), Route::Hop(ms(900)));
        // ...until the queue would bring it back too close to its due time.
        assert_eq!(route(&t, 924), Route::Hop(ms(256)));
        // Arrived early: wait the rest.
        assert_eq!(route(&t, 93), Route::Hold(ms(93)));
        assert_eq!(route(&t, 100), Route::Hold(ms(100)));
        assert_eq!(route(&t, 0), Route::Due);
        assert_eq!(route(&t, -40), Route::Due);
    }

    #[test]
    fn any_wait_is_composed_of_hops_that_each_end_early() {
        let t = timers(&["1s"]);
        for total in [150, 1_234, 30_000, 3 * 24 * 3600 * 1000 + 17] {
            let mut remaining: i64 = total;
            let mut hops = 0;
            loop {
                match route(&t, remaining) {
                    Route::Hop(ttl) => {
                        let ttl = ttl.as_millis() as i64;
                        assert!(
                            ttl <= remaining - 25,
                            "{total}: a hop of {ttl} ms left {remaining}"
                        );
                        remaining -= ttl;
                        hops += 1;
                    }
                    Route::Hold(wait) => {
                        assert!(wait <= ms(100), "{total}: held {wait:?}");
                        assert!(remaining > 0);
                        break;
                    }
                    Route::Due => panic!("{total}: arrived late"),
                }
            }
            assert!(hops <= 3 * 13, "{total}: {hops} hops");
        }
    }

    #[test]
    fn below_the_lowest_rung_a_timer_waits_a_little_longer() {
        let t = timers(&["1s"]);
        assert_eq!(route(&t, 110), Route::Hop(ms(64)));
        // A margin shorter than the lowest rung: a timer between the two
        // waits in process, a little longer than the margin.
        let t = Timers::new(&Schedule::parse(&["1s"]).unwrap(), &[], ms(20));
        assert_eq!(route(&t, 60), Route::Hold(ms(60)));
        assert_eq!(route(&t, 68), Route::Hold(ms(68)));
        assert_eq!(route(&t, 69), Route::Hop(ms(64)));
    }
}
