//! `docs/asyncapi.yaml`, the contract service teams read, agrees with
//! paywait: it describes both exchanges and every message; its examples
//! match their schemas; the bodies it lists as invalid are refused by the
//! schemas and parked by paywait for the reason it gives; the inbound
//! schemas accept exactly what paywait's parsers accept, where JSON Schema
//! can say it; and every kind of event a live daemon publishes matches its
//! schema (as every event any test receives does, through the testkit).

use std::{collections::BTreeSet, time::Duration};

use paywait::domain::{
    DeadlineChanged, EventKind, Kind, OrderCancelled, OrderPlaced, OrderStatus, PaymentSucceeded,
    Rejection,
};
use paywait_testkit::{
    TestApp,
    contract::{ContractMessage, DOCUMENT_PATH, contract},
};
use proptest::prelude::*;
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(10);

/// What paywait's own parser says of an inbound `body` sent as `name`.
fn parse(name: &str, body: &[u8]) -> Result<(), Rejection> {
    match name {
        "order.placed" => OrderPlaced::parse(body).map(drop),
        "payment.succeeded" => PaymentSucceeded::parse(body).map(drop),
        "order.cancelled" => OrderCancelled::parse(body).map(drop),
        "order.deadline_changed" => DeadlineChanged::parse(body).map(drop),
        other => panic!("{other} is not an inbound message"),
    }
}

fn inbound() -> impl Iterator<Item = &'static ContractMessage> {
    contract()
        .messages()
        .filter(|message| message.action == "receive")
}

fn body_of(payload: &Value) -> Vec<u8> {
    serde_json::to_vec(payload).unwrap()
}

