//! `order.cancelled`: carry out what `domain::cancellation` plans — close a
//! pending order at once, or keep the cancellation for an order not seen
//! yet.

use super::{Bus, Store, Worker, execute::Executed};
use crate::{
    domain::{Inbound, OrderCancelled, Verdict, cancellation},
    error::{Error, Result},
};

/// A close that lost its race, or a cancellation kept just as its order
/// arrived, is planned again; the order is then known or terminal, and its
/// plan moves nothing.
pub(super) const PLANS: usize = 3;

pub(super) async fn order_cancelled<S: Store, B: Bus>(
    worker: &Worker<S, B>,
    cancelled: OrderCancelled,
    inbound: &Inbound,
) -> Result<Verdict> {
    let order_id = &cancelled.order_id;
    for _ in 0..PLANS {
        let order = worker.store.find(order_id).await?;
        let plan = cancellation::plan(order.as_ref(), &cancelled, inbound.delivery());
        match worker.execute(order_id, order, &plan).await? {
            Executed::Moved => continue,
            Executed::Done(_) | Executed::Answered(_) => return Ok(plan.reply),
        }
    }
    Err(Error::Unfinished(
        "a cancellation found its order moved by each of its plans",
    ))
}
