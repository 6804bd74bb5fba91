//! Arbitrary bytes and headers. The parsers accept exactly what the contract
//! allows (checked against a reference written from it), the check decision
//! never closes early, and the live daemon parks exactly the messages the
//! parsers refuse, body untouched, and processes the rest.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use paywait::{
    amqp::{attempt_header, due_at_header},
    domain::{
        Attempt, CheckDecision, CheckDue, CloseReason, Inbox, Limits, Order, OrderCancelled,
        OrderId, OrderPlaced, OrderStatus, PaymentSucceeded, Schedule, decide, intake::new_order,
    },
};
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};
use serde_json::{Map, Value, json};

use paywait_testkit::TestApp;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[A-Za-z0-9._:-]{0,70}".prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        "[A-Z]{2,4}".prop_map(Value::from),
        Just(json!("2026-11-27T08:00:00Z")),
        Just(json!("2026-11-27T08:00:00.0000001Z")),
        Just(json!("2026-11-27T08:00:00.000001999Z")),
        Just(json!("0000-01-01T00:00:00Z")),
        Just(json!("2026-11-27T16:00:00+08:00")),
        Just(json!("2026-11-27 08:00")),
        Just(json!("a\u{0}b")),
        Just(json!("CN\u{0}")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Every field an inbound message may carry.
const FIELDS: [&str; 8] = [
    "order_id",
    "payment_id",
    "amount_cents",
    "currency",
    "placed_at",
    "expires_at",
    "paid_at",
    "reason",
];

/// A message that is valid, or one field away from it.
fn near_valid_message() -> impl Strategy<Value = Vec<u8>> {
    let valid = (
        "[A-Za-z0-9._:-]{1,64}",
        "[A-Za-z0-9 -]{1,20}",
        0i64..1_000_000,
        "[A-Z]{3}",
        Just("2026-11-27T08:00:00Z"),
    )
        .prop_map(|(order_id, payment_id, cents, currency, time)| {
            json!({
                "order_id": order_id, "payment_id": payment_id, "amount_cents": cents,
                "currency": currency, "placed_at": time, "paid_at": time, "reason": "customer",
                "expires_at": "2026-11-27T08:30:00Z",
            })
        });
    let field = proptest::sample::select(&FIELDS[..]);
    let change = prop_oneof![
        Just(None),
        (field.clone(), json_value()).prop_map(Some),
        field.prop_map(|field| Some((field, Value::Null))),
    ];
    (valid, change, any::<bool>()).prop_map(|(mut message, change, remove)| {
        if let Some((field, value)) = change {
            if remove {
                message.as_object_mut().unwrap().remove(field);
            } else {
                message[field] = value;
            }
        }
        message.to_string().into_bytes()
    })
}

/// Bodies from raw bytes to near-valid messages with fields of any type.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![proptest::sample::select(&FIELDS[..]), Just("extra")];
    let object = prop::collection::vec((field, json_value()), 0..6).prop_map(|fields| {
        let map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Value::Object(map).to_string().into_bytes()
    });
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        2 => object,
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        4 => near_valid_message(),
    ]
}

fn header_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        (1i64..5).prop_map(AMQPValue::LongLongInt),
        (2_147_483_645i64..2_147_483_650).prop_map(AMQPValue::LongLongInt),
        // Times in milliseconds about PostgreSQL's earliest.
        (-210_866_803_200_005i64..-210_866_803_199_995).prop_map(AMQPValue::LongLongInt),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<f64>().prop_map(AMQPValue::Double),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        "\\PC{0,10}".prop_map(|s| AMQPValue::LongString(LongString::from(s))),
        Just(AMQPValue::Void),
        Just(AMQPValue::FieldTable(FieldTable::default())),
    ]
}

