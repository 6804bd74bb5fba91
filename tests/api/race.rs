//! Messages that race the deadline — a payment, a payment for the wrong
//! amount, a second payment, a cancellation — leave every order in exactly
//! one state, with exactly the events that state owes, and the events agree
//! with the rows.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use paywait::domain::{CloseReason, OrderStatus};
use paywait_testkit::TestApp;
use serde_json::json;

const ORDERS: usize = 240;

/// What races the deadline of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Racer {
    /// The right payment.
    Payment,
    /// A payment for the wrong amount.
    Mismatch,
    /// A second payment, the order having been paid by a first.
    SecondPayment,
    /// The customer's cancellation.
    Cancellation,
}

const RACERS: [Racer; 4] = [
    Racer::Payment,
    Racer::Mismatch,
    Racer::SecondPayment,
    Racer::Cancellation,
];

fn racer(i: usize) -> Racer {
    RACERS[i % RACERS.len()]
}

/// When order `i`'s racer leaves, relative to its deadline: most within
/// 20 ms either side of it, every tenth of a kind well before or well
/// after, so that both outcomes of a race happen however loaded the
/// machine is.
fn offset(i: usize) -> TimeDelta {
    let k = i / RACERS.len();
    let millis = match k % 10 {
        0 => -500,
        5 => 1_000,
        _ => (k as i64 * 7) % 41 - 20,
    };
    TimeDelta::milliseconds(millis)
}

fn id(i: usize) -> String {
    format!("R-{i:04}")
}

