//! Whether the daemon's work moves. Every piece of work — handling one
//! message, one sweep, setting up a session — registers while it runs;
//! each wait inside it has its own deadline, so a piece still running long
//! past them all means something is stuck, and the systemd watchdog is no
//! longer fed (see [`crate::service::keep_watchdog_fed`]). An idle daemon
//! has nothing running, and so is not stuck.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The pieces of work running now, with when each began.
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Running>>);

#[derive(Default)]
struct Running {
    next: u64,
    /// Numbered in the order they began, so the first is the oldest.
    began: BTreeMap<u64, Instant>,
}

/// A piece of work under way; it ends when dropped.
#[must_use = "the work ends when this is dropped"]
pub struct Underway {
    running: Arc<Mutex<Running>>,
    number: u64,
}

impl Drop for Underway {
    fn drop(&mut self) {
        self.running
            .lock()
            .expect("progress lock")
            .began
            .remove(&self.number);
    }
}

impl Progress {
    /// Registers a piece of work beginning now.
    pub fn begin(&self) -> Underway {
        let mut running = self.0.lock().expect("progress lock");
        let number = running.next;
        running.next += 1;
        running.began.insert(number, Instant::now());
        Underway {
            running: self.0.clone(),
            number,
        }
    }

    /// When the oldest piece of work still running began, if any runs.
    pub fn oldest(&self) -> Option<Instant> {
        let running = self.0.lock().expect("progress lock");
        running.began.first_key_value().map(|(_, began)| *began)
    }

    /// How long the oldest piece of work has run past `stuck_after` at
    /// `now`; `None` while the work moves.
    pub fn stuck(&self, now: Instant, stuck_after: Duration) -> Option<Duration> {
        stuck_for(self.oldest(), now, stuck_after)
    }
}

/// How long work that began at `oldest` has run, at `now`, when that is
/// longer than `stuck_after`.
pub fn stuck_for(oldest: Option<Instant>, now: Instant, stuck_after: Duration) -> Option<Duration> {
    let ran = now.saturating_duration_since(oldest?);
    (ran > stuck_after).then_some(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_work_or_work_younger_than_the_limit_is_not_stuck() {
        let now = Instant::now();
        let limit = Duration::from_secs(60);
        assert_eq!(stuck_for(None, now, limit), None);
        assert_eq!(stuck_for(Some(now - limit), now, limit), None);
        let long_ago = now - limit - Duration::from_secs(1);
        assert_eq!(
            stuck_for(Some(long_ago), now, limit),
            Some(limit + Duration::from_secs(1))
        );
    }

    #[test]
    fn the_oldest_piece_still_running_is_the_one_that_counts() {
        let progress = Progress::default();
        assert_eq!(progress.oldest(), None);
        let first = progress.begin();
        let first_began = progress.oldest().expect("one runs");
        std::thread::sleep(Duration::from_millis(5));
        let second = progress.begin();
        assert_eq!(progress.oldest(), Some(first_began));
        drop(first);
        let second_began = progress.oldest().expect("the second runs");
        assert!(second_began > first_began);
        // Long after, the second is stuck; once it ends, nothing is.
        let later = second_began + Duration::from_secs(120);
        assert_eq!(
            progress.stuck(later, Duration::from_secs(60)),
            Some(Duration::from_secs(120))
        );
        drop(second);
        assert_eq!(progress.stuck(later, Duration::from_secs(60)), None);
    }
}
