//! A reminder's timer came back: send it on its next hop if it is not due
//! yet, or wait out its last moments; then carry out what
//! `domain::reminder` plans.

use super::{Bus, Store, Worker};
use crate::{
    domain::{Order, OrderEvent, ReminderDue, Route, Verdict, reminder},
    error::Result,
};

pub(super) async fn reminder_due<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    due: ReminderDue,
) -> Result<Verdict> {
    match worker.timers.route(due.due_at(), worker.now()) {
        Route::Hop(ttl) => {
            worker.bus.arm_reminder(&due, Route::Hop(ttl)).await?;
            worker.metrics.timer_hopped();
            return Ok(Verdict::Done);
        }
        Route::Hold(wait) => tokio::time::sleep(wait).await,
        Route::Due => {}
    }
    let order = worker.store.find(&due.order_id).await?;
    let plan = reminder::plan(order.as_ref(), &due, worker.now());
    // A reminder's plan holds no conditional write: it moves nothing.
    worker.execute(&due.order_id, order, &plan).await?;
    Ok(plan.reply)
}

impl<S: Store, B: Bus> Worker<S, B> {
    /// Keeps `reminder` of `order` as first due, then publishes its
    /// `order.expiring` unless it was confirmed before, then records that
    /// downstream was told.
    pub(super) async fn remind(&self, order: &Order, reminder: &ReminderDue) -> Result<()> {
        let kept = self.store.keep_reminder(reminder, order.attempts).await?;
        if kept.published_at.is_some() {
            return Ok(());
        }
        let event = OrderEvent::expiring(order, reminder, kept.attempts);
        self.bus.announce(&event).await?;
        self.store.mark_reminded(reminder).await?;
        self.metrics.event_published(&event);
        tracing::info!(before = %reminder.label(), "reminder published");
        Ok(())
    }
}
