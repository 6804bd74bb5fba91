//! A load-generating AMQP client: pipelined publishes with confirms, and a
//! sink that timestamps what it receives.

use std::{future::Future, pin::Pin, time::Instant};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream::FuturesUnordered};
use lapin::{
    BasicProperties, Channel,
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use paywait::{
    amqp::Topology,
    amqp::{Outgoing, Publisher},
};
use paywait_testkit::Client;
use tokio::sync::mpsc;

pub async fn connect(url: &str) -> anyhow::Result<Client> {
    Ok(Client::try_connect(url, std::time::Duration::from_secs(60)).await?)
}

type Confirm = Pin<Box<dyn Future<Output = Result<(), paywait::amqp::AmqpError>> + Send>>;

/// Publishes with up to `window` confirms outstanding, in order: as fast as
/// the broker accepts, every message still confirmed.
pub struct Pipeline {
    publisher: Publisher,
    window: usize,
    in_flight: FuturesUnordered<Confirm>,
}

impl Pipeline {
    pub fn new(publisher: Publisher, window: usize) -> Self {
        Self {
            publisher,
            window,
            in_flight: FuturesUnordered::new(),
        }
    }

    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> anyhow::Result<()> {
        while self.in_flight.len() >= self.window {
            self.settle_one().await?;
        }
        let pending = self
            .publisher
            .send(Outgoing {
                what: "a bench message",
                exchange,
                routing_key,
                body,
                properties: BasicProperties::default().with_delivery_mode(2),
            })
            .await?;
        self.in_flight.push(Box::pin(pending.confirmed()));
        Ok(())
    }

    async fn settle_one(&mut self) -> anyhow::Result<()> {
        if let Some(confirmed) = self.in_flight.next().await {
            confirmed?;
        }
        Ok(())
    }

    /// Publishes `count` orders at `rate` a second to `exchange` with routing
    /// key `order.placed`, the body of order `i` made by `body`; returns once
    /// every one is confirmed.
    pub async fn place_steadily(
        &mut self,
        exchange: &str,
        rate: u32,
        count: usize,
        body: impl Fn(usize) -> serde_json::Value,
    ) -> anyhow::Result<()> {
        let spacing = std::time::Duration::from_secs_f64(1.0 / f64::from(rate));
        let started = tokio::time::Instant::now();
        for i in 0..count {
            tokio::time::sleep_until(started + spacing * i as u32).await;
            self.publish(exchange, "order.placed", body(i).to_string().as_bytes())
                .await?;
        }
        self.finish().await
    }

    /// Waits for every outstanding confirm.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }
}

/// A message the sink received, with when.
pub struct Received {
    pub at: Instant,
    /// When, by the wall clock (deadlines are wall-clock times).
    pub wall: DateTime<Utc>,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
}

/// Every event of `topology`, as received by an exclusive queue bound to
/// its events exchange.
pub async fn event_sink(
    client: &Client,
    topology: &Topology,
) -> anyhow::Result<mpsc::UnboundedReceiver<Received>> {
    let exchange = topology.events_exchange();
    sink(client.channel(), &format!("{exchange}.sink"), exchange, "#").await
}

/// Declares an exclusive queue bound to `exchange` with `pattern` and
/// forwards every message it receives.
async fn sink(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    pattern: &str,
) -> anyhow::Result<mpsc::UnboundedReceiver<Received>> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "bench-sink".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let received = Received {
                at: Instant::now(),
                wall: Utc::now(),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string()),
                body: delivery.data,
            };
            if sender.send(received).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}

/// Deletes every queue and exchange of a topology the bench owns.
pub async fn delete_topology(channel: &Channel, topology: &Topology) -> anyhow::Result<()> {
    for queue in topology.queues() {
        channel
            .queue_delete(queue.name.as_str().into(), Default::default())
            .await?;
    }
    for exchange in topology.exchanges() {
        channel
            .exchange_delete(exchange.name.as_str().into(), Default::default())
            .await?;
    }
    Ok(())
}