#[test]
fn the_document_is_asyncapi_3_with_both_exchanges_and_every_message() {
    let contract = contract();
    let document = &contract.document;
    let version = document["asyncapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "asyncapi: {version:?}");
    assert_eq!(document["info"]["title"], "paywait");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(document["defaultContentType"], "application/json");
    let protocols: BTreeSet<&str> = document["servers"]
        .as_object()
        .unwrap()
        .values()
        .map(|server| server["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protocols, BTreeSet::from(["amqp", "amqps"]));

    for (address, kind) in [("paywait.orders", "direct"), ("paywait.events", "topic")] {
        let channel = &document["channels"][address];
        assert_eq!(channel["address"], address);
        let binding = &channel["bindings"]["amqp"];
        assert_eq!(binding["is"], "routingKey", "{address}");
        assert_eq!(binding["exchange"]["name"], address);
        assert_eq!(binding["exchange"]["type"], kind, "{address}");
        assert_eq!(binding["exchange"]["durable"], true, "{address}");
        assert_eq!(binding["exchange"]["autoDelete"], false, "{address}");
    }

    let inbound_names: BTreeSet<&str> = Kind::ALL.iter().map(|kind| kind.routing_key()).collect();
    let event_names: BTreeSet<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
    let documented = |action: &str| -> BTreeSet<&str> {
        contract
            .messages()
            .filter(|m| m.action == action)
            .map(|m| m.name.as_str())
            .collect()
    };
    assert_eq!(
        documented("receive"),
        inbound_names,
        "the messages {DOCUMENT_PATH} says paywait receives"
    );
    assert_eq!(
        documented("send"),
        event_names,
        "the events {DOCUMENT_PATH} says paywait sends"
    );
    assert_eq!(contract.messages().count(), 11);

    for message in contract.messages() {
        let name = message.name.as_str();
        let definition = &message.definition;
        assert_eq!(message.content_type, "application/json", "{name}");
        assert_eq!(definition["bindings"]["amqp"]["messageType"], name);
        assert!(
            !message.examples().is_empty(),
            "{name} has no valid example"
        );
        let schema = schema_of(message);
        if message.action == "receive" {
            assert!(inbound_names.contains(name), "{name}");
            assert_eq!(message.channel, "paywait.orders", "{name}");
            assert!(
                !message.invalid_examples().is_empty(),
                "{name} has no x-invalid-examples"
            );
            assert_eq!(
                schema["additionalProperties"], true,
                "{name}: paywait ignores fields it does not know"
            );
        } else {
            let kind = EventKind::ALL
                .into_iter()
                .find(|kind| kind.name() == name)
                .unwrap();
            assert_eq!(message.channel, "paywait.events", "{name}");
            assert_eq!(message.action, "send", "{name}");
            let binding = &message.operation_binding;
            assert_eq!(binding["cc"], json!([name]), "{name}: the routing key");
            assert_eq!(binding["deliveryMode"], 2, "{name}: persistent");
            assert_eq!(binding["mandatory"], true, "{name}");
            assert_eq!(
                schema["additionalProperties"], false,
                "{name}: a new field must be documented"
            );
            assert_eq!(schema["properties"]["event"]["const"], name);
            let template = definition["x-message-id"].as_str().unwrap();
            assert_eq!(template, kind.message_id_template(), "{name}: x-message-id");
            // Every field the contract lists is required, nullable or not.
            let mut required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|field| field.as_str().unwrap())
                .collect();
            let mut listed: Vec<&str> = schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            required.sort_unstable();
            listed.sort_unstable();
            assert_eq!(required, listed, "{name}: every field is always present");
            for field in [
                "event",
                "order_id",
                "status",
                "occurred_at",
                "placed_at",
                "expires_at",
                "attempts",
                "amount_cents",
                "currency",
                "payment_id",
            ] {
                assert!(listed.contains(&field), "{name} lacks {field}");
            }
        }
    }
    let closed = schema_of(contract.event("order.closed").unwrap());
    assert_eq!(
        closed["properties"]["reason"]["enum"],
        json!(["expired", "cancelled", "unverified"])
    );
    let mismatch = schema_of(contract.event("order.payment_mismatch").unwrap());
    for field in ["payment_amount_cents", "payment_currency"] {
        assert!(mismatch["properties"].get(field).is_some(), "{field}");
    }
}

/// The payload schema of `message`, its `$ref` followed.
fn schema_of(message: &ContractMessage) -> &Value {
    let pointer = message.payload_schema["$ref"].as_str().unwrap();
    contract()
        .document
        .pointer(pointer.strip_prefix('#').unwrap())
        .unwrap()
}

#[test]
fn every_example_matches_its_schema_and_inbound_ones_are_accepted_by_paywait() {
    for message in contract().messages() {
        let strict = message.strict_validator();
        for example in message.examples() {
            let what = format!("{} example {:?}", message.name, example.name);
            let objections = message.objections(&example.payload);
            assert!(objections.is_empty(), "{what}: {objections:?}");
            assert!(
                strict.is_valid(&example.payload),
                "{what} is not valid with `format` asserted"
            );
            if message.action == "receive" {
                let body = body_of(&example.payload);
                if let Err(rejection) = parse(&message.name, &body) {
                    panic!("{what} is refused by paywait: {rejection}");
                }
            } else {
                let id = message.message_id_for(&example.payload).unwrap();
                assert!(
                    id.starts_with(example.payload["order_id"].as_str().unwrap()),
                    "{what}: message_id {id}"
                );
            }
        }
    }
}

#[test]
fn every_invalid_example_is_refused_by_its_schema_and_parked_by_paywait_for_its_reason() {
    let mut reasons = BTreeSet::new();
    for message in inbound() {
        for example in message.invalid_examples() {
            let what = format!("{} invalid example {:?}", message.name, example.name);
            assert!(!example.summary.is_empty(), "{what} says not why");
            assert!(
                !message.accepts(&example.payload),
                "{what} is accepted by its schema"
            );
            let expected = example
                .rejection
                .as_deref()
                .unwrap_or_else(|| panic!("{what} names no rejection"));
            match parse(&message.name, &body_of(&example.payload)) {
                Ok(()) => panic!("{what} is accepted by paywait"),
                Err(rejection) => assert_eq!(
                    rejection.reason(),
                    expected,
                    "{what}: paywait refuses it with {rejection}"
                ),
            }
            reasons.insert(expected.to_owned());
        }
    }
    // Every way a body can be refused that JSON Schema can show.
    for reason in [
        "missing_field",
        "wrong_type",
        "invalid_order_id",
        "invalid_field",
        "not_json",
    ] {
        assert!(reasons.contains(reason), "no invalid example of {reason}");
    }
}

/// A body built from fields of every type, many of them nearly valid.
fn near_valid_body() -> impl Strategy<Value = Value> {
    let order_id = prop_oneof![
        4 => "[A-Za-z0-9._:-]{1,64}",
        1 => "[A-Za-z0-9._:/ é-]{0,66}",
    ];
    let payment_id = prop_oneof![
        3 => "[A-Za-z0-9 #/:-]{1,20}",
        1 => prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
        1 => prop::collection::vec(prop_oneof![Just('p'), Just('é')], 126..131)
            .prop_map(String::from_iter),
    ];
    let time = prop_oneof![
        Just(json!("2026-11-27T08:00:00Z")),
        Just(json!("2026-11-27 16:00:00.5+08:00")),
        Just(json!("2026-11-27T08:00:00")),
        Just(json!("2026-02-29T08:00:00Z")),
        Just(json!("2028-02-29t08:00:00z")),
    ];
    let amount = prop_oneof![
        (0i64..1_000_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Not integer-valued: JSON Schema cannot tell 5.0 from 5.
        (-1e6f64..1e6)
            .prop_filter("a fraction", |f| f.fract() != 0.0)
            .prop_map(Value::from),
        Just(json!("12900")),
    ];
    let currency = prop_oneof!["[A-Z]{3}", "[A-Za-z]{2,4}"].prop_map(Value::from);
    let reason = prop_oneof![
        "\\PC{0,10}".prop_map(Value::from),
        (250usize..260).prop_map(|n| Value::from("é".repeat(n))),
        Just(json!(7)),
    ];
    let other = prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(7)),
        Just(json!({"nested": []})),
        Just(json!([])),
    ];
    (
        prop::option::of(prop_oneof![4 => order_id.prop_map(Value::from), 1 => other.clone()]),
        prop::option::of(prop_oneof![4 => payment_id.prop_map(Value::from), 1 => other.clone()]),
        prop::option::of(prop_oneof![4 => amount, 1 => other.clone()]),
        prop::option::of(prop_oneof![4 => currency, 1 => other.clone()]),
        prop::option::of(prop_oneof![4 => time.clone(), 1 => other.clone()]),
        prop::option::of(prop_oneof![4 => time, 1 => other.clone()]),
        prop::option::of(prop_oneof![4 => reason, 1 => other.clone()]),
        prop::option::of(other),
    )
        .prop_map(
            |(order_id, payment_id, amount, currency, time, expires, reason, extra)| {
                let mut body = serde_json::Map::new();
                let fields = [
                    ("order_id", order_id),
                    ("payment_id", payment_id),
                    ("amount_cents", amount),
                    ("currency", currency),
                    ("placed_at", time.clone()),
                    ("paid_at", time),
                    ("expires_at", expires),
                    ("reason", reason),
                    ("extra", extra),
                ];
                for (field, value) in fields {
                    if let Some(value) = value {
                        body.insert(field.into(), value);
                    }
                }
                Value::Object(body)
            },
        )
}

/// Strings near an RFC 3339 time: each part in and just beyond its range.
fn time_like() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("2000".to_owned()),
            Just("1900".to_owned()),
            Just("2100".to_owned()),
            Just("0000".to_owned()),
            "[0-9]{4}",
            "[0-9]{3}",
        ],
        "(0[0-9]|1[0-3])",
        "([0-2][0-9]|3[0-2])",
        "[Tt x]",
        "([01][0-9]|2[0-5])",
        "[0-6][0-9]",
        "[0-6][0-9]",
        "(\\.[0-9]{0,11})?",
        prop_oneof![
            Just("Z".to_owned()),
            Just("z".to_owned()),
            Just(String::new()),
            Just("UTC".to_owned()),
            "[-+\u{2212}][0-2][0-9]:?[0-6][0-9]",
        ],
    )
        .prop_map(
            |(year, month, day, separator, hour, minute, second, fraction, offset)| {
                format!("{year}-{month}-{day}{separator}{hour}:{minute}:{second}{fraction}{offset}")
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The inbound schemas accept exactly what paywait's parsers accept.
    #[test]
    fn the_inbound_schemas_accept_exactly_what_paywait_accepts(body in near_valid_body()) {
        let bytes = body_of(&body);
        for message in inbound() {
            let schema = message.accepts(&body);
            let parser = parse(&message.name, &bytes);
            prop_assert_eq!(
                schema,
                parser.is_ok(),
                "{}: the schema says {}, paywait {:?}, of {}",
                &message.name, schema, parser, body
            );
        }
    }

    /// The time pattern accepts exactly the times paywait reads.
    #[test]
    fn the_time_pattern_accepts_exactly_what_paywait_reads(time in time_like()) {
        let body = json!({"order_id": "A-1", "placed_at": time});
        let message = contract().message("order.placed").unwrap();
        let parser = OrderPlaced::parse(&body_of(&body));
        prop_assert_eq!(
            message.accepts(&body),
            parser.is_ok(),
            "{}: paywait says {:?}",
            time,
            parser
        );
    }
}

#[test]
fn the_limits_are_where_paywait_puts_them() {
    let placed = contract().message("order.placed").unwrap();
    let payment = contract().message("payment.succeeded").unwrap();
    let cancelled = contract().message("order.cancelled").unwrap();
    let cases = [
        (placed, json!({"order_id": "9".repeat(64)}), true),
        (placed, json!({"order_id": "9".repeat(65)}), false),
        (placed, json!({"order_id": "A", "amount_cents": 0}), true),
        (
            placed,
            json!({"order_id": "A", "amount_cents": i64::MAX}),
            true,
        ),
        (
            placed,
            json!({"order_id": "A", "amount_cents": i64::MAX as u64 + 1}),
            false,
        ),
        (
            placed,
            json!({"order_id": "A", "placed_at": "2024-02-29T00:00:00Z"}),
            true,
        ),
        (
            placed,
            json!({"order_id": "A", "placed_at": "2100-02-29T00:00:00Z"}),
            false,
        ),
        (
            placed,
            json!({"order_id": "A", "placed_at": "2000-02-29T23:59:60.999999999999-23:59"}),
            true,
        ),
        (
            placed,
            json!({"order_id": "A", "placed_at": "2026-11-27T08:00:00+24:00"}),
            false,
        ),
        (
            placed,
            json!({"order_id": "A", "placed_at": "2026-11-27T08:00:00.Z"}),
            false,
        ),
        (
            placed,
            json!({"order_id": "A", "placed_at": "2026-11-27T08:00:00Z\n"}),
            false,
        ),
        (placed, json!({"order_id": "A\n"}), false),
        (
            payment,
            json!({"order_id": "A", "payment_id": "é".repeat(128)}),
            true,
        ),
        (
            payment,
            json!({"order_id": "A", "payment_id": "é".repeat(129)}),
            false,
        ),
        (
            payment,
            json!({"order_id": "A", "payment_id": "PAY\u{85}1"}),
            false,
        ),
        (
            payment,
            json!({"order_id": "A", "payment_id": "PAY\u{7f}1"}),
            false,
        ),
        (
            payment,
            json!({"order_id": "A", "payment_id": "PAY\u{200b}1"}),
            true,
        ),
        (
            cancelled,
            json!({"order_id": "A", "reason": "é".repeat(256)}),
            true,
        ),
        (
            cancelled,
            json!({"order_id": "A", "reason": "é".repeat(257)}),
            false,
        ),
    ];
    for (message, body, valid) in cases {
        let parser = parse(&message.name, &body_of(&body));
        assert_eq!(parser.is_ok(), valid, "paywait on {body}: {parser:?}");
        assert_eq!(
            message.accepts(&body),
            valid,
            "the {} schema on {body}",
            message.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_parks_the_documents_invalid_examples_and_takes_its_valid_ones() {
    // Timers of an hour: nothing closes while the test runs.
    let mut app = TestApp::spawn("1h").await;
    let mut invalid = Vec::new();
    for message in inbound() {
        for example in message.invalid_examples() {
            let body = body_of(&example.payload);
            app.publish(&message.name, &body).await;
            invalid.push((body, example.rejection.unwrap()));
        }
    }
    for message in inbound() {
        for example in message.examples() {
            app.publish(&message.name, &body_of(&example.payload)).await;
        }
    }
    // Kinds that share a queue are counted together.
    let mut sent_to: std::collections::BTreeMap<&str, (paywait::domain::Inbox, usize)> =
        Default::default();
    for message in inbound() {
        let inbox = Kind::of(&message.name).unwrap().inbox();
        let sent = message.examples().len() + message.invalid_examples().len();
        sent_to.entry(inbox.name()).or_insert((inbox, 0)).1 += sent;
    }
    for (inbox, sent) in sent_to.into_values() {
        app.expect_handled(inbox, sent).await;
    }
    let dead = app.topology.dead_queue().to_owned();
    let parked = app
        .take_messages(&dead, invalid.len() + 1, Duration::from_millis(500))
        .await;
    let mut parked_bodies: Vec<Vec<u8>> = parked.iter().map(|m| m.body.clone()).collect();
    let mut invalid_bodies: Vec<Vec<u8>> = invalid.iter().map(|(body, _)| body.clone()).collect();
    parked_bodies.sort();
    invalid_bodies.sort();
    assert_eq!(
        parked_bodies.len(),
        invalid_bodies.len(),
        "every invalid example, and only those, parked: {:?}",
        parked
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(parked_bodies, invalid_bodies);
    let reasons: BTreeSet<&str> = invalid.iter().map(|(_, reason)| reason.as_str()).collect();
    for reason in reasons {
        let expected = invalid.iter().filter(|(_, r)| r == reason).count() as f64;
        let series = format!(r#"paywait_messages_dead_total{{reason="{reason}"}}"#);
        app.expect_metric(&series, expected).await;
    }
    // Whatever the valid examples caused downstream matches the document
    // (the testkit checks each event it hands over).
    while app.next_event(Duration::from_secs(1)).await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_event_the_daemon_publishes_matches_the_document() {
    // Reminders a second before each deadline: only the order due within
    // the test (C-5) gets one.
    let mut app = TestApp::spawn_with("1h", true, &[("PAYWAIT_CHECKS__REMIND_BEFORE", "1s")]).await;
    let priced = |order_id: &str| {
        json!({"order_id": order_id, "amount_cents": 12900, "currency": "CNY",
               "placed_at": chrono::Utc::now().to_rfc3339()})
        .to_string()
    };
    let pay = |order_id: &str, payment_id: &str, cents: i64| {
        json!({"order_id": order_id, "payment_id": payment_id, "amount_cents": cents}).to_string()
    };
    let mut seen = BTreeSet::new();

    app.publish("order.placed", priced("C-1").as_bytes()).await;
    app.wait_for_status("C-1", OrderStatus::Pending, SOON).await;
    for (payment, cents, event) in [
        ("PAY-1", 1, "order.payment_mismatch"),
        ("PAY-2", 12900, "order.paid"),
        ("PAY-3", 12900, "order.paid_twice"),
    ] {
        app.publish("payment.succeeded", pay("C-1", payment, cents).as_bytes())
            .await;
        assert_eq!(app.expect_event(SOON).await.name(), event);
        seen.insert(event);
    }

    app.place("C-2").await;
    app.wait_for_status("C-2", OrderStatus::Pending, SOON).await;
    app.publish(
        "order.cancelled",
        br#"{"order_id":"C-2","reason":"customer"}"#,
    )
    .await;
    let closed = app.expect_event(SOON).await;
    assert_eq!(closed.name(), "order.closed");
    assert_eq!(closed.body["reason"], "cancelled");
    app.pay("C-2", "PAY-4").await;
    assert_eq!(
        app.expect_event(SOON).await.name(),
        "order.paid_after_close"
    );
    seen.insert("order.closed");
    seen.insert("order.paid_after_close");

    app.place("C-4").await;
    app.wait_for_status("C-4", OrderStatus::Pending, SOON).await;
    let later = app.order("C-4").await.unwrap().expires_at + chrono::TimeDelta::minutes(5);
    app.publish(
        "order.deadline_changed",
        &paywait_testkit::bodies::deadline_changed("C-4", later),
    )
    .await;
    let changed = app.expect_event(SOON).await;
    assert_eq!(changed.name(), "order.deadline_changed");
    seen.insert("order.deadline_changed");

    let due = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1_800);
    app.publish(
        "order.placed",
        json!({"order_id": "C-5", "expires_at": due.to_rfc3339()})
            .to_string()
            .as_bytes(),
    )
    .await;
    let reminded = app.expect_event(SOON).await;
    assert_eq!(
        (reminded.order_id(), reminded.name()),
        ("C-5", "order.expiring")
    );
    assert_eq!(reminded.body["remind_before"], "1s");
    seen.insert("order.expiring");

    // Paid in SQL by a payment service: announced by the next check,
    // naming no payment.
    app.place("C-3").await;
    app.wait_for_status("C-3", OrderStatus::Pending, SOON).await;
    {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&app.sandbox.database_url())
            .await
            .unwrap();
        diesel::sql_query(
            "UPDATE orders SET status = 'paid', paid_at = now() WHERE order_id = 'C-3' AND status = 'pending'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    app.fire_timer("C-3", 1).await;
    let paid = app.expect_event(SOON).await;
    assert_eq!(paid.name(), "order.paid");
    assert!(paid.body["payment_id"].is_null());

    let every: BTreeSet<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(seen, every);
}
