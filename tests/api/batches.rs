//! The batched statements on the real database: a batch that names an order
//! twice does what its first request says, and two daemons storing the same
//! orders in opposite orders never deadlock.

use chrono::{TimeDelta, Utc};
use paywait::{
    db::Database,
    domain::{Attempt, CloseReason, NewOrder, OrderId},
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
        // At the deadline: an expiry closes only an order due by then.
        let now = Utc::now() + TimeDelta::minutes(31);
        let (won, lost) = tokio::join!(
            db.close(&id, None, now, first),
            db.close(&id, Some(Attempt::FIRST), now, reason_first),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_closes_its_own_order_alone() {
    let sandbox = Sandbox::create().await;
    let db = Database::new(&sandbox.settings_for("1m").database).unwrap();
    for order_id in ["O-1", "O-2"] {
        db.place(new_order(order_id)).await.unwrap();
    }
    // Past both deadlines, for each reason.
    let after_both = Utc::now() + TimeDelta::hours(1);
    let one = OrderId::parse("O-1").unwrap();
    let other = OrderId::parse("O-2").unwrap();
    for reason in [CloseReason::Expired, CloseReason::Cancelled] {
        let closed = db.close(&one, None, after_both, reason).await.unwrap();
        assert!(closed.is_none() || reason == CloseReason::Expired);
        let other_order = db.find(&other).await.unwrap().unwrap();
        assert_eq!(
            other_order.status,
            paywait::domain::OrderStatus::Pending,
            "closing {one} for {reason:?} closed {other}"
        );
    }
    // A deadline not reached yet is closed only by a cancellation.
    let early = Utc::now();
    assert!(
        db.close(&other, None, early, CloseReason::Expired)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.close(&other, None, early, CloseReason::Cancelled)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_storing_the_same_orders_in_opposite_orders_never_deadlock() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let sandbox = Sandbox::create().await;
    let settings = sandbox.settings_for("1m");
    // Two daemons: two pools, two batchers.
    let (one, other) = (
        Database::new(&settings.database).unwrap(),
        Database::new(&settings.database).unwrap(),
    );
    let ids: Vec<String> = (0..300).map(|n| format!("D-{n:03}")).collect();
    // An order in the middle, stored by a transaction that has not ended:
    // each daemon's batch stops there, having written all it came to
    // before, so that both are in flight together when it ends.
    let mut held = AsyncPgConnection::establish(&sandbox.database_url())
        .await
        .unwrap();
    for statement in [
        "BEGIN",
        "INSERT INTO orders (order_id, placed_at, expires_at) VALUES ('D-150', now(), now() + interval '1 hour')",
    ] {
        diesel::sql_query(statement)
            .execute(&mut held)
            .await
            .unwrap();
    }
    let forward = {
        let (one, ids) = (one.clone(), ids.clone());
        tokio::spawn(async move {
            futures_util::future::join_all(ids.iter().map(|id| one.place(new_order(id)))).await
        })
    };
    let backward = {
        let (other, ids) = (other.clone(), ids.clone());
        tokio::spawn(async move {
            futures_util::future::join_all(ids.iter().rev().map(|id| other.place(new_order(id))))
                .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting = sandbox
            .count_by(
                "SELECT 'waiting' AS key, count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
        if waiting[0].1 >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two batches never waited together"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    diesel::sql_query("ROLLBACK")
        .execute(&mut held)
        .await
        .unwrap();
    for placed in forward
        .await
        .unwrap()
        .iter()
        .chain(&backward.await.unwrap())
    {
        assert!(placed.is_ok(), "{:?}", placed.as_ref().err());
    }
    for id in &ids {
        assert!(
            one.find(&OrderId::parse(id).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
    // A deadlock would have been broken by the server, and its batch run
    // again request by request: the server counts it.
    let deadlocks = sandbox
        .count_by(
            "SELECT 'deadlocks' AS key, deadlocks AS n FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .await;
    assert_eq!(deadlocks[0].1, 0, "the two daemons' batches deadlocked");
}
