//! The worker: what paywait does with each message it consumes.

mod backlog;
mod checks;
mod consumer;
mod intake;
mod payments;
mod sweeper;

pub use backlog::poll_queue_depths;
pub use consumer::consume;
pub use sweeper::{sweep, sweep_periodically};

use std::sync::Arc;

use lapin::message::Delivery;

use crate::{
    amqp::Publisher,
    db::Database,
    domain::{Order, OrderEvent, Rejection, Schedule},
    error::Result,
    metrics::Metrics,
    topology::Topology,
};

/// The queues paywait consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbox {
    /// `order.placed` messages.
    Placed,
    /// `payment.succeeded` messages.
    Payments,
    /// Timers that expired.
    Checks,
}

impl Inbox {
    pub const ALL: [Self; 3] = [Self::Placed, Self::Payments, Self::Checks];

    pub fn queue(self, topology: &Topology) -> &str {
        match self {
            Self::Placed => &topology.placed_queue,
            Self::Payments => &topology.payments_queue,
            Self::Checks => &topology.checks_queue,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Payments => "payments",
            Self::Checks => "checks",
        }
    }
}

/// How a message was dealt with.
#[derive(Debug)]
pub enum Verdict {
    /// Its effects are committed and every message it caused is confirmed.
    Done,
    /// It cannot be processed and goes to the dead queue.
    Reject(Rejection),
}

/// Everything a message handler needs.
pub struct Worker {
    pub db: Database,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub schedule: Schedule,
    pub metrics: Arc<Metrics>,
}

impl Worker {
    /// Processes one delivery from `inbox`. Safe to repeat: every handler
    /// finds what an earlier, interrupted run already did. `retry` says that
    /// this process already tried the delivery and failed part-way.
    pub async fn handle(&self, inbox: Inbox, delivery: &Delivery, retry: bool) -> Result<Verdict> {
        let seen_before = retry || delivery.redelivered;
        match inbox {
            Inbox::Placed => intake::order_placed(self, &delivery.data, seen_before).await,
            Inbox::Payments => payments::payment_succeeded(self, &delivery.data).await,
            Inbox::Checks => {
                checks::timer_fired(self, &delivery.data, delivery.properties.headers().as_ref())
                    .await
            }
        }
    }

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
