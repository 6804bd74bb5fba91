//! The `paywait` binary, run as an operator would.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use paywait::{amqp::Topology, domain::OrderStatus};

use paywait_testkit::{Daemon, Log, Sandbox, TestApp};

fn paywait(environment: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paywait"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running paywait")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn topology_print_writes_definitions_without_connecting() {
    // An unreachable broker proves that nothing connects.
    let environment = vec![(
        "AMQP_URL".to_owned(),
        "amqp://u:p@127.0.0.1:1/%2f".to_owned(),
    )];
    let output = paywait(&environment, &["topology", "--print"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let settings = paywait::configuration::Settings::load(&Default::default()).unwrap();
    assert_eq!(printed, Topology::from_settings(&settings).definitions("/"));
}

#[test]
fn rabbit_definitions_equal_the_printed_topology() {
    let output = paywait(&[], &["topology", "--print"]);
    assert!(output.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/rabbit/definitions.json"
    ))
    .expect("rabbit/definitions.json exists");
    let stored: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(
        stored, printed,
        "regenerate with: paywait topology --print > rabbit/definitions.json"
    );
}

#[test]
fn an_invalid_setting_is_refused_naming_its_key() {
    let environment = vec![(
        "PAYWAIT_CHECKS__SCHEDULE".to_owned(),
        "1m,whenever".to_owned(),
    )];
    let output = paywait(&environment, &["topology", "--print"]);
    assert_eq!(output.status.code(), Some(78));
    let message = stderr(&output);
    assert!(message.contains("checks.schedule"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
}

#[test]
fn a_missing_config_file_is_refused() {
    let output = paywait(
        &[],
        &[
            "--config",
            "/nonexistent/paywait.toml",
            "topology",
            "--print",
        ],
    );
    assert_eq!(output.status.code(), Some(78));
    assert!(
        stderr(&output).contains("paywait.toml"),
        "{}",
        stderr(&output)
    );
    // The option is accepted after the command's name too.
    let output = paywait(
        &[],
        &[
            "topology",
            "--print",
            "--config",
            "/nonexistent/paywait.toml",
        ],
    );
    assert_eq!(output.status.code(), Some(78));
}

#[test]
fn unreachable_services_fail_fast_naming_the_address_not_the_password() {
    let environment = vec![
        (
            "AMQP_URL".to_owned(),
            "amqp://shop:hunter2secret@127.0.0.1:1/%2f".to_owned(),
        ),
        (
            "DATABASE_URL".to_owned(),
            "postgres://shop:hunter2secret@127.0.0.1:2/paywait".to_owned(),
        ),
    ];
    for args in [
        &["place", "A-1"][..],
        &["show", "A-1"][..],
        &["migrate"][..],
        &["run"][..],
    ] {
        let started = Instant::now();
        let output = paywait(&environment, args);
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(output.status.code(), Some(69), "{args:?}: {message}");
        assert!(
            message.contains("127.0.0.1:1") || message.contains("127.0.0.1:2"),
            "{args:?} does not name the address: {message}"
        );
        assert!(
            !message.contains("hunter2secret"),
            "{args:?} leaked the password: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} was slow"
        );
    }
}

#[test]
fn command_arguments_are_validated() {
    // Each bad argument: exit 2, and the error (before clap's usage hint)
    // names the argument.
    for (args, named) in [
        (&["place", "bad id"][..], "<ORDER_ID>"),
        (
            &["place", "A-1", "--amount-cents", "-5"][..],
            "--amount-cents",
        ),
        (
            &["place", "A-1", "--amount-cents", "1.5"][..],
            "--amount-cents",
        ),
        (&["place", "A-1", "--currency", "yuan"][..], "--currency"),
        (&["pay", "A-1"][..], "--payment-id"),
        (&["pay", "A-1", "--payment-id", ""][..], "--payment-id"),
        (&["show"][..], "<ORDER_ID>"),
        (&["replay", "--limit", "many"][..], "--limit"),
    ] {
        let output = paywait(&[], args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        let error = message.split("\n\n").next().unwrap_or_default();
        assert!(
            error.starts_with("error: ") && error.contains(named),
            "{args:?} should name {named}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_pay_cancel_and_show_through_the_cli() {
    // `pay` publishes as the broker user of its URL: guest, trusted here.
    let mut app =
        TestApp::spawn_with("20s", true, &[("PAYWAIT_PAYMENTS__TRUSTED_USERS", "guest")]).await;
    let environment = app.sandbox.environment("20s");

    let placed = paywait(
        &environment,
        &[
            "place",
            "C-1",
            "--amount-cents",
            "4200",
            "--currency",
            "EUR",
        ],
    );
    assert!(placed.status.success(), "{}", stderr(&placed));
    app.wait_for_status("C-1", OrderStatus::Pending, Duration::from_secs(10))
        .await;

    let shown = paywait(&environment, &["show", "C-1", "--json"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let row: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(row["order_id"], "C-1");
    assert_eq!(row["status"], "pending");
    assert_eq!(row["amount_cents"], 4200);
    assert_eq!(row["currency"], "EUR");

    // The wrong currency is kept, announced, and settles nothing.
    let wrong = paywait(
        &environment,
        &["pay", "C-1", "--payment-id", "P-0", "--currency", "USD"],
    );
    assert!(wrong.status.success(), "{}", stderr(&wrong));
    assert_eq!(
        app.expect_event(Duration::from_secs(10)).await.name(),
        "order.payment_mismatch"
    );
    let paid = paywait(
        &environment,
        &[
            "pay",
            "C-1",
            "--payment-id",
            "P-1",
            "--amount-cents",
            "4200",
        ],
    );
    assert!(paid.status.success(), "{}", stderr(&paid));
    assert_eq!(
        app.expect_event(Duration::from_secs(10)).await.name(),
        "order.paid"
    );

    let shown = paywait(&environment, &["show", "C-1"]);
    let text = stdout(&shown);
    assert!(text.contains("status") && text.contains("paid"), "{text}");
    assert!(
        text.contains("P-0") && text.contains("(mismatch)"),
        "{text}"
    );
    assert!(
        text.contains("P-1 4200") && text.contains("(settled)"),
        "{text}"
    );

    let placed = paywait(&environment, &["place", "C-2"]);
    assert!(placed.status.success(), "{}", stderr(&placed));
    app.wait_for_status("C-2", OrderStatus::Pending, Duration::from_secs(10))
        .await;
    let later = (app.order("C-2").await.unwrap().expires_at + chrono::TimeDelta::minutes(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let extended = paywait(&environment, &["extend", "C-2", "--expires-at", &later]);
    assert!(extended.status.success(), "{}", stderr(&extended));
    let changed = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!(changed.name(), "order.deadline_changed");
    assert_eq!(
        changed.body["expires_at"]
            .as_str()
            .and_then(|at| at.parse::<chrono::DateTime<chrono::Utc>>().ok()),
        later.parse().ok()
    );
    let refused = paywait(&environment, &["extend", "C-2", "--expires-at", "soon"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("--expires-at"),
        "{}",
        stderr(&refused)
    );
    let cancelled = paywait(&environment, &["cancel", "C-2", "--reason", "customer"]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    let closed = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!(closed.name(), "order.closed");
    assert_eq!(closed.body["reason"], "cancelled");

    let missing = paywait(&environment, &["show", "C-404"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("C-404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_injected_with_rabbitmqadmin_is_processed() {
    let mut app = TestApp::spawn("300ms").await;
    let output = Command::new("rabbitmqadmin")
        .args([
            "-V",
            &app.sandbox.vhost,
            "publish",
            "exchange=paywait.orders",
            "routing_key=order.placed",
            r#"payload={"order_id":"ADMIN-1","amount_cents":500}"#,
        ])
        .output()
        .expect("rabbitmqadmin is installed");
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stdout(&output);
    assert!(
        said.contains("published") && !said.contains("not routed"),
        "{said}"
    );
    let event = app.expect_event(Duration::from_secs(10)).await;
    assert_eq!(event.name(), "order.closed");
    assert_eq!(event.order_id(), "ADMIN-1");
    assert_eq!(event.body["amount_cents"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_stops_cleanly_on_sigterm_and_sigint() {
    let sandbox = Sandbox::create().await;
    for signal in ["TERM", "INT"] {
        let mut daemon = Daemon::start(
            env!("CARGO_BIN_EXE_paywait").as_ref(),
            &sandbox.environment("1m"),
            Log::Discard,
        );
        daemon.wait_ready(Duration::from_secs(30)).await;
        let status = daemon.signal(signal).await;
        assert_eq!(status.code(), Some(0), "SIG{signal} exit status");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_then_finds_it_up_to_date() {
    let sandbox = Sandbox::create().await;
    // A second database name in the sandbox's family, dropped with it.
    let name = format!("{}_fresh", sandbox.database);
    let environment = vec![(
        "DATABASE_URL".to_owned(),
        format!("{}/{name}", paywait_testkit::POSTGRES),
    )];
    let first = paywait(&environment, &["migrate"]);
    let _cleanup = paywait_testkit::DropDatabase(name.clone());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("applied"), "{}", stdout(&first));
    let second = paywait(&environment, &["migrate"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("up to date"),
        "{}",
        stdout(&second)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_password_is_read_from_its_file() {
    let sandbox = Sandbox::create().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("amqp-password");
    let mut environment: Vec<(String, String)> = sandbox
        .environment("1m")
        .into_iter()
        .map(|(key, value)| (key, value.replace("guest:guest@", "guest:not-this-one@")))
        .collect();
    environment.push((
        "PAYWAIT_AMQP__PASSWORD_FILE".to_owned(),
        file.to_str().unwrap().to_owned(),
    ));

    // The file's password, not the URL's, is the one the broker accepts.
    std::fs::write(&file, "guest\n").unwrap();
    let declared = paywait(&environment, &["topology"]);
    assert!(declared.status.success(), "{}", stderr(&declared));

    std::fs::write(&file, "wrong-horse\n").unwrap();
    let refused = paywait(&environment, &["topology"]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(69), "{message}");
    assert!(message.contains("127.0.0.1:5672"), "{message}");
    assert!(
        !message.contains("wrong-horse") && !message.contains("not-this-one"),
        "{message}"
    );

    std::fs::remove_file(&file).unwrap();
    let unreadable = paywait(&environment, &["topology"]);
    let message = stderr(&unreadable);
    assert_eq!(unreadable.status.code(), Some(78), "{message}");
    assert!(message.contains("amqp.password_file"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_broker_node_that_answers_is_used() {
    let sandbox = Sandbox::create().await;
    let reachable = sandbox.amqp_url();
    let unreachable = reachable.replace(
        "guest:guest@127.0.0.1:5672",
        "guest:hunter2secret@127.0.0.1:1",
    );
    let mut environment: Vec<(String, String)> = sandbox
        .environment("1m")
        .into_iter()
        .filter(|(key, _)| key != "PAYWAIT_AMQP__URL")
        .collect();
    let mut with_nodes = environment.clone();
    with_nodes.push((
        "PAYWAIT_AMQP__URLS".to_owned(),
        format!("{unreachable},{reachable}"),
    ));
    let declared = paywait(&with_nodes, &["topology"]);
    assert!(declared.status.success(), "{}", stderr(&declared));
    assert!(stdout(&declared).contains("paywait.checks"));

    environment.push((
        "PAYWAIT_AMQP__URLS".to_owned(),
        format!("{unreachable},{}", unreachable.replace(":1/", ":2/")),
    ));
    let refused = paywait(&environment, &["topology"]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(69), "{message}");
    assert!(
        message.contains("127.0.0.1:1") && message.contains("127.0.0.1:2"),
        "{message}"
    );
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_may_name_several_hosts_as_libpq_does() {
    let sandbox = Sandbox::create().await;
    let name = format!("{}_hosts", sandbox.database);
    let _cleanup = paywait_testkit::DropDatabase(name.clone());
    // The first host does not answer; the second is the writable server.
    let url = paywait_testkit::POSTGRES.replace("127.0.0.1:5432", "127.0.0.1:1,127.0.0.1:5432");
    assert_ne!(url, paywait_testkit::POSTGRES);
    let environment = vec![(
        "DATABASE_URL".to_owned(),
        format!("{url}/{name}?target_session_attrs=read-write"),
    )];
    let migrated = paywait(&environment, &["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let shown = paywait(&environment, &["show", "H-1"]);
    assert!(stderr(&shown).contains("H-1"), "{}", stderr(&shown));

    // None answers: every address is named.
    let environment = vec![(
        "DATABASE_URL".to_owned(),
        format!("postgres://postgres:hunter2secret@127.0.0.1:1,127.0.0.1:2/{name}"),
    )];
    let refused = paywait(&environment, &["show", "H-1"]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(69), "{message}");
    assert!(message.contains("127.0.0.1:1, 127.0.0.1:2"), "{message}");
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_declares_idempotently_and_names_a_conflicting_queue() {
    let sandbox = Sandbox::create().await;
    let environment = sandbox.environment("1m,4m");
    for _ in 0..2 {
        let declared = paywait(&environment, &["topology"]);
        assert!(declared.status.success(), "{}", stderr(&declared));
        let listing = stdout(&declared);
        for name in [
            "paywait.orders",
            "paywait.events",
            "paywait.dead",
            "paywait.unrouted",
            "paywait.checks",
            "paywait.timer.64ms",
            "paywait.timer.59600ms",
            "paywait.timer.239600ms",
        ] {
            assert!(listing.contains(name), "{name} missing from {listing}");
        }
    }
    let mut classic = environment.clone();
    classic.push((
        "PAYWAIT_TOPOLOGY__QUEUE_TYPE".to_owned(),
        "classic".to_owned(),
    ));
    let refused = paywait(&classic, &["topology"]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("paywait.dead") && message.contains("x-queue-type"),
        "{message}"
    );
    assert!(!message.contains("guest:guest"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payments_queue_of_an_older_paywait_is_refused_with_the_way_to_replace_it() {
    let sandbox = Sandbox::create().await;
    let environment = sandbox.environment("1m");
    // As an older paywait declared it: without x-single-active-consumer.
    let client = paywait_testkit::TestApp::client_for(&sandbox).await;
    client
        .channel()
        .queue_declare(
            "paywait.intake.payments".into(),
            lapin::options::QueueDeclareOptions::durable(),
            [(
                "x-queue-type".into(),
                lapin::types::AMQPValue::LongString("quorum".into()),
            )]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into(),
        )
        .await
        .unwrap();
    let refused = paywait(&environment, &["topology"]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("paywait.intake.payments")
            && message.contains("x-single-active-consumer")
            && message.contains("\"Upgrading\""),
        "{message}"
    );
}

/// The sandbox's environment with a database of `name`, not yet created.
fn with_fresh_database(sandbox: &Sandbox, name: &str) -> Vec<(String, String)> {
    sandbox
        .environment("1m")
        .into_iter()
        .map(|(key, value)| {
            if key == "PAYWAIT_DATABASE__URL" {
                (key, format!("{}/{name}", paywait_testkit::POSTGRES))
            } else {
                (key, value)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_started_together_create_and_migrate_their_database() {
    let sandbox = Sandbox::create().await;
    let name = format!("{}_started", sandbox.database);
    let _cleanup = paywait_testkit::DropDatabase(name.clone());
    let environment = with_fresh_database(&sandbox, &name);
    let logs = tempfile::tempdir().unwrap();
    let mut daemons: Vec<Daemon> = (0..3)
        .map(|n| {
            Daemon::start(
                env!("CARGO_BIN_EXE_paywait").as_ref(),
                &environment,
                Log::File(logs.path().join(format!("paywait-{n}.log"))),
            )
        })
        .collect();
    for daemon in &mut daemons {
        daemon.wait_ready(Duration::from_secs(60)).await;
    }
    let migrated = paywait(&environment, &["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(
        stdout(&migrated).contains("up to date"),
        "{}",
        stdout(&migrated)
    );
    for daemon in &mut daemons {
        assert_eq!(daemon.terminate().await.code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrate_the_daemon_refuses_a_database_not_migrated() {
    let sandbox = Sandbox::create().await;
    let name = format!("{}_unmigrated", sandbox.database);
    let _cleanup = paywait_testkit::DropDatabase(name.clone());
    let mut environment = with_fresh_database(&sandbox, &name);
    environment.push(("PAYWAIT_DATABASE__MIGRATE".to_owned(), "false".to_owned()));
    let logs = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        env!("CARGO_BIN_EXE_paywait").as_ref(),
        &environment,
        Log::File(logs.path().join("paywait.log")),
    );
    let refused = daemon.try_wait_ready(Duration::from_secs(30)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|error| error.contains("exited")),
        "{refused:?}"
    );
    let log = daemon.log_text();
    println!("{log}");
    assert!(log.contains(&name), "{log}");
    // It created nothing either: migrate does, and then the daemon starts.
    let migrated = paywait(&environment, &["migrate"]);
    assert!(
        stdout(&migrated).contains("applied"),
        "{}",
        stderr(&migrated)
    );
    let mut daemon = Daemon::start(
        env!("CARGO_BIN_EXE_paywait").as_ref(),
        &environment,
        Log::Discard,
    );
    daemon.wait_ready(Duration::from_secs(30)).await;
    daemon.terminate().await;
}