fn headers() -> impl Strategy<Value = Option<FieldTable>> {
    let entry = (
        prop_oneof![
            3 => Just("x-attempt"),
            1 => Just("x-due-at"),
            1 => Just("x-death"),
            1 => Just("other"),
        ],
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

/// The contract's rules for inbound messages, written out independently of
/// the parsers: `None` where a message must be refused.
mod reference {
    use super::*;

    fn object(body: &[u8]) -> Option<Map<String, Value>> {
        if body.len() > 64 * 1024 {
            return None;
        }
        match serde_json::from_str(std::str::from_utf8(body).ok()?).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// A field that is present and not null.
    fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        map.get(name).filter(|value| !value.is_null())
    }

    /// `Some(None)` when absent, `None` when present but invalid.
    fn optional<T>(
        map: &Map<String, Value>,
        name: &str,
        valid: impl Fn(&Value) -> Option<T>,
    ) -> Option<Option<T>> {
        match field(map, name) {
            None => Some(None),
            Some(value) => valid(value).map(Some),
        }
    }

    /// A text field: PostgreSQL stores no NUL in text.
    fn text(value: &Value) -> Option<&str> {
        value.as_str().filter(|text| !text.contains('\0'))
    }

    fn order_id(map: &Map<String, Value>) -> Option<String> {
        let id = text(field(map, "order_id")?)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
        ((1..=64).contains(&id.len()) && id.chars().all(allowed)).then(|| id.to_owned())
    }

    fn cents(value: &Value) -> Option<i64> {
        value.as_i64().filter(|cents| *cents >= 0)
    }

    fn currency(value: &Value) -> Option<String> {
        let text = text(value)?;
        (text.len() == 3 && text.chars().all(|c| c.is_ascii_uppercase())).then(|| text.to_owned())
    }

    /// A time as written, to the nanosecond.
    fn precise_time(value: &Value) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text(value)?)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }

    /// A time as PostgreSQL keeps it: to the microsecond, rounded down.
    fn time(value: &Value) -> Option<DateTime<Utc>> {
        let time = precise_time(value)?;
        let nanos = time.timestamp_subsec_nanos();
        Some(time - TimeDelta::nanoseconds(i64::from(nanos % 1_000)))
    }

    pub type Placed = (
        String,
        Option<i64>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    pub type Payment = (
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<DateTime<Utc>>,
    );
    pub type Cancelled = (String, Option<String>);

    pub fn order_placed(body: &[u8]) -> Option<Placed> {
        let map = object(body)?;
        let placed = (
            order_id(&map)?,
            optional(&map, "amount_cents", cents)?,
            optional(&map, "currency", currency)?,
            optional(&map, "placed_at", time)?,
            optional(&map, "expires_at", time)?,
        );
        // A window of less than a microsecond is none once stored.
        if let (Some(Some(placed_at)), Some(Some(expires_at))) = (
            optional(&map, "placed_at", precise_time),
            optional(&map, "expires_at", precise_time),
        ) {
            let window = expires_at - placed_at;
            if window > TimeDelta::zero() && window < TimeDelta::microseconds(1) {
                return None;
            }
        }
        Some(placed)
    }

    pub fn payment_succeeded(body: &[u8]) -> Option<Payment> {
        let map = object(body)?;
        let order_id = order_id(&map)?;
        let payment_id = text(field(&map, "payment_id")?)?;
        let length = payment_id.chars().count();
        if !(1..=128).contains(&length) || payment_id.chars().any(char::is_control) {
            return None;
        }
        Some((
            order_id,
            payment_id.to_owned(),
            optional(&map, "amount_cents", cents)?,
            optional(&map, "currency", currency)?,
            optional(&map, "paid_at", time)?,
        ))
    }

    pub fn order_cancelled(body: &[u8]) -> Option<Cancelled> {
        let map = object(body)?;
        let order_id = order_id(&map)?;
        let reason = optional(&map, "reason", |value| {
            let text = text(value)?;
            (text.chars().count() <= 256).then(|| text.to_owned())
        })?;
        Some((order_id, reason))
    }

    /// An integer header of any AMQP integer type; `Some(None)` when absent.
    fn integer(headers: Option<&FieldTable>, name: &str) -> Option<Option<i128>> {
        let Some(value) = headers.and_then(|table| table.inner().get(name)) else {
            return Some(None);
        };
        let number: i128 = match value {
            AMQPValue::ShortShortInt(n) => (*n).into(),
            AMQPValue::ShortShortUInt(n) => (*n).into(),
            AMQPValue::ShortInt(n) => (*n).into(),
            AMQPValue::ShortUInt(n) => (*n).into(),
            AMQPValue::LongInt(n) => (*n).into(),
            AMQPValue::LongUInt(n) => (*n).into(),
            AMQPValue::LongLongInt(n) => (*n).into(),
            _ => return None,
        };
        Some(Some(number))
    }

    /// The order, the check's number if it is usable, and when it is due.
    pub type Due = (String, Option<u32>, Option<DateTime<Utc>>);

    pub fn check_due(body: &[u8], headers: Option<&FieldTable>) -> Option<Due> {
        let order_id = order_id(&object(body)?)?;
        let attempt = integer(headers, "x-attempt")
            .flatten()
            .filter(|attempt| (1..=i128::from(i32::MAX)).contains(attempt))
            .map(|attempt| attempt as u32);
        let due_at = match integer(headers, "x-due-at")? {
            None => None,
            Some(millis) => {
                let time = DateTime::from_timestamp_millis(i64::try_from(millis).ok()?)?;
                // PostgreSQL's earliest: 4714-11-24 BC.
                let earliest = DateTime::from_timestamp(-210_866_803_200, 0)?;
                Some(time).filter(|time| *time >= earliest)?.into()
            }
        };
        Some((order_id, attempt, due_at))
    }
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
        close_reason: (status == OrderStatus::Closed).then_some(CloseReason::Expired),
        attempts,
        gateway_asks: 0,
        payment_id: None,
        event_published_at: announced.then_some(placed_at),
        next_check_at: None,
        adopted_payment_id: None,
        deadline_changed_at: None,
    }
}

