//! The worker: carries out what the core decides for each message. It sees
//! messages as [`Inbound`] values and answers each with a [`Verdict`]; the
//! AMQP shell acknowledges, parks or retries accordingly.

mod barrier;
mod cancellations;
mod checks;
mod deadlines;
mod execute;
mod intake;
mod money;
mod payments;
mod ports;
mod reminders;
mod sweeper;

pub use barrier::Barriers;
pub use checks::ChecksInFlight;
pub use ports::{Answer, AskGateway, Bus, Live, Store};
pub use sweeper::{sweep, sweep_periodically};

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::{
    amqp::{Handler, record_order},
    db::Database,
    domain::{
        Attempt, Inbound, Limits, Message, Order, OrderEvent, OrderId, Parked, Rejection, Schedule,
        Timers, Verdict, reminder::RemindBefore,
    },
    error::{Error, Result},
    metrics::Metrics,
    progress::Progress,
};

/// Everything a message handler needs: the world outside through its ports
/// (a live daemon's database and broker by default), and the settings.
pub struct Worker<S = Database, B = Live> {
    pub store: S,
    pub bus: B,
    /// The time now (`Utc::now` but in the model tests).
    pub clock: fn() -> DateTime<Utc>,
    pub schedule: Schedule,
    /// How long before a deadline reminders come (`checks.remind_before`).
    pub remind_before: RemindBefore,
    /// The TTL queues timers travel through, and how they pick one.
    pub timers: Timers,
    /// What paywait accepts of the times an order service states.
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Who may say "paid" (`payments.trusted_users`); empty: anyone.
    pub trusted_users: Vec<String>,
    /// Asked before an unpaid order is closed, when configured.
    pub gateway: Option<Arc<dyn AskGateway>>,
    /// The checks being made now, so that a copy of one is dropped.
    pub checks_in_flight: ChecksInFlight,
    /// Where each message handled and each sweep registers while it runs.
    pub progress: Progress,
}

impl<S: Store, B: Bus> Handler for Worker<S, B> {
    type Error = Error;

    async fn handle(&self, inbound: &Inbound) -> Result<Verdict> {
        let _underway = self.progress.begin();
        let message = match Message::admit(inbound, &self.trusted_users) {
            Ok(message) => message,
            Err(rejection) => return Ok(Verdict::Reject(rejection)),
        };
        record_order(message.order_id());
        let handled = match message {
            Message::Placed(placed) => intake::order_placed(self, placed, inbound).await,
            Message::Payment(payment) => payments::payment_succeeded(self, payment, inbound).await,
            Message::Cancelled(cancelled) => {
                cancellations::order_cancelled(self, cancelled, inbound).await
            }
            Message::DeadlineChanged(changed) => {
                deadlines::deadline_changed(self, changed, inbound).await
            }
            Message::Check(check) => checks::timer_fired(self, check, inbound).await,
            Message::Reminder(reminder) => reminders::reminder_due(self, reminder).await,
        };
        // Data PostgreSQL refused would be refused on every retry: the
        // message is parked, and only failures of the outside world retried.
        match handled {
            Err(error) => match error.refused_data() {
                Some(why) => Ok(Verdict::Reject(Rejection::RefusedByDatabase(why))),
                None => Err(error),
            },
            verdict => verdict,
        }
    }

    async fn record_parked(&self, parked: &Parked) -> Result<()> {
        self.store.record_parked(parked).await
    }

    async fn barrier_passed(&self, token: &str) -> Result<()> {
        self.bus.barrier_passed(token).await
    }
}

impl<S: Store, B: Bus> Worker<S, B> {
    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Arms the timer of check number `attempt`, due at `due_at`: through
    /// the TTL queue that brings it back just early, or straight to the
    /// check queue when it is (nearly) due.
    async fn arm(&self, order_id: &OrderId, attempt: Attempt, due_at: DateTime<Utc>) -> Result<()> {
        let route = self.timers.route(due_at, self.now());
        self.bus.arm_timer(order_id, attempt, due_at, route).await?;
        tracing::debug!(%order_id, attempt = attempt.get(), %due_at, "timer armed");
        Ok(())
    }

    /// Publishes the event of the order's terminal status, then records that
    /// downstream was told.
    async fn announce(&self, order: &Order) -> Result<()> {
        let Some(event) = OrderEvent::for_status(order) else {
            return Ok(());
        };
        self.bus.announce(&event).await?;
        self.store
            .mark_announced(&order.order_id, order.status, order.attempts)
            .await?;
        self.metrics.event_published(&event);
        tracing::info!(
            order_id = %order.order_id,
            event = event.event.name(),
            "event published"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
