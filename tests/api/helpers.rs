//! A paywait daemon per test, on its own RabbitMQ vhost and PostgreSQL
//! database, both created for the test and dropped when it ends.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
        ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use paywait::{
    configuration::{Settings, Sources},
    db::{self, Database},
    domain::{Order, OrderId, OrderStatus},
    startup::Application,
    topology::Topology,
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const BROKER: &str = "127.0.0.1:5672";
pub const MANAGEMENT: &str = "http://127.0.0.1:15672";
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// A vhost and a database that exist for one test.
pub struct Sandbox {
    pub vhost: String,
    pub database: String,
    /// The PostgreSQL server, as a URL without a database.
    pub postgres: String,
}

impl Sandbox {
    /// A sandbox on the machine's broker and PostgreSQL.
    pub async fn create() -> Self {
        Self::create_on(POSTGRES).await
    }

    /// A sandbox on the machine's broker and the PostgreSQL at `postgres`.
    pub async fn create_on(postgres: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sandbox = Self {
            vhost: format!("paywait-test-{}", &id[..12]),
            database: format!("paywait_test_{}", &id[..12]),
            postgres: postgres.to_owned(),
        };
        let vhost = sandbox.vhost.clone();
        tokio::task::spawn_blocking(move || create_vhost(&vhost))
            .await
            .unwrap();
        db::migrate(&sandbox.settings_for("1s").database.url, &sandbox.database)
            .await
            .expect("migrating the test database");
        sandbox
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{BROKER}/{}", self.vhost)
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", self.postgres, self.database)
    }

    /// The environment a daemon of this sandbox runs with.
    pub fn environment(&self, schedule: &str) -> Vec<(String, String)> {
        [
            ("PAYWAIT_AMQP__URL", self.amqp_url()),
            ("PAYWAIT_DATABASE__URL", self.database_url()),
            ("PAYWAIT_CHECKS__SCHEDULE", schedule.to_owned()),
            ("PAYWAIT_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("PAYWAIT_SHUTDOWN__TIMEOUT", "5s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Lets clients connect to the sandbox's database again, or refuses new
    /// sessions and ends every open one, as a database that went away would.
    pub async fn set_database_reachable(&self, reachable: bool) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&format!("{}/postgres", self.postgres))
            .await
            .expect("connecting to the postgres database");
        let database = &self.database;
        diesel::sql_query(format!(
            "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {reachable}"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        if !reachable {
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }

    pub fn settings_for(&self, schedule: &str) -> Settings {
        Settings::load(&Sources {
            file: None,
            environment: self.environment(schedule),
        })
        .expect("test settings are valid")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let vhost = self.vhost.clone();
        let database = self.database.clone();
        let postgres = self.postgres.clone();
        // Drop runs outside any async context we could await in.
        std::thread::spawn(move || {
            delete_vhost(&vhost);
            drop_database(&postgres, &database);
        })
        .join()
        .ok();
    }
}

fn management(method: &str, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    let url = format!("{MANAGEMENT}/api/{path}");
    let request = match method {
        "DELETE" => ureq::delete(&url),
        _ => ureq::get(&url),
    };
    request.header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
}

/// A GET on the management API, as JSON.
pub fn management_json(path: &str) -> Value {
    management("GET", path)
        .call()
        .unwrap_or_else(|error| panic!("GET /api/{path}: {error}"))
        .body_mut()
        .read_json()
        .expect("the management API answers JSON")
}

/// Grants guest everything on `vhost`, or nothing.
pub fn set_guest_permissions(vhost: &str, allowed: bool) {
    let path = format!("{MANAGEMENT}/api/permissions/{}/guest", urlencode(vhost));
    let authorization = ("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=");
    if allowed {
        ureq::put(path)
            .header(authorization.0, authorization.1)
            .send_json(serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .expect("granting guest the vhost");
    } else {
        ureq::delete(path)
            .header(authorization.0, authorization.1)
            .call()
            .expect("revoking guest's permissions");
    }
}

/// Closes every connection to `vhost` whose client named itself `name`;
/// returns how many it closed.
pub fn close_connections_named(vhost: &str, name: &str) -> usize {
    let connections = management_json(&format!("vhosts/{}/connections", urlencode(vhost)));
    let mut closed = 0;
    for connection in connections.as_array().into_iter().flatten() {
        if connection["client_properties"]["connection_name"] != name {
            continue;
        }
        let id = connection["name"]
            .as_str()
            .expect("a connection has a name");
        management("DELETE", &format!("connections/{}", urlencode(id)))
            .header("X-Reason", "closed by a test")
            .call()
            .expect("closing a connection");
        closed += 1;
    }
    closed
}

fn create_vhost(vhost: &str) {
    let encoded = urlencode(vhost);
    ureq::put(format!("{MANAGEMENT}/api/vhosts/{encoded}"))
        .header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        .send_empty()
        .expect("creating a vhost through the management API");
    set_guest_permissions(vhost, true);
}

fn delete_vhost(vhost: &str) {
    let _ = management("DELETE", &format!("vhosts/{}", urlencode(vhost))).call();
}

/// Drops another database when the test ends, even when it fails.
pub fn drop_database_later(database: &str) -> DropDatabase {
    DropDatabase(database.to_owned())
}

pub struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let database = self.0.clone();
        std::thread::spawn(move || drop_database(POSTGRES, &database))
            .join()
            .ok();
    }
}

fn drop_database(postgres: &str, database: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        if let Ok(mut conn) = AsyncPgConnection::establish(&format!("{postgres}/postgres")).await {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
            ))
            .execute(&mut conn)
            .await;
        }
    });
}

