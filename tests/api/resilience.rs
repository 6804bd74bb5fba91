//! Lost timers, clean stops under load, and two daemons sharing the work.

use std::{collections::HashMap, time::Duration};

use paywait::domain::{Inbox, OrderStatus};

use paywait_testkit::{TestApp, metric_value};

const SWEEPER_FAST: &[(&str, &str)] = &[
    ("PAYWAIT_SWEEPER__INTERVAL", "200ms"),
    ("PAYWAIT_SWEEPER__GRACE", "300ms"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_rearms_timers_purged_behind_paywaits_back() {
    let mut app = TestApp::spawn_with("3s", true, SWEEPER_FAST).await;
    let ids: Vec<String> = (0..20).map(|i| format!("P-{i}")).collect();
    for id in &ids {
        app.place(id).await;
    }
    // All acknowledged: every timer is confirmed in the TTL queue.
    app.expect_handled(Inbox::Placed, ids.len()).await;
    let purged = app.purge_timers().await;
    // On a slow machine a few timers may have fired before the purge; those
    // orders close as usual.
    assert!(purged > 0, "no timer was waiting in the TTL queue");

    let mut closed = Vec::new();
    while closed.len() < ids.len() {
        let event = app.expect_event(Duration::from_secs(15)).await;
        assert_eq!(event.name(), "order.closed");
        closed.push(event.order_id().to_owned());
    }
    closed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(closed, expected);
    let rearmed = app.metric("paywait_sweeper_rearmed_total").await;
    assert!(
        rearmed >= f64::from(purged),
        "purged {purged}, re-armed {rearmed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_timers_waiting_in_the_broker_are_not_taken_for_lost() {
    let mut app = TestApp::spawn_with(
        "1s",
        true,
        &[
            ("PAYWAIT_SWEEPER__INTERVAL", "200ms"),
            ("PAYWAIT_SWEEPER__GRACE", "2s"),
        ],
    )
    .await;
    let ids: Vec<String> = (0..20).map(|i| format!("W-{i:02}")).collect();
    for id in &ids {
        app.place(id).await;
    }
    app.expect_handled(Inbox::Placed, ids.len()).await;
    // Away longer than a timer's wait and the grace together: the timers
    // come due and wait in the check queue, their orders overdue.
    app.stop().await.expect("a clean stop");
    tokio::time::sleep(Duration::from_secs(4)).await;
    app.restart().await;
    for id in &ids {
        app.wait_for_status(id, OrderStatus::Closed, Duration::from_secs(15))
            .await;
    }
    // A grace and a few sweeps later, still nothing was re-armed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.expect_metric("paywait_sweeper_rearmed_total", 0.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_announces_an_order_paid_in_sql_whose_timer_was_lost() {
    let mut app = TestApp::spawn_with("3s", true, SWEEPER_FAST).await;
    app.place("P-SQL").await;
    // Acknowledged: its timer is confirmed in the TTL queue.
    app.expect_handled(Inbox::Placed, 1).await;
    let purged = app.purge_timers().await;
    assert_eq!(purged, 1, "the order's timer was waiting");
    {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&app.sandbox.database_url())
            .await
            .unwrap();
        diesel::sql_query(
            "UPDATE orders SET status = 'paid', paid_at = now() WHERE order_id = 'P-SQL' AND status = 'pending'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let event = app.expect_event(Duration::from_secs(15)).await;
    assert_eq!(event.name(), "order.paid");
    assert_eq!(event.order_id(), "P-SQL");
    app.expect_metric("paywait_sweeper_rearmed_total", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_announces_a_payments_event_its_announcer_left_owed() {
    let mut app = TestApp::spawn_with("30s", true, SWEEPER_FAST).await;
    app.place("P-OWE").await;
    app.expect_handled(Inbox::Placed, 1).await;
    // A mismatch decided, whose event was never confirmed: its announcer
    // failed, and its message did not come back.
    app.sandbox
        .execute(&[
            "INSERT INTO payments (payment_id, order_id, amount_cents, received_at, outcome, decided_attempts) \
             VALUES ('PAY-LOST', 'P-OWE', 1, now() - interval '1 minute', 'mismatch', 0)",
        ])
        .await;
    let event = app.expect_event(Duration::from_secs(15)).await;
    assert_eq!(event.name(), "order.payment_mismatch");
    assert_eq!(
        event.properties.message_id().as_ref().unwrap().as_str(),
        "P-OWE/order.payment_mismatch/PAY-LOST"
    );
    assert_eq!(event.body["status"], "pending");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app
        .db
        .payment(&paywait::domain::PaymentId::parse("PAY-LOST").unwrap())
        .await
        .unwrap()
        .unwrap()
        .event_published_at
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never marked announced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Announced once: nothing more for it.
    assert!(app.next_event(Duration::from_secs(1)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_under_load_loses_nothing() {
    let mut app = TestApp::spawn("300ms").await;
    let ids: Vec<String> = (0..300).map(|i| format!("L-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        app.place(id).await;
        if i % 2 == 0 {
            app.pay(id, &format!("PAY-{id}")).await;
        }
        if i == 150 {
            // Stop in the middle of the stream, as SIGTERM would.
            app.stop().await.expect("a clean stop");
        }
    }
    // A new daemon on the same broker and database picks up where it left off.
    app.restart().await;
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Until every order has an event and none came for a while: a payment
    // after the close is announced after the close.
    while std::time::Instant::now() < deadline {
        match app.next_event(Duration::from_secs(3)).await {
            Some(event) => events
                .entry(event.order_id().to_owned())
                .or_default()
                .push(event.name().to_owned()),
            None if events.len() >= ids.len() => break,
            None => {}
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let order = app
            .order(id)
            .await
            .unwrap_or_else(|| panic!("{id} was lost"));
        let names = events.get(id).cloned().unwrap_or_default();
        if order.status == OrderStatus::Paid {
            assert!(names.contains(&"order.paid".to_owned()), "{id}: {names:?}");
        } else {
            assert_eq!(order.status, OrderStatus::Closed, "{id} never settled");
            assert!(
                names.contains(&"order.closed".to_owned()),
                "{id}: {names:?}"
            );
            assert!(
                i % 2 == 1 || names.contains(&"order.paid_after_close".to_owned()),
                "{id}: {names:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_work_without_double_transitions() {
    let mut app = TestApp::spawn("400ms").await;
    let second = app.spawn_sibling().await;
    let ids: Vec<String> = (0..200).map(|i| format!("T-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        app.place(id).await;
        if i % 2 == 0 {
            app.pay(id, &format!("PAY-{id}")).await;
        }
    }
    let mut terminal: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while terminal.values().filter(|names| !names.is_empty()).count() < ids.len()
        && std::time::Instant::now() < deadline
    {
        if let Some(event) = app.next_event(Duration::from_secs(5)).await {
            terminal
                .entry(event.order_id().to_owned())
                .or_default()
                .push(event.name().to_owned());
        }
    }
    while let Some(event) = app.next_event(Duration::from_millis(1500)).await {
        terminal
            .entry(event.order_id().to_owned())
            .or_default()
            .push(event.name().to_owned());
    }
    for id in &ids {
        let names = terminal.get(id).cloned().unwrap_or_default();
        let paid = names.iter().any(|n| n == "order.paid");
        let closed = names.iter().any(|n| n == "order.closed");
        assert!(paid ^ closed, "{id} got {names:?}");
        let order = app.order(id).await.unwrap();
        assert_eq!(
            order.status == OrderStatus::Paid,
            paid,
            "{id}: row and events disagree"
        );
    }
    // Both daemons did part of the work.
    let (_, first_metrics) = app.get("/metrics").await;
    let (_, second_metrics) = paywait_testkit::http_get(&format!("http://{second}/metrics"));
    let placed = |text: &str| metric_value(text, "paywait_orders_placed_total");
    assert_eq!(
        placed(&first_metrics) + placed(&second_metrics),
        ids.len() as f64
    );
    assert!(placed(&first_metrics) > 0.0 && placed(&second_metrics) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_and_the_status_read_an_index_of_unsettled_orders_not_the_table() {
    use diesel::{
        QueryableByName,
        sql_types::{BigInt, Text, Timestamptz},
    };
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }

    let sandbox = paywait_testkit::Sandbox::create().await;
    let mut conn = AsyncPgConnection::establish(&sandbox.database_url())
        .await
        .unwrap();
    for statement in [
        // Many settled orders, some pending ones not yet due, a few overdue.
        "INSERT INTO orders (order_id, status, placed_at, expires_at, closed_at, close_reason, \
                             event_published_at) \
         SELECT 'S-' || g, 'closed', now() - interval '2 days', now() - interval '1 day', \
                now() - interval '1 day', 'expired', now() - interval '1 day' \
         FROM generate_series(1, 50000) g",
        "INSERT INTO orders (order_id, placed_at, expires_at, next_check_at) \
         SELECT 'P-' || g, now(), now() + interval '30 minutes', now() + interval '1 minute' \
         FROM generate_series(1, 2000) g",
        "INSERT INTO orders (order_id, placed_at, expires_at, next_check_at) \
         SELECT 'O-' || g, now() - interval '10 minutes', now() + interval '20 minutes', now() - interval '5 minutes' \
         FROM generate_series(1, 20) g",
        // Many payments that settled their orders, a few owing an event.
        "INSERT INTO payments (payment_id, order_id, received_at, outcome, event_published_at) \
         SELECT 'PAY-' || g, 'S-' || g, now() - interval '2 days', \
                CASE WHEN g % 10 = 0 THEN 'twice' ELSE 'settled' END, \
                CASE WHEN g % 10 = 0 THEN now() END \
         FROM generate_series(1, 50000) g",
        "INSERT INTO payments (payment_id, order_id, received_at, outcome) \
         SELECT 'OWED-' || g, 'S-' || g, now() - interval '5 minutes', 'after_close' \
         FROM generate_series(1, 10) g",
        "ANALYZE orders",
        "ANALYZE payments",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // The sweeper's claims, and the status figures (in-flight orders
    // through partial indexes, settled ones from the counts the triggers
    // keep); each statement's times first, then its row limit.
    let now = chrono::Utc::now();
    let minute_ago = now - chrono::TimeDelta::minutes(1);
    for (query, index, times) in [
        (
            paywait::db::CLAIM_OVERDUE,
            "orders_unsettled_next_check_at",
            vec![now, minute_ago],
        ),
        (
            paywait::db::DUE,
            "orders_pending_expires_at",
            vec![now, now + chrono::TimeDelta::hours(1)],
        ),
        (
            paywait::db::OVERDUE,
            "orders_unsettled_next_check_at",
            vec![minute_ago],
        ),
        (
            paywait::db::OWED_LATE,
            "orders_unsettled_next_check_at",
            vec![minute_ago],
        ),
        (
            paywait::db::OWED_PAYMENT_EVENTS,
            "payments_event_owed",
            vec![minute_ago],
        ),
    ] {
        let mut explain = diesel::sql_query(format!("EXPLAIN {query}")).into_boxed();
        for time in times {
            explain = explain.bind::<Timestamptz, _>(time);
        }
        let plan: Vec<PlanLine> = explain
            .bind::<BigInt, _>(500)
            .load(&mut conn)
            .await
            .unwrap();
        let text = plan
            .into_iter()
            .map(|p| p.line)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(index), "{text}");
        assert!(!text.contains("Seq Scan"), "{text}");
    }
    let figures = paywait::db::Database::new(&sandbox.settings_for("1m").database)
        .unwrap()
        .order_figures(now)
        .await
        .unwrap();
    assert_eq!(figures.pending, 2020);
    assert_eq!(figures.closed, 50_000);
    assert_eq!(figures.closed_by_reason["expired"], 50_000);
    assert_eq!(figures.overdue, 20);
    assert_eq!(figures.due_next_hour, 2020);
    assert_eq!(figures.due_next_minute, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_moves_to_another_node_when_its_node_goes_away() {
    let other = tokio::task::spawn_blocking(paywait_testkit::TlsBroker::start)
        .await
        .unwrap();
    let sandbox = paywait_testkit::Sandbox::create().await;
    let nodes = format!(
        "{},amqp://guest:guest@127.0.0.1:{}/%2f",
        sandbox.amqp_url(),
        other.amqp_port
    );
    let mut app = TestApp::spawn_in(
        sandbox,
        "1s",
        true,
        &[("PAYWAIT_AMQP__URLS", nodes.as_str())],
    )
    .await;
    app.place("N-1").await;
    assert_eq!(
        app.expect_event(Duration::from_secs(15)).await.order_id(),
        "N-1"
    );

    // Its connection to the first node is lost: it opens one to the next.
    let vhost = app.sandbox.vhost.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::task::spawn_blocking({
        let vhost = vhost.clone();
        move || paywait_testkit::close_connections_named(&vhost, "paywait")
    })
    .await
    .unwrap()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no connection of paywait's to close"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while other.connections() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "paywait did not move to the other node"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // That node goes away in turn: back to the first, where orders wait.
    other.stop();
    app.place("N-2").await;
    let event = app.expect_event(Duration::from_secs(30)).await;
    assert_eq!((event.order_id(), event.name()), ("N-2", "order.closed"));
    app.wait_until_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_link_gone_silent_is_found_within_twice_the_heartbeat_and_replaced() {
    use paywait_testkit::{BROKER, FaultProxy, Sandbox};

    let sandbox = Sandbox::create().await;
    let proxy = FaultProxy::start(BROKER.parse().unwrap()).await;
    let through_proxy = format!("amqp://guest:guest@{}/{}", proxy.address(), sandbox.vhost);
    let heartbeat = Duration::from_secs(3);
    let mut app = TestApp::spawn_in(
        sandbox,
        "30s",
        true,
        &[
            ("PAYWAIT_AMQP__URL", &through_proxy),
            ("PAYWAIT_AMQP__HEARTBEAT", "3s"),
        ],
    )
    .await;
    app.place("H-1").await;
    app.pay("H-1", "PAY-H-1").await;
    assert_eq!(
        app.expect_event(Duration::from_secs(10)).await.order_id(),
        "H-1"
    );

    // Half-open: no FIN, no RST, no byte, on the link paywait has.
    proxy.silence_open_connections();
    let silenced = std::time::Instant::now();
    app.wait_for_readiness(503, heartbeat * 2 + Duration::from_secs(2))
        .await;
    let found = silenced.elapsed();
    // A new link passes: paywait is working again.
    app.wait_for_readiness(200, Duration::from_secs(60)).await;
    let back = silenced.elapsed();
    println!("silent broker link: not ready after {found:?}, ready again after {back:?}");
    assert!(proxy.connections() >= 2, "no new connection was opened");
    app.place("H-2").await;
    app.pay("H-2", "PAY-H-2").await;
    let event = loop {
        let event = app.expect_event(Duration::from_secs(20)).await;
        if event.order_id() == "H-2" {
            break event;
        }
        // The first payment's acknowledgement may have gone down the silent
        // link: redelivered, it announces its event again, under its id.
        assert_eq!(
            event.properties.message_id().as_ref().map(|id| id.as_str()),
            Some("H-1/order.paid")
        );
    };
    assert_eq!(event.name(), "order.paid");
}
