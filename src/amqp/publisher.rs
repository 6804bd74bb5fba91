//! Publishing with confirms: every publish is `mandatory`, and succeeds
//! only once the broker confirmed it and did not return it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use super::failed;
use super::{AmqpError, error::Result};
use crate::{
    amqp::Topology,
    domain::{
        ATTEMPT_HEADER, Attempt, CheckDue, DUE_AT_HEADER, Inbound, Inbox, Kind, OrderEvent,
        OrderId, Rejection, ReminderDue, Route, due_at_header,
    },
};

/// The header that says why a message was parked in the dead queue.
pub const ERROR_HEADER: &str = "x-paywait-error";
/// The header keeping the `user_id` a parked message was published with.
pub const USER_ID_HEADER: &str = "x-paywait-user-id";
/// The header naming the queue a parked message came from.
pub const SOURCE_QUEUE_HEADER: &str = "x-paywait-queue";
/// The header naming a parked message's record in the database.
pub const PARKED_ID_HEADER: &str = "x-paywait-parked-id";
/// Marks a barrier in the payments queue, with its token.
/// The routing key a parked message was first published under, kept when
/// it is replayed (to its queue, under the queue's name).
pub const ROUTING_KEY_HEADER: &str = "x-paywait-routing-key";
pub const BARRIER_HEADER: &str = "x-paywait-barrier";

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
            .map_err(failed("enabling publisher confirms"))?;
        Ok(Self {
            channel,
            confirm_timeout,
        })
    }

    /// Closes the channel; publishing through a clone fails from then on.
    pub async fn close(&self) {
        let _ = super::briefly(self.channel.close(200, "paywait stopping".into())).await;
    }

    /// Whether the channel can still publish; once closed, it never can again.
    pub fn usable(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes and waits for the broker's confirm, for at most the confirm
    /// timeout in all: a broker that stops answering (flow control, a
    /// half-open connection) makes this fail instead of hanging.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<()> {
        let what = message.what;
        tokio::time::timeout(self.confirm_timeout, async {
            self.send(message).await?.confirmed().await
        })
        .await
        .map_err(|_| AmqpError::ConfirmTimeout {
            what: what.to_owned(),
            timeout: self.confirm_timeout,
        })?
    }

    /// Sends a publish without waiting for its confirm, so that several can
    /// be in flight at once, in the order they were sent.
    pub async fn send(&self, message: Outgoing<'_>) -> Result<PendingConfirm> {
        let Outgoing {
            what,
            exchange,
            routing_key,
            body,
            properties,
        } = message;
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
            .map_err(failed(format!("publishing {what}")))?;
        Ok(PendingConfirm {
            what: what.to_owned(),
            confirm,
        })
    }

    /// Publishes an inbound message as the order or payment service would,
    /// as the RabbitMQ user `user_id` when given (the broker refuses a
    /// `user_id` that is not the connection's).
    pub async fn publish_inbound(
        &self,
        topology: &Topology,
        kind: Kind,
        what: &str,
        body: &[u8],
        user_id: Option<&str>,
    ) -> Result<()> {
        let routing_key = kind.routing_key();
        let mut properties = json_properties().with_type(routing_key.into());
        if let Some(user) = user_id {
            properties = properties.with_user_id(user.into());
        }
        self.publish(Outgoing {
            what,
            exchange: topology.orders_exchange(),
            routing_key,
            body,
            properties,
        })
        .await
    }

    /// Puts a barrier with `token` at the tail of the payments queue,
    /// behind every payment the broker holds now.
    pub async fn barrier(&self, topology: &Topology, token: &str) -> Result<()> {
        let mut headers = FieldTable::default();
        headers.insert(
            BARRIER_HEADER.into(),
            AMQPValue::LongString(token.as_bytes().into()),
        );
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_type("paywait.barrier".into())
            .with_delivery_mode(2);
        self.publish(Outgoing {
            what: "a barrier in the payments queue",
            exchange: "",
            routing_key: topology.queue(Inbox::Payments),
            body: b"",
            properties,
        })
        .await
    }

    /// Publishes an event to the events exchange.
    pub async fn announce(&self, topology: &Topology, event: &OrderEvent) -> Result<()> {
        let name = event.event.name();
        let properties = json_properties()
            .with_type(name.into())
            .with_message_id(event.message_id().into());
        self.publish(Outgoing {
            what: &format!("{name} for {}", event.order_id),
            exchange: topology.events_exchange(),
            routing_key: name,
            body: &event.to_json(),
            properties,
        })
        .await
    }

    /// Arms the timer for check number `attempt` of an order, due at
    /// `due_at`, as `route` says: through a TTL queue, or straight to the
    /// check queue when it is (nearly) due.
    pub async fn arm_timer(
        &self,
        topology: &Topology,
        order_id: &OrderId,
        attempt: Attempt,
        due_at: DateTime<Utc>,
        route: Route,
    ) -> Result<()> {
        let mut headers = FieldTable::default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt.get().into()),
        );
        headers.insert(
            DUE_AT_HEADER.into(),
            AMQPValue::LongLongInt(due_at_header(due_at)),
        );
        let properties = json_properties()
            .with_headers(headers)
            .with_type("paywait.check".into())
            .with_message_id(format!("{order_id}/check/{}", attempt.get()).into());
        let body = CheckDue {
            order_id: order_id.clone(),
            attempt: Ok(attempt),
            due_at: Some(due_at),
        }
        .to_body();
        let (exchange, routing_key) = match route {
            Route::Hop(ttl) => ("", topology.wait_queue(ttl).name.as_str()),
            Route::Hold(_) | Route::Due => (topology.expired_exchange(), ""),
        };
        self.publish(Outgoing {
            what: &format!("check #{} of {order_id}", attempt.get()),
            exchange,
            routing_key,
            body: &body,
            properties,
        })
        .await
    }

    /// Publishes the timer of `reminder` by `route`: through a TTL queue, or
    /// straight to the check queue when it is (nearly) due. Its id names
    /// the reminder, so that copies tell themselves apart from others.
    pub async fn arm_reminder(
        &self,
        topology: &Topology,
        reminder: &ReminderDue,
        route: Route,
    ) -> Result<()> {
        let mut headers = FieldTable::default();
        headers.insert(
            DUE_AT_HEADER.into(),
            AMQPValue::LongLongInt(due_at_header(reminder.due_at())),
        );
        let properties = json_properties()
            .with_headers(headers)
            .with_type("paywait.reminder".into())
            .with_message_id(
                format!(
                    "{}/reminder/{}/{}",
                    reminder.order_id,
                    due_at_header(reminder.expires_at),
                    reminder.label()
                )
                .into(),
            );
        let (exchange, routing_key) = match route {
            Route::Hop(ttl) => ("", topology.wait_queue(ttl).name.as_str()),
            Route::Hold(_) | Route::Due => (topology.expired_exchange(), ""),
        };
        self.publish(Outgoing {
            what: &format!("the {} reminder of {}", reminder.label(), reminder.order_id),
            exchange,
            routing_key,
            body: &reminder.to_body(),
            properties,
        })
        .await
    }

    /// Moves a message that cannot be processed to the dead queue, body and
    /// properties untouched, with the reason in `x-paywait-error` — but for
    /// `user_id`, which the broker accepts only from its own publisher (it
    /// travels in `x-paywait-user-id`), and `expiration`, which would let it
    /// expire out of the dead queue. The routing key it came under travels
    /// in `x-paywait-routing-key`, so that a replay (to its queue, under the
    /// queue's name) is read as the kind it was.
    pub(super) async fn park(
        &self,
        topology: &Topology,
        source_queue: &str,
        inbound: &Inbound,
        properties: &BasicProperties,
        rejection: &Rejection,
        parked_id: &str,
    ) -> Result<()> {
        let body = inbound.body.as_slice();
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ROUTING_KEY_HEADER.into(),
            AMQPValue::LongString(LongString::from(inbound.routing_key.as_str())),
        );
        headers.insert(
            PARKED_ID_HEADER.into(),
            AMQPValue::LongString(LongString::from(parked_id)),
        );
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(rejection.to_string())),
        );
        headers.insert(
            SOURCE_QUEUE_HEADER.into(),
            AMQPValue::LongString(LongString::from(source_queue)),
        );
        if let Some(user) = properties.user_id() {
            headers.insert(
                USER_ID_HEADER.into(),
                AMQPValue::LongString(LongString::from(user.as_str())),
            );
        }
        let properties = parked_properties(properties)
            .with_headers(headers)
            .with_delivery_mode(PERSISTENT);
        self.publish(Outgoing {
            what: &format!("a message from {source_queue} to the dead queue"),
            exchange: "",
            routing_key: topology.dead_queue(),
            body,
            properties,
        })
        .await
    }
}

