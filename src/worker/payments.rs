//! `payment.succeeded`: check who says "paid", record the payment, then do
//! what `domain::payment` decides.

use super::Worker;
use crate::amqp::record_order;
use crate::{
    domain::{Inbound, PaymentSucceeded, Rejection, Verdict, payment::check_publisher},
    error::Result,
};

pub(super) async fn payment_succeeded(worker: &Worker, inbound: &Inbound) -> Result<Verdict> {
    if let Err(rejection) = check_publisher(&worker.trusted_users, inbound.user_id.as_deref()) {
        return Ok(Verdict::Reject(rejection));
    }
    let payment = match PaymentSucceeded::parse(&inbound.body) {
        Ok(payment) => payment,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    record_order(&payment.order_id);
    let (first_time, recorded) = worker
        .db
        .record_payment(&payment, inbound.received_at)
        .await?;
    if recorded.order_id != payment.order_id.as_str() {
        return Ok(Verdict::Reject(Rejection::InvalidField {
            field: "payment_id",
            why: format!(
                "{:?} was already recorded for order {}",
                recorded.payment_id, recorded.order_id
            ),
        }));
    }
    if first_time {
        worker.metrics.payment_recorded();
    }
    worker
        .apply_payment(&payment.order_id, recorded, inbound.seen_before, None)
        .await?;
    Ok(Verdict::Done)
}
