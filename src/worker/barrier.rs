//! On time is when a payment reached the broker, not when paywait got to
//! it. Before a close is decided at a moment `at`, every payment that
//! reached the broker before `at` must have been handled, however far
//! behind the payments consumer is (a restart, a lost link, a backlog).
//!
//! The payments queue has a single active consumer, so payments are
//! delivered in the order they reached the broker. A barrier — a message
//! of paywait's own with a random token — published into that queue at
//! `published_at` is behind every payment the broker held then; the
//! consumer passes it only once every delivery before it is acknowledged,
//! which happens only after its effects are committed. So once a barrier
//! published at or after `at` has passed, every payment that reached the
//! broker before `at` is in the database, and the close's conditional
//! write sees it.
//!
//! One barrier is in flight at a time, whatever the number of closes
//! waiting: each close waits for the first barrier published after its own
//! moment, so a burst of closes costs a few barriers, not one each. The
//! barrier may pass another daemon's consumer (the active one): that daemon
//! records its token in PostgreSQL, where the publisher looks for it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::Live;
use crate::error::{Error, Result};

/// How often a waiting close looks in the database for a barrier passed by
/// another daemon's consumer.
const POLL: Duration = Duration::from_millis(50);
/// A barrier in flight longer than this is published again: the queue it
/// was in may have been purged.
const REPUBLISH_AFTER: Duration = Duration::from_secs(30);

/// The barriers this daemon published and which have passed.
pub struct Barriers {
    in_flight: Mutex<HashMap<String, InFlight>>,
    /// Every payment that reached the broker before this moment has been
    /// handled.
    handled_through: watch::Sender<Option<DateTime<Utc>>>,
    /// Whether closes are held up, and since when.
    stall: Mutex<Stall>,
    /// How long a close waits at most before its message is retried.
    patience: Duration,
}

#[derive(Clone, Copy)]
struct InFlight {
    published_at: DateTime<Utc>,
    sent: Instant,
}

/// How long a check whose close gave up takes at most to come back and
/// wait again (it is retried with backoff capped at `RETRY_CAP`).
const COMING_BACK: Duration = Duration::from_secs(2 * crate::backoff::RETRY_CAP.as_secs());

/// Whether closes are held up by the payments queue: since when no barrier
/// of this daemon has passed while closes waited. A close that gives up
/// keeps the stall (its check comes back to wait again), so a queue that
/// confirms nothing shows as one long stall, not many short ones; a stall
/// no close is waiting on any more, nor coming back to, is over.
#[derive(Debug, Default)]
struct Stall {
    since: Option<Instant>,
    waiting: usize,
    last_gave_up: Option<Instant>,
}

impl Stall {
    fn begin(&mut self, now: Instant) {
        self.waiting += 1;
        self.still_waiting(now);
    }

    /// A waiting close found itself not served yet (a barrier passed that
    /// was sent before its moment): a stall starts again from here.
    fn still_waiting(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    fn end(&mut self) {
        self.waiting -= 1;
    }

    fn gave_up(&mut self, now: Instant) {
        self.last_gave_up = Some(now);
    }

    fn served(&mut self) {
        self.since = None;
    }

    fn held_for(&mut self, now: Instant) -> Option<Duration> {
        let coming_back = self
            .last_gave_up
            .is_some_and(|at| now.saturating_duration_since(at) < COMING_BACK);
        if self.waiting == 0 && !coming_back {
            self.since = None;
        }
        self.since.map(|since| now.saturating_duration_since(since))
    }
}

/// A close waiting in [`Barriers::wait_through`], until dropped.
struct Waiting<'a>(&'a Barriers);

impl<'a> Waiting<'a> {
    fn begin(barriers: &'a Barriers, now: Instant) -> Self {
        barriers.stall().begin(now);
        Self(barriers)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.stall().end();
    }
}

