//! `payment.succeeded` (from a publisher allowed to say "paid", see
//! `Message::admit`): record the payment, then do
//! what `domain::payment` decides.

use super::{Bus, Store, Worker};
use crate::{
    domain::{Inbound, PaymentSucceeded, Rejection, Verdict},
    error::Result,
};

pub(super) async fn payment_succeeded<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    payment: PaymentSucceeded,
    inbound: &Inbound,
) -> Result<Verdict> {
    let (first_time, recorded) = worker
        .store
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
