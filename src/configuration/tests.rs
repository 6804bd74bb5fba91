//! The settings as loaded from files and environments, good and bad.

use super::*;

fn load(environment: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load(&Sources {
        file: None,
        environment: environment
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

#[test]
fn defaults_run_against_localhost() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.amqp.url.expose(), DEFAULT_AMQP_URL);
    assert_eq!(settings.database.url.expose(), DEFAULT_DATABASE_URL);
    assert_eq!(settings.database.name(), "paywait");
    assert_eq!(settings.topology.prefix, "paywait");
    assert_eq!(settings.topology.queue_type, QueueType::Quorum);
    assert_eq!(
        settings.checks.schedule.total(),
        Duration::from_secs(30 * 60)
    );
    assert_eq!(settings.http.listen, "127.0.0.1:9464".parse().unwrap());
    assert_eq!(settings.log.format, LogFormat::Text);
}

#[test]
fn environment_overrides_with_comma_separated_lists() {
    let settings = load(&[
        ("PAYWAIT_CHECKS__SCHEDULE", "200ms,300ms"),
        ("PAYWAIT_TOPOLOGY__QUEUE_TYPE", "classic"),
        ("PAYWAIT_HTTP__LISTEN", "0.0.0.0:9999"),
        ("PAYWAIT_LOG__FORMAT", "json"),
    ])
    .unwrap();
    assert_eq!(
        settings.checks.schedule.waits(),
        [Duration::from_millis(200), Duration::from_millis(300)]
    );
    assert_eq!(settings.topology.queue_type, QueueType::Classic);
    assert_eq!(settings.http.listen.port(), 9999);
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn reminders_are_off_by_default_and_listed_longest_first() {
    assert!(load(&[]).unwrap().checks.remind_before.offsets().is_empty());
    let settings = load(&[("PAYWAIT_CHECKS__REMIND_BEFORE", "2m,15m")]).unwrap();
    assert_eq!(
        settings.checks.remind_before.offsets(),
        [Duration::from_secs(900), Duration::from_secs(120)]
    );
}

#[test]
fn a_single_wait_in_the_environment_is_a_list_of_one() {
    let settings = load(&[("PAYWAIT_CHECKS__SCHEDULE", "1s")]).unwrap();
    assert_eq!(settings.checks.schedule.waits(), [Duration::from_secs(1)]);
}

#[test]
fn conventional_urls_are_honoured_below_prefixed_ones() {
    let settings = load(&[
        ("AMQP_URL", "amqp://u:p@broker:5672/%2f"),
        ("DATABASE_URL", "postgres://db/orders"),
    ])
    .unwrap();
    assert_eq!(settings.amqp.url.address(), "broker:5672");
    assert_eq!(settings.database.name(), "orders");

    let settings = load(&[
        ("DATABASE_URL", "postgres://db/orders"),
        ("PAYWAIT_DATABASE__URL", "postgres://db/other"),
    ])
    .unwrap();
    assert_eq!(settings.database.name(), "other");
}

#[test]
fn invalid_values_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("PAYWAIT_CHECKS__SCHEDULE", "1m,never", "checks.schedule"),
        ("PAYWAIT_CHECKS__SCHEDULE", "0s", "checks.schedule"),
        (
            "PAYWAIT_TOPOLOGY__QUEUE_TYPE",
            "stream",
            "topology.queue_type",
        ),
        ("PAYWAIT_TOPOLOGY__PREFIX", "a b", "topology.prefix"),
        ("PAYWAIT_HTTP__LISTEN", "localhost", "http.listen"),
        ("PAYWAIT_LOG__FORMAT", "xml", "log.format"),
        ("PAYWAIT_AMQP__URL", "http://x", "amqp.url"),
        ("PAYWAIT_DATABASE__URL", "postgres://host", "database.url"),
        (
            "PAYWAIT_DATABASE__URL",
            "postgres://host/db?sslmode=allow",
            "database.url",
        ),
        (
            "PAYWAIT_DATABASE__URL",
            "postgres://host/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem",
            "database.url",
        ),
        ("PAYWAIT_SHUTDOWN__TIMEOUT", "later", "shutdown.timeout"),
        // Counted every millisecond for 30 days: past what attempts hold.
        ("PAYWAIT_CHECKS__SCHEDULE", "1ms", "checks.schedule"),
        ("PAYWAIT_AMQP__PREFETCH", "0", "amqp.prefetch"),
        ("PAYWAIT_AMQP__HEARTBEAT", "1s", "amqp.heartbeat"),
        ("PAYWAIT_AMQP__HEARTBEAT", "2500ms", "amqp.heartbeat"),
        ("PAYWAIT_AMQP__HEARTBEAT", "0s", "amqp.heartbeat"),
        (
            "PAYWAIT_DATABASE__STATEMENT_TIMEOUT",
            "0s",
            "database.statement_timeout",
        ),
        (
            "PAYWAIT_DATABASE__STATEMENT_TIMEOUT",
            "2d",
            "database.statement_timeout",
        ),
        (
            "PAYWAIT_DATABASE__CONNECT_TIMEOUT",
            "10ms",
            "database.connect_timeout",
        ),
        (
            "PAYWAIT_DATABASE__CONNECT_TIMEOUT",
            "soon",
            "database.connect_timeout",
        ),
        ("PAYWAIT_SWEEPER__INTERVAL", "0s", "sweeper.interval"),
        ("PAYWAIT_SWEEPER__GRACE", "soon", "sweeper.grace"),
        ("PAYWAIT_SWEEPER__BATCH", "-1", "sweeper.batch"),
        ("PAYWAIT_CHECKS__EARLY_MARGIN", "0s", "checks.early_margin"),
        ("PAYWAIT_CHECKS__EARLY_MARGIN", "61s", "checks.early_margin"),
        ("PAYWAIT_CHECKS__MAX_DEADLINE", "0s", "checks.max_deadline"),
        (
            "PAYWAIT_CHECKS__REMIND_BEFORE",
            "15m,soon",
            "checks.remind_before",
        ),
        (
            "PAYWAIT_CHECKS__REMIND_BEFORE",
            "0s",
            "checks.remind_before",
        ),
        (
            "PAYWAIT_CHECKS__REMIND_BEFORE",
            "2m,120s",
            "checks.remind_before",
        ),
        (
            "PAYWAIT_CHECKS__MAX_CLOCK_SKEW",
            "ahead",
            "checks.max_clock_skew",
        ),
    ];
    for (name, value, key) in cases {
        let error = load(&[(name, value)]).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("invalid configuration: {key}: ")),
            "{name}={value} gave {error}"
        );
    }
}

