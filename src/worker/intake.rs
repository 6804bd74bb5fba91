//! `order.placed`: store the order, then do what `domain::intake` says.

use chrono::Utc;

use super::Worker;
use crate::{
    domain::{
        Attempt, Inbound, IntakeAction, OrderId, OrderPlaced, Verdict,
        intake::{after_placement, new_order},
    },
    error::Result,
};

pub(super) async fn order_placed(worker: &Worker, inbound: &Inbound) -> Result<Verdict> {
    let placed = match OrderPlaced::parse(&inbound.body) {
        Ok(placed) => placed,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    let order_id = placed.order_id.clone();
    let placement = worker
        .db
        .place(new_order(placed, Utc::now(), &worker.schedule))
        .await?;
    match after_placement(placement, inbound.seen_before) {
        IntakeAction::ArmFirstTimer { counts_as_new } => {
            arm_first_timer(worker, &order_id).await?;
            if counts_as_new {
                worker.metrics.order_placed();
                tracing::info!(%order_id, "order placed");
            }
        }
        IntakeAction::Announce {
            order,
            counts_as_new,
        } => {
            if counts_as_new {
                worker.metrics.order_placed();
                tracing::info!(%order_id, "order placed, already paid");
            }
            worker.announce(&order).await?;
        }
        IntakeAction::Nothing => {
            tracing::debug!(%order_id, "repeated order.placed ignored");
        }
    }
    Ok(Verdict::Done)
}

async fn arm_first_timer(worker: &Worker, order_id: &OrderId) -> Result<()> {
    worker
        .publisher
        .arm_timer(
            &worker.topology,
            order_id,
            Attempt::FIRST,
            worker.schedule.first_wait(),
        )
        .await
}
