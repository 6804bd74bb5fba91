//! Carrying out what a payment does, for every way one arrives: a
//! `payment.succeeded`, a payment that waited for its order, a gateway that
//! says "paid".

use super::{Bus, Store, Worker};
use crate::{
    domain::{
        Attempt, Order, OrderId, OrderStatus, PaymentDecision, PaymentOutcome, RecordedPayment,
        payment::decide,
    },
    error::Result,
};

/// At most this many times a payment is decided again after losing a race:
/// each lost race leaves the order terminal, so the next decision stands.
const DECISIONS: usize = 3;

impl<S: Store, B: Bus> Worker<S, B> {
    /// Does what `payment`, recorded for `order_id`, does to its order, and
    /// publishes what that owes downstream; returns the order as it stands
    /// after (`None` while it is not known). `seen_before`: the message that
    /// brought it may have been handled part-way already. `by_check`: the
    /// check that brought it (the gateway's answer), counted among the
    /// order's checks when it pays it.
    pub(super) async fn apply_payment(
        &self,
        order_id: &OrderId,
        mut payment: RecordedPayment,
        seen_before: bool,
        by_check: Option<Attempt>,
    ) -> Result<Option<Order>> {
        let mut order = self.store.find(order_id).await?;
        for _ in 0..DECISIONS {
            match decide(order.as_ref(), &payment) {
                PaymentDecision::Settle => {
                    if let Some(paid) = self
                        .store
                        .settle(order_id, &payment.payment_id, by_check)
                        .await?
                    {
                        tracing::info!(payment_id = payment.payment_id, "order paid");
                        self.announce(&paid).await?;
                        return Ok(Some(paid));
                    }
                    // The order left `pending`, or the payment was decided
                    // otherwise, meanwhile: decide again on both as they are.
                    self.metrics.race_lost("settle");
                    (order, payment) = self.reread(order_id, payment).await?;
                }
                PaymentDecision::Adopt => {
                    if self.store.adopt(order_id, &payment.payment_id).await? {
                        tracing::info!(
                            payment_id = payment.payment_id,
                            "the payment of an order marked paid in SQL"
                        );
                        if let Some(order) = &order {
                            self.announce_owed(order, seen_before).await?;
                        }
                        return Ok(order);
                    }
                    // Another payment was taken first, or this one decided
                    // otherwise: decide again on both as they are.
                    (order, payment) = self.reread(order_id, payment).await?;
                }
                PaymentDecision::Keep(outcome) => {
                    let kept = self
                        .keep_outcome(order.as_ref(), &payment.payment_id, outcome, seen_before)
                        .await?;
                    if kept.outcome == Some(PaymentOutcome::Settled) {
                        payment = kept;
                        continue;
                    }
                    return Ok(order);
                }
                PaymentDecision::AlreadySettled => {
                    if let Some(order) = &order {
                        self.announce_owed(order, seen_before).await?;
                    }
                    return Ok(order);
                }
                PaymentDecision::Early => {
                    tracing::info!(
                        payment_id = payment.payment_id,
                        "payment before its order: kept until the order arrives"
                    );
                    return Ok(None);
                }
            }
        }
        Ok(order)
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

    /// Keeps `outcome` as what a payment did to `order` (as it stood when
    /// decided), unless something was decided about it before, and
    /// announces it if this call decided it (or may have before,
    /// `seen_before`); returns the payment as it stands.
    pub(super) async fn keep_outcome(
        &self,
        order: Option<&Order>,
        payment_id: &str,
        outcome: PaymentOutcome,
        seen_before: bool,
    ) -> Result<RecordedPayment> {
        let attempts = order.map_or(0, |order| order.attempts);
        let (decided_now, kept) = self
            .store
            .decide_payment(payment_id, outcome, attempts)
            .await?;
        // Whoever decided it announces it.
        if let Some(order) = order
            && (decided_now || seen_before)
        {
            self.announce_payment(order, &kept).await?;
        }
        Ok(kept)
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
            payment_id = payment.payment_id,
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

    /// Publishes the order's terminal event if downstream has not heard it
    /// and no other handler is telling it (see [`Worker::claim_owed`]).
    pub(super) async fn announce_owed(&self, order: &Order, seen_before: bool) -> Result<()> {
        if let Some(order) = self.claim_owed(order, seen_before).await? {
            self.announce(&order).await?;
        }
        Ok(())
    }

    /// Whether this handler announces the terminal event `order` owes, and
    /// the order to announce. The handler whose write moved the order
    /// announces it; any other that finds the event owed claims it first,
    /// and leaves it to a claimer that is still at it. Without a fault, one
    /// handler announces each event. A message that may have been handled
    /// part-way before announces without a claim: at least once beats
    /// exactly once.
    pub(super) async fn claim_owed(
        &self,
        order: &Order,
        seen_before: bool,
    ) -> Result<Option<Order>> {
        if order.status == OrderStatus::Pending || order.event_published_at.is_some() {
            return Ok(None);
        }
        if seen_before {
            return Ok(Some(order.clone()));
        }
        self.store.claim_announcement(&order.order_id).await
    }
}