/// The properties of a parked copy: the same, without `user_id` (the copy is
/// published by another user than its first publisher) and without
/// `expiration` (nothing expires out of the dead queue).
fn parked_properties(properties: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(value) = properties.content_type() {
        copy = copy.with_content_type(value.clone());
    }
    if let Some(value) = properties.content_encoding() {
        copy = copy.with_content_encoding(value.clone());
    }
    if let Some(value) = properties.headers() {
        copy = copy.with_headers(value.clone());
    }
    if let Some(value) = properties.delivery_mode() {
        copy = copy.with_delivery_mode(*value);
    }
    if let Some(value) = properties.priority() {
        copy = copy.with_priority(*value);
    }
    if let Some(value) = properties.correlation_id() {
        copy = copy.with_correlation_id(value.clone());
    }
    if let Some(value) = properties.reply_to() {
        copy = copy.with_reply_to(value.clone());
    }
    if let Some(value) = properties.message_id() {
        copy = copy.with_message_id(value.clone());
    }
    if let Some(value) = properties.timestamp() {
        copy = copy.with_timestamp(*value);
    }
    if let Some(value) = properties.kind() {
        copy = copy.with_type(value.clone());
    }
    if let Some(value) = properties.app_id() {
        copy = copy.with_app_id(value.clone());
    }
    if let Some(value) = properties.cluster_id() {
        copy = copy.with_cluster_id(value.clone());
    }
    copy
}

