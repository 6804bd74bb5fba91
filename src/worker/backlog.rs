//! How many messages wait in each queue, as the daemon sees them, for
//! `paywait_queue_messages`.

use std::{sync::Arc, time::Duration};

use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};
use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, topology::Topology};

/// How often the queues are polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Polls every queue of the topology until `stop`, or until the channel fails.
pub async fn poll_queue_depths(
    channel: Channel,
    topology: Arc<Topology>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for queue in topology.queues() {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match channel
                .queue_declare(queue.name.as_str().into(), passive, FieldTable::default())
                .await
            {
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
