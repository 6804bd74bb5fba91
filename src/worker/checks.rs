//! A timer fired: check the order and carry out what `domain::decide` says.
//! The order of the steps, and why it is safe, is in `domain::check`.

use chrono::Utc;
use lapin::types::FieldTable;

use super::{Verdict, Worker};
use crate::{
    domain::{CheckDecision, CheckDue, Rejection, decide, time_delta},
    error::Result,
};

pub(super) async fn timer_fired(
    worker: &Worker,
    body: &[u8],
    headers: Option<&FieldTable>,
) -> Result<Verdict> {
    let CheckDue { order_id, attempt } = match CheckDue::parse(body, headers) {
        Ok(due) => due,
        Err(rejection) => return Ok(Verdict::Reject(rejection)),
    };
    let mut order = worker.db.find(&order_id).await?;
    // At most twice: a close that loses the race to a payment decides again.
    loop {
        let Some(current) = order.take() else {
            return Ok(Verdict::Reject(Rejection::UnknownOrder(order_id)));
        };
        let now = Utc::now();
        let decision = decide(&current, attempt, now, &worker.schedule);
        match decision {
            CheckDecision::Announce(_) => {
                let mut current = current;
                current.attempts = current.attempts.max(attempt.get());
                worker.announce(&current).await?;
            }
            CheckDecision::Settled(_) => {}
            CheckDecision::Stale => {
                tracing::debug!(%order_id, attempt = attempt.get(), "duplicate timer dropped");
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
            CheckDecision::Close => match worker.db.close(&order_id, attempt.get(), now).await? {
                Some(closed) => {
                    let lateness = closed.closed_at.unwrap_or(now) - closed.expires_at;
                    worker.metrics.order_closed(lateness);
                    tracing::info!(%order_id, attempts = closed.attempts, "order closed unpaid");
                    worker.announce(&closed).await?;
                }
                None => {
                    tracing::info!(%order_id, "a payment committed before the close");
                    order = worker.db.find(&order_id).await?;
                    continue;
                }
            },
        }
        if let Some(outcome) = decision.outcome() {
            worker.metrics.check_made(outcome);
        }
        return Ok(Verdict::Done);
    }
}
