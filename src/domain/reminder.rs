//! Reminders before the close (`checks.remind_before`): for each offset, a
//! timer due that long before the order's deadline publishes
//! `order.expiring` if the order is still pending and still has that
//! deadline.
//!
//! - Reminders are armed with the order's first timer, and again for each
//!   new deadline, for the offsets not past yet; a reminder armed for a
//!   deadline since moved finds another deadline and does nothing.
//! - A reminder is kept (`reminders`) with the order's `attempts` when it
//!   was first due, before it is published, so that every copy of its event
//!   is the same. Its id names the order, the deadline and the offset: one
//!   reminder per offset and deadline, whatever the copies.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Order, OrderId, OrderStatus, ReminderDue, format_duration,
    plan::{Plan, Step},
};

/// The offsets before a deadline at which reminders are due: positive,
/// each once, longest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemindBefore(Vec<Duration>);

impl RemindBefore {
    /// No reminders (the default).
    pub const fn none() -> Self {
        Self(Vec::new())
    }

    pub fn new(mut offsets: Vec<Duration>) -> Result<Self, String> {
        if let Some(zero) = offsets.iter().find(|offset| offset.is_zero()) {
            return Err(format!(
                "{} is not before the deadline",
                format_duration(*zero)
            ));
        }
        offsets.sort_by(|a, b| b.cmp(a));
        if let Some(pair) = offsets.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("{} is listed twice", format_duration(pair[0])));
        }
        Ok(Self(offsets))
    }

    pub fn offsets(&self) -> &[Duration] {
        &self.0
    }
}

/// The reminders of `order_id`, due at `expires_at`, still ahead at `now`.
pub fn ahead(
    order_id: &OrderId,
    expires_at: DateTime<Utc>,
    remind_before: &RemindBefore,
    now: DateTime<Utc>,
) -> Vec<Step> {
    remind_before
        .offsets()
        .iter()
        .map(|before| ReminderDue {
            order_id: order_id.clone(),
            expires_at,
            before: *before,
        })
        .filter(|reminder| reminder.due_at() > now)
        .map(Step::ArmReminder)
        .collect()
}

/// What a reminder's timer does with `order` (as read, if known) at `now`:
/// a reminder that comes once its deadline has passed (paywait behind)
/// would tell of a close already due, and is dropped.
pub fn plan(order: Option<&Order>, reminder: &ReminderDue, now: DateTime<Utc>) -> Plan {
    match order {
        Some(order) if order.status == OrderStatus::Pending => {
            if order.expires_at != reminder.expires_at {
                Plan::nothing("a reminder for a deadline since moved dropped")
            } else if now >= reminder.expires_at {
                Plan::nothing("a reminder that came after its deadline dropped")
            } else {
                Plan::steps([Step::Remind(reminder.clone())])
            }
        }
        Some(_) => Plan::nothing("a reminder for a settled order dropped"),
        None => Plan::nothing("a reminder for an order not known dropped"),
    }
}

/// A reminder as paywait keeps it, once it is first due.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordedReminder {
    /// The order's checks when the reminder was first due.
    pub attempts: u32,
    /// When its event was confirmed by the broker.
    pub published_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeDelta;

    use super::*;
    use crate::domain::test_order;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn offsets_are_positive_distinct_and_longest_first() {
        let offsets = RemindBefore::new(vec![secs(60), secs(900)]).unwrap();
        assert_eq!(offsets.offsets(), [secs(900), secs(60)]);
        assert!(
            RemindBefore::new(vec![secs(60), secs(60)])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            RemindBefore::new(vec![Duration::ZERO])
                .unwrap_err()
                .contains("not before")
        );
        assert!(RemindBefore::none().offsets().is_empty());
    }

    #[test]
    fn reminders_are_armed_for_the_offsets_still_ahead() {
        let order = test_order(OrderStatus::Pending);
        let offsets = RemindBefore::new(vec![secs(900), secs(120)]).unwrap();
        // 20 minutes before the deadline: both ahead.
        let now = order.expires_at - TimeDelta::minutes(20);
        let armed = ahead(&order.order_id, order.expires_at, &offsets, now);
        let due: Vec<_> = armed
            .iter()
            .map(|step| match step {
                Step::ArmReminder(reminder) => (reminder.label(), reminder.due_at()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            due,
            [
                ("15m".to_owned(), order.expires_at - TimeDelta::minutes(15)),
                ("2m".to_owned(), order.expires_at - TimeDelta::minutes(2)),
            ]
        );
        // Ten minutes before: the 15-minute reminder is past.
        let now = order.expires_at - TimeDelta::minutes(10);
        assert_eq!(
            ahead(&order.order_id, order.expires_at, &offsets, now).len(),
            1
        );
        // At the deadline, or with no offsets: none.
        assert!(
            ahead(
                &order.order_id,
                order.expires_at,
                &offsets,
                order.expires_at
            )
            .is_empty()
        );
        assert!(
            ahead(
                &order.order_id,
                order.expires_at,
                &RemindBefore::none(),
                now
            )
            .is_empty()
        );
    }

    #[test]
    fn a_reminder_reminds_only_a_pending_order_of_the_deadline_it_names() {
        let order = test_order(OrderStatus::Pending);
        let reminder = ReminderDue {
            order_id: order.order_id.clone(),
            expires_at: order.expires_at,
            before: secs(300),
        };
        let now = reminder.due_at();
        assert_eq!(
            plan(Some(&order), &reminder, now).steps,
            [Step::Remind(reminder.clone())]
        );
        // Come once its deadline passed: dropped.
        let late = plan(Some(&order), &reminder, order.expires_at);
        assert!(late.steps.is_empty() && late.note.is_some());
        let moved = Order {
            expires_at: order.expires_at + TimeDelta::minutes(10),
            ..order.clone()
        };
        for other in [
            Some(moved),
            Some(test_order(OrderStatus::Paid)),
            Some(test_order(OrderStatus::Closed)),
            None,
        ] {
            let planned = plan(other.as_ref(), &reminder, now);
            assert!(
                planned.steps.is_empty() && planned.note.is_some(),
                "{other:?}"
            );
        }
    }
}