proptest! {
    #[test]
    fn parsers_accept_exactly_what_the_contract_allows(body in body(), headers in headers()) {
        let placed = OrderPlaced::parse(&body).ok().map(|placed| {
            (
                placed.order_id.as_str().to_owned(),
                placed.amount_cents,
                placed.currency.map(|c| c.as_str().to_owned()),
                placed.placed_at,
                placed.expires_at,
            )
        });
        prop_assert_eq!(placed, reference::order_placed(&body));

        let payment = PaymentSucceeded::parse(&body).ok().map(|payment| {
            (
                payment.order_id.as_str().to_owned(),
                payment.payment_id.as_str().to_owned(),
                payment.amount_cents,
                payment.currency.map(|c| c.as_str().to_owned()),
                payment.paid_at,
            )
        });
        prop_assert_eq!(payment, reference::payment_succeeded(&body));

        let cancelled = OrderCancelled::parse(&body)
            .ok()
            .map(|cancelled| (cancelled.order_id.as_str().to_owned(), cancelled.reason));
        prop_assert_eq!(cancelled, reference::order_cancelled(&body));

        let due = CheckDue::parse(
            &body,
            &attempt_header(headers.as_ref()),
            &due_at_header(headers.as_ref()),
        )
        .ok()
        .map(|due| {
            (
                due.order_id.as_str().to_owned(),
                due.attempt.ok().map(Attempt::get),
                due.due_at,
            )
        });
        prop_assert_eq!(due, reference::check_due(&body, headers.as_ref()));
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
        let decision = decide(Some(&order), Attempt::new(attempt).unwrap(), now, &schedule);
        match decision {
            CheckDecision::Close => {
                prop_assert_eq!(status, OrderStatus::Pending);
                prop_assert!(now >= order.expires_at);
            }
            CheckDecision::Reschedule { next, due_at } => {
                prop_assert_eq!(status, OrderStatus::Pending);
                prop_assert!(now < order.expires_at);
                prop_assert_eq!(next.get(), attempt + 1);
                prop_assert!(due_at > now && due_at <= order.expires_at);
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
            CheckDecision::UnknownOrder => prop_assert!(false, "the order was given"),
        }
    }
}

/// Publishes `count` messages drawn from `strategy` to the queues named by
/// their index; returns what went where.
async fn publish_drawn(
    app: &TestApp,
    runner: &mut TestRunner,
    strategy: impl Strategy<Value = (Vec<u8>, Option<FieldTable>, usize)>,
    queues: &[String],
    count: usize,
) -> Vec<(usize, Vec<u8>, Option<FieldTable>)> {
    let mut sent = Vec::with_capacity(count);
    for _ in 0..count {
        let (body, headers, queue) = strategy.new_tree(runner).unwrap().current();
        let mut properties = BasicProperties::default();
        if let Some(headers) = headers.clone() {
            properties = properties.with_headers(headers);
        }
        app.publish_to("", &queues[queue], &body, properties).await;
        sent.push((queue, body, headers));
    }
    sent
}

/// The inboxes fed by the inbound exchange, in the order the draws index.
const INBOUND: [Inbox; 3] = [Inbox::Placed, Inbox::Payments, Inbox::Cancellations];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_parks_exactly_the_messages_the_parsers_refuse() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    // Timers of an hour: no check arrives but those published here.
    let mut app = TestApp::spawn("1h").await;
    let mut runner = TestRunner::deterministic();
    let queue = |inbox: Inbox| app.topology.queue(inbox).to_owned();
    let inbound_queues: Vec<String> = INBOUND.iter().map(|inbox| queue(*inbox)).collect();
    let checks = queue(Inbox::Checks);

    // Orders, payments and cancellations first, so that the checks meet a
    // known set of orders.
    let inbound = publish_drawn(
        &app,
        &mut runner,
        (body(), headers(), 0usize..INBOUND.len()),
        &inbound_queues,
        240,
    )
    .await;
    let sent = |index: usize| inbound.iter().filter(|(q, _, _)| *q == index).count();
    for (index, inbox) in INBOUND.iter().enumerate() {
        app.expect_handled(*inbox, sent(index)).await;
    }
    // Each order as the inbound messages left it, before any check.
    let statuses_before: HashMap<String, OrderStatus> = app
        .sandbox
        .count_by("SELECT order_id || ' ' || status AS key, 1::bigint AS n FROM orders")
        .await
        .into_iter()
        .filter_map(|(key, _)| {
            let (id, status) = key.split_once(' ')?;
            Some((id.to_owned(), OrderStatus::parse(status)?))
        })
        .collect();

    let known: Vec<String> = inbound
        .iter()
        .filter(|(queue, _, _)| INBOUND[*queue] == Inbox::Placed)
        .filter_map(|(_, body, _)| OrderPlaced::parse(body).ok())
        .map(|placed| placed.order_id.as_str().to_owned())
        .collect();
    assert!(known.len() >= 10, "too few valid orders: {}", known.len());
    let check_body = prop_oneof![
        body(),
        proptest::sample::select(known)
            .prop_map(|id| json!({"order_id": id}).to_string().into_bytes()),
    ];
    let sent_at = Utc::now();
    let attempt = (1i64..5).prop_map(|attempt| {
        let mut table = FieldTable::default();
        table.insert("x-attempt".into(), AMQPValue::LongLongInt(attempt));
        Some(table)
    });
    let timers = publish_drawn(
        &app,
        &mut runner,
        (check_body, prop_oneof![headers(), attempt], Just(0usize)),
        std::slice::from_ref(&checks),
        80,
    )
    .await;
    // Orders placed long ago are checked at once, beside the timers sent
    // here: wait for these, and for the check queue to be empty.
    app.expect_metric_at_least(&app.handled_series(Inbox::Checks), timers.len() as f64)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.queue_depth(&checks).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{checks} never emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A good order afterwards still gets through.
    app.place("FUZZ-GOOD").await;
    app.pay("FUZZ-GOOD", "PAY-FUZZ-GOOD").await;
    app.wait_for_status("FUZZ-GOOD", OrderStatus::Paid, Duration::from_secs(20))
        .await;
    app.stop().await.expect("a clean stop");
    for queue in inbound_queues.iter().chain([&checks]) {
        assert_eq!(app.queue_depth(queue).await, 0, "{queue} kept messages");
    }

    // The oracle: the parsers and the intake's own refusals, and for a
    // payment id used for two orders, the order the database recorded it
    // for; for a check, the order as the database held it.
    let mut conn = AsyncPgConnection::establish(&app.sandbox.database_url())
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = diesel::sql_types::Text)]
        payment_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        order_id: String,
    }
    let recorded: HashMap<String, String> =
        diesel::sql_query("SELECT payment_id, order_id FROM payments")
            .load::<Recorded>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.payment_id, row.order_id))
            .collect();
    let schedule = Schedule::parse(&["1h"]).unwrap();
    let limits = Limits {
        max_deadline: Duration::from_secs(30 * 24 * 3600),
        max_clock_skew: Duration::from_secs(60),
    };
    // (queue, body) → the reason it must be parked for; and those that may
    // be parked or not, as the order of concurrent checks has it.
    let mut expected: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut either: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut accepted_orders = std::collections::HashSet::new();
    let mut refused_orders = std::collections::HashSet::new();
    for (index, body, _) in &inbound {
        let refusal = match INBOUND[*index] {
            Inbox::Placed => match OrderPlaced::parse(body)
                .and_then(|placed| new_order(placed, Utc::now(), &schedule, &limits))
            {
                Err(rejection) => {
                    if let Some(id) = serde_json::from_slice::<Value>(body)
                        .ok()
                        .and_then(|body| body["order_id"].as_str().map(str::to_owned))
                    {
                        refused_orders.insert(id);
                    }
                    Some(rejection.reason())
                }
                Ok((order, _)) => {
                    accepted_orders.insert(order.order_id.as_str().to_owned());
                    None
                }
            },
            Inbox::Payments => match PaymentSucceeded::parse(body) {
                Err(rejection) => Some(rejection.reason()),
                Ok(payment) => (recorded[payment.payment_id.as_str()] != payment.order_id.as_str())
                    .then_some("invalid_field"),
            },
            _ => OrderCancelled::parse(body).err().map(|r| r.reason()),
        };
        if let Some(reason) = refusal {
            expected.push((&inbound_queues[*index], body.clone(), reason));
        }
    }
    for (_, body, headers) in &timers {
        let due = match CheckDue::parse(
            body,
            &attempt_header(headers.as_ref()),
            &due_at_header(headers.as_ref()),
        ) {
            Err(rejection) => {
                expected.push((&checks, body.clone(), rejection.reason()));
                continue;
            }
            Ok(due) => due,
        };
        let before = statuses_before.get(due.order_id.as_str()).copied();
        let after = app.order(due.order_id.as_str()).await.map(|o| o.status);
        match due.attempt {
            // A check of a pending order is never refused for its number;
            // an order closed while the checks ran may have been either.
            Err(rejection) => match (before, after) {
                (Some(OrderStatus::Pending), Some(OrderStatus::Pending)) => {}
                (Some(OrderStatus::Pending), _) => {
                    either.push((&checks, body.clone(), rejection.reason()));
                }
                _ => expected.push((&checks, body.clone(), rejection.reason())),
            },
            // A timer not due yet goes on to its next hop, unread; one that
            // is due meets the database.
            Ok(_) => match due.due_at {
                Some(due_at) if due_at > Utc::now() + TimeDelta::hours(1) => {}
                Some(due_at) if due_at > sent_at => {
                    panic!("a timer due {due_at}, too near the test's time to judge")
                }
                _ if before.is_none() => expected.push((&checks, body.clone(), "unknown_order")),
                _ => {}
            },
        }
    }

    let dead = app.topology.dead_queue().to_owned();
    let parked = app
        .take_messages(&dead, 1_000, Duration::from_millis(500))
        .await;
    let reasons: HashMap<String, String> = app
        .sandbox
        .count_by("SELECT parked_id || ' ' || reason AS key, 1::bigint AS n FROM parked_messages")
        .await
        .into_iter()
        .filter_map(|(key, _)| {
            let (id, reason) = key.split_once(' ')?;
            Some((id.to_owned(), reason.to_owned()))
        })
        .collect();
    let mut actual: HashMap<&str, Vec<(Vec<u8>, String)>> = HashMap::new();
    for message in &parked {
        assert!(message.header("x-paywait-error").is_some());
        let source = message.header("x-paywait-queue").expect("the source queue");
        let name = inbound_queues
            .iter()
            .chain([&checks])
            .find(|queue| **queue == source)
            .unwrap_or_else(|| panic!("parked from an unknown queue {source}"));
        let parked_id = message.header("x-paywait-parked-id").expect("a parked id");
        let reason = reasons
            .get(&parked_id)
            .unwrap_or_else(|| panic!("no record of parked message {parked_id}"));
        actual
            .entry(name)
            .or_default()
            .push((message.body.clone(), reason.clone()));
    }
    let sent_to = |queue: &str| match inbound_queues.iter().position(|q| q == queue) {
        Some(index) => sent(index),
        None => timers.len(),
    };
    for queue in inbound_queues.iter().chain([&checks]) {
        let of_queue = |list: &[(&str, Vec<u8>, &str)]| -> Vec<(Vec<u8>, String)> {
            let mut picked: Vec<(Vec<u8>, String)> = list
                .iter()
                .filter(|(q, _, _)| q == queue)
                .map(|(_, body, reason)| (body.clone(), (*reason).to_owned()))
                .collect();
            picked.sort();
            picked
        };
        let want = of_queue(&expected);
        let maybe = of_queue(&either);
        let mut got = actual.remove(queue.as_str()).unwrap_or_default();
        got.sort();
        let sent = sent_to(queue);
        println!(
            "{queue}: {sent} sent, {} parked ({} may or may not have been)",
            got.len(),
            maybe.len()
        );
        assert!(
            !want.is_empty() && want.len() < sent,
            "{queue}: the draw should hold good and bad messages ({} of {sent} bad)",
            want.len()
        );
        // Every message that must be parked is, with its reason; any other
        // parked one is among those that may be.
        let mut extra = got.clone();
        for item in &want {
            let position = extra.iter().position(|got| got == item).unwrap_or_else(|| {
                panic!(
                    "{queue}: not parked as {:?}: {:?}",
                    item.1,
                    String::from_utf8_lossy(&item.0)
                )
            });
            extra.remove(position);
        }
        for item in &extra {
            assert!(
                maybe.contains(item),
                "{queue}: parked as {:?} but should not be: {:?}",
                item.1,
                String::from_utf8_lossy(&item.0)
            );
        }
    }
    // A refused order left no row behind, and no event.
    let refused_only: std::collections::HashSet<&String> =
        refused_orders.difference(&accepted_orders).collect();
    for order_id in &refused_only {
        assert!(
            app.order(order_id).await.is_none(),
            "refused order {order_id} was stored"
        );
    }
    while let Some(event) = app.next_event(Duration::from_millis(200)).await {
        assert!(
            !refused_only.contains(&event.order_id().to_owned()),
            "an event for refused order {}: {event:?}",
            event.order_id()
        );
    }
}
