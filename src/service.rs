//! The service manager's view of the daemon (systemd `Type=notify`): READY
//! once consuming, STATUS lines saying what it does, STOPPING on the way
//! out, and watchdog pings when `WatchdogSec=` is set. Without
//! `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "could not notify the service manager");
    }
}

/// The topology is declared and the consumers run.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing in-flight messages"),
    ]);
}

/// Pings the watchdog at half its interval until `stop`, when one is set,
/// but only while the work moves: once a piece of work has run longer
/// than `stuck_after`, the pings stop and the service manager restarts the
/// daemon (a blocked runtime stops them as surely).
pub fn keep_watchdog_fed(stop: CancellationToken, progress: Progress, stuck_after: Duration) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(feed_while_moving(
        interval / 2,
        stop,
        progress,
        stuck_after,
        || notify(&[NotifyState::Watchdog]),
    ));
}

/// Calls `ping` every `every` until `stop`, but not while a piece of work
/// has run longer than `stuck_after`.
async fn feed_while_moving(
    every: Duration,
    stop: CancellationToken,
    progress: Progress,
    stuck_after: Duration,
    mut ping: impl FnMut(),
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match progress.stuck(std::time::Instant::now(), stuck_after) {
            None => ping(),
            Some(running) => {
                tracing::error!(
                    ?running,
                    "work has not finished for longer than it may take: \
                     not pinging the watchdog, so the service manager restarts paywait"
                );
                status(&format!("stuck: work running for {running:.0?}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn the_watchdog_is_fed_while_work_moves_and_starved_once_it_is_stuck() {
        let progress = Progress::default();
        let pings = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = pings.clone();
        let feeding = tokio::spawn(feed_while_moving(
            Duration::from_millis(10),
            stop.clone(),
            progress.clone(),
            Duration::from_millis(500),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        ));
        let count = || pings.load(Ordering::SeqCst);
        // Idle: nothing runs, so nothing is stuck.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(count() > 0);

        // A piece of work that never ends: once older than the limit, no
        // more pings.
        let stuck = progress.begin();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let before = count();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count(), before, "pinged while stuck");

        // It ends: the pings come back.
        drop(stuck);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(count() > before, "not pinged once the work moved again");
        stop.cancel();
        feeding.await.unwrap();
    }
}
