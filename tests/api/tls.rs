//! TLS to PostgreSQL, against the machine's own server: it has TLS on with
//! Debian's self-signed "snakeoil" certificate, issued to `localhost`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use diesel::{QueryableByName, sql_types::Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywait::domain::OrderStatus;
use paywait_testkit::{Sandbox, TestApp};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const SOON: Duration = Duration::from_secs(10);

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether each session of the sandbox's database, other than the
/// asker's own, is encrypted.
async fn sessions_encrypted(app: &TestApp) -> Vec<bool> {
    let mut conn = AsyncPgConnection::establish(&app.sandbox.database_url())
        .await
        .unwrap();
    let query = format!(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = '{}' AND a.pid <> pg_backend_pid()",
        app.sandbox.database
    );
    diesel::sql_query(query)
        .load::<Session>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|session| session.ssl)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_sessions_are_encrypted_as_sslmode_asks() {
    for (host, query, encrypted) in [
        ("127.0.0.1", "sslmode=disable", false),
        ("127.0.0.1", "sslmode=require", true),
        ("127.0.0.1", "", true),
        (
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}")[..],
            true,
        ),
        (
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}")[..],
            true,
        ),
    ] {
        let sandbox = Sandbox::create().await;
        let url = sandbox.database_url().replace("127.0.0.1", host);
        let url = if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        };
        let app = TestApp::spawn_in(sandbox, "1m", false, &[("PAYWAIT_DATABASE__URL", &url)]).await;
        app.place("T-1").await;
        app.wait_for_status("T-1", OrderStatus::Pending, SOON).await;
        let sessions = sessions_encrypted(&app).await;
        assert!(!sessions.is_empty(), "{query}: no session");
        assert!(
            sessions.iter().all(|ssl| *ssl == encrypted),
            "{host} {query:?}: sessions encrypted: {sessions:?}"
        );
    }
}

#[test]
fn a_certificate_that_does_not_verify_is_a_quick_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    // A certificate authority that signed nothing the server has.
    let stranger = dir.path().join("stranger.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=stranger", "-keyout"])
        .arg(dir.path().join("stranger.key"))
        .arg("-out")
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    for (host, query, why) in [
        // Signed by the right root, but issued to localhost.
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
            "certificate",
        ),
        // Issued to the right host, by a root paywait does not trust.
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={}", stranger.display()),
            "certificate",
        ),
        (
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={}", stranger.display()),
            "certificate",
        ),
    ] {
        let url =
            format!("postgres://postgres:hunter2secret@{host}:5432/paywait_tls_refused?{query}");
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_paywait"))
            .arg("migrate")
            .env_clear()
            .env("PAYWAIT_DATABASE__URL", &url)
            .output()
            .unwrap();
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(69), "{query}: {message}");
        assert!(
            message.contains(&format!("{host}:5432")),
            "{query}: {message}"
        );
        assert!(message.to_lowercase().contains(why), "{query}: {message}");
        assert!(!message.contains("hunter2secret"), "{query}: {message}");
        assert!(
            started.elapsed() < SOON,
            "{query}: took {:?}",
            started.elapsed()
        );
    }
}

/// `paywait topology` against `url` with these `amqp.tls` settings.
fn declare_over(url: &str, tls: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paywait"));
    command
        .arg("topology")
        .env_clear()
        .env("PAYWAIT_AMQP__URL", url);
    for (key, path) in tls {
        command.env(key, path);
    }
    command.output().unwrap()
}

#[test]
fn the_broker_is_reached_over_mutual_tls_and_a_bad_certificate_is_a_quick_refusal() {
    let broker = paywait_testkit::TlsBroker::start();
    let ca = broker.ca_file();
    let (cert, key) = broker.client_identity();
    let at = |host: &str| format!("amqps://guest:hunter2secret@{host}:{}/%2f", broker.port);
    // The node's guest user keeps its own password: give it the one used here.
    let password = broker.dir().join("password");
    std::fs::write(&password, "guest\n").unwrap();
    let with_identity = [
        ("PAYWAIT_AMQP__TLS__CA_FILE", ca.as_path()),
        ("PAYWAIT_AMQP__TLS__CERT_FILE", cert.as_path()),
        ("PAYWAIT_AMQP__TLS__KEY_FILE", key.as_path()),
        ("PAYWAIT_AMQP__PASSWORD_FILE", password.as_path()),
    ];
    let declared = declare_over(&at("localhost"), &with_identity);
    assert!(
        declared.status.success(),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    assert!(String::from_utf8_lossy(&declared.stdout).contains("paywait.checks"));

    let without_identity = &with_identity[..1];
    let without_authority = &with_identity[1..];
    for (host, tls, why) in [
        // Issued to localhost, not to the address asked for.
        ("127.0.0.1", &with_identity[..], "not valid for name"),
        // Signed by an authority paywait was not told to trust.
        ("localhost", without_authority, "UnknownIssuer"),
        // The node asks for a client certificate.
        ("localhost", without_identity, ""),
    ] {
        let started = Instant::now();
        let refused = declare_over(&at(host), tls);
        let message = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(69), "{host} {tls:?}: {message}");
        assert!(
            message.contains(&format!("{host}:{}", broker.port)) && message.contains(why),
            "{host} {tls:?}: {message}"
        );
        assert!(!message.contains("hunter2secret"), "{message}");
        assert!(
            started.elapsed() < SOON,
            "{host} {tls:?}: {:?}",
            started.elapsed()
        );
    }

    // Certificates for a connection without TLS are a mistake, said at once.
    let plain = declare_over(
        &format!("amqp://guest:guest@localhost:{}/%2f", broker.port),
        &with_identity[..1],
    );
    let message = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain.status.code(), Some(78), "{message}");
    assert!(
        message.contains("amqp.tls.ca_file") && message.contains("amqps://"),
        "{message}"
    );
}