impl Barriers {
    /// Barriers for closes that wait at most `patience` each time.
    pub fn new(patience: Duration) -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
            handled_through: watch::Sender::new(None),
            stall: Mutex::new(Stall::default()),
            patience,
        }
    }

    /// Waits until every payment that reached the broker before `at` has
    /// been handled; returns how long that took. Fails when the payments
    /// consumer did not get there within the patience (the close is then
    /// tried again later).
    pub async fn wait_through(&self, live: &Live, at: DateTime<Utc>) -> Result<Duration> {
        let started = Instant::now();
        let mut handled = self.handled_through.subscribe();
        if handled.borrow().is_some_and(|through| through >= at) {
            return Ok(Duration::ZERO);
        }
        let _waiting = Waiting::begin(self, started);
        let waited = self.wait_for_barrier(live, at, started, &mut handled).await;
        if waited.is_err() {
            self.stall().gave_up(Instant::now());
        }
        waited
    }

    async fn wait_for_barrier(
        &self,
        live: &Live,
        at: DateTime<Utc>,
        started: Instant,
        handled: &mut watch::Receiver<Option<DateTime<Utc>>>,
    ) -> Result<Duration> {
        loop {
            if handled
                .borrow_and_update()
                .is_some_and(|through| through >= at)
            {
                return Ok(started.elapsed());
            }
            self.stall().still_waiting(Instant::now());
            if started.elapsed() > self.patience {
                return Err(Error::PaymentsBehind {
                    waited: self.patience,
                });
            }
            if let Some(token) = self.claim_publication(at)
                && let Err(error) = live.publisher.barrier(&live.topology, &token).await
            {
                self.lock().remove(&token);
                return Err(error.into());
            }
            tokio::select! {
                _ = handled.changed() => {}
                () = tokio::time::sleep(POLL) => self.look_for_passes(live).await?,
            }
        }
    }

    /// A token to publish a barrier under, when none in flight is young
    /// enough to wait for: none at all, or only ones published before `at`
    /// once no younger one can come (the newest is old, or none is left
    /// that was published after them).
    fn claim_publication(&self, at: DateTime<Utc>) -> Option<String> {
        let mut in_flight = self.lock();
        let newest = in_flight.values().max_by_key(|each| each.published_at);
        let publish = match newest {
            None => true,
            // Published after `at`: its passing is what this close needs.
            Some(newest) if newest.published_at >= at => false,
            // An older one: wait for it to pass first, so that the next
            // barrier serves everyone who came meanwhile; unless it looks
            // lost.
            Some(newest) => newest.sent.elapsed() > REPUBLISH_AFTER,
        };
        publish.then(|| {
            let token = uuid::Uuid::new_v4().to_string();
            in_flight.insert(
                token.clone(),
                InFlight {
                    published_at: Utc::now(),
                    sent: Instant::now(),
                },
            );
            token
        })
    }

    /// A barrier passed this daemon's payments consumer: whether it was one
    /// of this daemon's own.
    pub fn passed(&self, token: &str) -> bool {
        let published_at = {
            let mut in_flight = self.lock();
            let Some(passed) = in_flight.remove(token) else {
                return false;
            };
            // Those published before it were ahead of it in the queue.
            in_flight.retain(|_, each| each.published_at > passed.published_at);
            passed.published_at
        };
        self.stall().served();
        self.handled_through.send_if_modified(|through| {
            let later = through.is_none_or(|through| through < published_at);
            if later {
                *through = Some(published_at);
            }
            later
        });
        true
    }

    /// Takes the records of this daemon's barriers that another daemon's
    /// consumer passed.
    async fn look_for_passes(&self, live: &Live) -> Result<()> {
        let tokens: Vec<String> = self.lock().keys().cloned().collect();
        if tokens.is_empty() {
            return Ok(());
        }
        for token in live.db.take_passed_barriers(&tokens).await? {
            self.passed(&token);
        }
        Ok(())
    }

    /// How long closes have been held up waiting for the payments queue
    /// with no barrier passing, if they are.
    pub fn closes_waiting_for(&self) -> Option<Duration> {
        self.stall().held_for(Instant::now())
    }

    fn stall(&self) -> std::sync::MutexGuard<'_, Stall> {
        self.stall.lock().expect("barrier lock")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight.lock().expect("barrier lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_barrier_serves_every_close_that_came_before_it() {
        let barriers = Barriers::new(Duration::from_secs(1));
        let first_close = Utc::now();
        let token = barriers
            .claim_publication(first_close)
            .expect("none in flight");
        // A close of an earlier moment waits for the same barrier.
        assert_eq!(barriers.claim_publication(first_close), None);
        // A later close waits for that one to pass before the next is sent.
        std::thread::sleep(Duration::from_millis(5));
        let later_close = Utc::now();
        assert_eq!(barriers.claim_publication(later_close), None);
        assert!(barriers.passed(&token));
        let through = barriers.handled_through.borrow().expect("passed");
        assert!(through >= first_close);
        assert!(through < later_close);
        // Now the later close gets a barrier of its own.
        let next = barriers
            .claim_publication(later_close)
            .expect("a new barrier");
        assert!(barriers.passed(&next));
        assert!(barriers.handled_through.borrow().unwrap() >= later_close);
    }

    #[test]
    fn a_stall_lasts_through_closes_that_give_up_and_come_back() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut stall = Stall::default();
        assert_eq!(stall.held_for(at(0)), None);
        stall.begin(at(0));
        assert_eq!(stall.held_for(at(20)), Some(Duration::from_secs(20)));
        // The close gives up; its check comes back and waits again.
        stall.gave_up(at(30));
        stall.end();
        assert_eq!(stall.held_for(at(33)), Some(Duration::from_secs(33)));
        stall.begin(at(35));
        stall.gave_up(at(65));
        stall.end();
        assert_eq!(stall.held_for(at(70)), Some(Duration::from_secs(70)));
        // No close came back (its order was paid meanwhile): over.
        assert_eq!(stall.held_for(at(65) + COMING_BACK), None);
        assert_eq!(stall.held_for(at(200)), None);
    }

    #[test]
    fn a_barrier_passing_ends_the_stall() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut stall = Stall::default();
        stall.begin(at(0));
        stall.begin(at(1));
        stall.served();
        assert_eq!(stall.held_for(at(2)), None);
        // Those still waiting start a new stall with their next barrier.
        stall.still_waiting(at(2));
        assert_eq!(stall.held_for(at(3)), Some(Duration::from_secs(1)));
        stall.end();
        stall.end();
        assert_eq!(stall.held_for(at(4)), None);
    }

    #[test]
    fn a_token_not_ours_moves_nothing() {
        let barriers = Barriers::new(Duration::from_secs(1));
        let _ours = barriers.claim_publication(Utc::now()).unwrap();
        assert!(!barriers.passed("forged"));
        assert_eq!(*barriers.handled_through.borrow(), None);
    }

    #[test]
    fn a_barrier_passing_passes_those_sent_before_it() {
        let barriers = Barriers::new(Duration::from_secs(1));
        let first = barriers.claim_publication(Utc::now()).unwrap();
        // Looks lost: another is sent.
        barriers.lock().get_mut(&first).unwrap().sent -= REPUBLISH_AFTER * 2;
        std::thread::sleep(Duration::from_millis(5));
        let second = barriers
            .claim_publication(Utc::now())
            .expect("the first looks lost");
        assert!(barriers.passed(&second));
        assert!(barriers.lock().is_empty());
        // The first, passing later, moves nothing back.
        let through = *barriers.handled_through.borrow();
        assert!(!barriers.passed(&first));
        assert_eq!(*barriers.handled_through.borrow(), through);
    }
}