#[test]
fn passwords_come_from_files_in_place_of_the_urls() {
    let dir = tempfile::tempdir().unwrap();
    let amqp = dir.path().join("amqp-password");
    let database = dir.path().join("database-password");
    std::fs::write(&amqp, "s3cret/with@signs\n").unwrap();
    std::fs::write(&database, "db-secret\r\n").unwrap();
    let settings = load(&[
        ("AMQP_URL", "amqp://shop:in-the-url@broker:5672/%2f"),
        ("PAYWAIT_AMQP__PASSWORD_FILE", amqp.to_str().unwrap()),
        ("DATABASE_URL", "postgres://shop@db/orders"),
        (
            "PAYWAIT_DATABASE__PASSWORD_FILE",
            database.to_str().unwrap(),
        ),
    ])
    .unwrap();
    let url = settings.amqp.url.url();
    assert_eq!(url.username(), "shop");
    assert_eq!(url.password(), Some("s3cret%2Fwith%40signs"));
    assert_eq!(settings.amqp.url.address(), "broker:5672");
    assert_eq!(settings.database.url.url().password(), Some("db-secret"));
    assert_eq!(settings.database.name(), "orders");
    for shown in [
        settings.amqp.url.to_string(),
        format!("{:?}", settings.database),
    ] {
        assert!(
            !shown.contains("s3cret") && !shown.contains("db-secret"),
            "{shown}"
        );
    }
}

#[test]
fn an_unusable_password_file_is_refused_naming_its_key_not_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    let two_lines = dir.path().join("two-lines");
    std::fs::write(&empty, "\n").unwrap();
    std::fs::write(&two_lines, "first-secret\nsecond-secret\n").unwrap();
    for (name, key) in [
        ("PAYWAIT_AMQP__PASSWORD_FILE", "amqp.password_file"),
        ("PAYWAIT_DATABASE__PASSWORD_FILE", "database.password_file"),
    ] {
        for (file, why) in [
            (&missing, "cannot read"),
            (&empty, "is empty"),
            (&two_lines, "more than one line"),
        ] {
            let error = load(&[(name, file.to_str().unwrap())])
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("invalid configuration: {key}: ")),
                "{error}"
            );
            assert!(
                error.contains(why) && error.contains(file.to_str().unwrap()),
                "{error}"
            );
            assert!(!error.contains("secret"), "{error}");
        }
    }
}

