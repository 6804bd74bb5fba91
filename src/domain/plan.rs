//! A plan: what the worker does for one message, step by step, in the
//! order the core gives — the writes, the events, the next timer — and
//! what it answers the broker once every step is done.
//!
//! The order of the steps is what keeps a message safe to repeat (see
//! "Order of effects" in ARCHITECTURE.md): a worker that dies between any
//! two of them leaves the message unacknowledged, and its next delivery
//! finds what the steps before did and completes it.
//!
//! A step that moves an order ([`Step::Close`], [`Step::Settle`],
//! [`Step::Adopt`]) is a conditional write, as is keeping what a payment did
//! (it may have settled its order meanwhile) and keeping a cancellation of
//! an order not seen yet (the order may have come meanwhile). When one finds the order moved by someone else first,
//! the rest of the plan is dropped and the message is decided again on the
//! order as it is then.

use chrono::{DateTime, Utc};

use super::{
    Attempt, CheckKind, CloseReason, Delivery, OrderCancelled, PaymentId, PaymentOutcome,
    ReminderDue, Verdict,
};

/// One effect of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait until every payment that reached the broker before now has
    /// been handled (see "On time is when the payment reached the broker"
    /// in ARCHITECTURE.md).
    WaitForPayments,
    /// Close the order if it is still pending (and, but for a cancellation,
    /// its deadline has not moved past now), for `reason`, counting
    /// check number `by_check` among its checks when a check closes it.
    Close {
        by_check: Option<Attempt>,
        reason: CloseReason,
    },
    /// Pay the pending order with a recorded, undecided payment of its own
    /// (a conditional write), counting check number `by_check` among its
    /// checks when a check's question to the gateway brought the payment.
    Settle {
        payment_id: PaymentId,
        by_check: Option<Attempt>,
    },
    /// Take the payment as the one that paid an order marked paid in SQL (a
    /// conditional write, lost to any other payment taken first).
    Adopt { payment_id: PaymentId },
    /// Keep `outcome` as what the payment did, decided when its order had
    /// had `attempts` checks, unless something was decided about it before
    /// (a payment's outcome is decided once); publish its event if this step
    /// decided it, or whatever was decided when `announce` is
    /// [`Claim::Skip`]. Finding it settled its order meanwhile, decide again.
    KeepOutcome {
        payment_id: PaymentId,
        outcome: PaymentOutcome,
        attempts: u32,
        announce: Claim,
    },
    /// Publish the event every payment of the order still owes, then record
    /// each published.
    AnnouncePayments,
    /// Publish the timer of check number `check`, due at `due_at`, and wait
    /// for the broker's confirm.
    ArmTimer {
        check: Attempt,
        due_at: DateTime<Utc>,
    },
    /// Record that check number `check` was made, and that the next one is
    /// due at `next_due_at`.
    RecordCheck {
        check: Attempt,
        next_due_at: DateTime<Utc>,
        kind: CheckKind,
    },
    /// Publish the order's event — the order as the last step left it —
    /// then record that downstream was told.
    Announce,
    /// The same for an order found paid or closed with its event owed, once
    /// this handler has the announcement: see [`Claim`].
    AnnounceOwed(Claim),
    /// Ask the payment gateway about the order; its answer is planned next.
    AskGateway,
    /// Keep the cancellation for an order not seen yet, as received now,
    /// then look for the order again: an order stored meanwhile is
    /// decided again.
    KeepCancellation(OrderCancelled),
    /// Move the pending order's deadline to `expires_at` and its next check
    /// to `next_check_at`, unless a change received after `received_at`
    /// moved it first (a conditional write); keep the change.
    ChangeDeadline {
        expires_at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    },
    /// Keep a deadline change for an order not seen yet, then look for the
    /// order again: an order stored meanwhile is decided again.
    KeepDeadlineChange {
        expires_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    },
    /// Publish `order.deadline_changed` for the change to `expires_at`, if
    /// it is owed, then record it published.
    AnnounceDeadlineChange { expires_at: DateTime<Utc> },
    /// Publish a reminder's timer, due before the deadline it names.
    ArmReminder(ReminderDue),
    /// Keep the reminder (the first time it is due), publish its
    /// `order.expiring` unless it was confirmed before, then record it
    /// published.
    Remind(ReminderDue),
}

/// Whether an owed event is claimed before it is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed first, and left to a claimer that is still at it: without a
    /// fault, one handler announces each event.
    First,
    /// Announced without a claim: the message may have been handled
    /// part-way before, by a handler that claimed it and died. At least
    /// once beats exactly once.
    Skip,
}

impl Claim {
    /// The claim a message makes on this delivery.
    pub fn for_delivery(delivery: Delivery) -> Self {
        match delivery {
            Delivery::First => Self::First,
            Delivery::Again => Self::Skip,
        }
    }
}

/// What the worker does for a message: [`Plan::steps`] in order, then
/// [`Plan::reply`] to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub reply: Verdict,
    /// Why the message moves nothing, when that is worth a line in the
    /// debug log (a duplicate timer, a cancellation of a settled order).
    pub note: Option<&'static str>,
}

impl Plan {
    /// These steps, then acknowledge.
    pub fn steps(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            reply: Verdict::Done,
            note: None,
        }
    }

    /// Nothing to do but acknowledge, for the reason `note` gives.
    pub fn nothing(note: &'static str) -> Self {
        Self::steps([]).noting(note)
    }

    /// This plan, with `note` saying why it moves nothing.
    pub fn noting(self, note: &'static str) -> Self {
        Self {
            note: Some(note),
            ..self
        }
    }

    /// Park the message, for `rejection`.
    pub fn park(rejection: super::Rejection) -> Self {
        Self {
            steps: Vec::new(),
            reply: Verdict::Reject(rejection),
            note: None,
        }
    }

    /// Close a pending order: once every payment before the close has been
    /// handled, so that one that reached the broker first settles the order
    /// instead; then tell downstream.
    pub fn close(by_check: Option<Attempt>, reason: CloseReason) -> Self {
        Self::steps([
            Step::WaitForPayments,
            Step::Close { by_check, reason },
            Step::Announce,
        ])
    }
}