/// One message to publish: `what` names it in errors and logs.
pub struct Outgoing<'a> {
    pub what: &'a str,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

/// A publish sent to the broker, not yet confirmed.
pub struct PendingConfirm {
    what: String,
    confirm: PublisherConfirm,
}

impl PendingConfirm {
    /// Waits for the broker's answer: a success only when it confirmed the
    /// message and did not return it.
    pub async fn confirmed(self) -> Result<()> {
        let what = self.what;
        let confirmation = self
            .confirm
            .await
            .map_err(failed(format!("confirming {what}")))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(AmqpError::Unroutable {
                    what,
                    reason: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Confirmation::Nack(None) => Err(AmqpError::Unroutable {
                what,
                reason: "the broker refused it (nack)".to_owned(),
            }),
            // `Publisher::new` puts every channel in confirm mode.
            Confirmation::NotRequested => unreachable!("a publisher's channel confirms"),
        }
    }
}

/// Persistent JSON, stamped with paywait's name and the time.
fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(PERSISTENT)
        .with_app_id("paywait".into())
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_copy_keeps_everything_but_user_id_and_expiration() {
        let mut headers = FieldTable::default();
        headers.insert("x-attempt".into(), AMQPValue::LongInt(2));
        let without = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("identity".into())
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_priority(3)
            .with_correlation_id("c".into())
            .with_reply_to("r".into())
            .with_message_id("m".into())
            .with_timestamp(1_700_000_000)
            .with_type("payment.succeeded".into())
            .with_app_id("shop".into())
            .with_cluster_id("k".into());
        let full = without
            .clone()
            .with_user_id("payment-service".into())
            .with_expiration("60000".into());
        let copy = parked_properties(&full);
        assert_eq!(copy.user_id(), &None);
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy, without);
    }
}
