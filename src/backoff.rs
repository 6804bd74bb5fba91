//! Waits between attempts: from 100 ms, doubling with jitter, up to a cap,
//! for as long as it takes. The callers bound the attempts themselves: a
//! stop or the end of a session ends them.

use std::time::Duration;

use backon::BackoffBuilder;

/// Retries of a message whose handler failed part-way.
pub const RETRY_CAP: Duration = Duration::from_secs(5);
/// Reconnections to a broker that went away.
pub const RECONNECT_CAP: Duration = Duration::from_secs(10);

/// Exponential waits from 100 ms up to `cap`, jittered so that many
/// waiters do not come back at the same instant.
pub fn delays(cap: Duration) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(cap)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_from_100_ms_and_stop_at_the_cap() {
        let waits: Vec<Duration> = delays(Duration::from_secs(1)).take(12).collect();
        // Jitter adds up to the wait itself on top.
        assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200));
        assert!(waits.iter().all(|wait| *wait <= Duration::from_secs(2)));
        assert!(waits[11] >= Duration::from_secs(1), "{waits:?}");
    }
}
