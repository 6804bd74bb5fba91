//! Arbitrary bytes and headers: the parsers and the check decision never
//! panic, and the daemon processes or parks every message it is fed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use paywait::domain::{
    Attempt, CheckDecision, CheckDue, Order, OrderId, OrderPlaced, OrderStatus, PaymentSucceeded,
    Schedule, decide,
};
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[A-Za-z0-9._:-]{0,70}".prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        Just(json!("2026-11-27T08:00:00Z")),
        Just(json!("CNY")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Bodies from raw bytes to near-valid messages with fields of any type.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("order_id"),
        Just("payment_id"),
        Just("amount_cents"),
        Just("currency"),
        Just("placed_at"),
        Just("paid_at"),
        Just("extra"),
    ];
    let object = prop::collection::vec((field, json_value()), 0..6).prop_map(|fields| {
        let map: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Value::Object(map).to_string().into_bytes()
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        object,
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn header_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        (1i64..5).prop_map(AMQPValue::LongLongInt),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<f64>().prop_map(AMQPValue::Double),
        "\\PC{0,10}".prop_map(|s| AMQPValue::LongString(LongString::from(s))),
        Just(AMQPValue::Void),
        Just(AMQPValue::FieldTable(FieldTable::default())),
    ]
}

fn headers() -> impl Strategy<Value = Option<FieldTable>> {
    let entry = (
        prop_oneof![Just("x-attempt"), Just("x-death"), Just("other")],
        header_value(),
    );
    prop::option::of(prop::collection::vec(entry, 0..3).prop_map(|entries| {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert(ShortString::from(key), value);
        }
        table
    }))
}

fn order(status: OrderStatus, attempts: u32, announced: bool) -> Order {
    let placed_at: DateTime<Utc> = "2026-11-27T08:00:00Z".parse().unwrap();
    Order {
        order_id: OrderId::parse("A-1").unwrap(),
        status,
        amount_cents: None,
        currency: None,
        placed_at,
        expires_at: placed_at + TimeDelta::seconds(60),
        paid_at: None,
        closed_at: None,
        attempts,
        payment_id: None,
        event_published_at: announced.then_some(placed_at),
        next_check_at: None,
    }
}

proptest! {
    #[test]
    fn parsers_never_panic_and_accept_only_valid_messages(body in body(), headers in headers()) {
        if let Ok(placed) = OrderPlaced::parse(&body) {
            prop_assert!(OrderId::parse(placed.order_id.as_str()).is_ok());
            prop_assert!(placed.amount_cents.is_none_or(|c| c >= 0));
        }
        if let Ok(payment) = PaymentSucceeded::parse(&body) {
            prop_assert!(!payment.payment_id.as_str().is_empty());
        }
        if let Ok(due) = CheckDue::parse(&body, headers.as_ref()) {
            prop_assert!((1..=Attempt::MAX).contains(&due.attempt.get()));
        }
    }

    #[test]
    fn a_check_never_closes_early_nor_touches_a_settled_order(
        status in prop_oneof![Just(OrderStatus::Pending), Just(OrderStatus::Paid), Just(OrderStatus::Closed)],
        attempts in 0u32..6,
        attempt in 1u32..8,
        announced in any::<bool>(),
        offset_ms in -120_000i64..120_000,
    ) {
        let schedule = Schedule::parse(&["10s", "20s", "30s"]).unwrap();
        let order = order(status, attempts, announced);
        let now = order.expires_at + TimeDelta::milliseconds(offset_ms);
        let decision = decide(&order, Attempt::new(attempt).unwrap(), now, &schedule);
        match decision {
            CheckDecision::Close => {
                prop_assert_eq!(status, OrderStatus::Pending);
                prop_assert!(now >= order.expires_at);
            }
            CheckDecision::Reschedule { next, wait } => {
                prop_assert_eq!(status, OrderStatus::Pending);
                prop_assert!(now < order.expires_at);
                prop_assert_eq!(next.get(), attempt + 1);
                prop_assert!(schedule.waits().contains(&wait));
            }
            CheckDecision::Announce(announced_status) => {
                prop_assert_eq!(announced_status, status);
                prop_assert!(!announced);
            }
            CheckDecision::Settled(_) => prop_assert!(announced && status != OrderStatus::Pending),
            CheckDecision::Stale => {
                prop_assert_eq!(status, OrderStatus::Pending);
                prop_assert!(attempts >= attempt);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_processes_or_parks_every_arbitrary_message() {
    const MESSAGES: usize = 150;
    let mut app = TestApp::spawn("300ms").await;
    let mut runner = TestRunner::deterministic();
    let strategy = (body(), headers(), 0usize..3);
    let queues = [
        app.topology.placed_queue.clone(),
        app.topology.payments_queue.clone(),
        app.topology.checks_queue.clone(),
    ];
    for _ in 0..MESSAGES {
        let (body, headers, queue) = strategy.new_tree(&mut runner).unwrap().current();
        let mut properties = BasicProperties::default();
        if let Some(headers) = headers {
            properties = properties.with_headers(headers);
        }
        app.publish_to("", &queues[queue], &body, properties).await;
    }
    // A good order afterwards still gets through.
    app.place("FUZZ-GOOD").await;
    app.wait_for_status("FUZZ-GOOD", OrderStatus::Closed, Duration::from_secs(20))
        .await;

    // Stopping returns anything unfinished to its queue: all must be empty.
    app.stop().await.expect("a clean stop");
    for queue in &queues {
        assert_eq!(app.queue_depth(queue).await, 0, "{queue} kept messages");
    }
    // Every parked message says why.
    let dead = app.topology.dead_queue.clone();
    let parked_count = app.queue_depth(&dead).await as usize;
    let parked = app
        .take_messages(&dead, parked_count, Duration::from_secs(1))
        .await;
    assert_eq!(parked.len(), parked_count);
    assert!(
        parked_count > 0,
        "arbitrary input should include bad messages"
    );
    for message in &parked {
        assert!(message.header("x-paywait-error").is_some());
    }
}
