//! The RabbitMQ objects paywait uses, as data: declared by the AMQP shell and
//! printed as definitions JSON by `paywait topology --print`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    configuration::{QueueType, Settings},
    domain::{Inbox, Source},
};

/// A queue argument's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argument {
    Text(String),
    Number(i64),
    Flag(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
    pub arguments: Vec<(&'static str, Argument)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: Vec<(&'static str, Argument)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    pub exchange: String,
    pub queue: String,
    pub routing_key: String,
}

/// A TTL queue: every message in it waits `ttl`, then is dead-lettered to the
/// check queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitQueue {
    pub name: String,
    pub ttl: Duration,
}

/// Every name paywait uses, derived from the prefix and the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    queue_type: QueueType,
    /// Inbound direct exchange: one routing key per inbox it feeds.
    orders_exchange: String,
    /// Outbound topic exchange for events.
    events_exchange: String,
    /// Alternate exchange of the events exchange, feeding `unrouted_queue`.
    unrouted_exchange: String,
    unrouted_queue: String,
    /// Messages that cannot be processed, with `x-paywait-error`.
    dead_queue: String,
    /// Dead-letter exchange of the TTL queues.
    expired_exchange: String,
    /// The queue each inbox is consumed from, in [`Inbox::ALL`]'s order.
    inbox_queues: Vec<(Inbox, String)>,
    wait_queues: Vec<WaitQueue>,
}

impl Topology {
    /// The topology of `prefix`, with a TTL queue for each of `ttls`
    /// (duplicates are one queue).
    pub fn new(prefix: &str, queue_type: QueueType, ttls: &[Duration]) -> Self {
        let name = |suffix: &str| format!("{prefix}.{suffix}");
        let mut ttls = ttls.to_vec();
        ttls.sort_unstable();
        ttls.dedup();
        Self {
            queue_type,
            orders_exchange: name("orders"),
            events_exchange: name("events"),
            unrouted_exchange: name("unrouted"),
            unrouted_queue: name("unrouted"),
            dead_queue: name("dead"),
            expired_exchange: name("expired"),
            inbox_queues: Inbox::ALL
                .into_iter()
                .map(|inbox| {
                    let queue = match inbox.source() {
                        Source::Inbound => name(&format!("intake.{}", inbox.name())),
                        Source::ExpiredTimers => name(inbox.name()),
                    };
                    (inbox, queue)
                })
                .collect(),
            wait_queues: ttls
                .into_iter()
                .map(|ttl| WaitQueue {
                    name: name(&format!("timer.{}ms", ttl.as_millis())),
                    ttl,
                })
                .collect(),
        }
    }

    /// The topology of the settings: a TTL queue for each of their timers.
    pub fn from_settings(settings: &Settings) -> Self {
        Self::new(
            &settings.topology.prefix,
            settings.topology.queue_type,
            settings.timers().ttls(),
        )
    }

    /// The queue `inbox` is consumed from.
    pub fn queue(&self, inbox: Inbox) -> &str {
        self.inbox_queues
            .iter()
            .find(|(each, _)| *each == inbox)
            .map(|(_, queue)| queue.as_str())
            .expect("every inbox has its queue")
    }

    /// The inbox whose queue is named `queue`, if any.
    pub fn inbox_of(&self, queue: &str) -> Option<Inbox> {
        self.inbox_queues
            .iter()
            .find(|(_, name)| name == queue)
            .map(|(inbox, _)| *inbox)
    }

    pub fn orders_exchange(&self) -> &str {
        &self.orders_exchange
    }

    pub fn events_exchange(&self) -> &str {
        &self.events_exchange
    }

    /// Where expired timers are dead-lettered.
    pub fn expired_exchange(&self) -> &str {
        &self.expired_exchange
    }

    pub fn dead_queue(&self) -> &str {
        &self.dead_queue
    }

    pub fn unrouted_queue(&self) -> &str {
        &self.unrouted_queue
    }

    /// The TTL queues, shortest wait first.
    pub fn wait_queues(&self) -> &[WaitQueue] {
        &self.wait_queues
    }

    /// The TTL queue that holds timers for `ttl`.
    ///
    /// `ttl` always comes from the timers the topology was built from.
    pub fn wait_queue(&self, ttl: Duration) -> &WaitQueue {
        self.wait_queues
            .iter()
            .find(|queue| queue.ttl == ttl)
            .expect("every TTL of the timers has its queue")
    }

    pub fn exchanges(&self) -> Vec<ExchangeSpec> {
        vec![
            ExchangeSpec {
                name: self.orders_exchange.clone(),
                kind: ExchangeKind::Direct,
                arguments: vec![],
            },
            ExchangeSpec {
                name: self.unrouted_exchange.clone(),
                kind: ExchangeKind::Fanout,
                arguments: vec![],
            },
            ExchangeSpec {
                name: self.events_exchange.clone(),
                kind: ExchangeKind::Topic,
                arguments: vec![(
                    "alternate-exchange",
                    Argument::Text(self.unrouted_exchange.clone()),
                )],
            },
            ExchangeSpec {
                name: self.expired_exchange.clone(),
                kind: ExchangeKind::Fanout,
                arguments: vec![],
            },
        ]
    }