fn racing_message(i: usize) -> (&'static str, serde_json::Value) {
    let order_id = id(i);
    match racer(i) {
        Racer::Payment => (
            "payment.succeeded",
            json!({"order_id": order_id, "payment_id": format!("PAY-{order_id}"), "amount_cents": 12900}),
        ),
        Racer::Mismatch => (
            "payment.succeeded",
            json!({"order_id": order_id, "payment_id": format!("PAY-{order_id}"), "amount_cents": 1}),
        ),
        Racer::SecondPayment => (
            "payment.succeeded",
            json!({"order_id": order_id, "payment_id": format!("PAY2-{order_id}"), "amount_cents": 12900}),
        ),
        Racer::Cancellation => ("order.cancelled", json!({"order_id": order_id})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_at_the_deadline_leave_every_order_in_exactly_one_state() {
    // Time enough to place every order on a loaded machine before the first
    // deadline comes.
    let mut app = TestApp::spawn("6s").await;
    let ids: Vec<String> = (0..ORDERS).map(id).collect();
    for (i, order_id) in ids.iter().enumerate() {
        let body = json!({"order_id": order_id, "amount_cents": 12900, "currency": "CNY"});
        app.publish("order.placed", body.to_string().as_bytes())
            .await;
        if racer(i) == Racer::SecondPayment {
            app.pay(order_id, &format!("PAY-{order_id}")).await;
        }
    }
    let mut plan: Vec<(DateTime<Utc>, usize)> = Vec::with_capacity(ORDERS);
    for (i, order_id) in ids.iter().enumerate() {
        let order = app
            .wait_for_status(
                order_id,
                match racer(i) {
                    Racer::SecondPayment => OrderStatus::Paid,
                    _ => OrderStatus::Pending,
                },
                Duration::from_secs(30),
            )
            .await;
        plan.push((order.expires_at + offset(i), i));
    }
    plan.sort();
    assert!(
        plan[0].0 > Utc::now(),
        "placing the orders took longer than their deadline: the race cannot be run"
    );

    // Each racer leaves at its moment, on its own task, so that a slow
    // confirm does not hold the next one back; note how late it left.
    let client = std::sync::Arc::new(TestApp::client_for(&app.sandbox).await);
    let mut racers = tokio::task::JoinSet::new();
    for (at, i) in plan {
        let client = client.clone();
        racers.spawn(async move {
            let until = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(until).await;
            let departure = Utc::now() - at;
            let (routing_key, body) = racing_message(i);
            client
                .publish_inbound(routing_key, body.to_string().as_bytes())
                .await;
            departure
        });
    }
    let mut departures: Vec<TimeDelta> = racers.join_all().await;
    departures.sort();
    let median = departures[ORDERS / 2];
    let ninetieth = departures[ORDERS * 9 / 10];
    println!("racers left {median} (median), {ninetieth} (90th percentile) after their moment");
    assert!(
        median <= TimeDelta::milliseconds(20) && ninetieth <= TimeDelta::milliseconds(100),
        "racers left too late to race their deadline: median {median}, 90th percentile {ninetieth}"
    );

    // Every event, by order, with its message_id; copies are dropped.
    let mut events: HashMap<String, HashMap<String, serde_json::Value>> = HashMap::new();
    // Settled: the order's terminal event, and the racing payment's if it
    // did not settle the order.
    let settled = |events: &HashMap<String, HashMap<String, serde_json::Value>>| {
        ids.iter().enumerate().all(|(i, id)| {
            let Some(received) = events.get(id) else {
                return false;
            };
            let has = |name: &str| received.contains_key(&format!("{id}/{name}"));
            match racer(i) {
                Racer::Cancellation => has("order.closed"),
                Racer::Payment if has("order.paid") => true,
                _ => received.len() >= 2,
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !settled(&events) && std::time::Instant::now() < deadline {
        if let Some(event) = app.next_event(Duration::from_secs(5)).await {
            let message_id = event.properties.message_id().as_ref().unwrap().to_string();
            events
                .entry(event.order_id().to_owned())
                .or_default()
                .insert(message_id, event.body);
        }
    }
    // Let any stray event arrive before judging.
    while let Some(event) = app.next_event(Duration::from_millis(1500)).await {
        let message_id = event.properties.message_id().as_ref().unwrap().to_string();
        events
            .entry(event.order_id().to_owned())
            .or_default()
            .insert(message_id, event.body);
    }

    let mut outcomes: HashMap<Racer, HashSet<String>> = HashMap::new();
    for (i, order_id) in ids.iter().enumerate() {
        let order = app.order(order_id).await.unwrap();
        let received = events.remove(order_id).unwrap_or_default();
        let names: HashSet<String> = received.keys().cloned().collect();
        let expect = |list: &[&String]| {
            list.iter()
                .map(|name| name.to_string())
                .collect::<HashSet<_>>()
        };
        let paid = format!("{order_id}/order.paid");
        let closed = format!("{order_id}/order.closed");
        let after_close = |payment: &str| format!("{order_id}/order.paid_after_close/{payment}");
        let payment = format!("PAY-{order_id}");
        let outcome = match (racer(i), order.status) {
            (Racer::Payment, OrderStatus::Paid) if names == expect(&[&paid]) => "paid",
            (Racer::Payment, OrderStatus::Closed)
                if names == expect(&[&closed, &after_close(&payment)]) =>
            {
                "closed, then paid after the close"
            }
            (Racer::Mismatch, OrderStatus::Closed)
                if names
                    == expect(&[
                        &closed,
                        &format!("{order_id}/order.payment_mismatch/{payment}"),
                    ]) =>
            {
                "mismatch, then closed"
            }
            (Racer::Mismatch, OrderStatus::Closed)
                if names == expect(&[&closed, &after_close(&payment)]) =>
            {
                "closed, then paid after the close"
            }
            (Racer::SecondPayment, OrderStatus::Paid)
                if names
                    == expect(&[
                        &paid,
                        &format!("{order_id}/order.paid_twice/PAY2-{order_id}"),
                    ]) =>
            {
                "paid, then paid twice"
            }
            (Racer::Cancellation, OrderStatus::Closed) if names == expect(&[&closed]) => {
                let reason = received[&closed]["reason"].as_str().unwrap().to_owned();
                assert_eq!(
                    order.close_reason.map(CloseReason::as_str),
                    Some(reason.as_str()),
                    "{order_id}: the event and the row disagree on why it closed"
                );
                match order.close_reason {
                    Some(CloseReason::Cancelled) => "cancelled",
                    Some(CloseReason::Expired) => "expired, then cancelled too late",
                    other => panic!("{order_id} closed as {other:?}"),
                }
            }
            (racer, status) => panic!("{order_id} ({racer:?}) ended {status} with {names:?}"),
        };
        if order.status == OrderStatus::Closed && order.close_reason == Some(CloseReason::Expired) {
            assert!(
                order.closed_at.unwrap() >= order.expires_at,
                "{order_id} closed early"
            );
        }
        outcomes
            .entry(racer(i))
            .or_default()
            .insert(outcome.to_owned());
    }
    assert!(events.is_empty(), "events of unknown orders: {events:?}");
    println!("{ORDERS} orders raced their deadline: {outcomes:?}");
    // Both sides of each real race were seen.
    for racer in [Racer::Payment, Racer::Mismatch, Racer::Cancellation] {
        assert_eq!(
            outcomes[&racer].len(),
            2,
            "{racer:?} did not race: {:?}",
            outcomes[&racer]
        );
    }
}

/// Holds an order's row in a transaction of its own, as a slow writer
/// would, so that paywait's writes to it wait; lets go when dropped.
struct RowHeld(diesel_async::AsyncPgConnection);

impl RowHeld {
    async fn hold(app: &TestApp, order_id: &str) -> Self {
        use diesel_async::{AsyncConnection, RunQueryDsl};
        let mut conn = diesel_async::AsyncPgConnection::establish(&app.sandbox.database_url())
            .await
            .unwrap();
        diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
        diesel::sql_query(format!(
            "SELECT 1 FROM orders WHERE order_id = '{order_id}' FOR UPDATE"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        Self(conn)
    }

    async fn let_go(mut self) {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .unwrap();
    }
}

/// The statement that closes orders, and the one that pays them, as they
/// show in `pg_stat_activity`.
const CLOSING: &str = "status = 'closed'";
const PAYING: &str = "status = 'paid'";

/// How many of paywait's statements that `writes` wait for a row lock.
async fn waiting(app: &TestApp, writes: &str) -> i64 {
    let query = format!(
        "SELECT 'waiting' AS key, count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock' \
           AND position('{}' IN query) > 0",
        writes.replace('\'', "''")
    );
    app.sandbox.count_by(&query).await[0].1
}

/// Waits until one of paywait's statements that `writes` waits for a row
/// lock.
async fn until_waiting(app: &TestApp, writes: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if waiting(app, writes).await >= 1 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no statement that writes {writes} waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_and_a_close_in_flight_together_leave_one_winner_and_the_loser_sees_it() {
    let mut app = TestApp::spawn("2s").await;
    // The second order's deadline comes after the first race is over.
    let placed_at = Utc::now();
    for (order_id, window) in [("R-CLOSE-FIRST", 2), ("R-PAY-FIRST", 12)] {
        let expires_at = placed_at + TimeDelta::seconds(window);
        let body = json!({"order_id": order_id, "amount_cents": 12900, "currency": "CNY",
                          "placed_at": placed_at, "expires_at": expires_at});
        app.publish("order.placed", body.to_string().as_bytes())
            .await;
        app.wait_for_status(order_id, OrderStatus::Pending, Duration::from_secs(10))
            .await;
    }

    // The close comes first: its check waits on the row, then the payment.
    let held = RowHeld::hold(&app, "R-CLOSE-FIRST").await;
    until_waiting(&app, CLOSING).await;
    app.pay("R-CLOSE-FIRST", "PAY-LATE").await;
    until_waiting(&app, PAYING).await;
    held.let_go().await;
    let order = app
        .wait_for_status(
            "R-CLOSE-FIRST",
            OrderStatus::Closed,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(order.close_reason, Some(CloseReason::Expired));
    app.expect_metric(r#"paywait_races_lost_total{write="settle"}"#, 1.0)
        .await;

    // The payment comes first and waits on the row: the close, due
    // meanwhile, waits for it (the payment reached the broker first) and
    // writes nothing until it has committed.
    let order = app.order("R-PAY-FIRST").await.unwrap();
    let held = RowHeld::hold(&app, "R-PAY-FIRST").await;
    app.pay("R-PAY-FIRST", "PAY-IN-TIME").await;
    until_waiting(&app, PAYING).await;
    assert!(Utc::now() < order.expires_at, "the payment came too late");
    let past_deadline = (order.expires_at - Utc::now()).to_std().unwrap() + Duration::from_secs(2);
    tokio::time::sleep(past_deadline).await;
    assert_eq!(
        waiting(&app, CLOSING).await,
        0,
        "the close did not wait for the payment"
    );
    held.let_go().await;
    let order = app
        .wait_for_status("R-PAY-FIRST", OrderStatus::Paid, Duration::from_secs(10))
        .await;
    assert_eq!(
        order.payment_id.as_ref().map(|id| id.as_str()),
        Some("PAY-IN-TIME")
    );
    // At least once: the row held past the statement time-out made the
    // check before the deadline fail and come again, arming the last timer
    // twice, and each copy loses the race.
    app.expect_metric_at_least(r#"paywait_races_lost_total{write="close"}"#, 1.0)
        .await;

    let mut events = Vec::new();
    while let Some(event) = app.next_event(Duration::from_secs(2)).await {
        events.push(event.properties.message_id().as_ref().unwrap().to_string());
    }
    events.sort();
    events.dedup();
    assert_eq!(
        events,
        [
            "R-CLOSE-FIRST/order.closed",
            "R-CLOSE-FIRST/order.paid_after_close/PAY-LATE",
            "R-PAY-FIRST/order.paid",
        ]
    );
}
