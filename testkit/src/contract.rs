//! paywait's machine-readable contract, `docs/asyncapi.yaml`: its messages
//! with their payload schemas, compiled once. Every event a test receives
//! from paywait goes through [`validate_event`] (or
//! [`validate_event_delivery`], which also checks the AMQP properties), so a
//! body the document does not describe fails the test that saw it.

use std::{collections::BTreeMap, sync::OnceLock};

use jsonschema::{Draft, Validator};
use lapin::BasicProperties;
use serde_json::{Value, json};

/// The document, as the crate was built.
pub const DOCUMENT: &str = include_str!("../../docs/asyncapi.yaml");

/// Where the document lives in the repository.
pub const DOCUMENT_PATH: &str = "docs/asyncapi.yaml";

/// The document's messages, each with its payload schema compiled.
pub struct Contract {
    pub document: Value,
    /// By action (`receive` or `send`) and name.
    messages: BTreeMap<(String, String), ContractMessage>,
}

/// One message of the document.
pub struct ContractMessage {
    /// Its name: the routing key it is published with.
    pub name: String,
    /// Its key under `components.messages`.
    pub key: String,
    /// The address of the channel it travels on (an exchange).
    pub channel: String,
    /// The message object as the document has it.
    pub definition: Value,
    /// Its payload schema as the message gives it (a `$ref` into
    /// `components/schemas`).
    pub payload_schema: Value,
    /// The AMQP operation binding of the operation that sends or receives it.
    pub operation_binding: Value,
    /// Whether paywait receives it (`receive`) or sends it (`send`).
    pub action: String,
    /// Its `contentType`, or the document's default.
    pub content_type: String,
    schemas: Value,
    validator: Validator,
}

/// A body the document gives as an example of a message.
#[derive(Debug, Clone)]
pub struct Example {
    pub name: String,
    pub summary: String,
    pub payload: Value,
    /// For an invalid example, the reason paywait parks it with (the
    /// label of `paywait_messages_dead_total`).
    pub rejection: Option<String>,
}

impl ContractMessage {
    /// The schema's objections to `body`, each as `path: what`; empty when
    /// it matches.
    pub fn objections(&self, body: &Value) -> Vec<String> {
        self.validator
            .iter_errors(body)
            .map(|error| {
                let path = error.instance_path().to_string();
                let path = if path.is_empty() { "/".into() } else { path };
                format!("{path}: {error}")
            })
            .collect()
    }

    pub fn accepts(&self, body: &Value) -> bool {
        self.validator.is_valid(body)
    }

    /// The payload schema compiled with `format` asserted too (paywait's own
    /// validator treats it as an annotation, the pattern being the rule).
    pub fn strict_validator(&self) -> Validator {
        compile(&self.schemas, &self.payload_schema, true)
    }

    /// The valid examples (`examples`).
    pub fn examples(&self) -> Vec<Example> {
        examples(&self.definition["examples"])
    }

    /// The bodies paywait refuses (`x-invalid-examples`).
    pub fn invalid_examples(&self) -> Vec<Example> {
        examples(&self.definition["x-invalid-examples"])
    }

    /// The `message_id` an event with `body` must carry (`x-message-id`,
    /// its `{field}`s filled in from the body), or `None` for a message
    /// that states none.
    pub fn message_id_for(&self, body: &Value) -> Option<String> {
        let template = self.definition["x-message-id"].as_str()?;
        let mut id = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let end = rest[start..]
                .find('}')
                .map(|end| start + end)
                .unwrap_or_else(|| panic!("{}: unclosed {{ in x-message-id", self.name));
            id.push_str(&rest[..start]);
            let field = &rest[start + 1..end];
            match &body[field] {
                Value::String(text) => id.push_str(text),
                other => id.push_str(&other.to_string()),
            }
            rest = &rest[end + 1..];
        }
        id.push_str(rest);
        Some(id)
    }

    /// The AMQP properties the document promises for this message, as
    /// `(property, value)`: `content_type`, `type` and, for a message paywait
    /// sends, `delivery_mode` and `message_id` (for `body`).
    pub fn promised_properties(&self, body: &Value) -> Vec<(&'static str, Value)> {
        let mut promised = vec![
            ("content_type", json!(self.content_type)),
            (
                "type",
                self.definition["bindings"]["amqp"]["messageType"].clone(),
            ),
        ];
        if self.action == "send" {
            promised.push((
                "delivery_mode",
                self.operation_binding["deliveryMode"].clone(),
            ));
            if let Some(id) = self.message_id_for(body) {
                promised.push(("message_id", json!(id)));
            }
        }
        promised
    }
}

