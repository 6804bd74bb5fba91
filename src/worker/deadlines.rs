//! `order.deadline_changed`: carry out what `domain::deadline` plans — move
//! a pending order's deadline and arm its next check, close it when the new
//! deadline is past, or keep the change for an order not seen yet.

use chrono::DateTime;

use super::{Bus, Store, Worker, execute::Executed};
use crate::{
    domain::{DeadlineChanged, Inbound, Order, OrderEvent, Verdict, deadline},
    error::{Error, Result},
};

/// A change that lost its race (to a payment, a close or a later change),
/// or was kept just as its order arrived, is planned again; the order is
/// then known, settled or superseded, and its plan moves nothing.
pub(super) const PLANS: usize = 3;

pub(super) async fn deadline_changed<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    changed: DeadlineChanged,
    inbound: &Inbound,
) -> Result<Verdict> {
    let order_id = &changed.order_id;
    for _ in 0..PLANS {
        let order = worker.store.find(order_id).await?;
        let now = worker.now();
        let decision = deadline::decide(
            order.as_ref(),
            &changed,
            inbound.received_at,
            now,
            &worker.schedule,
            worker.limits.max_deadline,
        );
        let plan = deadline::plan(
            order.as_ref(),
            &decision,
            &changed,
            inbound.received_at,
            now,
            inbound.delivery(),
            &worker.remind_before,
        );
        match worker.execute(order_id, order, &plan).await? {
            Executed::Moved => continue,
            Executed::Done(_) | Executed::Answered(_) => {
                worker.metrics.deadline_change(decision.outcome());
                return Ok(plan.reply);
            }
        }
    }
    Err(Error::Unfinished(
        "a deadline change found its order moved by each of its plans",
    ))
}

impl<S: Store, B: Bus> Worker<S, B> {
    /// Publishes `order.deadline_changed` for the change of `order` to
    /// `expires_at`, if it is owed, then records that downstream was told.
    pub(super) async fn announce_deadline_change(
        &self,
        order: &Order,
        expires_at: DateTime<chrono::Utc>,
    ) -> Result<()> {
        let Some(change) = self
            .store
            .deadline_change(&order.order_id, expires_at)
            .await?
        else {
            return Ok(());
        };
        if change.event_published_at.is_some() {
            return Ok(());
        }
        let Some(event) = OrderEvent::deadline_changed(order, &change) else {
            return Ok(());
        };
        self.bus.announce(&event).await?;
        self.store
            .mark_deadline_change_announced(&order.order_id, expires_at)
            .await?;
        self.metrics.event_published(&event);
        Ok(())
    }
}
