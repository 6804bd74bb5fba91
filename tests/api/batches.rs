//! The batched statements on the real database: a batch that names an order
//! twice does what its first request says.

use chrono::{TimeDelta, Utc};
use paywait::{
    db::Database,
    domain::{CloseReason, NewOrder, OrderId},
};
use paywait_testkit::Sandbox;

fn new_order(order_id: &str) -> NewOrder {
    let now = Utc::now();
    NewOrder {
        order_id: OrderId::parse(order_id).unwrap(),
        amount_cents: None,
        currency: None,
        placed_at: now,
        expires_at: now + TimeDelta::minutes(30),
        next_check_at: now + TimeDelta::minutes(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_closes_an_order_twice_closes_it_as_its_first_request_says() {
    let sandbox = Sandbox::create().await;
    let db = Database::new(&sandbox.settings_for("1m").database).unwrap();
    for n in 0..20 {
        let order_id = format!("C-{n:02}");
        let id = OrderId::parse(&order_id).unwrap();
        db.place(new_order(&order_id)).await.unwrap();
        // A cancellation and an expiry of one order, sent together: they
        // share a batch, or the first runs first.
        let (first, reason_first) = if n % 2 == 0 {
            (CloseReason::Cancelled, CloseReason::Expired)
        } else {
            (CloseReason::Expired, CloseReason::Cancelled)
        };
        let now = Utc::now();
        let (won, lost) = tokio::join!(
            db.close(&id, 0, now, first),
            db.close(&id, 1, now, reason_first),
        );
        let won = won.unwrap().expect("the first request closes the order");
        assert_eq!(won.close_reason, Some(first), "{order_id}");
        assert!(lost.unwrap().is_none(), "{order_id} closed twice");
        assert_eq!(
            db.find(&id).await.unwrap().unwrap().close_reason,
            Some(first),
            "{order_id}"
        );
    }
}
