//! Opening connections to the broker, with the TLS its settings ask for:
//! `amqps://` URLs verified against the system's roots or `amqp.tls.ca_file`,
//! and a client certificate for mutual TLS. paywait opens the TCP socket
//! itself, to set TCP keepalives and `TCP_USER_TIMEOUT` on it before the
//! AMQP client takes it over.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use async_compat::CompatExt;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::{
    ConnectionProperties,
    tcp::{AsyncTcpStream, OwnedIdentity, OwnedTLSConfig},
    uri::{AMQPScheme, AMQPUri},
};

use super::{AmqpError, error::Result};
use crate::configuration::AmqpSettings;

/// Opens and checks the pool's connections: to the broker's nodes in
/// turn, so that a connection lost with its node is opened again on the
/// next one.
pub(super) struct Connector {
    /// Each node's address (for messages) and URI.
    nodes: Vec<(String, AMQPUri)>,
    tls: OwnedTLSConfig,
    /// How long what paywait sent may go unacknowledged before the kernel
    /// gives the connection up.
    unacknowledged: Duration,
    next: AtomicUsize,
}

/// A pooled connection; it goes back to the pool when dropped.
pub(super) type Connection = managed::Object<Connector>;

pub(super) type Pool = managed::Pool<Connector>;

/// How long one node may take to accept a connection before the next is
/// tried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

impl Connector {
    pub(super) fn new(settings: &AmqpSettings) -> Result<Self> {
        let tls = tls_config(settings)?;
        let heartbeat = settings.heartbeat_asked().to_string();
        let nodes = settings
            .nodes()
            .iter()
            .map(|url| {
                // The setting decides, whatever the URL asks.
                let url = url.edited(|url| {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .filter(|(key, _)| key != "heartbeat")
                        .map(|(key, value)| (key.into_owned(), value.into_owned()))
                        .chain([("heartbeat".to_owned(), heartbeat.clone())])
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                });
                let uri = url
                    .expose()
                    .parse::<AMQPUri>()
                    .map_err(AmqpError::NotAnAmqpUrl)?;
                Ok((url.address(), uri))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            nodes,
            tls,
            unacknowledged: settings.heartbeat * 2,
            next: AtomicUsize::new(0),
        })
    }

    /// The nodes' addresses, for messages.
    pub(super) fn addresses(&self) -> String {
        let addresses: Vec<&str> = self
            .nodes
            .iter()
            .map(|(address, _)| address.as_str())
            .collect();
        addresses.join(", ")
    }
}

/// An idle link is probed after this long without traffic, then at this
/// interval, and dropped after this many unanswered probes. The AMQP
/// heartbeat finds a silent broker sooner; these find a dead peer even
/// where the heartbeat is answered by nothing on the way.
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(5))
    .with_interval(Duration::from_secs(2))
    .with_retries(3);

/// Opens a connection to the broker at `uri`: TCP (keepalives on, and
/// `TCP_USER_TIMEOUT` of `unacknowledged`), then TLS for `amqps://`, then
/// AMQP.
async fn open(
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    unacknowledged: Duration,
) -> lapin::Result<lapin::Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    let properties = ConnectionProperties::default().with_connection_name("paywait".into());
    let connect = async move |uri: AMQPUri, _| {
        let host = uri.authority.host.as_str();
        let io = |error: std::io::Error| {
            lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(error)))
        };
        let socket = tokio::net::TcpStream::connect((host, uri.authority.port))
            .await
            .map_err(io)?;
        socket.set_nodelay(true).map_err(io)?;
        let options = socket2::SockRef::from(&socket);
        options.set_tcp_keepalive(&KEEPALIVE).map_err(io)?;
        options
            .set_tcp_user_timeout(Some(unacknowledged))
            .map_err(io)?;
        let stream = AsyncTcpStream::Plain(socket.compat());
        match uri.scheme {
            AMQPScheme::AMQP => Ok(stream),
            AMQPScheme::AMQPS => stream.into_tls(host, tls.as_ref()).await.map_err(io),
        }
    };
    lapin::Connection::connector(uri, runtime, connect, properties).await
}

/// The CA and client certificate of `amqp.tls`, read from their files.
fn tls_config(settings: &AmqpSettings) -> Result<OwnedTLSConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| AmqpError::TlsFile {
            path: path.to_owned(),
            source,
        })
    };
    let tls = &settings.tls;
    let cert_chain = match &tls.ca_file {
        Some(path) => Some(String::from_utf8_lossy(&read(path)?).into_owned()),
        None => None,
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(cert)?,
            key: read(key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

impl managed::Manager for Connector {
    type Type = lapin::Connection;
    type Error = lapin::Error;

    async fn create(&self) -> Result<lapin::Connection, lapin::Error> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..self.nodes.len() {
            let (address, uri) = &self.nodes[(first + i) % self.nodes.len()];
            let attempt = open(uri.clone(), self.tls.clone(), self.unacknowledged);
            match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(error)) if self.nodes.len() == 1 => return Err(error),
                Ok(Err(error)) => failures.push(format!("{address}: {error}")),
                Err(_) => failures.push(format!("{address}: timed out")),
            }
        }
        Err(
            lapin::ErrorKind::IOError(std::sync::Arc::new(std::io::Error::other(
                failures.join("; "),
            )))
            .into(),
        )
    }

    async fn recycle(
        &self,
        connection: &mut lapin::Connection,
        _: &Metrics,
    ) -> RecycleResult<lapin::Error> {
        if connection.status().connected() {
            Ok(())
        } else {
            Err(RecycleError::message("the connection was lost"))
        }
    }
}