fn examples(list: &Value) -> Vec<Example> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| Example {
                    name: item["name"].as_str().expect("an example has a name").into(),
                    summary: item["summary"].as_str().unwrap_or_default().into(),
                    payload: item
                        .get("payload")
                        .cloned()
                        .expect("an example has a payload"),
                    rejection: item["rejection"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Contract {
    /// Reads a document and compiles its payload schemas.
    pub fn parse(text: &str) -> Result<Self, String> {
        let document: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let schemas = document["components"]["schemas"].clone();
        let mut messages = BTreeMap::new();
        let channels = document["channels"]
            .as_object()
            .ok_or("the document has no channels")?;
        for channel in channels.values() {
            let address = channel["address"]
                .as_str()
                .ok_or("a channel without an address")?;
            let listed = channel["messages"]
                .as_object()
                .ok_or_else(|| format!("channel {address} lists no messages"))?;
            for reference in listed.values() {
                let pointer = reference["$ref"]
                    .as_str()
                    .ok_or_else(|| format!("a message of {address} is not a $ref"))?;
                let key = pointer
                    .strip_prefix("#/components/messages/")
                    .ok_or_else(|| format!("{pointer} is not under components/messages"))?;
                let definition = resolve(&document, pointer)?.clone();
                let name = definition["name"]
                    .as_str()
                    .ok_or_else(|| format!("message {key} has no name"))?
                    .to_owned();
                let (action, operation_binding) = operation_of(&document, &definition)?;
                let payload_schema = definition["payload"].clone();
                if payload_schema.get("schemaFormat").is_some() {
                    return Err(format!(
                        "{name}: the payload must be in the default schema format"
                    ));
                }
                let validator = compile(&schemas, &payload_schema, false);
                let content_type = definition["contentType"]
                    .as_str()
                    .or_else(|| document["defaultContentType"].as_str())
                    .ok_or_else(|| format!("{name} has no content type"))?
                    .to_owned();
                let message = ContractMessage {
                    name: name.clone(),
                    key: key.to_owned(),
                    channel: address.to_owned(),
                    definition,
                    payload_schema,
                    operation_binding,
                    action,
                    content_type,
                    schemas: schemas.clone(),
                    validator,
                };
                let action = message.action.clone();
                if messages
                    .insert((action.clone(), name.clone()), message)
                    .is_some()
                {
                    return Err(format!("two messages paywait {action}s are named {name}"));
                }
            }
        }
        Ok(Self { document, messages })
    }

    /// Every message, those paywait receives first, each by name.
    pub fn messages(&self) -> impl Iterator<Item = &ContractMessage> {
        self.messages.values()
    }

    /// The message paywait receives under `routing_key`.
    pub fn message(&self, routing_key: &str) -> Option<&ContractMessage> {
        self.messages
            .get(&("receive".to_owned(), routing_key.to_owned()))
    }

    /// The event published with `routing_key` on the events exchange.
    pub fn event(&self, routing_key: &str) -> Option<&ContractMessage> {
        self.messages
            .get(&("send".to_owned(), routing_key.to_owned()))
    }
}

/// The message object `definition` is sent or received by: the action
/// and AMQP binding of the operation that lists it.
fn operation_of(document: &Value, definition: &Value) -> Result<(String, Value), String> {
    let operations = document["operations"]
        .as_object()
        .ok_or("the document has no operations")?;
    let mut found = None;
    for operation in operations.values() {
        for reference in operation["messages"].as_array().into_iter().flatten() {
            let pointer = reference["$ref"].as_str().unwrap_or_default();
            let listed = resolve(document, pointer)?;
            let listed = match listed["$ref"].as_str() {
                Some(pointer) => resolve(document, pointer)?,
                None => listed,
            };
            if listed == definition {
                if found.is_some() {
                    return Err(format!("{} is in two operations", definition["name"]));
                }
                found = Some((
                    operation["action"].as_str().unwrap_or_default().to_owned(),
                    operation["bindings"]["amqp"].clone(),
                ));
            }
        }
    }
    found.ok_or_else(|| format!("no operation lists {}", definition["name"]))
}

/// The value `pointer` (`#/...`) names in `document`.
fn resolve<'a>(document: &'a Value, pointer: &str) -> Result<&'a Value, String> {
    let path = pointer
        .strip_prefix('#')
        .ok_or_else(|| format!("{pointer} is not a reference within the document"))?;
    document
        .pointer(path)
        .ok_or_else(|| format!("{pointer} names nothing in the document"))
}

