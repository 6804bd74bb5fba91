//! The daemon in-process, on a sandbox of its own, with a client that talks
//! to it as the outside world does.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Consumer,
    options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use paywait::{
    amqp::Topology,
    configuration::{Settings, Sources},
    db::Database,
    domain::{Inbox, Order, OrderId, OrderStatus, PaymentId, PaymentOutcome},
    startup::Application,
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    bodies,
    client::{Client, Message},
    contract,
    sandbox::Sandbox,
    services::{http_get, metric_value},
};

/// An event as a downstream consumer receives it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Value,
}

impl ReceivedEvent {
    pub fn name(&self) -> &str {
        self.body["event"].as_str().unwrap_or_default()
    }

    pub fn order_id(&self) -> &str {
        self.body["order_id"].as_str().unwrap_or_default()
    }
}

/// A running daemon plus a client that talks to it like the outside world.
pub struct TestApp {
    pub sandbox: Sandbox,
    pub topology: Topology,
    pub http: SocketAddr,
    pub db: Database,
    pub client: Client,
    /// The client's channel, for declaring, binding and reading.
    pub channel: Channel,
    settings: Settings,
    siblings: Vec<CancellationToken>,
    events: Option<Consumer>,
    stop: CancellationToken,
    daemon: Option<JoinHandle<paywait::Result<()>>>,
}

impl TestApp {
    /// Starts a daemon with `schedule` (e.g. "200ms,200ms") and a downstream
    /// queue bound to every event.
    pub async fn spawn(schedule: &str) -> Self {
        Self::spawn_with(schedule, true, &[]).await
    }

    /// Starts a daemon with `extra` settings in its environment; with
    /// `bind_events` false, no downstream queue exists.
    pub async fn spawn_with(schedule: &str, bind_events: bool, extra: &[(&str, &str)]) -> Self {
        Self::spawn_in(Sandbox::create().await, schedule, bind_events, extra).await
    }

    /// Starts a daemon on `sandbox`, prepared by the caller; `extra`
    /// settings come last, so they override the sandbox's own.
    pub async fn spawn_in(
        sandbox: Sandbox,
        schedule: &str,
        bind_events: bool,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut environment = sandbox.environment(schedule);
        environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load(&Sources {
            file: None,
            environment,
        })
        .expect("test settings are valid");
        let (http, stop, daemon) = start_daemon(&settings).await;
        let db = Database::new(&settings.database).expect("a database pool");
        let topology = Topology::from_settings(&settings);
        let client = Client::connect(&sandbox.amqp_url()).await;
        let mut app = Self {
            channel: client.channel().clone(),
            client,
            sandbox,
            settings,
            siblings: Vec::new(),
            topology,
            http,
            db,
            events: None,
            stop,
            daemon: Some(daemon),
        };
        app.wait_until_ready().await;
        if bind_events {
            app.events = Some(app.bind_downstream("downstream.all", "#").await);
        }
        app
    }

    /// A client of `sandbox`'s broker alone.
    pub async fn client_for(sandbox: &Sandbox) -> Client {
        Client::connect(&sandbox.amqp_url()).await
    }

    /// Starts the daemon again after [`TestApp::stop`], on the same broker and
    /// database.
    pub async fn restart(&mut self) {
        assert!(self.daemon.is_none(), "stop the daemon first");
        let (http, stop, daemon) = start_daemon(&self.settings).await;
        self.http = http;
        self.stop = stop;
        self.daemon = Some(daemon);
        self.wait_until_ready().await;
    }

