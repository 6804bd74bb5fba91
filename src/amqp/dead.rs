//! Reading parked messages back from the dead queue.

use lapin::{
    BasicProperties, Channel,
    message::Delivery,
    options::BasicGetOptions,
    types::{AMQPValue, FieldTable},
};

use super::{ERROR_HEADER, SOURCE_QUEUE_HEADER};
use crate::{
    error::{Error, Result},
    topology::Topology,
};

/// A message taken from the dead queue, not yet acknowledged: closing the
/// channel returns it.
pub struct Parked {
    pub delivery: Delivery,
    /// The queue it was parked from.
    pub source_queue: Option<String>,
    /// Why it was parked.
    pub error: Option<String>,
}

/// Takes the next parked message, if any, without acknowledging it.
pub async fn take_parked(channel: &Channel, topology: &Topology) -> Result<Option<Parked>> {
    let message = channel
        .basic_get(
            topology.dead_queue.as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .map_err(Error::amqp(format!("reading {}", topology.dead_queue)))?;
    Ok(message.map(|message| {
        let delivery = message.delivery;
        let header = |name| text_header(delivery.properties.headers().as_ref(), name);
        Parked {
            source_queue: header(SOURCE_QUEUE_HEADER),
            error: header(ERROR_HEADER),
            delivery,
        }
    }))
}

fn text_header(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

impl Parked {
    /// The properties it had before it was parked.
    pub fn original_properties(&self) -> BasicProperties {
        let mut properties = self.delivery.properties.clone();
        if let Some(headers) = properties.headers().clone() {
            let mut kept = FieldTable::default();
            for (key, value) in headers.inner() {
                if key.as_str() != ERROR_HEADER && key.as_str() != SOURCE_QUEUE_HEADER {
                    kept.insert(key.clone(), value.clone());
                }
            }
            properties = properties.with_headers(kept);
        }
        properties
    }

    /// The start of the body, printable on one line.
    pub fn body_preview(&self) -> String {
        const MAX: usize = 200;
        let text = String::from_utf8_lossy(&self.delivery.data);
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
}
