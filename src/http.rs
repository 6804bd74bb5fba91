//! The HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{amqp::ConnectionHealth, db::Database, metrics::Metrics};
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

/// Whether the daemon is connected to RabbitMQ and consuming.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<Option<ConnectionHealth>>>);

impl Readiness {
    /// Consuming on the connection whose health is given.
    pub fn consuming(&self, connection: ConnectionHealth) {
        *self.0.lock().expect("readiness lock") = Some(connection);
    }

    /// Not consuming.
    pub fn stopped(&self) {
        *self.0.lock().expect("readiness lock") = None;
    }

    fn broker_ready(&self) -> bool {
        self.0
            .lock()
            .expect("readiness lock")
            .as_ref()
            .is_some_and(ConnectionHealth::connected)
    }
}

/// How long PostgreSQL may take to answer `/readyz` or `/metrics`.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub db: Database,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if !state.readiness.broker_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not consuming from RabbitMQ\n",
        );
    }
    match tokio::time::timeout(DATABASE_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "PostgreSQL is not answering\n",
        ),
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    // The gauges read from the database keep their last values when it
    // does not answer in time.
    let figures =
        tokio::time::timeout(DATABASE_TIMEOUT, state.db.order_figures(chrono::Utc::now())).await;
    let database_ready = match figures {
        Ok(Ok(figures)) => {
            state.metrics.set_order_figures(&figures);
            true
        }
        _ => false,
    };
    state
        .metrics
        .set_ready(database_ready && state.readiness.broker_ready());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
