//! The machine's services, and the few HTTP calls the tests make to them
//! and to the daemon.

use std::time::Duration;

use serde_json::Value;

/// The machine's RabbitMQ.
pub const BROKER: &str = "127.0.0.1:5672";
/// Its management API.
pub const MANAGEMENT: &str = "http://127.0.0.1:15672";
/// The machine's PostgreSQL, without a database.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

const GUEST: (&str, &str) = ("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=");

/// Percent-encodes one path segment (a space as `%20`, never `+`).
pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A GET on the management API, as JSON.
pub fn management_json(path: &str) -> Value {
    ureq::get(format!("{MANAGEMENT}/api/{path}"))
        .header(GUEST.0, GUEST.1)
        .call()
        .unwrap_or_else(|error| panic!("GET /api/{path}: {error}"))
        .body_mut()
        .read_json()
        .expect("the management API answers JSON")
}

fn management_delete(path: &str) -> Result<(), ureq::Error> {
    ureq::delete(format!("{MANAGEMENT}/api/{path}"))
        .header(GUEST.0, GUEST.1)
        .header("X-Reason", "closed by a test")
        .call()
        .map(drop)
}

pub(crate) fn create_vhost(vhost: &str) {
    ureq::put(format!("{MANAGEMENT}/api/vhosts/{}", urlencode(vhost)))
        .header(GUEST.0, GUEST.1)
        .send_empty()
        .expect("creating a vhost through the management API");
    set_guest_permissions(vhost, true);
}

pub(crate) fn delete_vhost(vhost: &str) {
    let _ = management_delete(&format!("vhosts/{}", urlencode(vhost)));
}

/// Grants guest everything on `vhost`, or nothing.
pub fn set_guest_permissions(vhost: &str, allowed: bool) {
    let path = format!("permissions/{}/guest", urlencode(vhost));
    if allowed {
        ureq::put(format!("{MANAGEMENT}/api/{path}"))
            .header(GUEST.0, GUEST.1)
            .send_json(serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .expect("granting guest the vhost");
    } else {
        management_delete(&path).expect("revoking guest's permissions");
    }
}

/// Imports definitions (users, permissions, topology) as `rabbitmqctl
/// import_definitions` would.
pub fn import_definitions(definitions: &Value) {
    ureq::post(format!("{MANAGEMENT}/api/definitions"))
        .header(GUEST.0, GUEST.1)
        .send_json(definitions)
        .expect("importing definitions");
}

/// Sets a user's password, as `rabbitmqctl change_password` would.
pub fn change_password(user: &str, password: &str) {
    ureq::put(format!("{MANAGEMENT}/api/users/{}", urlencode(user)))
        .header(GUEST.0, GUEST.1)
        .send_json(serde_json::json!({"password": password, "tags": ""}))
        .expect("setting a password");
}

pub fn delete_user(user: &str) {
    let _ = management_delete(&format!("users/{}", urlencode(user)));
}

/// Closes every connection to `vhost` whose client named itself `name`;
/// returns how many it closed.
pub fn close_connections_named(vhost: &str, name: &str) -> usize {
    let connections = management_json(&format!("vhosts/{}/connections", urlencode(vhost)));
    let mut closed = 0;
    for connection in connections.as_array().into_iter().flatten() {
        if connection["client_properties"]["connection_name"] != name {
            continue;
        }
        let id = connection["name"]
            .as_str()
            .expect("a connection has a name");
        management_delete(&format!("connections/{}", urlencode(id))).expect("closing a connection");
        closed += 1;
    }
    closed
}

/// A GET: status and body; status 0 when nothing answered.
pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// Reads one series from a Prometheus text exposition; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.split(' ').next()?.parse().ok()
        })
        .unwrap_or(0.0)
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