    /// Queues in the order they must be declared: the dead-letter target
    /// before the TTL queues that feed it.
    pub fn queues(&self) -> Vec<QueueSpec> {
        let plain = |name: &String| QueueSpec {
            name: name.clone(),
            arguments: self.type_arguments(),
        };
        let mut queues = vec![plain(&self.dead_queue), plain(&self.unrouted_queue)];
        queues.extend(self.inbox_queues.iter().map(|(inbox, queue)| {
            let mut spec = plain(queue);
            // Payments are delivered in the order they reached the broker,
            // to one consumer of all daemons at a time, so that a barrier
            // behind them passes only once they all have (`worker::barrier`).
            if *inbox == Inbox::Payments {
                spec.arguments
                    .push(("x-single-active-consumer", Argument::Flag(true)));
            }
            spec
        }));
        queues.extend(self.wait_queues.iter().map(|wait| {
            let mut arguments = self.type_arguments();
            arguments.push((
                "x-message-ttl",
                Argument::Number(wait.ttl.as_millis() as i64),
            ));
            arguments.push((
                "x-dead-letter-exchange",
                Argument::Text(self.expired_exchange.clone()),
            ));
            if self.queue_type == QueueType::Quorum {
                arguments.push((
                    "x-dead-letter-strategy",
                    Argument::Text("at-least-once".into()),
                ));
                arguments.push(("x-overflow", Argument::Text("reject-publish".into())));
            }
            QueueSpec {
                name: wait.name.clone(),
                arguments,
            }
        }));
        queues
    }

    pub fn bindings(&self) -> Vec<BindingSpec> {
        let bind = |exchange: &String, queue: &String, routing_key: &str| BindingSpec {
            exchange: exchange.clone(),
            queue: queue.clone(),
            routing_key: routing_key.to_owned(),
        };
        let mut bindings: Vec<BindingSpec> = self
            .inbox_queues
            .iter()
            .flat_map(|(inbox, queue)| match inbox.source() {
                Source::Inbound => inbox
                    .kinds()
                    .into_iter()
                    .map(|kind| bind(&self.orders_exchange, queue, kind.routing_key()))
                    .collect(),
                Source::ExpiredTimers => vec![bind(&self.expired_exchange, queue, "")],
            })
            .collect();
        bindings.push(bind(&self.unrouted_exchange, &self.unrouted_queue, ""));
        bindings
    }

    fn type_arguments(&self) -> Vec<(&'static str, Argument)> {
        vec![(
            "x-queue-type",
            Argument::Text(self.queue_type.as_str().into()),
        )]
    }

