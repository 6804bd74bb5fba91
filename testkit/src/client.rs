//! Clients of a sandbox's broker, playing the order and payment services
//! and the downstream consumers: they publish with paywait's own
//! [`Publisher`] (confirms, `mandatory`, returns as failures) and read
//! queues on a channel of their own.

use std::time::{Duration, Instant};

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use paywait::amqp::{AmqpError, Outgoing, PendingConfirm, Publisher, passive_declare};

use crate::{bodies, contract};

/// The inbound exchange under the default prefix.
pub const ORDERS_EXCHANGE: &str = "paywait.orders";

/// A message read back from a queue.
#[derive(Debug, Clone)]
pub struct Message {
    /// The exchange it was published to.
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Message {
    /// A header as text (other types as their debug form).
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        Some(match value {
            AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            AMQPValue::ShortString(text) => text.as_str().to_owned(),
            other => format!("{other:?}"),
        })
    }

    /// Whether paywait published it as an event: to the events exchange
    /// (`<prefix>.events`), whether a downstream queue or the unrouted one
    /// received it.
    pub fn is_event(&self) -> bool {
        self.exchange.ends_with(".events")
    }

    pub fn message_id(&self) -> Option<String> {
        self.properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
    }
}

/// A connection with a publisher and a channel for everything else.
pub struct Client {
    connection: Connection,
    channel: Channel,
    publisher: Publisher,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url, Duration::from_secs(10))
            .await
            .expect("the test client connects")
    }

    /// Connects; publishes wait at most `confirm_timeout` for the broker.
    pub async fn try_connect(url: &str, confirm_timeout: Duration) -> Result<Self, AmqpError> {
        let connect = || async {
            let connection = Connection::connect(url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let publishing = connection.create_channel().await?;
            Ok::<_, lapin::Error>((connection, channel, publishing))
        };
        let (connection, channel, publishing) =
            connect().await.map_err(|source| AmqpError::Connect {
                address: url.to_owned(),
                source,
            })?;
        let publisher = Publisher::new(publishing, confirm_timeout).await?;
        Ok(Self {
            connection,
            channel,
            publisher,
        })
    }

    /// The channel for declaring, binding, consuming and reading.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Declares a durable queue of `queue_type` (`classic` or `quorum`)
    /// bound to `exchange` with `routing_key`, as a downstream service
    /// would.
    pub async fn declare_bound_queue(
        &self,
        queue: &str,
        queue_type: &str,
        exchange: &str,
        routing_key: &str,
    ) {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(queue_type)),
        );
        self.channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
            .await
            .unwrap_or_else(|error| panic!("declaring {queue}: {error}"));
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("binding {queue} to {exchange}: {error}"));
    }

    /// Another channel on the same connection.
    pub async fn open_channel(&self) -> lapin::Result<Channel> {
        self.connection.create_channel().await
    }

    /// The client's publisher (confirms, `mandatory`, returns as failures).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn is_connected(&self) -> bool {
        self.connection.status().connected() && self.publisher.usable()
    }

    /// Publishes and waits until the broker confirmed and routed it.
    pub async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        self.publisher
            .publish(Outgoing {
                what: &format!("a test message to {exchange:?} {routing_key}"),
                exchange,
                routing_key,
                body,
                properties,
            })
            .await
    }

    /// Publishes; the test fails unless the broker confirms and routes it.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        if let Err(error) = self
            .try_publish(exchange, routing_key, body, properties)
            .await
        {
            panic!("publishing to {exchange:?} {routing_key}: {error}");
        }
    }

    /// `order.placed` for `order_id`, with nothing else.
    pub async fn place(&self, order_id: &str) {
        self.publish_inbound("order.placed", &bodies::placed(order_id))
            .await;
    }

    /// `payment.succeeded` for `order_id`.
    pub async fn pay(&self, order_id: &str, payment_id: &str) {
        self.publish_inbound("payment.succeeded", &bodies::paid(order_id, payment_id))
            .await;
    }

    /// Publishes to the inbound exchange, as the order or payment service.
    pub async fn publish_inbound(&self, routing_key: &str, body: &[u8]) {
        self.publish(
            ORDERS_EXCHANGE,
            routing_key,
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
    }

    /// Publishes every body to the inbound exchange in one burst, without
    /// waiting for each confirm before the next; returns, for each message
    /// in order, a moment at or after the broker confirmed it (confirms are
    /// read in order, so none is stamped before it came).
    pub async fn publish_inbound_burst(
        &self,
        routing_key: &str,
        bodies: impl IntoIterator<Item = String>,
    ) -> Vec<chrono::DateTime<chrono::Utc>> {
        let (pending, mut confirms) = tokio::sync::mpsc::unbounded_channel::<PendingConfirm>();
        let stamps = tokio::spawn(async move {
            let mut stamps = Vec::new();
            while let Some(confirm) = confirms.recv().await {
                if let Err(error) = confirm.confirmed().await {
                    panic!("a burst message was not confirmed: {error}");
                }
                stamps.push(chrono::Utc::now());
            }
            stamps
        });
        for body in bodies {
            let sent = self
                .publisher
                .send(Outgoing {
                    what: routing_key,
                    exchange: ORDERS_EXCHANGE,
                    routing_key,
                    body: body.as_bytes(),
                    properties: BasicProperties::default().with_delivery_mode(2),
                })
                .await;
            match sent {
                Ok(confirm) => pending.send(confirm).expect("the confirm reader runs"),
                Err(error) => panic!("publishing a burst of {routing_key}: {error}"),
            }
        }
        drop(pending);
        stamps.await.expect("the confirm reader")
    }

    /// Whether `queue` exists (asked on a channel of its own: a passive
    /// declare of a missing queue closes its channel).
    pub async fn queue_exists(&self, queue: &str) -> bool {
        let channel = self.connection.create_channel().await.unwrap();
        let exists = passive_declare(&channel, queue).await.is_ok();
        let _ = channel.close(200, "asked".into()).await;
        exists
    }

    /// How many messages are ready in `queue` now.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        passive_declare(&self.channel, queue)
            .await
            .unwrap_or_else(|error| panic!("{queue}: {error}"))
            .message_count()
    }

    /// Takes (acknowledges) up to `count` messages from `queue`, waiting up
    /// to `within` for them. Each event among them (a message published to
    /// an events exchange) must match `docs/asyncapi.yaml`.
    pub async fn take_messages(&self, queue: &str, count: usize, within: Duration) -> Vec<Message> {
        let deadline = Instant::now() + within;
        let mut messages = Vec::new();
        while messages.len() < count {
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap_or_else(|error| panic!("reading {queue}: {error}"))
            {
                Some(message) => {
                    let message = Message {
                        exchange: message.delivery.exchange.as_str().to_owned(),
                        routing_key: message.delivery.routing_key.as_str().to_owned(),
                        body: message.delivery.data.clone(),
                        properties: message.delivery.properties.clone(),
                    };
                    if message.is_event() {
                        contract::validate_event_delivery(
                            &message.routing_key,
                            &message.properties,
                            &message.body,
                        );
                    }
                    messages.push(message);
                }
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => break,
            }
        }
        messages
    }

    pub async fn close(&self) {
        let _ = self.connection.close(200, "test done".into()).await;
    }
}

