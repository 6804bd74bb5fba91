//! Payments that race the deadline: every order ends in exactly one state,
//! and the events agree with the rows.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use paywait::domain::OrderStatus;

use paywait_testkit::TestApp;

const ORDERS: usize = 200;

/// When order `i`'s payment leaves, relative to its deadline: most within
/// 20 ms either side of it, every tenth well before or well after, so that
/// both outcomes happen however loaded the machine is.
fn payment_offset(i: usize) -> TimeDelta {
    let millis = match i % 20 {
        0 => -500,
        10 => 1_000,
        _ => (i as i64 * 7) % 41 - 20,
    };
    TimeDelta::milliseconds(millis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_at_the_deadline_leave_every_order_in_exactly_one_state() {
    let mut app = TestApp::spawn("2s").await;
    let ids: Vec<String> = (0..ORDERS).map(|i| format!("R-{i:04}")).collect();
    for id in &ids {
        app.place(id).await;
    }
    let mut plan: Vec<(DateTime<Utc>, usize)> = Vec::with_capacity(ORDERS);
    for (i, id) in ids.iter().enumerate() {
        let order = app
            .wait_for_status(id, OrderStatus::Pending, Duration::from_secs(30))
            .await;
        plan.push((order.expires_at + payment_offset(i), i));
    }
    plan.sort();
    let first_payment_in = plan[0].0 - Utc::now();
    assert!(
        first_payment_in > TimeDelta::zero(),
        "placing the orders took longer than their deadline: the race cannot be run"
    );

    // Each payment leaves at its moment, on its own task, so that a slow
    // confirm does not hold the next one back; note how late it left.
    let payer = std::sync::Arc::new(TestApp::client_for(&app.sandbox).await);
    let mut payments = tokio::task::JoinSet::new();
    for (at, i) in plan {
        let payer = payer.clone();
        let id = ids[i].clone();
        payments.spawn(async move {
            let until = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(until).await;
            let departure = Utc::now() - at;
            let body = serde_json::json!({"order_id": id, "payment_id": format!("PAY-{id}")});
            payer
                .publish_inbound("payment.succeeded", body.to_string().as_bytes())
                .await;
            departure
        });
    }
    let mut departures: Vec<TimeDelta> = payments.join_all().await;
    departures.sort();
    let median = departures[ORDERS / 2];
    let ninetieth = departures[ORDERS * 9 / 10];
    println!("payments left {median} (median), {ninetieth} (90th percentile) after their moment");
    assert!(
        median <= TimeDelta::milliseconds(20) && ninetieth <= TimeDelta::milliseconds(100),
        "payments left too late to race their deadline: median {median}, 90th percentile {ninetieth}"
    );

    // Each order gets one terminal event; a payment that lost to the close
    // also gets order.paid_after_close.
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let settled = ids.iter().all(|id| {
            let names = events.get(id).cloned().unwrap_or_default();
            names.contains(&"order.paid".to_owned())
                || (names.contains(&"order.closed".to_owned())
                    && names.contains(&"order.paid_after_close".to_owned()))
        });
        if settled || std::time::Instant::now() > deadline {
            break;
        }
        if let Some(event) = app.next_event(Duration::from_secs(5)).await {
            events
                .entry(event.order_id().to_owned())
                .or_default()
                .push(event.name().to_owned());
        }
    }
    // Let any duplicate or stray event arrive before judging.
    while let Some(event) = app.next_event(Duration::from_millis(1500)).await {
        events
            .entry(event.order_id().to_owned())
            .or_default()
            .push(event.name().to_owned());
    }

    let (mut paid, mut closed) = (0, 0);
    let mut outcomes: HashMap<(&str, OrderStatus), usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let order = app.order(id).await.unwrap();
        let names = events.get(id).cloned().unwrap_or_default();
        let has = |name: &str| names.iter().any(|n| n == name);
        assert!(
            !(has("order.paid") && has("order.closed")),
            "{id} was announced both paid and closed: {names:?}"
        );
        match order.status {
            OrderStatus::Paid => {
                paid += 1;
                assert!(has("order.paid"), "{id} is paid but got {names:?}");
                assert!(!has("order.paid_after_close"), "{id}: {names:?}");
                assert_eq!(order.payment_id, Some(format!("PAY-{id}")));
            }
            OrderStatus::Closed => {
                closed += 1;
                assert!(has("order.closed"), "{id} is closed but got {names:?}");
                assert!(
                    has("order.paid_after_close"),
                    "{id}'s late payment was dropped: {names:?}"
                );
                assert!(
                    order.closed_at.unwrap() >= order.expires_at,
                    "{id} closed early"
                );
            }
            OrderStatus::Pending => panic!("{id} is still pending"),
        }
        let offset = payment_offset(i);
        let band = if offset.abs() <= TimeDelta::milliseconds(20) {
            "within 20 ms of the deadline"
        } else if offset < TimeDelta::zero() {
            "well before"
        } else {
            "well after"
        };
        *outcomes.entry((band, order.status)).or_default() += 1;
    }
    println!(
        "{ORDERS} orders raced their deadline: {paid} paid, {closed} closed then paid; \
         by when they were paid: {outcomes:?}"
    );
    assert_eq!(paid + closed, ORDERS);
    assert!(
        paid > 0 && closed > 0,
        "no race happened: {paid} paid, {closed} closed"
    );
}
