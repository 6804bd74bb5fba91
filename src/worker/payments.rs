//! `payment.succeeded`: record the payment, then publish what
//! `domain::payment` says.

use chrono::Utc;

use super::Worker;
use crate::{
    domain::{Inbound, PaymentAction, PaymentEffect, PaymentSucceeded, Verdict, payment::respond},
    error::Result,
};

pub(super) async fn payment_succeeded(worker: &Worker, inbound: &Inbound) -> Result<Verdict> {
    let payment = match PaymentSucceeded::parse(&inbound.body) {
        Ok(payment) => payment,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    let recorded = worker.db.record_payment(&payment, Utc::now()).await?;
    if recorded.first_time {
        worker.metrics.payment_recorded();
    }
    let order_id = &payment.order_id;
    let payment_id = payment.payment_id.as_str();
    match &recorded.effect {
        PaymentEffect::Paid(_) => tracing::info!(%order_id, payment_id, "order paid"),
        PaymentEffect::AlreadyPaid(_) => {
            tracing::info!(%order_id, payment_id, "payment for an order already paid");
        }
        PaymentEffect::AfterClose { .. } => {
            tracing::warn!(%order_id, payment_id, "payment after the order was closed");
        }
        PaymentEffect::Early => {
            tracing::info!(%order_id, payment_id, "payment before its order: kept until the order arrives");
        }
        PaymentEffect::Conflict { .. } => {}
    }
    match respond(&recorded.effect, payment_id) {
        PaymentAction::Announce(order) => worker.announce(&order).await?,
        PaymentAction::AnnouncePaidAfterClose(event) => {
            worker.publisher.announce(&worker.topology, &event).await?;
            worker.db.mark_payment_announced(payment_id).await?;
            worker.metrics.event_published(event.event);
        }
        PaymentAction::Nothing => {}
        PaymentAction::Reject(rejection) => return Ok(Verdict::Reject(rejection)),
    }
    Ok(Verdict::Done)
}
