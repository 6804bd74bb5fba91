//! The compose stack and the image, checked as far as this machine can
//! without a Docker engine: by reading them.

use clap::Parser;
use paywait::{
    cli::Cli,
    configuration::{Settings, Sources},
};
use serde_norway::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn compose() -> Value {
    let mut compose: Value = serde_norway::from_str(&read("docker-compose.yml")).unwrap();
    compose.apply_merge().unwrap();
    compose
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn environment(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let value = v.as_str().unwrap();
            // Compose's ${VAR:-default} takes its default here.
            let value = with_defaults(value);
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Replaces `${NAME:-default}` with `default`.
fn with_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn compose_runs_broker_database_migrate_and_daemon_with_pinned_images() {
    let compose = compose();
    let services = &compose["services"];
    for name in ["rabbitmq", "postgres", "migrate", "paywait"] {
        assert!(services.get(name).is_some(), "service {name} is missing");
    }
    for (name, must_contain) in [("rabbitmq", "management"), ("postgres", "postgres")] {
        let image = services[name]["image"].as_str().unwrap();
        let (_, tag) = image.split_once(':').expect("the image has a tag");
        assert!(image.contains(must_contain), "{image}");
        assert!(
            tag.chars().next().unwrap().is_ascii_digit() && tag.contains('.'),
            "{name}'s image is not pinned to a release: {image}"
        );
    }
    for name in ["rabbitmq", "postgres", "paywait"] {
        assert!(
            !strings(&services[name]["healthcheck"]["test"]).is_empty(),
            "{name} has no health check"
        );
    }
    for name in ["migrate", "paywait"] {
        assert_eq!(
            services[name]["build"].as_str(),
            Some("."),
            "{name} builds the Dockerfile"
        );
    }
}

#[test]
fn compose_starts_the_daemon_after_its_dependencies_are_ready() {
    let compose = compose();
    let services = &compose["services"];
    let condition = |service: &str, on: &str| {
        services[service]["depends_on"][on]["condition"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(condition("migrate", "postgres"), "service_healthy");
    assert_eq!(condition("paywait", "rabbitmq"), "service_healthy");
    assert_eq!(condition("paywait", "postgres"), "service_healthy");
    assert_eq!(
        condition("paywait", "migrate"),
        "service_completed_successfully"
    );
    assert_eq!(services["migrate"]["restart"].as_str(), Some("no"));
}

#[test]
fn compose_commands_are_paywait_commands_with_valid_settings() {
    let compose = compose();
    let services = &compose["services"];
    for (name, expected) in [("migrate", "migrate"), ("paywait", "run")] {
        let service = &services[name];
        let command = strings(&service["command"]);
        assert_eq!(command, [expected], "{name}'s command");
        let mut argv = vec!["paywait".to_owned()];
        argv.extend(command);
        Cli::try_parse_from(&argv).unwrap_or_else(|error| panic!("{name}: {error}"));

        let mut env = environment(service);
        env.push(("PAYWAIT_HTTP__LISTEN".into(), "0.0.0.0:9464".into()));
        // Compose mounts each secret the service lists at /run/secrets/<name>.
        let secrets = strings(&service["secrets"]);
        for (_, value) in env.iter_mut() {
            if let Some(name) = value.strip_prefix("/run/secrets/") {
                assert!(
                    secrets.iter().any(|s| s == name),
                    "{name} is not given to {value}"
                );
                let file = compose["secrets"][name]["file"].as_str().unwrap();
                *value = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
            }
        }
        let settings = Settings::load(&Sources {
            file: None,
            environment: env,
        })
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(settings.amqp.url.address(), "rabbitmq:5672");
        assert_eq!(settings.database.url.address(), "postgres:5432");
        assert_eq!(settings.database.name(), "paywait");
        // The same password as the database's own, from the same secret.
        assert_eq!(settings.database.url.url().password(), Some("paywait"));
    }
    let database = &services["postgres"];
    assert_eq!(strings(&database["secrets"]), ["postgres_password"]);
    assert_eq!(
        database["environment"]["POSTGRES_PASSWORD_FILE"].as_str(),
        Some("/run/secrets/postgres_password")
    );
}

#[test]
fn compose_publishes_ports_on_loopback_and_keeps_data_in_named_volumes() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    for (name, service) in services {
        for port in strings(&service["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name:?} publishes {port} beyond loopback"
            );
        }
    }
    let volumes = compose["volumes"].as_mapping().unwrap();
    for (service, volume) in [("rabbitmq", "rabbitmq-data"), ("postgres", "postgres-data")] {
        assert!(
            volumes.contains_key(volume),
            "volume {volume} is not declared"
        );
        let mounts = strings(&compose["services"][service]["volumes"]);
        assert!(
            mounts.iter().any(|m| m.starts_with(&format!("{volume}:"))),
            "{service} does not use {volume}"
        );
    }
    let published: Vec<String> = strings(&compose["services"]["paywait"]["ports"]);
    assert!(
        published.iter().any(|p| p.ends_with(":9464")),
        "HTTP is not published"
    );
}

#[test]
fn the_image_builds_in_stages_and_runs_as_a_non_root_user() {
    let dockerfile = read("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a multi-stage build");
    let user = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER instruction");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    assert!(
        dockerfile.contains("COPY migrations"),
        "migrations are embedded at build time"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"paywait\"]"));
}

#[test]
fn the_image_build_sees_every_workspace_member() {
    let dockerfile = read("Dockerfile");
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml parses");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("a workspace with members");
    assert!(!members.is_empty());
    for member in members {
        let member = member.as_str().unwrap();
        let copied = format!("COPY {member}/Cargo.toml ./{member}/");
        assert!(
            dockerfile.contains(&copied),
            "cargo needs {member}/Cargo.toml to build the workspace: {copied}"
        );
        assert!(
            dockerfile.contains(&format!("{member}/src")),
            "{member} needs a placeholder source"
        );
    }
    assert!(
        dockerfile.contains("cargo build --release --locked --package paywait"),
        "only the product is built"
    );
}

#[test]
fn the_example_configuration_sets_every_documented_key_to_its_default() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/paywait.toml.example");
    let example = paywait::configuration::Settings::load(&paywait::configuration::Sources {
        file: Some(&file),
        environment: vec![],
    })
    .expect("the example loads");
    let defaults = paywait::configuration::Settings::load(&Default::default()).unwrap();
    assert_eq!(format!("{example:?}"), format!("{defaults:?}"));

    let table: toml::Table = read("deploy/paywait.toml.example").parse().unwrap();
    fn keys(prefix: &str, table: &toml::Table, into: &mut std::collections::BTreeSet<String>) {
        for (key, value) in table {
            let key = format!("{prefix}{key}");
            match value.as_table() {
                Some(inner) => keys(&format!("{key}."), inner, into),
                None => {
                    into.insert(key);
                }
            }
        }
    }
    let mut in_example = std::collections::BTreeSet::new();
    keys("", &table, &mut in_example);
    let readme = read("README.md");
    let in_readme: std::collections::BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .flat_map(|(keys, _)| keys.split("`, `").map(str::to_owned).collect::<Vec<_>>())
        .filter(|key| key.contains('.') && !key.contains(' ') && !key.starts_with("paywait"))
        .collect();
    assert_eq!(
        in_readme, in_example,
        "the README's configuration table and deploy/paywait.toml.example differ"
    );
}

