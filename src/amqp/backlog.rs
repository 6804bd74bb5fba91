//! How many messages wait in each queue, as the daemon sees them, for
//! `paywait_queue_messages`.

use std::time::Duration;

use lapin::Channel;
use tokio_util::sync::CancellationToken;

use super::declare::passive_declare;
use crate::{metrics::Metrics, topology::Topology};

/// How often the queues are polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Polls every queue of the topology until `stop`, or until the channel fails.
pub(super) async fn poll_queue_depths(
    channel: Channel,
    topology: &Topology,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for queue in topology.queues() {
            match passive_declare(&channel, &queue.name).await {
                Ok(declared) => metrics.queue_depth(&queue.name, declared.message_count()),
                Err(error) => {
                    // A passive declare of a missing queue closes the channel.
                    tracing::warn!(queue = queue.name, %error, "cannot poll the queue's depth");
                    return;
                }
            }
        }
    }
    let _ = channel.close(200, "paywait stopping".into()).await;
}