    /// Starts a second daemon on the same broker and database; returns its
    /// HTTP address. It stops with this app.
    pub async fn spawn_sibling(&mut self) -> SocketAddr {
        let (http, stop, _) = start_daemon(&self.settings).await;
        self.siblings.push(stop);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&format!("http://{http}/readyz")).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the second daemon never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        http
    }

    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = self.get("/readyz").await;
            if status == 200 {
                return;
            }
            if let Some(daemon) = &self.daemon {
                assert!(
                    !daemon.is_finished(),
                    "the daemon stopped before it was ready"
                );
            }
            assert!(Instant::now() < deadline, "the daemon never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers `status`; returns its body.
    pub async fn wait_for_readiness(&self, status: u16, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (current, body) = self.get("/readyz").await;
            if current == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stayed {current} ({body:?}), expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A downstream queue bound to the events exchange.
    pub async fn bind_downstream(&self, queue: &str, pattern: &str) -> Consumer {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                queue.into(),
                self.topology.events_exchange().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .basic_consume(
                queue.into(),
                format!("test-{queue}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    /// Publishes to the inbound exchange and waits for the broker's confirm.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) {
        self.client.publish_inbound(routing_key, body).await;
    }

    pub async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        self.client
            .publish(exchange, routing_key, body, properties)
            .await;
    }

    /// Publishes a timer for check number `attempt` of `order_id` straight
    /// to the check queue, as if its wait had just ended.
    pub async fn fire_timer(&self, order_id: &str, attempt: i32) {
        let mut headers = FieldTable::default();
        headers.insert("x-attempt".into(), AMQPValue::LongInt(attempt));
        self.publish_to(
            "",
            self.topology.queue(Inbox::Checks),
            &bodies::timer(order_id),
            BasicProperties::default().with_headers(headers),
        )
        .await;
    }

    /// Deletes every timer waiting in the TTL queues behind paywait's back;
    /// returns how many there were.
    pub async fn purge_timers(&self) -> u32 {
        let mut purged = 0;
        for queue in self.topology.wait_queues() {
            purged += self
                .channel
                .queue_purge(queue.name.as_str().into(), Default::default())
                .await
                .expect("purging a TTL queue");
        }
        purged
    }

    /// How many timers wait in the TTL queues now.
    pub async fn timers_waiting(&self) -> u32 {
        let mut waiting = 0;
        for queue in self.topology.wait_queues() {
            waiting += self.queue_depth(&queue.name).await;
        }
        waiting
    }

    /// The TTL queue a timer due `wait` after now goes through first.
    pub fn timer_queue_for(&self, wait: Duration) -> String {
        let now = chrono::Utc::now();
        let due = now + chrono::TimeDelta::from_std(wait).expect("a short wait");
        match self.settings.timers().route(due, now) {
            paywait::domain::Route::Hop(ttl) => self.topology.wait_queue(ttl).name.clone(),
            route => panic!("a timer due in {wait:?} takes no queue: {route:?}"),
        }
    }

    /// The series counting the messages of `inbox` paywait acknowledged.
    pub fn handled_series(&self, inbox: Inbox) -> String {
        format!(
            r#"paywait_messages_handled_total{{queue="{}"}}"#,
            self.topology.queue(inbox)
        )
    }

    /// Waits until paywait has acknowledged `count` messages of `inbox`:
    /// each is processed, or parked, and everything it caused confirmed.
    pub async fn expect_handled(&self, inbox: Inbox, count: usize) {
        self.expect_metric(&self.handled_series(inbox), count as f64)
            .await;
    }

    pub async fn place(&self, order_id: &str) {
        self.client.place(order_id).await;
    }

    pub async fn pay(&self, order_id: &str, payment_id: &str) {
        self.client.pay(order_id, payment_id).await;
    }

    pub async fn order(&self, order_id: &str) -> Option<Order> {
        self.db
            .find(&OrderId::parse(order_id).unwrap())
            .await
            .unwrap()
    }

    /// Waits until the order exists with `status`.
    pub async fn wait_for_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        within: Duration,
    ) -> Order {
        let deadline = Instant::now() + within;
        loop {
            if let Some(order) = self.order(order_id).await
                && order.status == status
            {
                return order;
            }
            assert!(
                Instant::now() < deadline,
                "order {order_id} did not become {status} within {within:?}: {:?}",
                self.order(order_id).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the order's terminal event is recorded as confirmed (the
    /// record follows the broker's confirm, so a consumer can see the event first).
    pub async fn wait_until_announced(&self, order_id: &str) -> Order {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let order = self.order(order_id).await.expect("the order exists");
            if order.event_published_at.is_some() {
                return order;
            }
            assert!(
                Instant::now() < deadline,
                "{order_id}'s event was never recorded: {order:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the payment is recorded with `outcome`.
    pub async fn wait_until_recorded(&self, payment_id: &str, outcome: PaymentOutcome) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let id = PaymentId::parse(payment_id).expect("a payment id");
            let payment = self.db.payment(&id).await.unwrap();
            if payment.as_ref().and_then(|p| p.outcome) == Some(outcome) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "payment {payment_id} was never recorded as {outcome:?}: {payment:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next event downstream receives, if one comes within `within`;
    /// it must match `docs/asyncapi.yaml`.
    pub async fn next_event(&mut self, within: Duration) -> Option<ReceivedEvent> {
        let consumer = self
            .events
            .as_mut()
            .expect("this app has a downstream queue");
        let delivery = tokio::time::timeout(within, consumer.next())
            .await
            .ok()??
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let routing_key = delivery.routing_key.as_str();
        contract::validate_event_delivery(routing_key, &delivery.properties, &delivery.data);
        Some(ReceivedEvent {
            routing_key: delivery.routing_key.as_str().to_owned(),
            properties: delivery.properties.clone(),
            body: serde_json::from_slice(&delivery.data).expect("events are JSON"),
        })
    }

    /// Waits for an event; fails the test if none comes.
    pub async fn expect_event(&mut self, within: Duration) -> ReceivedEvent {
        self.next_event(within)
            .await
            .unwrap_or_else(|| panic!("no event within {within:?}"))
    }

    /// Takes up to `count` messages from `queue`, waiting up to `within` for them.
    pub async fn take_messages(&self, queue: &str, count: usize, within: Duration) -> Vec<Message> {
        self.client.take_messages(queue, count, within).await
    }

    /// Takes exactly `count` messages from the dead queue, waiting up to
    /// ten seconds for them, then a second more to see that no other was
    /// parked.
    pub async fn take_parked(&self, count: usize) -> Vec<Message> {
        let dead = self.topology.dead_queue();
        let bodies = |messages: &[Message]| -> Vec<String> {
            messages
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
                .collect()
        };
        let parked = self
            .take_messages(dead, count, Duration::from_secs(10))
            .await;
        assert_eq!(parked.len(), count, "parked: {:?}", bodies(&parked));
        let more = self.take_messages(dead, 1, Duration::from_secs(1)).await;
        assert!(more.is_empty(), "also parked: {:?}", bodies(&more));
        parked
    }

    /// How many messages wait in `queue` now.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        self.client.queue_depth(queue).await
    }

    /// GET on the daemon's HTTP port: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.http);
        tokio::task::spawn_blocking(move || http_get(&url))
            .await
            .unwrap()
    }

    /// The value of one Prometheus series, e.g. `paywait_checks_total{outcome="closed"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, series)
    }

    /// Waits until a series reaches `expected` (metrics follow the broker's
    /// confirm, so a consumer can see an event before it is counted).
    pub async fn expect_metric(&self, series: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(series).await;
            if value == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {value}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a series reaches at least `least`.
    pub async fn expect_metric_at_least(&self, series: &str, least: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(series).await;
            if value >= least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {value}, expected at least {least}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the daemon as SIGTERM would and returns how it ended.
    pub async fn stop(&mut self) -> paywait::Result<()> {
        self.stop.cancel();
        let daemon = self.daemon.take().expect("the daemon is running");
        tokio::time::timeout(Duration::from_secs(20), daemon)
            .await
            .expect("the daemon stops within 20 s")
            .expect("the daemon task did not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        for sibling in &self.siblings {
            sibling.cancel();
        }
    }
}

async fn start_daemon(
    settings: &Settings,
) -> (
    SocketAddr,
    CancellationToken,
    JoinHandle<paywait::Result<()>>,
) {
    let app = Application::build(settings.clone())
        .await
        .expect("building the app");
    let http = app.http_address();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(app.run_until_stopped(stop.clone()));
    (http, stop, daemon)
}
