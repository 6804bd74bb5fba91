//! The dead queue: listing parked messages, and moving them back to the
//! queue they came from once what made them fail is fixed.

use std::time::Duration;

use lapin::{
    BasicProperties, Channel,
    message::Delivery,
    options::{BasicAckOptions, BasicGetOptions},
    types::{AMQPValue, FieldTable},
};

use super::error::Result;
use super::{
    Broker, ERROR_HEADER, Outgoing, PARKED_ID_HEADER, SOURCE_QUEUE_HEADER, USER_ID_HEADER, failed,
    passive_declare,
};
use crate::amqp::Topology;

/// A parked message, as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The queue it was parked from.
    pub source_queue: Option<String>,
    /// Why it was parked.
    pub error: Option<String>,
    /// Its record in the database (none for messages parked before
    /// paywait kept records).
    pub parked_id: Option<String>,
    /// The start of its body, printable on one line.
    pub preview: String,
}

/// What became of a parked message read by [`replay_parked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Listed only, left in the dead queue.
    Listed,
    /// Published back to its queue and taken off the dead queue.
    Moved,
    /// It names no source queue, so it stays in the dead queue.
    Skipped,
    /// Taken off the dead queue for good.
    Discarded,
}

/// What [`replay_parked`] does with each parked message it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    /// List it, leaving it in the dead queue.
    List,
    /// Move it back to the queue it came from.
    Move,
    /// Take it off the dead queue, for a message that is simply wrong.
    Discard,
}

/// Reads up to `limit` parked messages, reporting each, and does with each
/// what `mode` says: a message moved goes back to the queue it came from
/// (its properties as they were before it was parked) before it is taken
/// off the dead queue. Returns how many were moved or discarded.
pub async fn replay_parked(
    broker: &Broker,
    topology: &Topology,
    confirm_timeout: Duration,
    limit: u32,
    mode: ReplayMode,
    mut report: impl FnMut(&ParkedMessage, Replayed),
) -> Result<u32> {
    let publisher = broker.publisher(confirm_timeout).await?;
    let reader = broker.channel().await?;
    // Only the messages parked before the replay began: one replayed and
    // parked again joins the end of the queue, and must not come round.
    let parked = passive_declare(&reader, topology.dead_queue())
        .await
        .map_err(failed(format!("counting {}", topology.dead_queue())))?
        .message_count();
    let mut moved = 0;
    for _ in 0..limit.min(parked) {
        let Some(delivery) = take_parked(&reader, topology).await? else {
            break;
        };
        let parked = describe(&delivery);
        let outcome = match (&parked.source_queue, mode) {
            (_, ReplayMode::List) => Replayed::Listed,
            (_, ReplayMode::Discard) => {
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(failed("acknowledging a discarded message"))?;
                moved += 1;
                Replayed::Discarded
            }
            (None, ReplayMode::Move) => Replayed::Skipped,
            (Some(queue), ReplayMode::Move) => {
                publisher
                    .publish(Outgoing {
                        what: &format!("a parked message back to {queue}"),
                        exchange: "",
                        routing_key: queue,
                        body: &delivery.data,
                        properties: original_properties(&delivery.properties),
                    })
                    .await?;
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(failed("acknowledging a replayed message"))?;
                moved += 1;
                Replayed::Moved
            }
        };
        report(&parked, outcome);
    }
    // Whatever was read and not moved goes back to the dead queue.
    let _ = reader.close(200, "replay done".into()).await;
    publisher.close().await;
    Ok(moved)
}

/// Takes the next parked message, if any, without acknowledging it:
/// closing the channel returns it.
async fn take_parked(channel: &Channel, topology: &Topology) -> Result<Option<Delivery>> {
    let message = channel
        .basic_get(
            topology.dead_queue().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .map_err(failed(format!("reading {}", topology.dead_queue())))?;
    Ok(message.map(|message| message.delivery))
}

fn describe(delivery: &Delivery) -> ParkedMessage {
    let header = |name| text_header(delivery.properties.headers().as_ref(), name);
    ParkedMessage {
        source_queue: header(SOURCE_QUEUE_HEADER),
        error: header(ERROR_HEADER),
        parked_id: header(PARKED_ID_HEADER),
        preview: preview(&delivery.data),
    }
}

fn text_header(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

/// The properties a message had before it was parked, but for `user_id`,
/// which only its first publisher may set.
fn original_properties(parked: &BasicProperties) -> BasicProperties {
    let mut properties = parked.clone();
    if let Some(headers) = properties.headers().clone() {
        let mut kept = FieldTable::default();
        for (key, value) in headers.inner() {
            if ![
                ERROR_HEADER,
                SOURCE_QUEUE_HEADER,
                USER_ID_HEADER,
                PARKED_ID_HEADER,
            ]
            .contains(&key.as_str())
            {
                kept.insert(key.clone(), value.clone());
            }
        }
        properties = properties.with_headers(kept);
    }
    properties
}

/// The start of a body, printable on one line.
pub(super) fn preview(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut preview: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX {
        preview.push('…');
    }
    preview
}

#[cfg(test)]
mod tests {
    use lapin::types::{LongString, ShortString};

    use super::*;

    #[test]
    fn a_preview_is_one_printable_line_of_at_most_200_characters() {
        assert_eq!(preview(b"{\"a\":\n1}"), "{\"a\": 1}");
        let long = "x".repeat(300);
        let shown = preview(long.as_bytes());
        assert_eq!(shown.chars().count(), 201);
        assert!(shown.ends_with('…'));
        assert_eq!(preview(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn replayed_messages_lose_only_paywaits_own_headers() {
        let mut headers = FieldTable::default();
        for (key, value) in [
            (ERROR_HEADER, "body is not JSON"),
            (SOURCE_QUEUE_HEADER, "paywait.checks"),
            (USER_ID_HEADER, "payment-service"),
            ("x-attempt", "2"),
        ] {
            headers.insert(
                ShortString::from(key),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let parked = BasicProperties::default()
            .with_headers(headers)
            .with_message_id("m-1".into());
        let original = original_properties(&parked);
        let kept = original.headers().clone().unwrap();
        let keys: Vec<_> = kept.inner().keys().map(|key| key.as_str()).collect();
        assert_eq!(keys, ["x-attempt"]);
        assert_eq!(original.message_id().as_ref().unwrap().as_str(), "m-1");
        assert_eq!(
            text_header(parked.headers().as_ref(), SOURCE_QUEUE_HEADER).as_deref(),
            Some("paywait.checks")
        );
        assert_eq!(text_header(None, SOURCE_QUEUE_HEADER), None);
    }
}
