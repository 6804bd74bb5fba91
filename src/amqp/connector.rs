//! Opening connections to the broker, with the TLS its settings ask for:
//! `amqps://` URLs verified against the system's roots or `amqp.tls.ca_file`,
//! and a client certificate for mutual TLS.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::{
    ConnectionProperties, DefaultConnectionBuilder, tcp::OwnedIdentity, tcp::OwnedTLSConfig,
};

use crate::{
    configuration::AmqpSettings,
    error::{Error, Result},
};

/// Opens and checks the pool's connections.
pub(super) struct Connector {
    builder: DefaultConnectionBuilder,
}

/// A pooled connection; it goes back to the pool when dropped.
pub(super) type Connection = managed::Object<Connector>;

pub(super) type Pool = managed::Pool<Connector>;

impl Connector {
    pub(super) fn new(settings: &AmqpSettings) -> Result<Self> {
        let builder = DefaultConnectionBuilder::new()
            .map_err(|error| Error::Setup {
                what: "the RabbitMQ client",
                message: error.to_string(),
            })?
            .with_uri_str(settings.url.expose().to_owned())
            .with_properties(ConnectionProperties::default().with_connection_name("paywait".into()))
            .with_tls_config(tls_config(settings)?);
        Ok(Self { builder })
    }
}

/// The CA and client certificate of `amqp.tls`, read from their files.
fn tls_config(settings: &AmqpSettings) -> Result<OwnedTLSConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|error| Error::Setup {
            what: "the RabbitMQ TLS settings",
            message: format!("cannot read {}: {error}", path.display()),
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
        self.builder.connect().await
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