/// A client that outlives broker restarts and lost cluster nodes: it
/// reconnects, to the next node when there are several, and publishes again
/// until the broker confirms.
pub struct ResilientClient {
    urls: Vec<String>,
    next: usize,
    client: Option<Client>,
}

impl ResilientClient {
    pub fn new(url: String) -> Self {
        Self::over(vec![url])
    }

    /// A client of a cluster: each reconnection tries the next node.
    pub fn over(urls: Vec<String>) -> Self {
        assert!(!urls.is_empty(), "a client needs a broker");
        Self {
            urls,
            next: 0,
            client: None,
        }
    }

    /// A connected client, reconnecting when the last one was lost.
    pub async fn client(&mut self) -> Result<&Client, AmqpError> {
        if !self.client.as_ref().is_some_and(Client::is_connected) {
            let url = &self.urls[self.next % self.urls.len()];
            self.next += 1;
            self.client = Some(Client::try_connect(url, Duration::from_secs(5)).await?);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// Publishes to the inbound exchange until the broker confirms, for up
    /// to 90 s.
    pub async fn publish_inbound(&mut self, routing_key: &str, body: &[u8]) {
        let started = Instant::now();
        loop {
            let published = match self.client().await {
                Ok(client) => {
                    client
                        .try_publish(
                            ORDERS_EXCHANGE,
                            routing_key,
                            body,
                            BasicProperties::default().with_delivery_mode(2),
                        )
                        .await
                }
                Err(error) => Err(error),
            };
            if published.is_ok() {
                return;
            }
            self.client = None;
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the broker never came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
