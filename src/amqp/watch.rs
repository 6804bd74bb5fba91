//! Watching the events exchange as a downstream service would, through a
//! queue of the watcher's own that the broker deletes when it leaves.

use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use super::{Broker, failed};
use crate::{
    error::{Error, Result},
    topology::Topology,
};

/// Hands every event published from now on to `on_event` (routing key,
/// body) until `stop`, once `on_watching` was told the watch began; fails
/// when the broker goes away.
pub async fn watch_events(
    broker: &Broker,
    topology: &Topology,
    stop: CancellationToken,
    on_watching: impl FnOnce(),
    mut on_event: impl FnMut(&str, &[u8]),
) -> Result<()> {
    let channel = broker.channel().await?;
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
    on_watching();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => on_event(delivery.routing_key.as_str(), &delivery.data),
                Some(Err(error)) => return Err(failed("watching the events")(error)),
                None => return Err(Error::ConsumerCancelled { queue: queue.name().to_string() }),
            },
        }
    }
    let _ = channel.close(200, "done watching".into()).await;
    Ok(())
}
