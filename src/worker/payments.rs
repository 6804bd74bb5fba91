//! `payment.succeeded` (from a publisher allowed to say "paid", see
//! `Message::admit`): record the payment, then carry out what
//! `domain::payment` plans for it.

use super::{Bus, Store, Worker};
use crate::{
    domain::{Inbound, PaymentSucceeded, Verdict, payment},
    error::Result,
};

pub(super) async fn payment_succeeded<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    paid: PaymentSucceeded,
    inbound: &Inbound,
) -> Result<Verdict> {
    let (first_time, recorded) = worker
        .store
        .record_payment(&paid, inbound.received_at)
        .await?;
    if let Err(rejection) = payment::check_recorded(&paid, &recorded) {
        return Ok(Verdict::Reject(rejection));
    }
    if first_time {
        worker.metrics.payment_recorded();
    }
    worker
        .apply_payment(&paid.order_id, recorded, inbound.delivery(), None)
        .await?;
    Ok(Verdict::Done)
}