#[test]
fn broker_certificates_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let cert = cert.to_str().unwrap();
    let tls_url = ("PAYWAIT_AMQP__URL", "amqps://u:p@broker/%2f");
    for (settings, key, why) in [
        (
            vec![tls_url, ("PAYWAIT_AMQP__TLS__CERT_FILE", cert)],
            "amqp.tls.key_file",
            "must be set with amqp.tls.cert_file",
        ),
        (
            vec![
                tls_url,
                ("PAYWAIT_AMQP__TLS__CA_FILE", "/nonexistent/ca.pem"),
            ],
            "amqp.tls.ca_file",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            vec![("PAYWAIT_AMQP__TLS__CA_FILE", cert)],
            "amqp.tls.ca_file",
            "the broker's URL is not an amqps:// URL",
        ),
    ] {
        let error = load(&settings).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("invalid configuration: {key}: ")) && error.contains(why),
            "{error}"
        );
    }
    let settings = load(&[
        tls_url,
        ("PAYWAIT_AMQP__TLS__CA_FILE", cert),
        ("PAYWAIT_AMQP__TLS__CERT_FILE", cert),
        ("PAYWAIT_AMQP__TLS__KEY_FILE", cert),
    ])
    .unwrap();
    assert_eq!(
        settings.amqp.tls.ca_file.as_deref(),
        Some(std::path::Path::new(cert))
    );
}

#[test]
fn several_broker_nodes_share_one_password_and_one_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "from-file\n").unwrap();
    let settings = load(&[
        (
            "PAYWAIT_AMQP__URLS",
            "amqp://shop@node-1:5672/%2f, amqp://shop@node-2:5672/%2f",
        ),
        ("PAYWAIT_AMQP__PASSWORD_FILE", password.to_str().unwrap()),
    ])
    .unwrap();
    let nodes: Vec<(String, Option<&str>)> = settings
        .amqp
        .nodes()
        .iter()
        .map(|url| (url.address(), url.url().password()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("node-1:5672".to_owned(), Some("from-file")),
            ("node-2:5672".to_owned(), Some("from-file")),
        ]
    );
    // Without urls, the one url is the only node.
    let one = load(&[]).unwrap();
    assert_eq!(one.amqp.nodes(), std::slice::from_ref(&one.amqp.url));

    let error = load(&[("PAYWAIT_AMQP__URLS", "amqp://a/%2f,amqps://b/%2f")])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("invalid configuration: amqp.urls: "),
        "{error}"
    );
    let error = load(&[("PAYWAIT_AMQP__URLS", "amqp://a/%2f,http://b")])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("invalid configuration: amqp.urls: "),
        "{error}"
    );
}

#[test]
fn unknown_keys_are_refused_naming_them() {
    for (name, value, named) in [
        ("PAYWAIT_GATWAY__URL", "http://gateway/ask", "`gatway`"),
        ("PAYWAIT_CHECKS__SCHEDUL", "1s", "`schedul`"),
        ("PAYWAIT_PAYMENTS__TRUSTED", "ops", "`trusted`"),
    ] {
        let error = load(&[(name, value)]).unwrap_err().to_string();
        assert!(
            error.contains(named) && error.contains("unknown field"),
            "{name} gave {error}"
        );
    }
    // Variables that name no setting are not settings.
    load(&[("PAYWAIT_CONFIG", "/etc/paywait.toml"), ("PAYWAIT_X", "1")]).unwrap();
}

#[test]
fn a_misspelt_section_in_a_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("paywait-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("paywait.toml");
    std::fs::write(&file, "[gatway]\nurl = \"http://gateway/ask\"\n").unwrap();
    let error = Settings::load(&Sources {
        file: Some(&file),
        environment: vec![],
    })
    .unwrap_err()
    .to_string();
    std::fs::remove_dir_all(dir).unwrap();
    assert!(error.contains("`gatway`"), "{error}");
}

#[test]
fn the_heartbeat_asked_for_finds_a_silent_link_within_twice_the_setting() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.amqp.heartbeat, Duration::from_secs(10));
    for (setting, asked) in [("10s", 8), ("2s", 1), ("3s", 2), ("1m", 48)] {
        let settings = load(&[("PAYWAIT_AMQP__HEARTBEAT", setting)]).unwrap();
        assert_eq!(settings.amqp.heartbeat_asked(), asked, "{setting}");
        // Given up after two heartbeats asked, checked every half one.
        let found_within = Duration::from_secs(u64::from(asked)).mul_f64(2.5);
        assert!(found_within <= settings.amqp.heartbeat * 2, "{setting}");
    }
}