#[test]
fn the_systemd_unit_runs_the_daemon_hardened() {
    let unit = read("deploy/paywait.service");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "User=",
        "ExecStart=/usr/local/bin/paywait run",
        "Restart=on-failure",
        "EnvironmentFile=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "KillSignal=SIGTERM",
        "LoadCredential=amqp-password:/etc/paywait/amqp-password",
        "LoadCredential=database-password:/etc/paywait/database-password",
        "Environment=PAYWAIT_AMQP__PASSWORD_FILE=%d/amqp-password",
        "Environment=PAYWAIT_DATABASE__PASSWORD_FILE=%d/database-password",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "the unit lacks {line}"
        );
    }
}

/// The value of `key` in a RabbitMQ (sysctl-style) config file, if set.
fn conf_value<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
    conf.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, value)| value.trim())
}

/// The rabbitmq service's bind mounts, as (source, target) pairs.
fn broker_mounts(compose: &Value) -> Vec<(String, String)> {
    strings(&compose["services"]["rabbitmq"]["volumes"])
        .iter()
        .filter_map(|mount| {
            let mut parts = mount.split(':');
            let source = parts.next()?;
            let target = parts.next()?;
            Some((source.to_owned(), target.to_owned()))
        })
        .collect()
}

fn json_file(path: &str) -> serde_json::Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn items<'a>(definitions: &'a serde_json::Value, kind: &str) -> &'a [serde_json::Value] {
    definitions[kind]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[test]
