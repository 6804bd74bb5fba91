//! The least-privilege users shipped in rabbit/users.json, imported as
//! `rabbitmqctl import_definitions` would: each may do its job, and no more.

use std::{collections::HashMap, time::Duration};

use lapin::{
    BasicProperties,
    options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use paywait::domain::{Inbox, OrderStatus};
use paywait_testkit::{
    BROKER, Client, ORDERS_EXCHANGE, Sandbox, TestApp, change_password, delete_user,
    import_definitions,
};
use serde_json::Value;

const PASSWORD: &str = "a-test-password";

/// The shipped users, renamed for this test's sandbox, deleted when dropped.
struct Users {
    names: HashMap<String, String>,
    vhost: String,
}

impl Users {
    fn import(sandbox: &Sandbox) -> Self {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/rabbit/users.json");
        let mut definitions: Value =
            serde_json::from_slice(&std::fs::read(file).expect("rabbit/users.json")).unwrap();
        let suffix = sandbox.database.clone();
        let mut names = HashMap::new();
        for user in definitions["users"].as_array_mut().unwrap() {
            let name = user["name"].as_str().unwrap().to_owned();
            let renamed = format!("{name}-{suffix}");
            user["name"] = renamed.clone().into();
            names.insert(name, renamed);
        }
        for permission in definitions["permissions"].as_array_mut().unwrap() {
            assert_eq!(permission["vhost"], "/", "shipped for the default vhost");
            let user = permission["user"].as_str().unwrap().to_owned();
            permission["user"] = names[&user].clone().into();
            permission["vhost"] = sandbox.vhost.clone().into();
        }
        for required in ["paywait", "order-service", "payment-service"] {
            assert!(
                names.contains_key(required),
                "rabbit/users.json lacks {required}"
            );
        }
        import_definitions(&definitions);
        for renamed in names.values() {
            change_password(renamed, PASSWORD);
        }
        Self {
            names,
            vhost: sandbox.vhost.clone(),
        }
    }

    fn name(&self, user: &str) -> &str {
        &self.names[user]
    }

    fn url(&self, user: &str) -> String {
        format!(
            "amqp://{}:{PASSWORD}@{BROKER}/{}",
            self.name(user),
            self.vhost
        )
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for renamed in self.names.values() {
            delete_user(renamed);
        }
    }
}

async fn refused<T>(attempt: impl std::future::Future<Output = lapin::Result<T>>) -> bool {
    attempt.await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_users_may_do_their_job_and_no_more() {
    let sandbox = Sandbox::create().await;
    let users = tokio::task::block_in_place(|| Users::import(&sandbox));
    let paywait_url = users.url("paywait");
    let payment_service = users.name("payment-service").to_owned();
    // The daemon runs as `paywait`, believing only the payment service.
    let mut app = TestApp::spawn_in(
        sandbox,
        "1s",
        true,
        &[
            ("PAYWAIT_AMQP__URL", &paywait_url),
            ("PAYWAIT_PAYMENTS__TRUSTED_USERS", &payment_service),
        ],
    )
    .await;

    // The order service places orders, and may do nothing else.
    let orders = Client::connect(&users.url("order-service")).await;
    orders
        .publish_inbound("order.placed", br#"{"order_id":"U-1"}"#)
        .await;
    orders
        .publish_inbound("order.placed", br#"{"order_id":"U-2"}"#)
        .await;
    app.expect_handled(Inbox::Placed, 2).await;
    // It cannot say "paid": the broker stamps it as itself.
    orders
        .publish(
            ORDERS_EXCHANGE,
            "payment.succeeded",
            br#"{"order_id":"U-1","payment_id":"PAY-FAKE"}"#,
            BasicProperties::default().with_user_id(users.name("order-service").into()),
        )
        .await;
    app.expect_metric(
        r#"paywait_messages_dead_total{reason="untrusted_publisher"}"#,
        1.0,
    )
    .await;
    let channel = orders.open_channel().await.unwrap();
    assert!(
        refused(channel.queue_declare(
            "sneaky".into(),
            QueueDeclareOptions::default(),
            FieldTable::default()
        ))
        .await,
        "the order service declared a queue"
    );
    let channel = orders.open_channel().await.unwrap();
    assert!(
        refused(channel.basic_get("paywait.dead".into(), BasicGetOptions::default())).await,
        "the order service read the dead queue"
    );

    // A downstream service binds a queue of its own to the events.
    let warehouse = Client::connect(&users.url("warehouse")).await;
    let inbox = "warehouse.orders";
    warehouse
        .channel()
        .queue_declare(
            inbox.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the warehouse declares its queue");
    warehouse
        .channel()
        .queue_bind(
            inbox.into(),
            "paywait.events".into(),
            "order.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the warehouse binds it to the events");

    // The payment service says "paid", as itself: the order is paid.
    let payments = Client::connect(&users.url("payment-service")).await;
    payments
        .publish(
            ORDERS_EXCHANGE,
            "payment.succeeded",
            br#"{"order_id":"U-1","payment_id":"PAY-REAL"}"#,
            BasicProperties::default().with_user_id(payment_service.as_str().into()),
        )
        .await;
    let paid = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!((paid.order_id(), paid.name()), ("U-1", "order.paid"));
    // U-2 stays unpaid: `paywait` arms and fires its timers, and closes it.
    let closed = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!((closed.order_id(), closed.name()), ("U-2", "order.closed"));
    assert_eq!(app.order("U-2").await.unwrap().status, OrderStatus::Closed);

    let seen = warehouse
        .take_messages(inbox, 2, Duration::from_secs(10))
        .await;
    let mut names: Vec<String> = seen.iter().map(|m| m.routing_key.clone()).collect();
    names.sort();
    assert_eq!(names, ["order.closed", "order.paid"]);
    let channel = warehouse.open_channel().await.unwrap();
    assert!(
        refused(channel.basic_get("paywait.dead".into(), BasicGetOptions::default())).await,
        "the warehouse read the dead queue"
    );
    let channel = payments.open_channel().await.unwrap();
    assert!(
        refused(channel.basic_get("paywait.intake.payments".into(), BasicGetOptions::default()))
            .await,
        "the payment service read paywait's queue"
    );
}
