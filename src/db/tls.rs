//! Opening a session to PostgreSQL with the [`Target`] that `database.url`
//! names (see `configuration::postgres`: TLS as libpq users write it).

use diesel::ConnectionResult;
use diesel_async::AsyncPgConnection;

use crate::configuration::Target;

/// Opens a session to `target`, with TLS as its URL asks.
pub(super) async fn connect(target: &Target) -> ConnectionResult<AsyncPgConnection> {
    let (config, tls) = target.connector();
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(|error| diesel::ConnectionError::BadConnection(describe(&error)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// tokio-postgres's error, with the cause (a certificate that does not
/// verify, a refused connection) that its own message leaves out.
fn describe(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message = format!("{message}: {inner}");
        cause = inner.source();
    }
    message
}