fn the_broker_loads_access_and_topology_definitions_at_boot() {
    let conf = read("rabbit/rabbitmq.conf");
    assert_eq!(conf_value(&conf, "loopback_users.guest"), Some("false"));
    // The classic key: some 3.10 releases read a single file only through
    // definitions.local.path.
    let dir = conf_value(&conf, "load_definitions")
        .expect("rabbit/rabbitmq.conf sets load_definitions")
        .trim_end_matches('/');

    let mounts = broker_mounts(&compose());
    assert!(
        mounts
            .iter()
            .any(|(source, target)| source == "./rabbit/rabbitmq.conf"
                && target.starts_with("/etc/rabbitmq/conf.d/")
                && target.ends_with(".conf")),
        "rabbit/rabbitmq.conf is not mounted into /etc/rabbitmq/conf.d: {mounts:?}"
    );
    // The broker imports every file in the directory, one by one in name order.
    let in_dir: Vec<&(String, String)> = mounts
        .iter()
        .filter(|(_, target)| {
            target
                .rsplit_once('/')
                .is_some_and(|(parent, _)| parent == dir)
        })
        .collect();
    assert!(
        !mounts.iter().any(|(_, target)| target == dir),
        "mount single files into {dir}, not a whole directory"
    );
    let name_of = |source: &str| {
        let (_, target) = in_dir
            .iter()
            .find(|(s, _)| s == source)
            .unwrap_or_else(|| panic!("{source} is not mounted into {dir}: {mounts:?}"));
        target.rsplit_once('/').unwrap().1.to_owned()
    };
    let access = name_of("./rabbit/access.json");
    let topology = name_of("./rabbit/definitions.json");
    assert!(
        access < topology,
        "{access} must sort before {topology}, so that / exists when the topology is imported"
    );
    for (source, target) in &in_dir {
        assert!(
            target.ends_with(".json"),
            "{source} is mounted into {dir} but is not definitions"
        );
    }

    // A boot-time import skips the default vhost and user: access.json has them.
    let access = json_file("rabbit/access.json");
    assert!(
        items(&access, "vhosts").iter().any(|v| v["name"] == "/"),
        "access.json defines no vhost /"
    );
    let guest = items(&access, "users")
        .iter()
        .find(|u| u["name"] == "guest")
        .expect("access.json defines the user guest");
    assert_eq!(
        guest["hashing_algorithm"], "rabbit_password_hashing_sha256",
        "guest's hashing_algorithm"
    );
    // base64 of a 4-byte salt and a SHA-256 digest: 36 bytes, 48 characters.
    let hash = guest["password_hash"].as_str().expect("a password_hash");
    assert!(
        hash.len() == 48
            && hash
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'),
        "guest's password_hash is not a salted SHA-256 hash: {hash}"
    );
    assert!(guest.get("password").is_none(), "no clear-text password");
    assert!(
        items(guest, "tags").iter().any(|t| t == "administrator"),
        "guest is an administrator (the management UI)"
    );
    assert!(
        items(&access, "permissions")
            .iter()
            .any(|p| p["user"] == "guest"
                && p["vhost"] == "/"
                && ["configure", "write", "read"]
                    .iter()
                    .all(|kind| p[*kind] == ".*")),
        "access.json gives guest no full permissions on /"
    );

    // Every vhost the topology uses is one access.json defines.
    let topology = json_file("rabbit/definitions.json");
    for kind in ["exchanges", "queues", "bindings"] {
        for item in items(&topology, kind) {
            assert!(
                items(&access, "vhosts")
                    .iter()
                    .any(|v| v["name"] == item["vhost"]),
                "definitions.json uses vhost {} that access.json lacks",
                item["vhost"]
            );
        }
    }
}
