//! Declaring the topology, idempotently.

use lapin::{
    Channel,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use super::error::Result;
use super::failed;
use crate::{
    amqp::topology::{Argument, ExchangeKind, Topology},
    domain::Inbox,
};

fn field_table(arguments: &[(&'static str, Argument)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in arguments {
        let value = match value {
            Argument::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
            Argument::Number(number) => AMQPValue::LongLongInt(*number),
            Argument::Flag(flag) => AMQPValue::Boolean(*flag),
        };
        table.insert(ShortString::from(*key), value);
    }
    table
}

/// Declares every exchange, queue and binding of `topology`, idempotently,
/// then checks that the dead-letter path of the TTL queues exists.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<()> {
    for exchange in topology.exchanges() {
        let kind = match exchange.kind {
            ExchangeKind::Direct => lapin::ExchangeKind::Direct,
            ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeKind::Topic => lapin::ExchangeKind::Topic,
        };
        channel
            .exchange_declare(
                exchange.name.as_str().into(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                field_table(&exchange.arguments),
            )
            .await
            .map_err(failed(format!("declaring exchange {}", exchange.name)))?;
    }
    for queue in topology.queues() {
        // A queue cannot gain an argument: one declared by an older paywait
        // must be replaced, as the operations guide says.
        let hint = if queue
            .arguments
            .iter()
            .any(|(key, _)| *key == "x-single-active-consumer")
        {
            " (one declared by a paywait that did not consume payments in order lacks \
             x-single-active-consumer: see docs/OPERATIONS.md, \"Upgrading\")"
        } else {
            ""
        };
        channel
            .queue_declare(
                queue.name.as_str().into(),
                QueueDeclareOptions::durable(),
                field_table(&queue.arguments),
            )
            .await
            .map_err(failed(format!("declaring queue {}{hint}", queue.name)))?;
    }
    for binding in topology.bindings() {
        channel
            .queue_bind(
                binding.queue.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed(format!(
                "binding queue {} to exchange {}",
                binding.queue, binding.exchange
            )))?;
    }
    verify_dead_letter_path(channel, topology).await
}

async fn verify_dead_letter_path(channel: &Channel, topology: &Topology) -> Result<()> {
    let exchange = topology.expired_exchange();
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(failed(format!("checking dead-letter exchange {exchange}")))?;
    let checks = topology.queue(Inbox::Checks);
    passive_declare(channel, checks)
        .await
        .map_err(failed(format!("checking check queue {checks}")))?;
    Ok(())
}

/// Looks a queue up without changing it; a missing queue closes the channel.
pub async fn passive_declare(channel: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}
