//! The consume loop of one inbox: deliveries become [`Inbound`] values,
//! handled concurrently (up to the prefetch), acknowledged only once their
//! handler is done, parked when it refuses them, retried when it fails, and
//! never acknowledged when unfinished. In the payments queue, a barrier
//! passes only once every delivery before it has been acknowledged.

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{AmqpError, error::Result};
use super::{
    Publisher, failed,
    publisher::{BARRIER_HEADER, ROUTING_KEY_HEADER},
};
use crate::{
    amqp::Topology,
    backoff,
    domain::{
        ATTEMPT_HEADER, Arrivals, DUE_AT_HEADER, Inbound, Inbox, IntegerHeader, OrderId, Parked,
        Verdict,
    },
    metrics::Metrics,
};

/// Names the order a delivery is about in its `delivery` span, once the
/// handler has read it from the message.
pub fn record_order(order_id: &OrderId) {
    tracing::Span::current().record("order_id", order_id.as_str());
}

/// What paywait does with a message: the worker.
pub trait Handler: Send + Sync + 'static {
    /// What handling can fail with: anything the worker meets, a failed
    /// publish of this shell's own included. The consumer only logs it and
    /// tries again.
    type Error: From<AmqpError> + std::fmt::Display + Send;

    /// Processes one message. Safe to repeat: a message handled part-way
    /// comes back with `seen_before` set.
    fn handle(
        &self,
        inbound: &Inbound,
    ) -> impl Future<Output = Result<Verdict, Self::Error>> + Send;

    /// Keeps a record of a message parked in the dead queue.
    fn record_parked(
        &self,
        parked: &Parked,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A barrier with `token` passed: every payment that was ahead of it in
    /// the payments queue has been handled and acknowledged.
    fn barrier_passed(&self, token: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The deliveries of one channel not acknowledged yet, by delivery tag (the
/// order they were delivered in, which is the queue's order).
#[derive(Clone)]
struct Unacknowledged(watch::Sender<BTreeSet<u64>>);

impl Unacknowledged {
    fn new() -> Self {
        Self(watch::Sender::new(BTreeSet::new()))
    }

    fn delivered(&self, tag: u64) {
        self.0.send_modify(|tags| {
            tags.insert(tag);
        });
    }

    /// Only an acknowledgement counts: a delivery returned to the queue (at
    /// the end of a session) stays unacknowledged here, and no barrier
    /// behind it passes on this channel.
    fn acknowledged(&self, tag: u64) {
        self.0.send_modify(|tags| {
            tags.remove(&tag);
        });
    }

    /// Waits until every delivery before `tag` is acknowledged.
    async fn all_before(&self, tag: u64) {
        let mut tags = self.0.subscribe();
        let _ = tags
            .wait_for(|tags| tags.first().is_none_or(|first| *first >= tag))
            .await;
    }
}

/// The token of a barrier, when the delivery is one.
/// The routing key a delivery was published under: for one replayed from
/// the dead queue (straight to its queue), the one it was first published
/// under.
fn routing_key(delivery: &Delivery) -> String {
    let first = || match delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(ROUTING_KEY_HEADER)?
    {
        AMQPValue::LongString(key) => Some(String::from_utf8_lossy(key.as_bytes()).into_owned()),
        _ => None,
    };
    match delivery.exchange.as_str() {
        "" => first().unwrap_or_else(|| delivery.routing_key.to_string()),
        _ => delivery.routing_key.to_string(),
    }
}

fn barrier_token(delivery: &Delivery) -> Option<String> {
    match delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(BARRIER_HEADER)?
    {
        AMQPValue::LongString(token) => {
            Some(String::from_utf8_lossy(token.as_bytes()).into_owned())
        }
        _ => None,
    }
}

/// How a consumer runs.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSettings {
    /// How many unacknowledged messages it holds.
    pub prefetch: u16,
    /// After a stop, how long in-flight messages may take to finish.
    pub drain: Duration,
}

/// Everything one delivery's handling needs.
pub(super) struct Consumer<H> {
    pub handler: Arc<H>,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub metrics: Arc<Metrics>,
    pub inbox: Inbox,
}

/// Reads the `x-attempt` header, of whatever AMQP integer type it came as.
pub fn attempt_header(headers: Option<&FieldTable>) -> IntegerHeader {
    integer_header(headers, ATTEMPT_HEADER)
}

/// Reads the `x-due-at` header, of whatever AMQP integer type it came as.
pub fn due_at_header(headers: Option<&FieldTable>) -> IntegerHeader {
    integer_header(headers, DUE_AT_HEADER)
}

fn integer_header(headers: Option<&FieldTable>, name: &str) -> IntegerHeader {
    let Some(value) = headers.and_then(|table| table.inner().get(name)) else {
        return IntegerHeader::Missing;
    };
    let number: i128 = match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        other => return IntegerHeader::NotAnInteger(format!("{:?}", other.get_type())),
    };
    IntegerHeader::Integer(number)
}

impl<H: Handler> Consumer<H> {
    /// Consumes on `channel` until `stop` is cancelled or the channel fails.
    /// After a stop, in-flight messages get the drain time to finish;
    /// whatever still runs then is abandoned unacknowledged, so the broker
    /// redelivers it.
    pub(super) async fn run(
        self: Arc<Self>,
        channel: Channel,
        settings: ConsumeSettings,
        stop: CancellationToken,
    ) -> Result<()> {
        let this = self;
        let queue = this.topology.queue(this.inbox).to_owned();
        channel
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await
            .map_err(failed(format!("setting the prefetch on {queue}")))?;
        let tag = format!("paywait.{}.{}", this.inbox.name(), std::process::id());
        let mut deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed(format!("consuming from {queue}")))?;
        tracing::info!(queue, "consuming");

        let mut in_flight = JoinSet::new();
        let mut arrivals = Arrivals::default();
        let unacknowledged = Unacknowledged::new();
        let outcome = loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(()),
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(error) = joined {
                        tracing::error!(queue, %error, "a message handler panicked; its message stays unacknowledged");
                    }
                }
                delivery = deliveries.next() => match delivery {
                    Some(Ok(delivery)) => {
                        unacknowledged.delivered(delivery.delivery_tag);
                        let barrier = (this.inbox == Inbox::Payments)
                            .then(|| barrier_token(&delivery))
                            .flatten();
                        match barrier {
                            Some(token) => in_flight.spawn(this.clone().pass_barrier(
                                delivery,
                                token,
                                unacknowledged.clone(),
                                stop.clone(),
                            )),
                            None => {
                                let received_at = arrivals.stamp(Utc::now());
                                in_flight.spawn(this.clone().process(
                                    delivery,
                                    received_at,
                                    unacknowledged.clone(),
                                    stop.clone(),
                                ))
                            }
                        };
                    }
                    Some(Err(error)) => break Err(failed(format!("consuming from {queue}"))(error)),
                    None => break Err(AmqpError::ConsumerCancelled { queue: queue.clone() }),
                }
            }
        };

        // No new deliveries; prefetched ones not yet started go back to the
        // queue when the channel closes.
        let _ = super::briefly(
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
        drop(deliveries);
        let unfinished = tokio::time::timeout(settings.drain, async {
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
        let _ = super::briefly(channel.close(200, "paywait stopping".into())).await;
        outcome
    }

    /// Passes a barrier once every delivery before it on this channel is
    /// acknowledged, tells the handler, and acknowledges it. At the end of
    /// the session it goes back to the queue instead, behind the payments
    /// returned with it.
    async fn pass_barrier(
        self: Arc<Self>,
        delivery: Delivery,
        token: String,
        unacknowledged: Unacknowledged,
        session: CancellationToken,
    ) {
        let queue = self.topology.queue(self.inbox);
        let tag = delivery.delivery_tag;
        let give_back = || async {
            let _ = super::briefly(delivery.nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            }))
            .await;
        };
        tokio::select! {
            () = unacknowledged.all_before(tag) => {}
            () = session.cancelled() => return give_back().await,
        }
        let mut delays = backoff::delays(backoff::RETRY_CAP);
        while let Err(error) = self.handler.barrier_passed(&token).await {
            let wait = delays.next().unwrap_or(backoff::RETRY_CAP);
            tracing::warn!(queue, %error, retry_in = ?wait, "a passed barrier was not recorded; retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = session.cancelled() => return give_back().await,
            }
        }
        if let Some(Ok(_)) = super::briefly(delivery.ack(BasicAckOptions::default())).await {
            unacknowledged.acknowledged(tag);
        }
    }

    /// Handles one delivery to the end: acknowledged when done, parked when
    /// it cannot be processed, retried with backoff when something else
    /// failed.
    ///
    /// `session` ends the connection's life: it is cancelled by a stop, and
    /// here when the publishing channel is found closed, which no retry can
    /// mend.
    ///
    /// All of it runs in a `delivery` span naming the queue, the check's
    /// number (when the message has one) and the order, once the handler
    /// has read it (see [`record_order`]).
    async fn process(
        self: Arc<Self>,
        delivery: Delivery,
        received_at: DateTime<Utc>,
        unacknowledged: Unacknowledged,
        session: CancellationToken,
    ) {
        let span = tracing::info_span!(
            "delivery",
            queue = self.topology.queue(self.inbox),
            attempt = tracing::field::Empty,
            order_id = tracing::field::Empty,
            redelivered = delivery.redelivered,
        );
        if let IntegerHeader::Integer(attempt) =
            attempt_header(delivery.properties.headers().as_ref())
        {
            match i64::try_from(attempt) {
                Ok(attempt) => span.record("attempt", attempt),
                Err(_) => span.record("attempt", attempt.to_string()),
            };
        }
        self.handle_delivery(delivery, received_at, unacknowledged, session)
            .instrument(span)
            .await;
    }

    async fn handle_delivery(
        self: Arc<Self>,
        mut delivery: Delivery,
        received_at: DateTime<Utc>,
        unacknowledged: Unacknowledged,
        session: CancellationToken,
    ) {
        let queue = self.topology.queue(self.inbox);
        let started = std::time::Instant::now();
        let mut inbound = Inbound {
            inbox: self.inbox,
            attempt: attempt_header(delivery.properties.headers().as_ref()),
            due_at: due_at_header(delivery.properties.headers().as_ref()),
            user_id: delivery
                .properties
                .user_id()
                .as_ref()
                .map(|user| user.as_str().to_owned()),
            routing_key: routing_key(&delivery),
            seen_before: delivery.redelivered,
            received_at,
            body: std::mem::take(&mut delivery.data),
        };
        // Retried for as long as it fails, and only what fails for the
        // outside world does (a lost connection, a time-out): what the
        // message itself holds is refused or parked, never retried. The
        // message waits unacknowledged in its queue meanwhile, each wait
        // capped, and the end of the session ends the retries.
        let mut delays = backoff::delays(backoff::RETRY_CAP);
        loop {
            let failure = match self.handler.handle(&inbound).await {
                Ok(Verdict::Done) => break,
                Ok(Verdict::Reject(rejection)) => {
                    let parked = Parked {
                        parked_id: uuid::Uuid::new_v4().to_string(),
                        reason: rejection.reason(),
                        source_queue: queue.to_owned(),
                        error: rejection.to_string(),
                        preview: super::dead::preview(&inbound.body),
                    };
                    match self
                        .publisher
                        .park(
                            &self.topology,
                            queue,
                            &inbound,
                            &delivery.properties,
                            &rejection,
                            &parked.parked_id,
                        )
                        .await
                    {
                        Ok(()) => {
                            self.metrics.message_parked(rejection.reason());
                            tracing::warn!(queue, reason = rejection.reason(), error = %rejection, "message parked in the dead queue");
                            // The message is safe in the dead queue: a
                            // record lost here only leaves it out of the
                            // status figures.
                            if let Err(error) = self.handler.record_parked(&parked).await {
                                tracing::warn!(queue, %error, "the parked message was not recorded");
                            }
                            break;
                        }
                        Err(error) => error.into(),
                    }
                }
                Err(error) => error,
            };
            if !self.publisher.usable() {
                tracing::warn!(queue, error = %failure, "the publishing channel is closed; reconnecting");
                session.cancel();
            }
            let wait = delays.next().unwrap_or(backoff::RETRY_CAP);
            self.metrics.message_retried(queue);
            tracing::warn!(queue, error = %failure, retry_in = ?wait, "message not processed; retrying");
            inbound.seen_before = true;
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = session.cancelled() => {
                    let _ = super::briefly(
                        delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }),
                    )
                    .await;
                    return;
                }
            }
        }
        match super::briefly(delivery.ack(BasicAckOptions::default())).await {
            Some(Ok(_)) => unacknowledged.acknowledged(delivery.delivery_tag),
            Some(Err(error)) => {
                tracing::warn!(queue, %error, "acknowledgement failed; the broker will redeliver the message");
                return;
            }
            None => {
                tracing::warn!(
                    queue,
                    "the broker did not take the acknowledgement in time; it will redeliver the message"
                );
                return;
            }
        }
        self.metrics.message_handled(queue);
        if self.inbox == Inbox::Checks {
            self.metrics.check_finished(started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{LongString, ShortString};

    use super::*;

    fn headers(value: AMQPValue) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert(ShortString::from(ATTEMPT_HEADER), value);
        table
    }

    #[test]
    fn the_attempt_header_is_read_from_any_integer_type() {
        for value in [
            AMQPValue::ShortShortInt(3),
            AMQPValue::ShortShortUInt(3),
            AMQPValue::ShortInt(3),
            AMQPValue::ShortUInt(3),
            AMQPValue::LongInt(3),
            AMQPValue::LongUInt(3),
            AMQPValue::LongLongInt(3),
        ] {
            assert_eq!(
                attempt_header(Some(&headers(value.clone()))),
                IntegerHeader::Integer(3),
                "{value:?}"
            );
        }
        assert_eq!(
            attempt_header(Some(&headers(AMQPValue::LongLongInt(i64::MIN)))),
            IntegerHeader::Integer(i64::MIN.into())
        );
    }

    #[test]
    fn the_due_time_is_read_from_its_own_header() {
        let mut table = FieldTable::default();
        table.insert(
            ShortString::from(DUE_AT_HEADER),
            AMQPValue::LongLongInt(1_795_766_400_123),
        );
        assert_eq!(
            due_at_header(Some(&table)),
            IntegerHeader::Integer(1_795_766_400_123)
        );
        assert_eq!(attempt_header(Some(&table)), IntegerHeader::Missing);
        assert_eq!(
            due_at_header(Some(&headers(AMQPValue::LongInt(3)))),
            IntegerHeader::Missing
        );
    }

    #[test]
    fn a_missing_or_foreign_attempt_header_is_said_so() {
        assert_eq!(attempt_header(None), IntegerHeader::Missing);
        assert_eq!(
            attempt_header(Some(&FieldTable::default())),
            IntegerHeader::Missing
        );
        assert_eq!(
            attempt_header(Some(&headers(AMQPValue::LongString(LongString::from("2"))))),
            IntegerHeader::NotAnInteger("LongString".into())
        );
        assert_eq!(
            attempt_header(Some(&headers(AMQPValue::Boolean(true)))),
            IntegerHeader::NotAnInteger("Boolean".into())
        );
    }
}
