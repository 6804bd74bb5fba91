//! A timer fired: check the order and carry out what `domain::check`
//! decides. The order of the steps, and why it is safe, is in
//! `domain::check`.

use chrono::Utc;

use super::Worker;
use crate::{
    domain::{
        CheckDecision, CheckDue, Inbound, Rejection, Verdict, after_lost_close, decide, time_delta,
    },
    error::Result,
};

pub(super) async fn timer_fired(worker: &Worker, inbound: &Inbound) -> Result<Verdict> {
    let CheckDue { order_id, attempt } = match CheckDue::parse(&inbound.body, &inbound.attempt) {
        Ok(due) => due,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    let schedule = &worker.schedule;
    let now = Utc::now();
    let order = worker.db.find(&order_id).await?;
    let (decision, order) = match decide(order.as_ref(), attempt, now, schedule) {
        CheckDecision::Close => match worker.db.close(&order_id, attempt.get(), now).await? {
            Some(closed) => {
                let lateness = closed.closed_at.unwrap_or(now) - closed.expires_at;
                worker.metrics.order_closed(lateness);
                tracing::info!(%order_id, attempts = closed.attempts, "order closed unpaid");
                (CheckDecision::Close, Some(closed))
            }
            None => {
                tracing::info!(%order_id, "a payment committed before the close");
                let order = worker.db.find(&order_id).await?;
                (
                    after_lost_close(order.as_ref(), attempt, now, schedule),
                    order,
                )
            }
        },
        decision => (decision, order),
    };
    match decision {
        // The closed order, or a terminal one whose event is owed.
        CheckDecision::Close | CheckDecision::Announce(_) => {
            if let Some(order) = order {
                worker.announce(&order.counting_check(attempt)).await?;
            }
        }
        CheckDecision::Reschedule { next, wait } => {
            worker
                .publisher
                .arm_timer(&worker.topology, &order_id, next, wait)
                .await?;
            worker
                .db
                .record_check(&order_id, attempt.get(), now + time_delta(wait))
                .await?;
        }
        CheckDecision::UnknownOrder => {
            return Ok(Verdict::Reject(Rejection::UnknownOrder(order_id)));
        }
        CheckDecision::Stale => {
            tracing::debug!(%order_id, attempt = attempt.get(), "duplicate timer dropped");
        }
        CheckDecision::Settled(_) => {}
    }
    if let Some(outcome) = decision.outcome() {
        worker.metrics.check_made(outcome);
    }
    Ok(Verdict::Done)
}