/// `schema` compiled as draft-07 (AsyncAPI's default schema format), its
/// `$ref`s to `#/components/schemas/...` resolved against `schemas`.
fn compile(schemas: &Value, schema: &Value, assert_formats: bool) -> Validator {
    let root = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "components": {"schemas": schemas},
        "allOf": [schema],
    });
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(assert_formats)
        .build(&root)
        .unwrap_or_else(|error| panic!("{DOCUMENT_PATH}: a schema does not compile: {error}"))
}

/// The contract as this crate was built, compiled on first use.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        Contract::parse(DOCUMENT).unwrap_or_else(|error| panic!("{DOCUMENT_PATH}: {error}"))
    })
}

/// Fails the test unless `body` is an event the document describes under
/// `routing_key`, field for field.
pub fn validate_event(routing_key: &str, body: &[u8]) {
    let message = contract().event(routing_key).unwrap_or_else(|| {
        panic!("paywait published {routing_key:?}, which {DOCUMENT_PATH} names no event")
    });
    let value: Value = serde_json::from_slice(body).unwrap_or_else(|error| {
        panic!(
            "the {routing_key} event paywait published is not JSON ({error}): {}",
            String::from_utf8_lossy(body)
        )
    });
    let objections = message.objections(&value);
    assert!(
        objections.is_empty(),
        "the {routing_key} event paywait published does not match its schema in {DOCUMENT_PATH} \
         (components/messages/{}):\n  {}\nbody: {value}",
        message.key,
        objections.join("\n  "),
    );
}

/// [`validate_event`], and the AMQP properties the document promises:
/// `content_type`, `type`, `delivery_mode` and `message_id`.
pub fn validate_event_delivery(routing_key: &str, properties: &BasicProperties, body: &[u8]) {
    validate_event(routing_key, body);
    let message = contract().event(routing_key).expect("validated above");
    let value: Value = serde_json::from_slice(body).expect("validated above");
    let actual = properties_as_json(properties);
    for (property, promised) in message.promised_properties(&value) {
        assert_eq!(
            actual.get(property).unwrap_or(&Value::Null),
            &promised,
            "the {routing_key} event's AMQP property {property} is not what {DOCUMENT_PATH} \
             says (properties: {actual}, body: {value})"
        );
    }
}

/// The AMQP properties that are set, by their AMQP names.
pub fn properties_as_json(properties: &BasicProperties) -> Value {
    let mut set = serde_json::Map::new();
    let mut text = |name: &str, value: &Option<lapin::types::ShortString>| {
        if let Some(value) = value {
            set.insert(name.into(), json!(value.as_str()));
        }
    };
    text("content_type", properties.content_type());
    text("content_encoding", properties.content_encoding());
    text("correlation_id", properties.correlation_id());
    text("reply_to", properties.reply_to());
    text("expiration", properties.expiration());
    text("message_id", properties.message_id());
    text("type", properties.kind());
    text("user_id", properties.user_id());
    text("app_id", properties.app_id());
    text("cluster_id", properties.cluster_id());
    if let Some(mode) = properties.delivery_mode() {
        set.insert("delivery_mode".into(), json!(mode));
    }
    if let Some(priority) = properties.priority() {
        set.insert("priority".into(), json!(priority));
    }
    if let Some(timestamp) = properties.timestamp() {
        set.insert("timestamp".into(), json!(timestamp));
    }
    if let Some(headers) = properties.headers() {
        let names: Vec<&str> = headers.inner().keys().map(|key| key.as_str()).collect();
        set.insert("headers".into(), json!(names));
    }
    Value::Object(set)
}
