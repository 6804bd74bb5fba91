//! The worker: carries out what the core decides for each message. It sees
//! messages as [`Inbound`] values and answers each with a [`Verdict`]; the
//! AMQP shell acknowledges, parks or retries accordingly.

mod cancellations;
mod checks;
mod intake;
mod money;
mod payments;
mod sweeper;

pub use sweeper::{sweep, sweep_periodically};

use std::sync::Arc;

use crate::{
    amqp::{Handler, Publisher},
    db::Database,
    domain::{Inbound, Inbox, Order, OrderEvent, Schedule, Verdict},
    error::Result,
    gateway::Gateway,
    metrics::Metrics,
    topology::Topology,
};

/// Everything a message handler needs.
pub struct Worker {
    pub db: Database,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub schedule: Schedule,
    pub metrics: Arc<Metrics>,
    /// Who may say "paid" (`payments.trusted_users`); empty: anyone.
    pub trusted_users: Vec<String>,
    /// Asked before an unpaid order is closed, when configured.
    pub gateway: Option<Arc<Gateway>>,
}

impl Handler for Worker {
    async fn handle(&self, inbound: &Inbound) -> Result<Verdict> {
        match inbound.inbox {
            Inbox::Placed => intake::order_placed(self, inbound).await,
            Inbox::Payments => payments::payment_succeeded(self, inbound).await,
            Inbox::Cancellations => cancellations::order_cancelled(self, inbound).await,
            Inbox::Checks => checks::timer_fired(self, inbound).await,
        }
    }
}

impl Worker {
    /// Publishes the event of the order's terminal status, then records that
    /// downstream was told.
    async fn announce(&self, order: &Order) -> Result<()> {
        let Some(event) = OrderEvent::for_status(order) else {
            return Ok(());
        };
        self.publisher.announce(&self.topology, &event).await?;
        self.db
            .mark_announced(&order.order_id, order.status, order.attempts)
            .await?;
        self.metrics.event_published(event.event);
        tracing::info!(
            order_id = %order.order_id,
            event = event.event.name(),
            "event published"
        );
        Ok(())
    }
}
