//! Payments that race the deadline: every order ends in exactly one state,
//! and the events agree with the rows.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use paywait::domain::OrderStatus;

use crate::helpers::TestApp;

const ORDERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_at_the_deadline_leave_every_order_in_exactly_one_state() {
    let mut app = TestApp::spawn("2s").await;
    let ids: Vec<String> = (0..ORDERS).map(|i| format!("R-{i:04}")).collect();
    for id in &ids {
        app.place(id).await;
    }
    for id in &ids {
        app.wait_for_status(id, OrderStatus::Pending, Duration::from_secs(30))
            .await;
    }
    // Publish each payment as close as we can to the moment its deadline passes.
    for id in &ids {
        let order = app.order(id).await.unwrap();
        let until_deadline = (order.expires_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(until_deadline).await;
        app.pay(id, &format!("PAY-{id}")).await;
    }

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
    for id in &ids {
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
    }
    println!("{ORDERS} orders raced their deadline: {paid} paid, {closed} closed then paid");
    assert_eq!(paid + closed, ORDERS);
}
