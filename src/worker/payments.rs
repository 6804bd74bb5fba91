//! `payment.succeeded`: record the payment and settle its order.

use chrono::Utc;

use super::{Verdict, Worker};
use crate::{
    db::PaymentEffect,
    domain::{OrderEvent, PaymentSucceeded, Rejection},
    error::Result,
};

pub(super) async fn payment_succeeded(worker: &Worker, body: &[u8]) -> Result<Verdict> {
    let payment = match PaymentSucceeded::parse(body) {
        Ok(payment) => payment,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    let recorded = worker.db.record_payment(&payment, Utc::now()).await?;
    if recorded.first_time {
        worker.metrics.payment_recorded();
    }
    let order_id = &payment.order_id;
    let payment_id = payment.payment_id.as_str();
    match recorded.effect {
        PaymentEffect::Paid(order) => {
            tracing::info!(%order_id, payment_id, "order paid");
            worker.announce(&order).await?;
        }
        PaymentEffect::AlreadyPaid(order) => {
            tracing::info!(%order_id, payment_id, "payment for an order already paid");
            if order.event_published_at.is_none() {
                worker.announce(&order).await?;
            }
        }
        PaymentEffect::AfterClose { order, payment } => {
            tracing::warn!(%order_id, payment_id, "payment after the order was closed");
            if payment.event_published_at.is_none() {
                let event = OrderEvent::paid_after_close(&order, payment_id, payment.received_at);
                worker.publisher.announce(&worker.topology, &event).await?;
                worker.db.mark_payment_announced(payment_id).await?;
                worker.metrics.event_published(event.event);
            }
        }
        PaymentEffect::Early => {
            tracing::info!(%order_id, payment_id, "payment before its order: kept until the order arrives");
        }
        PaymentEffect::Conflict { recorded_for } => {
            return Ok(Verdict::Reject(Rejection::InvalidField {
                field: "payment_id",
                why: format!("{payment_id:?} was already recorded for order {recorded_for}"),
            }));
        }
    }
    Ok(Verdict::Done)
}
