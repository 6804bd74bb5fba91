//! How many messages wait in each queue: polled by the daemon for
//! `paywait_queue_messages`, counted once for `paywait status`.

use std::time::Duration;

use lapin::Channel;
use tokio_util::sync::CancellationToken;

use super::error::Result;
use super::{Broker, declare::passive_declare};
use crate::{amqp::Topology, domain::QueueFigures, metrics::Metrics};

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
    let _ = super::briefly(channel.close(200, "paywait stopping".into())).await;
}

/// Every queue of the topology, its ready messages and consumers, as the
/// broker counts them now; a queue that is missing counts as empty.
pub async fn queue_figures(broker: &Broker, topology: &Topology) -> Result<Vec<QueueFigures>> {
    let mut channel = broker.channel().await?;
    let mut figures = Vec::new();
    for queue in topology.queues() {
        let (messages, consumers) = match passive_declare(&channel, &queue.name).await {
            Ok(declared) => (declared.message_count(), declared.consumer_count()),
            Err(_) => {
                // A passive declare of a missing queue closes the channel.
                channel = broker.channel().await?;
                (0, 0)
            }
        };
        figures.push(QueueFigures {
            consumed: topology.inbox_of(&queue.name).is_some(),
            timers: topology
                .wait_queues()
                .iter()
                .any(|wait| wait.name == queue.name),
            name: queue.name,
            messages: u64::from(messages),
            consumers: u64::from(consumers),
        });
    }
    let _ = channel.close(200, "counted".into()).await;
    Ok(figures)
}