    /// RabbitMQ definitions for `rabbitmqctl import_definitions`.
    pub fn definitions(&self, vhost: &str) -> Value {
        let arguments = |list: &[(&'static str, Argument)]| {
            Value::Object(
                list.iter()
                    .map(|(key, value)| {
                        let value = match value {
                            Argument::Text(text) => json!(text),
                            Argument::Number(number) => json!(number),
                            Argument::Flag(flag) => json!(flag),
                        };
                        (key.to_string(), value)
                    })
                    .collect(),
            )
        };
        json!({
            "queues": self.queues().iter().map(|queue| json!({
                "name": queue.name,
                "vhost": vhost,
                "durable": true,
                "auto_delete": false,
                "arguments": arguments(&queue.arguments),
            })).collect::<Vec<_>>(),
            "exchanges": self.exchanges().iter().map(|exchange| json!({
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.kind.as_str(),
                "durable": true,
                "auto_delete": false,
                "internal": false,
                "arguments": arguments(&exchange.arguments),
            })).collect::<Vec<_>>(),
            "bindings": self.bindings().iter().map(|binding| json!({
                "source": binding.exchange,
                "vhost": vhost,
                "destination": binding.queue,
                "destination_type": "queue",
                "routing_key": binding.routing_key,
                "arguments": {},
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(queue_type: QueueType) -> Topology {
        let mut settings = Settings::default();
        settings.topology.queue_type = queue_type;
        Topology::from_settings(&settings)
    }

    #[test]
    fn one_ttl_queue_per_timer() {
        let t = topology(QueueType::Quorum);
        let names: Vec<_> = t.wait_queues().iter().map(|q| q.name.as_str()).collect();
        // The ladder from 64 ms, and each wait of the default schedule less
        // the early margin of 400 ms.
        assert_eq!(names[0], "paywait.timer.64ms");
        for name in [
            "paywait.timer.59600ms",
            "paywait.timer.239600ms",
            "paywait.timer.599600ms",
            "paywait.timer.899600ms",
            "paywait.timer.1073741824ms",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert_eq!(names.len(), 13 + 4);
        assert_eq!(
            t.wait_queue(Duration::from_millis(59_600)).name,
            "paywait.timer.59600ms"
        );
    }

    #[test]
    fn each_inbox_has_a_queue_bound_to_its_source() {
        let t = topology(QueueType::Quorum);
        let queues: Vec<_> = Inbox::ALL.iter().map(|inbox| t.queue(*inbox)).collect();
        assert_eq!(
            queues,
            [
                "paywait.intake.placed",
                "paywait.intake.payments",
                "paywait.intake.cancellations",
                "paywait.checks"
            ]
        );
        for inbox in Inbox::ALL {
            assert_eq!(t.inbox_of(t.queue(inbox)), Some(inbox));
        }
        assert_eq!(t.inbox_of("paywait.dead"), None);
        let bound = |queue: &str| -> Vec<(String, String)> {
            t.bindings()
                .into_iter()
                .filter(|binding| binding.queue == queue)
                .map(|binding| (binding.exchange, binding.routing_key))
                .collect()
        };
        assert_eq!(
            bound("paywait.intake.placed"),
            [("paywait.orders".to_owned(), "order.placed".to_owned())]
        );
        assert_eq!(
            bound("paywait.intake.payments"),
            [
                ("paywait.orders".to_owned(), "payment.succeeded".to_owned()),
                (
                    "paywait.orders".to_owned(),
                    "order.deadline_changed".to_owned()
                )
            ]
        );
        assert_eq!(
            bound("paywait.intake.cancellations"),
            [("paywait.orders".to_owned(), "order.cancelled".to_owned())]
        );
        assert_eq!(
            bound("paywait.checks"),
            [("paywait.expired".to_owned(), String::new())]
        );
        assert_eq!(
            bound("paywait.unrouted"),
            [("paywait.unrouted".to_owned(), String::new())]
        );
    }

    #[test]
    fn the_gateways_retry_wait_has_a_queue_of_its_own_when_a_gateway_is_set() {
        let mut settings = Settings::default();
        let names = |settings: &Settings| -> Vec<String> {
            Topology::from_settings(settings)
                .wait_queues()
                .iter()
                .map(|queue| queue.name.clone())
                .collect()
        };
        assert!(!names(&settings).contains(&"paywait.timer.29600ms".to_owned()));
        settings.gateway.url = Some(
            serde_json::from_value::<crate::configuration::GatewaySettings>(
                serde_json::json!({"url": "http://gateway.test/ask"}),
            )
            .unwrap()
            .url
            .unwrap(),
        );
        assert!(names(&settings).contains(&"paywait.timer.29600ms".to_owned()));
        // A retry equal to a wait of the schedule shares its queue.
        let without = names(&Settings::default()).len();
        settings.gateway.retry = Duration::from_secs(60);
        assert_eq!(names(&settings).len(), without);
    }

    #[test]
    fn quorum_ttl_queues_dead_letter_at_least_once() {
        let t = topology(QueueType::Quorum);
        let ttl_queue = t
            .queues()
            .into_iter()
            .find(|q| q.name == "paywait.timer.59600ms")
            .unwrap();
        let args = &ttl_queue.arguments;
        assert!(args.contains(&("x-queue-type", Argument::Text("quorum".into()))));
        assert!(args.contains(&("x-message-ttl", Argument::Number(59_600))));
        assert!(args.contains(&(
            "x-dead-letter-exchange",
            Argument::Text("paywait.expired".into())
        )));
        assert!(args.contains(&(
            "x-dead-letter-strategy",
            Argument::Text("at-least-once".into())
        )));
        assert!(args.contains(&("x-overflow", Argument::Text("reject-publish".into()))));
    }

    #[test]
    fn classic_ttl_queues_have_no_quorum_only_arguments() {
        let t = topology(QueueType::Classic);
        for queue in t.queues() {
            assert!(
                queue
                    .arguments
                    .contains(&("x-queue-type", Argument::Text("classic".into())))
            );
            assert!(
                !queue
                    .arguments
                    .iter()
                    .any(|(key, _)| *key == "x-dead-letter-strategy")
            );
        }
    }

    #[test]
    fn the_dead_letter_target_is_declared_before_the_ttl_queues() {
        let queues: Vec<_> = topology(QueueType::Quorum)
            .queues()
            .into_iter()
            .map(|q| q.name)
            .collect();
        let checks = queues.iter().position(|q| q == "paywait.checks").unwrap();
        let first_ttl = queues
            .iter()
            .position(|q| q.starts_with("paywait.timer."))
            .unwrap();
        assert!(checks < first_ttl);
    }

    #[test]
    fn definitions_name_the_documented_objects() {
        let definitions = topology(QueueType::Quorum).definitions("/");
        let names = |kind: &str| -> Vec<String> {
            definitions[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned())
                .collect()
        };
        for exchange in ["paywait.orders", "paywait.events"] {
            assert!(names("exchanges").contains(&exchange.to_owned()));
        }
        for queue in ["paywait.dead", "paywait.unrouted"] {
            assert!(names("queues").contains(&queue.to_owned()));
        }
        let events = definitions["exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "paywait.events")
            .unwrap();
        assert_eq!(events["type"], "topic");
        assert_eq!(
            events["arguments"]["alternate-exchange"],
            "paywait.unrouted"
        );
    }
}
