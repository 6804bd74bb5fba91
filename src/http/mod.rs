//! The HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, the status page
//! `/` and an order's page `/orders/{order_id}`, and the same as JSON
//! (`/api/status`, `/api/orders/{order_id}`). Nothing here changes
//! anything.

mod pages;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use serde::Deserialize;

use crate::{
    amqp::Topology,
    amqp::{Broker, ConnectionHealth},
    db::Database,
    domain::{DaemonFigures, OrderId, OrderStory, Status},
    error::Result,
    metrics::Metrics,
    worker::Barriers,
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

/// How long closes may wait for a barrier through the payments queue before
/// the daemon counts as not ready: the payments consumer (this daemon's or
/// another's) is stuck, or far behind.
const PAYMENTS_STUCK: Duration = Duration::from_secs(60);

/// How long PostgreSQL may take to answer `/readyz` or `/metrics`.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many of the newest parked messages of each reason the page shows.
const PARKED_PER_REASON: i64 = 3;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub db: Database,
    pub broker: Broker,
    pub topology: Arc<Topology>,
    /// Where this listener answers, as the status reports the daemon.
    pub address: String,
    /// The barriers this daemon's closes wait for.
    pub barriers: Arc<Barriers>,
}

/// Serves the endpoints on `listener` until `stop` is cancelled, letting
/// the requests in hand finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/orders", get(find_order))
        .route("/orders/{order_id}", get(order_page))
        .route("/api/status", get(status_json))
        .route("/api/orders/{order_id}", get(order_json))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

impl HttpState {
    /// The status as `paywait status` would report it, this daemon's
    /// readiness included: a status gathered at all means PostgreSQL
    /// answered, so only the broker's side is left to ask.
    async fn status(&self) -> Result<Status> {
        let daemon = DaemonFigures {
            address: self.address.clone(),
            ready: Some(self.readiness.broker_ready()),
        };
        crate::status::gather(&self.db, &self.broker, &self.topology, daemon).await
    }

    /// The story of the order `asked` names, if there is one.
    async fn story(&self, asked: &str) -> Result<Option<OrderStory>> {
        let Ok(order_id) = OrderId::parse(asked) else {
            return Ok(None);
        };
        let Some(order) = self.db.find(&order_id).await? else {
            return Ok(None);
        };
        let payments = self.db.payments_of(&order_id).await?;
        let changes = self.db.deadline_changes_of(&order_id).await?;
        Ok(Some(OrderStory::tell(order, payments, changes)))
    }
}

/// What the page says when the database or the broker did not answer.
fn unavailable(error: &crate::error::Error) -> Response {
    tracing::warn!(%error, "the status page could not be drawn");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(pages::unavailable(&error.to_string()).into_string()),
    )
        .into_response()
}

async fn status_page(State(state): State<HttpState>) -> Response {
    let gathered = tokio::try_join!(state.status(), async {
        Ok(state.db.recent_parked(PARKED_PER_REASON).await?)
    });
    match gathered {
        Ok((status, parked)) => {
            let (closes, mean) = state.metrics.close_waits();
            Html(
                pages::status_page(
                    &status,
                    &parked,
                    &state.metrics.close_lateness_buckets(),
                    &state.metrics.recent_events(),
                    &pages::PaymentsWait {
                        closes,
                        mean,
                        waiting_for: state.barriers.closes_waiting_for(),
                    },
                )
                .into_string(),
            )
            .into_response()
        }
        Err(error) => unavailable(&error),
    }
}

async fn status_json(State(state): State<HttpState>) -> Response {
    match state.status().await {
        Ok(status) => Json(status).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Search {
    order_id: String,
}

/// The search box: on to the order's page.
async fn find_order(Query(search): Query<Search>) -> Response {
    let asked = search.order_id.trim();
    match OrderId::parse(asked) {
        Ok(order_id) => Redirect::to(&format!("/orders/{order_id}")).into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            Html(pages::order_not_found(asked).into_string()),
        )
            .into_response(),
    }
}

async fn order_page(State(state): State<HttpState>, Path(asked): Path<String>) -> Response {
    match state.story(&asked).await {
        Ok(Some(story)) => Html(pages::order_page(&story).into_string()).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(pages::order_not_found(&asked).into_string()),
        )
            .into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn order_json(State(state): State<HttpState>, Path(asked): Path<String>) -> Response {
    match state.story(&asked).await {
        Ok(Some(story)) => Json(story).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no order {asked}")})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": error.to_string()})),
        )
            .into_response(),
    }
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
    if state
        .barriers
        .closes_waiting_for()
        .is_some_and(|age| age > PAYMENTS_STUCK)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "closes are waiting for the payments queue: payments are not being handled, or a barrier cannot be sent through it\n",
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
    let waiting_for = state.barriers.closes_waiting_for();
    state.metrics.set_payments_wait(waiting_for);
    let payments_moving = waiting_for.is_none_or(|age| age <= PAYMENTS_STUCK);
    state
        .metrics
        .set_ready(database_ready && payments_moving && state.readiness.broker_ready());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
