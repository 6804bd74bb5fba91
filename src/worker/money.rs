//! Carrying out what a payment does, for every way one arrives: a
//! `payment.succeeded`, a payment that waited for its order, a gateway that
//! says "paid".

use super::{Bus, Store, Worker, execute::Executed};
use crate::{
    domain::{Attempt, Claim, Delivery, Order, OrderId, RecordedPayment, payment},
    error::{Error, Result},
};

/// At most this many times a payment is planned again after losing a race:
/// each lost race leaves the order terminal, so the next plan stands.
pub(super) const PLANS: usize = 3;

impl<S: Store, B: Bus> Worker<S, B> {
    /// Does what `payment`, recorded for `order_id`, does to its order, and
    /// publishes what that owes downstream; returns the order as it stands
    /// after (`None` while it is not known). `delivery`: that of the message
    /// that brought it. `by_check`: the
    /// check that brought it (the gateway's answer), counted among the
    /// order's checks when it pays it.
    pub(super) async fn apply_payment(
        &self,
        order_id: &OrderId,
        mut payment: RecordedPayment,
        delivery: Delivery,
        by_check: Option<Attempt>,
    ) -> Result<Option<Order>> {
        let mut order = self.store.find(order_id).await?;
        for _ in 0..PLANS {
            let plan = payment::plan(order.as_ref(), &payment, delivery, by_check);
            if order.is_none() {
                tracing::info!(
                    payment_id = %payment.payment_id,
                    "payment before its order: kept until the order arrives"
                );
            }
            match self.execute(order_id, order.clone(), &plan).await? {
                Executed::Done(after) => return Ok(after),
                // Decide again on the order and the payment as they are.
                Executed::Moved | Executed::Answered(_) => {
                    (order, payment) = self.reread(order_id, payment).await?;
                }
            }
        }
        Err(Error::Unfinished(
            "a payment found its order moved by each of its plans",
        ))
    }

    /// The order and the payment as they stand now, after a write that
    /// found them moved.
    async fn reread(
        &self,
        order_id: &OrderId,
        payment: RecordedPayment,
    ) -> Result<(Option<Order>, RecordedPayment)> {
        let order = self.store.find(order_id).await?;
        let payment = self
            .store
            .payment(&payment.payment_id)
            .await?
            .unwrap_or(payment);
        Ok((order, payment))
    }

    /// Publishes the event of a payment that did not settle its order, if
    /// it is owed, then records that downstream was told.
    pub(super) async fn announce_payment(
        &self,
        order: &Order,
        payment: &RecordedPayment,
    ) -> Result<()> {
        let Some(event) = payment.owed_event(order) else {
            return Ok(());
        };
        tracing::warn!(
            payment_id = %payment.payment_id,
            event = event.event.name(),
            "a payment did not settle its order"
        );
        self.bus.announce(&event).await?;
        self.store
            .mark_payment_announced(&payment.payment_id)
            .await?;
        self.metrics.event_published(&event);
        Ok(())
    }

    /// Publishes the terminal event `order` owes, if it owes one, once this
    /// handler has the announcement as `claim` says. (The handler whose
    /// write moved the order announces it without a claim.)
    pub(super) async fn announce_owed(&self, order: &Order, claim: Claim) -> Result<()> {
        if !order.owes_event() {
            return Ok(());
        }
        let claimed = match claim {
            Claim::Skip => Some(order.clone()),
            Claim::First => self.store.claim_announcement(&order.order_id).await?,
        };
        if let Some(order) = claimed {
            self.announce(&order).await?;
        }
        Ok(())
    }
}
