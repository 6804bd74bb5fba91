//! Carrying out a plan of the core's (`domain::plan`): its steps in their
//! order, through the ports, stopping where a conditional write finds the
//! order moved.

use super::{Bus, Store, Worker};
use crate::{
    domain::{
        Claim, CloseReason, Order, OrderId, PaymentOutcome, Plan, Step, gateway::GatewayAnswer,
    },
    error::{Error, Result},
};

/// How carrying out a plan ended.
#[derive(Debug)]
pub(super) enum Executed {
    /// Every step is done; the order as the last of them left it.
    Done(Option<Order>),
    /// A conditional step found the order moved by someone else first:
    /// the rest was dropped, and the message is decided again on the order
    /// as it is now.
    Moved,
    /// The payment gateway answered, and the answer is planned next.
    Answered(GatewayAnswer),
}

impl<S: Store, B: Bus> Worker<S, B> {
    /// Carries out the steps of `plan` for `order_id`, whose order was read
    /// as `order` (`None`: not known).
    pub(super) async fn execute(
        &self,
        order_id: &OrderId,
        mut order: Option<Order>,
        plan: &Plan,
    ) -> Result<Executed> {
        if let Some(note) = plan.note {
            tracing::debug!("{note}");
        }
        for step in &plan.steps {
            match step {
                Step::WaitForPayments => {
                    let waited = self.bus.wait_for_payments(self.now()).await?;
                    self.metrics.close_waited(waited);
                }
                Step::Close { by_check, reason } => {
                    let closed = self
                        .store
                        .close(order_id, *by_check, self.now(), *reason)
                        .await?;
                    let Some(closed) = closed else {
                        self.metrics.race_lost("close");
                        tracing::info!("the order moved before the close: deciding again");
                        return Ok(Executed::Moved);
                    };
                    if *reason == CloseReason::Cancelled {
                        self.metrics.order_cancelled();
                    } else {
                        // Measured once the close is committed, as the
                        // metric promises.
                        self.metrics.order_closed(self.now() - closed.expires_at);
                    }
                    tracing::info!(
                        attempts = closed.attempts,
                        reason = reason.as_str(),
                        "order closed"
                    );
                    order = Some(closed);
                }
                Step::Settle {
                    payment_id,
                    by_check,
                } => {
                    let settled = self.store.settle(order_id, payment_id, *by_check).await?;
                    let Some(paid) = settled else {
                        // The order left `pending`, or the payment was
                        // decided otherwise, meanwhile.
                        self.metrics.race_lost("settle");
                        return Ok(Executed::Moved);
                    };
                    tracing::info!(%payment_id, "order paid");
                    order = Some(paid);
                }
                Step::Adopt { payment_id } => {
                    if !self.store.adopt(order_id, payment_id).await? {
                        return Ok(Executed::Moved);
                    }
                    tracing::info!(%payment_id, "the payment of an order marked paid in SQL");
                }
                Step::KeepOutcome {
                    payment_id,
                    outcome,
                    attempts,
                    announce,
                } => {
                    let (decided_now, kept) = self
                        .store
                        .decide_payment(payment_id, *outcome, *attempts)
                        .await?;
                    // Whoever decided it announces it.
                    if let Some(order) = &order
                        && (decided_now || *announce == Claim::Skip)
                    {
                        self.announce_payment(order, &kept).await?;
                    }
                    if *outcome != PaymentOutcome::Settled
                        && kept.outcome == Some(PaymentOutcome::Settled)
                    {
                        return Ok(Executed::Moved);
                    }
                }
                Step::AnnouncePayments => {
                    if let Some(order) = &order {
                        for payment in self.store.payments_of(order_id).await? {
                            self.announce_payment(order, &payment).await?;
                        }
                    }
                }
                Step::ArmTimer { check, due_at } => self.arm(order_id, *check, *due_at).await?,
                Step::RecordCheck {
                    check,
                    next_due_at,
                    kind,
                } => {
                    self.store
                        .record_check(order_id, *check, *next_due_at, *kind)
                        .await?;
                }
                Step::Announce => {
                    if let Some(order) = &order {
                        self.announce(order).await?;
                    }
                }
                Step::AnnounceOwed(claim) => {
                    if let Some(order) = &order {
                        self.announce_owed(order, *claim).await?;
                    }
                }
                Step::AskGateway => {
                    // The core plans a question only with a gateway
                    // configured, and about an order it read.
                    let (Some(gateway), Some(order)) = (&self.gateway, &order) else {
                        return Err(Error::Unfinished(
                            "a plan asked the payment gateway without a gateway or an order",
                        ));
                    };
                    let answer = gateway.ask(order).await;
                    tracing::info!(answer = answer.label(), "asked the payment gateway");
                    if let GatewayAnswer::Unusable(why) = &answer {
                        tracing::warn!(why, "no usable answer from the payment gateway");
                    }
                    return Ok(Executed::Answered(answer));
                }
                Step::ChangeDeadline {
                    expires_at,
                    next_check_at,
                    received_at,
                } => {
                    let moved = self
                        .store
                        .change_deadline(
                            order_id,
                            *expires_at,
                            *next_check_at,
                            *received_at,
                            self.now(),
                        )
                        .await?;
                    let Some(moved) = moved else {
                        self.metrics.race_lost("deadline_change");
                        return Ok(Executed::Moved);
                    };
                    tracing::info!(%expires_at, "deadline changed");
                    order = Some(moved);
                }
                Step::KeepDeadlineChange {
                    expires_at,
                    received_at,
                } => {
                    self.store
                        .keep_deadline_change(order_id, *expires_at, *received_at)
                        .await?;
                    if self.store.find(order_id).await?.is_some() {
                        return Ok(Executed::Moved);
                    }
                    tracing::info!(
                        "deadline change before its order: kept until the order arrives"
                    );
                }
                Step::AnnounceDeadlineChange { expires_at } => {
                    if let Some(order) = &order {
                        self.announce_deadline_change(order, *expires_at).await?;
                    }
                }
                Step::ArmReminder(reminder) => {
                    let route = self.timers.route(reminder.due_at(), self.now());
                    self.bus.arm_reminder(reminder, route).await?;
                }
                Step::Remind(reminder) => {
                    if let Some(order) = &order {
                        self.remind(order, reminder).await?;
                    }
                }
                Step::KeepCancellation(cancelled) => {
                    // Kept first, then the order looked for again: an
                    // order stored meanwhile either finds the
                    // cancellation or is found.
                    self.store
                        .record_cancellation(cancelled, self.now())
                        .await?;
                    if self.store.find(order_id).await?.is_some() {
                        return Ok(Executed::Moved);
                    }
                    tracing::info!("cancellation before its order: kept until the order arrives");
                }
            }
        }
        Ok(Executed::Done(order))
    }
}
