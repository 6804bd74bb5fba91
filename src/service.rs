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
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval / 2);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match progress.stuck(std::time::Instant::now(), stuck_after) {
                None => notify(&[NotifyState::Watchdog]),
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
    });
}
