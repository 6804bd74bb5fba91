//! Gathers the figures of a [`Status`] from the database, the broker and
//! the daemon's HTTP listener, for `paywait status` and `/api/status`.

use std::{net::SocketAddr, time::Duration};

use chrono::Utc;

use crate::{
    amqp::Topology,
    amqp::{self, Broker},
    db::Database,
    domain::{DaemonFigures, Status},
    error::{Error, Result},
};

/// How long the daemon's `/readyz` may take to answer.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The status as of now, the daemon's readiness given.
pub async fn gather(
    db: &Database,
    broker: &Broker,
    topology: &Topology,
    daemon: DaemonFigures,
) -> Result<Status> {
    let as_of = Utc::now();
    let (orders, parked, queues) = tokio::try_join!(
        async { Ok::<_, Error>(db.order_figures(as_of).await?) },
        async { Ok(db.parked_by_reason().await?) },
        async { Ok(amqp::queue_figures(broker, topology).await?) },
    )?;
    Ok(Status::assess(as_of, orders, parked, queues, daemon))
}

/// Asks the daemon listening on `listen` whether it is ready.
pub async fn ask_daemon(listen: SocketAddr) -> DaemonFigures {
    let address = reachable(listen);
    let ready = match reqwest::Client::builder()
        .timeout(READINESS_TIMEOUT)
        .build()
    {
        Ok(client) => client
            .get(format!("http://{address}/readyz"))
            .send()
            .await
            .ok()
            .map(|response| response.status().is_success()),
        Err(_) => None,
    };
    DaemonFigures {
        address: address.to_string(),
        ready,
    }
}

/// The address to reach a listener bound to `listen`: a wildcard address
/// is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(match listen {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:9464".parse().unwrap()),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:9464".parse().unwrap()),
            "[::1]:9464".parse().unwrap()
        );
        assert_eq!(
            reachable("10.0.0.5:9464".parse().unwrap()),
            "10.0.0.5:9464".parse().unwrap()
        );
    }
}
