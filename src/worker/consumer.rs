//! The consume loop of one inbox: deliveries are handled concurrently (up to
//! the prefetch), acknowledged only once done, and never acknowledged when
//! unfinished.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::FieldTable,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Inbox, Verdict, Worker};
use crate::error::{Error, Result};

/// Retries of a failed handler: from 100 ms, doubling with jitter, up to 5 s.
fn retry_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Consumes `inbox` on `channel` until `stop` is cancelled or the channel
/// fails. After a stop, in-flight messages get `drain` to finish; whatever is
/// still running then is abandoned unacknowledged, so the broker redelivers it.
pub async fn consume(
    worker: Arc<Worker>,
    inbox: Inbox,
    channel: Channel,
    prefetch: u16,
    stop: CancellationToken,
    drain: Duration,
) -> Result<()> {
    let queue = inbox.queue(&worker.topology).to_owned();
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(Error::amqp(format!("setting the prefetch on {queue}")))?;
    let tag = format!("paywait.{}.{}", inbox.name(), std::process::id());
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp(format!("consuming from {queue}")))?;
    tracing::info!(queue, "consuming");

    let mut in_flight = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break Ok(()),
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(queue, %error, "a message handler panicked; its message stays unacknowledged");
                }
            }
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    in_flight.spawn(process(worker.clone(), inbox, delivery, stop.clone()));
                }
                Some(Err(error)) => break Err(Error::amqp(format!("consuming from {queue}"))(error)),
                None => break Err(Error::Other(anyhow::anyhow!("the broker cancelled the consumer on {queue}"))),
            }
        }
    };

    // No new deliveries; prefetched ones not yet started go back to the queue
    // when the channel closes.
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    drop(consumer);
    let unfinished = tokio::time::timeout(drain, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await
    .is_err();
    if unfinished {
        tracing::warn!(
            queue,
            count = in_flight.len(),
            "in-flight messages did not finish in time; returning them unacknowledged"
        );
        in_flight.shutdown().await;
    }
    let _ = channel.close(200, "paywait stopping".into()).await;
    outcome
}

/// Handles one delivery to the end: acknowledged when done, parked when it
/// cannot be processed, retried with backoff when something else failed.
///
/// `session` ends the connection's life: it is cancelled by a stop, and here
/// when the publishing channel is found closed, which no retry can mend.
async fn process(
    worker: Arc<Worker>,
    inbox: Inbox,
    delivery: Delivery,
    session: CancellationToken,
) {
    let queue = inbox.queue(&worker.topology);
    let started = std::time::Instant::now();
    let mut delays = retry_delays();
    let mut retry = false;
    loop {
        let failure = match worker.handle(inbox, &delivery, retry).await {
            Ok(Verdict::Done) => break,
            Ok(Verdict::Reject(rejection)) => {
                match worker
                    .publisher
                    .park(
                        &worker.topology,
                        queue,
                        &delivery.data,
                        &delivery.properties,
                        &rejection,
                    )
                    .await
                {
                    Ok(()) => {
                        worker.metrics.message_parked(rejection.reason());
                        tracing::warn!(queue, reason = rejection.reason(), error = %rejection, "message parked in the dead queue");
                        break;
                    }
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        if !worker.publisher.usable() {
            tracing::warn!(queue, error = %failure, "the publishing channel is closed; reconnecting");
            session.cancel();
        }
        let wait = delays.next().unwrap_or(Duration::from_secs(5));
        worker.metrics.message_retried(queue);
        tracing::warn!(queue, error = %failure, retry_in = ?wait, "message not processed; retrying");
        retry = true;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = session.cancelled() => {
                let _ = delivery
                    .nack(BasicNackOptions { requeue: true, ..Default::default() })
                    .await;
                return;
            }
        }
    }
    if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(queue, %error, "acknowledgement failed; the broker will redeliver the message");
        return;
    }
    worker.metrics.message_handled(queue);
    if inbox == Inbox::Checks {
        worker.metrics.check_finished(started.elapsed());
    }
}
