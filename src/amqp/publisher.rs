use std::time::Duration;

use chrono::Utc;
use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::{
    domain::{ATTEMPT_HEADER, Attempt, OrderEvent, OrderId, Rejection, TimerBody},
    error::{Error, Result},
    topology::Topology,
};

/// The header that says why a message was parked in the dead queue.
pub const ERROR_HEADER: &str = "x-paywait-error";
/// The header naming the queue a parked message came from.
pub const SOURCE_QUEUE_HEADER: &str = "x-paywait-queue";

const PERSISTENT: u8 = 2;

/// Publishes on a channel in confirm mode: every publish is `mandatory`, and
/// succeeds only when the broker confirms it and did not return it.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
}

impl Publisher {
    pub async fn new(channel: Channel, confirm_timeout: Duration) -> Result<Self> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        Ok(Self {
            channel,
            confirm_timeout,
        })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Whether the channel can still publish; once closed, it never can again.
    pub fn usable(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes and waits for the broker's confirm, for at most the confirm
    /// timeout in all: a broker that stops answering (flow control, a
    /// half-open connection) makes this fail instead of hanging.
    pub async fn publish(
        &self,
        what: &str,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        tokio::time::timeout(
            self.confirm_timeout,
            self.publish_confirmed(what, exchange, routing_key, body, properties),
        )
        .await
        .map_err(|_| Error::ConfirmTimeout {
            what: what.to_owned(),
            timeout: self.confirm_timeout,
        })?
    }

    async fn publish_confirmed(
        &self,
        what: &str,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .map_err(Error::amqp(format!("publishing {what}")))?;
        let confirmation = confirm
            .await
            .map_err(Error::amqp(format!("confirming {what}")))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Error::Unroutable {
                    what: what.to_owned(),
                    reason: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Confirmation::Nack(None) => Err(Error::Unroutable {
                what: what.to_owned(),
                reason: "the broker refused it (nack)".to_owned(),
            }),
            Confirmation::NotRequested => Err(Error::Other(anyhow::anyhow!(
                "publishing {what}: the channel is not in confirm mode"
            ))),
        }
    }

    /// Publishes an event to the events exchange.
    pub async fn announce(&self, topology: &Topology, event: &OrderEvent) -> Result<()> {
        let name = event.event.name();
        let properties = json_properties()
            .with_type(name.into())
            .with_message_id(event.message_id().into());
        self.publish(
            &format!("{name} for {}", event.order_id),
            &topology.events_exchange,
            name,
            &event.to_json(),
            properties,
        )
        .await
    }

    /// Arms the timer for check number `attempt` of an order, due in `wait`.
    pub async fn arm_timer(
        &self,
        topology: &Topology,
        order_id: &OrderId,
        attempt: Attempt,
        wait: Duration,
    ) -> Result<()> {
        let mut headers = FieldTable::default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt.get().into()),
        );
        let properties = json_properties()
            .with_headers(headers)
            .with_type("paywait.check".into())
            .with_message_id(format!("{order_id}/check/{}", attempt.get()).into());
        let body = serde_json::to_vec(&TimerBody { order_id }).expect("a timer serialises");
        self.publish(
            &format!("check #{} of {order_id}", attempt.get()),
            "",
            &topology.wait_queue(wait).name,
            &body,
            properties,
        )
        .await
    }

    /// Moves a message that cannot be processed to the dead queue, body and
    /// properties untouched, with the reason in `x-paywait-error`.
    pub async fn park(
        &self,
        topology: &Topology,
        source_queue: &str,
        body: &[u8],
        properties: &BasicProperties,
        rejection: &Rejection,
    ) -> Result<()> {
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(rejection.to_string())),
        );
        headers.insert(
            SOURCE_QUEUE_HEADER.into(),
            AMQPValue::LongString(LongString::from(source_queue)),
        );
        let properties = properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(PERSISTENT);
        self.publish(
            &format!("a message from {source_queue} to the dead queue"),
            "",
            &topology.dead_queue,
            body,
            properties,
        )
        .await
    }
}

fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(PERSISTENT)
        .with_app_id("paywait".into())
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
}
