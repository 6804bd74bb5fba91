//! Watching the events exchange as a downstream service would, through a
//! queue of the watcher's own that the broker deletes when it leaves.

use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use super::{AmqpError, error::Result};
use super::{Broker, failed, passive_declare};
use crate::amqp::Topology;

/// Hands every event published from now on to `on_event` (routing key,
/// body) until `stop`, once `on_watching` was told the watch began and how
/// many events wait in the unrouted queue; fails when the broker goes away.
///
/// While the watch's queue is bound, every event is routed to it: an event
/// that no downstream queue is bound for reaches the watch only, and is not
/// kept in the unrouted queue. Events already waiting there tell that
/// some downstream queue is missing.
pub async fn watch_events(
    broker: &Broker,
    topology: &Topology,
    stop: CancellationToken,
    on_watching: impl FnOnce(u32),
    mut on_event: impl FnMut(&str, &[u8]),
) -> Result<()> {
    let channel = broker.channel().await?;
    let unrouted = passive_declare(&channel, topology.unrouted_queue())
        .await
        .map_err(failed(format!("counting {}", topology.unrouted_queue())))?
        .message_count();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(failed("declaring a queue to watch the events"))?;
    channel
        .queue_bind(
            queue.name().clone(),
            topology.events_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(failed(format!(
            "binding a queue to {}",
            topology.events_exchange()
        )))?;
    let mut deliveries = channel
        .basic_consume(
            queue.name().clone(),
            "paywait-watch".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(failed("watching the events"))?;
    on_watching(unrouted);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => on_event(delivery.routing_key.as_str(), &delivery.data),
                Some(Err(error)) => return Err(failed("watching the events")(error)),
                None => return Err(AmqpError::ConsumerCancelled { queue: queue.name().to_string() }),
            },
        }
    }
    let _ = channel.close(200, "done watching".into()).await;
    Ok(())
}