/// Percent-encodes one path segment (a space as `%20`, never `+`).
pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

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

/// A message read back from a queue.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        Some(match value {
            AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            AMQPValue::ShortString(text) => text.as_str().to_owned(),
            other => format!("{other:?}"),
        })
    }
}

/// A client of a sandbox's broker, without a daemon of its own.
pub struct Client {
    channel: Channel,
    _connection: Connection,
}

impl Client {
    pub async fn publish(&self, routing_key: &str, body: &[u8]) {
        confirm_publish(
            &self.channel,
            "paywait.orders",
            routing_key,
            body,
            BasicProperties::default(),
        )
        .await;
    }

    pub async fn place(&self, order_id: &str) {
        self.publish(
            "order.placed",
            serde_json::json!({"order_id": order_id})
                .to_string()
                .as_bytes(),
        )
        .await;
    }

    pub async fn queue_exists(&self, queue: &str) -> bool {
        passive_declare(&self.channel, queue).await.is_ok()
    }
}

async fn passive_declare(channel: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
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

async fn confirm_publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    let confirmation = channel
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
        .unwrap()
        .await
        .unwrap();
    assert!(
        confirmation.is_ack(),
        "the broker did not accept the publish"
    );
    assert!(
        confirmation.take_message().is_none(),
        "the publish was not routed"
    );
}

async fn connect(sandbox: &Sandbox) -> (Connection, Channel) {
    let connection = Connection::connect(&sandbox.amqp_url(), ConnectionProperties::default())
        .await
        .expect("test client connects");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

/// A running daemon plus a client that talks to it like the outside world.
pub struct TestApp {
    pub sandbox: Sandbox,
    pub topology: Topology,
    pub http: SocketAddr,
    settings: Settings,
    siblings: Vec<CancellationToken>,
    pub db: Database,
    pub channel: Channel,
    events: Option<Consumer>,
    stop: CancellationToken,
    daemon: Option<JoinHandle<paywait::Result<()>>>,
    _connection: Connection,
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
        let sandbox = Sandbox::create().await;
        let mut environment = sandbox.environment(schedule);
        environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load(&Sources {
            file: None,
            environment,
        })
        .expect("test settings are valid");
        let app = Application::build(settings.clone())
            .await
            .expect("building the app");
        let http = app.http_address();
        let stop = CancellationToken::new();
        let daemon = tokio::spawn(app.run_until_stopped(stop.clone()));
        let db = Database::new(&settings.database).unwrap();
        let topology = Topology::from_settings(&settings);

        let (connection, channel) = connect(&sandbox).await;
        let mut app = Self {
            sandbox,
            settings,
            siblings: Vec::new(),
            topology,
            http,
            db,
            channel,
            events: None,
            stop,
            daemon: Some(daemon),
            _connection: connection,
        };
        app.wait_until_ready().await;
        if bind_events {
            app.events = Some(app.bind_downstream("downstream.all", "#").await);
        }
        app
    }

    /// A client of `sandbox`'s broker alone.
    pub async fn client_for(sandbox: &Sandbox) -> Client {
        let (connection, channel) = connect(sandbox).await;
        Client {
            channel,
            _connection: connection,
        }
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
                self.topology.events_exchange.as_str().into(),
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
        let exchange = self.topology.orders_exchange.clone();
        self.publish_to(&exchange, routing_key, body, BasicProperties::default())
            .await;
    }

    pub async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        confirm_publish(&self.channel, exchange, routing_key, body, properties).await;
    }

    pub async fn place(&self, order_id: &str) {
        self.publish(
            "order.placed",
            serde_json::json!({"order_id": order_id})
                .to_string()
                .as_bytes(),
        )
        .await;
    }

    pub async fn pay(&self, order_id: &str, payment_id: &str) {
        self.publish(
            "payment.succeeded",
            serde_json::json!({"order_id": order_id, "payment_id": payment_id})
                .to_string()
                .as_bytes(),
        )
        .await;
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

    /// The next event downstream receives, if one comes within `within`.
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
        let deadline = Instant::now() + within;
        let mut messages = Vec::new();
        while messages.len() < count {
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                Some(message) => messages.push(Message {
                    body: message.delivery.data.clone(),
                    properties: message.delivery.properties.clone(),
                }),
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => break,
            }
        }
        messages
    }

    /// How many messages wait in `queue` now.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        passive_declare(&self.channel, queue)
            .await
            .unwrap()
            .message_count()
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

pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// Reads one series from a Prometheus text exposition; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.split(' ').next()?.parse().ok()
        })
        .unwrap_or(0.0)
}