#[test]
fn payments_and_the_gateway_are_configured_like_everything_else() {
    let settings = load(&[]).unwrap();
    assert!(settings.payments.trusted_users.is_empty());
    assert!(settings.gateway.url.is_none());
    assert_eq!(settings.gateway.timeout, Duration::from_secs(2));
    assert_eq!(settings.gateway.retry, Duration::from_secs(30));
    assert_eq!(settings.gateway.max_retries, 3);

    let settings = load(&[
        (
            "PAYWAIT_PAYMENTS__TRUSTED_USERS",
            "payment-service, gateway",
        ),
        (
            "PAYWAIT_GATEWAY__URL",
            "https://pay:s3cret@gateway.example/ask",
        ),
        ("PAYWAIT_GATEWAY__TIMEOUT", "500ms"),
        ("PAYWAIT_GATEWAY__RETRY", "10s"),
        ("PAYWAIT_GATEWAY__MAX_RETRIES", "0"),
        ("PAYWAIT_GATEWAY__CONCURRENCY", "4"),
    ])
    .unwrap();
    assert_eq!(
        settings.payments.trusted_users,
        ["payment-service", "gateway"]
    );
    let url = settings.gateway.url.as_ref().unwrap();
    assert_eq!(url.address(), "gateway.example:443");
    assert!(!format!("{settings:?}").contains("s3cret"));
    assert_eq!(settings.gateway.timeout, Duration::from_millis(500));
    assert_eq!(settings.gateway.retry, Duration::from_secs(10));
    assert_eq!(settings.gateway.max_retries, 0);
    assert_eq!(settings.gateway.concurrency.get(), 4);

    for (name, value, key) in [
        ("PAYWAIT_GATEWAY__URL", "ftp://gateway/", "gateway.url"),
        ("PAYWAIT_GATEWAY__TIMEOUT", "0s", "gateway.timeout"),
        ("PAYWAIT_GATEWAY__RETRY", "soon", "gateway.retry"),
        ("PAYWAIT_GATEWAY__CONCURRENCY", "0", "gateway.concurrency"),
        (
            "PAYWAIT_PAYMENTS__TRUSTED_USERS",
            "a,,b",
            "payments.trusted_users",
        ),
    ] {
        let error = load(&[(name, value)]).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("invalid configuration: {key}: ")),
            "{name}={value} gave {error}"
        );
    }
}

#[test]
fn the_broker_user_is_read_from_the_url() {
    let settings = load(&[("AMQP_URL", "amqp://payment%2Dsvc:pw@broker/%2f")]).unwrap();
    assert_eq!(settings.amqp.url.username(), "payment-svc");
    let settings = load(&[("AMQP_URL", "amqp://broker/%2f")]).unwrap();
    assert_eq!(settings.amqp.url.username(), "guest");
}

#[test]
fn passwords_are_never_displayed() {
    let settings = load(&[
        ("AMQP_URL", "amqp://user:s3cret@broker:5672/%2f"),
        ("DATABASE_URL", "postgres://user:s3cret@db/paywait"),
    ])
    .unwrap();
    let shown = format!(
        "{settings:?} {} {}",
        settings.amqp.url, settings.database.url
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("user:***@broker"), "{shown}");
    assert!(settings.amqp.url.expose().contains("s3cret"));

    let error = load(&[("AMQP_URL", "ftp://user:s3cret@broker/")])
        .unwrap_err()
        .to_string();
    assert!(!error.contains("s3cret"), "{error}");
}

#[test]
fn a_toml_file_is_read() {
    let dir = std::env::temp_dir().join(format!("paywait-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("paywait.toml");
    std::fs::write(
        &file,
        "[checks]\nschedule = [\"5s\", \"10s\"]\n[topology]\nprefix = \"shop\"\n",
    )
    .unwrap();
    let settings = Settings::load(&Sources {
        file: Some(&file),
        environment: vec![],
    })
    .unwrap();
    assert_eq!(settings.topology.prefix, "shop");
    assert_eq!(settings.checks.schedule.total(), Duration::from_secs(15));

    let missing = dir.join("missing.toml");
    assert!(
        Settings::load(&Sources {
            file: Some(&missing),
            environment: vec![],
        })
        .is_err()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
