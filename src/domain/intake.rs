//! What happens when an order is placed.
//!
//! The worker builds the order to store with [`new_order`] and stores it;
//! the database answers with a [`Placement`]. Payments and a cancellation
//! that came before the order waited for it: [`on_arrival`] plays them in
//! the order they came, and [`plan`] says what the worker does then. Storing is idempotent, so a message handled twice
//! changes nothing the second time; what a repeat must still do — arm a
//! timer a crash may have lost, announce an event still owed — is decided
//! here too.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    Attempt, CloseReason, Currency, Delivery, Order, OrderId, OrderPlaced, OrderStatus, PaymentId,
    PaymentOutcome, RecordedPayment, Rejection, Schedule,
    deadline::{self, ChangeDecision, DeadlineRules},
    message::DeadlineChanged,
    payment::{PaymentDecision, decide},
    plan::{Claim, Plan, Step},
    reminder, time_delta, to_the_microsecond,
};

/// An order ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub amount_cents: Option<i64>,
    pub currency: Option<Currency>,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When the first check is due.
    pub next_check_at: DateTime<Utc>,
}

/// What paywait accepts of the times an order service states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest time from `placed_at` to an order's own deadline.
    pub max_deadline: Duration,
    /// How far ahead of paywait's clock a `placed_at` may be.
    pub max_clock_skew: Duration,
}

/// The order an `order.placed` received at `now` stores, and how far ahead
/// of paywait's clock its `placed_at` was when that was more than allowed.
///
/// It was placed when the message says (or now), is due when the message
/// says (at most `max_deadline` later) or after the whole schedule, and is
/// first checked when the schedule plans. A `placed_at` further ahead than
/// `max_clock_skew` is taken as now, and its deadline moved with it: the
/// order never waits for a date that is not coming.
pub fn new_order(
    placed: OrderPlaced,
    now: DateTime<Utc>,
    schedule: &Schedule,
    limits: &Limits,
) -> Result<(NewOrder, Option<TimeDelta>), Rejection> {
    let now = to_the_microsecond(now);
    let stated = placed.placed_at.unwrap_or(now);
    let window = match placed.expires_at {
        None => schedule.total(),
        Some(expires_at) => {
            let window = (expires_at - stated).to_std().ok().filter(|w| !w.is_zero());
            let Some(window) = window else {
                return Err(Rejection::InvalidField {
                    field: "expires_at",
                    why: format!("{expires_at} is not after placed_at ({stated})"),
                });
            };
            if window > limits.max_deadline {
                return Err(Rejection::InvalidField {
                    field: "expires_at",
                    why: format!(
                        "it is more than checks.max_deadline ({}) after placed_at",
                        super::format_duration(limits.max_deadline)
                    ),
                });
            }
            window
        }
    };
    let ahead = stated - now;
    let skewed = ahead > time_delta(limits.max_clock_skew);
    let placed_at = if skewed { now } else { stated };
    let mut order = NewOrder {
        order_id: placed.order_id,
        amount_cents: placed.amount_cents,
        currency: placed.currency,
        placed_at,
        expires_at: placed_at + time_delta(window),
        next_check_at: now,
    };
    order.next_check_at = placed_at + time_delta(schedule.next_offset(now - placed_at, window));
    Ok((order, skewed.then_some(ahead)))
}

/// What storing an order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new pending order.
    Created(Order),
    /// The order was known already; nothing changed.
    Known(Order),
}

impl Placement {
    pub fn is_created(&self) -> bool {
        matches!(self, Self::Created(_))
    }

    pub fn order(&self) -> &Order {
        match self {
            Self::Created(order) | Self::Known(order) => order,
        }
    }

    /// Whether what waited for the order (payments and a cancellation that
    /// came first) must be looked at: when this message created it, or may
    /// have been handled part-way before (a first try may have settled the
    /// order and died before deciding the other payments).
    pub fn looks_for_waiting(&self, delivery: Delivery) -> bool {
        match self {
            Self::Created(_) => true,
            Self::Known(_) => delivery == Delivery::Again,
        }
    }

    /// Whether the order's first timer must be published: for a new pending
    /// order, and again for one a first try may have stored without its
    /// timer (it was handled part-way before and no check was made yet).
    /// A plain repeat starts no second timer.
    pub fn arms_first_timer(&self, order: &Order, delivery: Delivery) -> bool {
        order.status == OrderStatus::Pending
            && match self {
                Self::Created(_) => true,
                Self::Known(_) => delivery == Delivery::Again && order.attempts == 0,
            }
    }
}

/// What waited for an order before it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Payments whose outcome is not decided, in the order they came.
    pub payments: Vec<RecordedPayment>,
    pub cancellation: Option<WaitingCancellation>,
    /// The last deadline change received before the order.
    pub deadline_change: Option<WaitingChange>,
}

/// A deadline change received before its order arrived: waiting, or
/// applied on the order's arrival with its event still owed (the arrival
/// died before the broker confirmed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingChange {
    pub expires_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub applied: bool,
}

/// A cancellation recorded before its order arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingCancellation {
    pub reason: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// A write that moves an order out of `pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Pay it with this payment.
    Settle(RecordedPayment),
    /// Close it, because the customer cancelled it.
    Cancel,
}

/// What happens when an order arrives to payments and a cancellation that
/// waited for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Arrival {
    /// The write that moves the order out of `pending`, if one does.
    pub transition: Option<Transition>,
    /// For an order found marked paid in SQL: the payment taken as the one
    /// that paid it.
    pub adopted: Option<PaymentId>,
    /// What each other payment that came before the transition (or, with
    /// none, each other payment) did, in the order they came: decided on
    /// the order as stored, and written before the transition, so that a
    /// crash between the two never decides them again on the moved order.
    pub earlier: Vec<(PaymentId, PaymentOutcome)>,
    /// What each payment that came after the transition did, in the order
    /// they came: written after it.
    pub later: Vec<(PaymentId, PaymentOutcome)>,
}

/// Plays what waited for `order`, in the order it came, as if each had
/// arrived after it: the first matching payment settles it, a cancellation
/// before any closes it, and every other payment is kept with its outcome.
/// Payments decided before keep what they did.
pub fn on_arrival(
    order: &Order,
    payments: &[RecordedPayment],
    cancellation: Option<&WaitingCancellation>,
) -> Arrival {
    enum Came<'a> {
        Payment(&'a RecordedPayment),
        Cancellation,
    }
    let mut came: Vec<(DateTime<Utc>, &str, Came<'_>)> = payments
        .iter()
        .filter(|payment| payment.outcome.is_none())
        .map(|payment| {
            (
                payment.received_at,
                payment.payment_id.as_str(),
                Came::Payment(payment),
            )
        })
        .collect();
    if let Some(cancellation) = cancellation {
        came.push((cancellation.received_at, "", Came::Cancellation));
    }
    came.sort_by_key(|(received_at, id, _)| (*received_at, *id));

    let mut state = order.clone();
    let mut arrival = Arrival::default();
    for (_, _, what) in came {
        match what {
            Came::Cancellation if state.status == OrderStatus::Pending => {
                state.status = OrderStatus::Closed;
                state.close_reason = Some(CloseReason::Cancelled);
                arrival.transition = Some(Transition::Cancel);
            }
            Came::Cancellation => {}
            Came::Payment(payment) => match decide(Some(&state), payment) {
                PaymentDecision::Settle => {
                    state.status = OrderStatus::Paid;
                    state.payment_id = Some(payment.payment_id.clone());
                    arrival.transition = Some(Transition::Settle(payment.clone()));
                }
                PaymentDecision::Adopt => {
                    state.adopted_payment_id = Some(payment.payment_id.clone());
                    arrival.adopted = Some(payment.payment_id.clone());
                }
                PaymentDecision::Keep(outcome) => {
                    let kept = (payment.payment_id.clone(), outcome);
                    match arrival.transition {
                        None => arrival.earlier.push(kept),
                        Some(_) => arrival.later.push(kept),
                    }
                }
                PaymentDecision::AlreadySettled | PaymentDecision::Early => {}
            },
        }
    }
    arrival
}

/// The plan of an `order.placed` whose order is stored as `placement` says
/// and stands as `order`, given what waited for it (`None`: nothing is
/// looked for, see [`Placement::looks_for_waiting`]), on the message's
/// `delivery`; `now`, the time of a first check that has none planned.
/// `rules`: what a deadline change that waited for the order may do.
///
/// In order: what each payment that came before the transition did is
/// kept, then the transition is written, then what came after it is kept;
/// then, for a message seen before, every payment event still owed is
/// published; then the first timer is armed if it is due, and last the
/// order's event is published — by this handler if its write moved the
/// order, else if it is owed and this handler has the announcement.
pub fn plan(
    placement: &Placement,
    order: &Order,
    waiting: Option<&Waiting>,
    delivery: Delivery,
    now: DateTime<Utc>,
    rules: &DeadlineRules,
) -> Plan {
    let claim = Claim::for_delivery(delivery);
    let arrival = waiting.map_or_else(Arrival::default, |waiting| {
        on_arrival(order, &waiting.payments, waiting.cancellation.as_ref())
    });
    let keep = |(payment_id, outcome)| Step::KeepOutcome {
        payment_id,
        outcome,
        attempts: order.attempts,
        announce: claim,
    };
    let mut steps: Vec<Step> = arrival.earlier.into_iter().map(keep).collect();
    let moves = arrival.transition.is_some();
    match arrival.transition {
        Some(Transition::Settle(payment)) => steps.push(Step::Settle {
            payment_id: payment.payment_id,
            by_check: None,
        }),
        // The cancellation waited for the payments before it when it was
        // kept (see `cancellation::plan`): none is left to wait for.
        Some(Transition::Cancel) => steps.push(Step::Close {
            by_check: None,
            reason: CloseReason::Cancelled,
        }),
        None => {}
    }
    if let Some(payment_id) = arrival.adopted {
        steps.push(Step::Adopt { payment_id });
    }
    steps.extend(arrival.later.into_iter().map(keep));
    // A first try may have decided payments and died before their events
    // were confirmed.
    if waiting.is_some() && delivery == Delivery::Again {
        steps.push(Step::AnnouncePayments);
    }
    if !moves && placement.arms_first_timer(order, delivery) {
        steps.push(Step::ArmTimer {
            check: Attempt::FIRST,
            due_at: order.next_check_at.unwrap_or(now),
        });
        steps.extend(reminder::ahead(
            &order.order_id,
            order.expires_at,
            rules.remind_before,
            now,
        ));
    }
    // A deadline change that came first moves the order as it would have
    // had it come after; the first timer, armed above, is then superseded.
    let change = waiting.and_then(|waiting| waiting.deadline_change.as_ref());
    if let Some(change) = change.filter(|change| change.applied) {
        steps.push(Step::AnnounceDeadlineChange {
            expires_at: change.expires_at,
        });
    } else if let (false, Some(change)) = (moves, change) {
        let changed = DeadlineChanged {
            order_id: order.order_id.clone(),
            expires_at: change.expires_at,
        };
        let decision = deadline::decide(
            Some(order),
            &changed,
            change.received_at,
            now,
            rules.schedule,
            rules.max_deadline,
        );
        if matches!(
            decision,
            ChangeDecision::Move { .. } | ChangeDecision::MoveAndClose
        ) {
            let changing = deadline::plan(
                Some(order),
                &decision,
                &changed,
                change.received_at,
                now,
                delivery,
                rules.remind_before,
            );
            steps.extend(changing.steps);
        }
    }
    steps.push(if moves {
        Step::Announce
    } else {
        Step::AnnounceOwed(claim)
    });
    Plan::steps(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pay_id;
    use crate::domain::{Currency, reminder::RemindBefore, test_order};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_deadline: Duration::from_secs(30 * 24 * 3600),
            max_clock_skew: Duration::from_secs(60),
        }
    }

    fn placed(placed_at: Option<&str>, expires_at: Option<&str>) -> OrderPlaced {
        OrderPlaced {
            order_id: OrderId::parse("A-1").unwrap(),
            amount_cents: Some(100),
            currency: Some(Currency::parse("CNY").unwrap()),
            placed_at: placed_at.map(at),
            expires_at: expires_at.map(at),
        }
    }

    #[test]
    fn a_new_order_is_due_after_the_whole_schedule_from_when_it_was_placed() {
        let schedule = Schedule::parse(&["1m", "4m"]).unwrap();
        let now = at("2026-11-27T08:00:05Z");
        let (order, skew) = new_order(
            placed(Some("2026-11-27T08:00:00Z"), None),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(
            order,
            NewOrder {
                order_id: OrderId::parse("A-1").unwrap(),
                amount_cents: Some(100),
                currency: Some("CNY".parse().unwrap()),
                placed_at: at("2026-11-27T08:00:00Z"),
                expires_at: at("2026-11-27T08:05:00Z"),
                next_check_at: at("2026-11-27T08:01:00Z"),
            }
        );
        assert_eq!(skew, None);
        let (order, _) = new_order(placed(None, None), now, &schedule, &limits()).unwrap();
        assert_eq!(order.placed_at, now);
        assert_eq!(order.expires_at, at("2026-11-27T08:05:05Z"));
        assert_eq!(order.next_check_at, at("2026-11-27T08:01:05Z"));
    }

    #[test]
    fn an_order_may_bring_its_own_deadline_within_the_limit() {
        let schedule = Schedule::parse(&["1m", "4m"]).unwrap();
        let now = at("2026-11-27T08:00:00Z");
        let (order, _) = new_order(
            placed(Some("2026-11-27T08:00:00Z"), Some("2026-11-27T08:00:05Z")),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(order.expires_at, at("2026-11-27T08:00:05Z"));
        // Shorter than the first wait: the first check is the deadline.
        assert_eq!(order.next_check_at, order.expires_at);
        let (order, _) = new_order(
            placed(Some("2026-11-27T08:00:00Z"), Some("2026-12-27T08:00:00Z")),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(order.expires_at, at("2026-12-27T08:00:00Z"));
        // A deadline already past: the first check is due at once.
        let (order, _) = new_order(
            placed(Some("2026-11-26T08:00:00Z"), Some("2026-11-26T09:00:00Z")),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(order.next_check_at, order.expires_at);
        assert!(order.next_check_at < now);
        for (placed_at, expires_at, says) in [
            (
                "2026-11-27T08:00:00Z",
                "2026-12-27T08:00:01Z",
                "max_deadline",
            ),
            ("2026-11-27T08:00:00Z", "2026-11-27T08:00:00Z", "not after"),
            ("2026-11-27T08:00:00Z", "2026-11-27T07:00:00Z", "not after"),
        ] {
            let refused = new_order(
                placed(Some(placed_at), Some(expires_at)),
                now,
                &schedule,
                &limits(),
            )
            .unwrap_err();
            assert_eq!(refused.reason(), "invalid_field");
            assert!(refused.to_string().contains(says), "{refused}");
        }
    }

    #[test]
    fn a_placed_at_far_ahead_of_this_clock_is_taken_as_now() {
        let schedule = Schedule::parse(&["1m", "4m"]).unwrap();
        let now = at("2026-11-27T08:00:00Z");
        // Within the allowed skew: kept.
        let (order, skew) = new_order(
            placed(Some("2026-11-27T08:00:59Z"), None),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(order.placed_at, at("2026-11-27T08:00:59Z"));
        assert_eq!(skew, None);
        // Fourteen hours ahead through an offset, with its own deadline: the
        // order is placed now, and its deadline moves with it.
        let (order, skew) = new_order(
            placed(
                Some("2026-11-28T06:00:00+08:00"),
                Some("2026-11-28T06:10:00+08:00"),
            ),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(order.placed_at, now);
        assert_eq!(order.expires_at, at("2026-11-27T08:10:00Z"));
        assert_eq!(skew, Some(TimeDelta::hours(14)));
        let (order, skew) = new_order(
            placed(Some("9999-12-31T23:59:59Z"), None),
            now,
            &schedule,
            &limits(),
        )
        .unwrap();
        assert_eq!(order.placed_at, now);
        assert_eq!(order.expires_at, at("2026-11-27T08:05:00Z"));
        assert!(skew.is_some());
    }

    #[test]
    fn a_placement_holds_its_order_and_says_whether_it_created_it() {
        let order = test_order(OrderStatus::Pending);
        let created = Placement::Created(order.clone());
        let known = Placement::Known(order.clone());
        assert_eq!(created.order(), &order);
        assert_eq!(known.order(), &order);
        assert!(created.is_created());
        assert!(!known.is_created());
    }

    #[test]
    fn what_each_placement_does() {
        let pending = test_order(OrderStatus::Pending);
        let checked = Order {
            attempts: 1,
            ..pending.clone()
        };
        let paid = test_order(OrderStatus::Paid);
        // (placement, the order after what waited, seen before) →
        // (looks for what waited, arms the first timer)
        let cases = [
            // A new order: what waited may settle it; else it gets its timer.
            (
                Placement::Created(pending.clone()),
                &pending,
                false,
                (true, true),
            ),
            (
                Placement::Created(pending.clone()),
                &paid,
                false,
                (true, false),
            ),
            // A redelivery of a message whose timer may have been lost.
            (
                Placement::Known(pending.clone()),
                &pending,
                true,
                (true, true),
            ),
            // A plain repeat starts no second timer.
            (
                Placement::Known(pending.clone()),
                &pending,
                false,
                (false, false),
            ),
            // Once a check was made, the first timer certainly fired.
            (
                Placement::Known(checked.clone()),
                &checked,
                true,
                (true, false),
            ),
            (Placement::Known(paid.clone()), &paid, true, (true, false)),
            (Placement::Known(paid.clone()), &paid, false, (false, false)),
        ];
        for (placement, after, seen_before, (looks, arms)) in cases {
            let delivery = if seen_before {
                Delivery::Again
            } else {
                Delivery::First
            };
            assert_eq!(
                (
                    placement.looks_for_waiting(delivery),
                    placement.arms_first_timer(after, delivery)
                ),
                (looks, arms),
                "{placement:?} then {:?}, seen before: {seen_before}",
                after.status
            );
        }
    }

    fn waiting(id: &str, second: u32, amount_cents: Option<i64>) -> RecordedPayment {
        RecordedPayment {
            payment_id: pay_id(id),
            order_id: crate::domain::OrderId::parse("A-1001").unwrap(),
            amount_cents,
            currency: None,
            paid_at: None,
            received_at: at(&format!("2026-11-27T07:59:{second:02}Z")),
            outcome: None,
            event_published_at: None,
            decided_attempts: None,
        }
    }

    fn cancelled_at(second: u32) -> WaitingCancellation {
        WaitingCancellation {
            reason: Some("customer".into()),
            received_at: at(&format!("2026-11-27T07:59:{second:02}Z")),
        }
    }

    #[test]
    fn an_order_with_nothing_waiting_stays_as_it_is() {
        let order = test_order(OrderStatus::Pending);
        assert_eq!(on_arrival(&order, &[], None), Arrival::default());
    }

    #[test]
    fn the_first_matching_payment_that_waited_settles_the_order() {
        let order = test_order(OrderStatus::Pending);
        let wrong = waiting("PAY-1", 1, Some(1));
        let right = waiting("PAY-2", 2, Some(12900));
        let again = waiting("PAY-3", 3, Some(12900));
        // Given out of order: they are played in the order they came.
        let arrival = on_arrival(&order, &[again.clone(), right.clone(), wrong], None);
        assert_eq!(arrival.transition, Some(Transition::Settle(right)));
        assert_eq!(
            arrival.earlier,
            [(pay_id("PAY-1"), PaymentOutcome::Mismatch)]
        );
        assert_eq!(arrival.later, [(pay_id("PAY-3"), PaymentOutcome::Twice)]);
    }

    #[test]
    fn a_cancellation_that_waited_counts_from_when_it_came() {
        let order = test_order(OrderStatus::Pending);
        // Cancelled, then paid: the payment came after the close.
        let arrival = on_arrival(&order, &[waiting("PAY-1", 5, None)], Some(&cancelled_at(1)));
        assert_eq!(arrival.transition, Some(Transition::Cancel));
        assert_eq!(
            arrival.later,
            [(pay_id("PAY-1"), PaymentOutcome::AfterClose)]
        );
        assert!(arrival.earlier.is_empty());
        // Paid, then cancelled: the cancellation changes nothing.
        let payment = waiting("PAY-1", 1, None);
        let arrival = on_arrival(
            &order,
            std::slice::from_ref(&payment),
            Some(&cancelled_at(5)),
        );
        assert_eq!(arrival.transition, Some(Transition::Settle(payment)));
        assert!(arrival.earlier.is_empty() && arrival.later.is_empty());
        // A mismatch leaves the order pending for the cancellation.
        let arrival = on_arrival(
            &order,
            &[waiting("PAY-1", 1, Some(1))],
            Some(&cancelled_at(5)),
        );
        assert_eq!(arrival.transition, Some(Transition::Cancel));
        assert_eq!(
            arrival.earlier,
            [(pay_id("PAY-1"), PaymentOutcome::Mismatch)]
        );
        assert!(arrival.later.is_empty());
    }

    #[test]
    fn an_order_that_lost_its_race_takes_what_waited_as_it_now_is() {
        // Settled meanwhile by another payment (the other side of the race).
        let paid = Order {
            payment_id: Some(pay_id("PAY-0")),
            ..test_order(OrderStatus::Paid)
        };
        let arrival = on_arrival(&paid, &[waiting("PAY-1", 1, None)], Some(&cancelled_at(2)));
        assert_eq!(arrival.transition, None);
        assert_eq!(arrival.earlier, [(pay_id("PAY-1"), PaymentOutcome::Twice)]);
        // Settled by this very payment: nothing left to decide about it.
        let paid_by_it = Order {
            payment_id: Some(pay_id("PAY-1")),
            ..paid
        };
        assert_eq!(
            on_arrival(&paid_by_it, &[waiting("PAY-1", 1, None)], None),
            Arrival::default()
        );
        // Payments decided before keep what they did.
        let decided = RecordedPayment {
            outcome: Some(PaymentOutcome::Mismatch),
            ..waiting("PAY-2", 1, Some(1))
        };
        let pending = test_order(OrderStatus::Pending);
        assert_eq!(on_arrival(&pending, &[decided], None), Arrival::default());
    }

    mod plans {
        use super::*;

        fn now() -> DateTime<Utc> {
            at("2026-11-27T08:00:01Z")
        }

        fn rules() -> DeadlineRules<'static> {
            static SCHEDULE: std::sync::LazyLock<Schedule> =
                std::sync::LazyLock::new(|| Schedule::parse(&["1m", "4m", "10m", "15m"]).unwrap());
            static NO_REMINDERS: RemindBefore = RemindBefore::none();
            DeadlineRules {
                schedule: &SCHEDULE,
                max_deadline: Duration::from_secs(30 * 24 * 3600),
                remind_before: &NO_REMINDERS,
            }
        }

        #[test]
        fn reminders_are_armed_with_the_first_timer_only() {
            let (placement, order) = created();
            let offsets =
                RemindBefore::new(vec![Duration::from_secs(600), Duration::from_secs(3600)])
                    .unwrap();
            let rules = DeadlineRules {
                remind_before: &offsets,
                ..rules()
            };
            let steps = plan(&placement, &order, None, Delivery::First, now(), &rules).steps;
            // Due 08:30; placed 08:00, now 08:00:01: the one-hour reminder is past.
            let armed: Vec<_> = steps
                .iter()
                .filter_map(|step| match step {
                    Step::ArmReminder(reminder) => Some(reminder.due_at()),
                    _ => None,
                })
                .collect();
            assert_eq!(armed, [at("2026-11-27T08:20:00Z")]);
            let known = Placement::Known(order.clone());
            let repeat = plan(&known, &order, None, Delivery::First, now(), &rules).steps;
            assert!(
                !repeat
                    .iter()
                    .any(|step| matches!(step, Step::ArmReminder(_)))
            );
        }

        #[test]
        fn a_deadline_change_that_waited_moves_the_order_on_arrival() {
            let (placement, order) = created();
            let change = |minutes: i64, applied: bool| Waiting {
                deadline_change: Some(WaitingChange {
                    expires_at: order.placed_at + chrono::TimeDelta::minutes(minutes),
                    received_at: at("2026-11-27T07:59:00Z"),
                    applied,
                }),
                ..Waiting::default()
            };
            let first_timer = Step::ArmTimer {
                check: Attempt::FIRST,
                due_at: at("2026-11-27T08:01:00Z"),
            };
            // Sooner than the first check: a timer for it, then the change.
            let sooner = at("2026-11-27T08:00:30Z");
            let waiting = Waiting {
                deadline_change: Some(WaitingChange {
                    expires_at: sooner,
                    received_at: at("2026-11-27T07:59:00Z"),
                    applied: false,
                }),
                ..Waiting::default()
            };
            assert_eq!(
                plan_steps(&placement, &order, Some(&waiting), Delivery::First),
                [
                    first_timer.clone(),
                    Step::ChangeDeadline {
                        expires_at: sooner,
                        next_check_at: sooner,
                        received_at: at("2026-11-27T07:59:00Z")
                    },
                    Step::ArmTimer {
                        check: Attempt::FIRST,
                        due_at: sooner
                    },
                    Step::AnnounceDeadlineChange { expires_at: sooner },
                    Step::AnnounceOwed(Claim::First),
                ]
            );
            // Later: the first check stands, the change is written.
            let later = plan_steps(
                &placement,
                &order,
                Some(&change(90, false)),
                Delivery::First,
            );
            assert_eq!(later.len(), 4, "{later:?}");
            assert!(matches!(later[1], Step::ChangeDeadline { .. }));
            // One the order may not have is dropped.
            assert_eq!(
                plan_steps(
                    &placement,
                    &order,
                    Some(&change(-5, false)),
                    Delivery::First
                ),
                [first_timer.clone(), Step::AnnounceOwed(Claim::First)]
            );
            // Applied by an arrival that died before its event: published.
            let owed = plan_steps(&placement, &order, Some(&change(90, true)), Delivery::Again);
            assert!(owed.contains(&Step::AnnounceDeadlineChange {
                expires_at: order.placed_at + chrono::TimeDelta::minutes(90)
            }));
            assert!(
                !owed
                    .iter()
                    .any(|step| matches!(step, Step::ChangeDeadline { .. }))
            );
        }

        fn created() -> (Placement, Order) {
            let mut order = test_order(OrderStatus::Pending);
            order.next_check_at = Some(at("2026-11-27T08:01:00Z"));
            (Placement::Created(order.clone()), order)
        }

        fn keep(payment_id: &str, outcome: PaymentOutcome, announce: Claim) -> Step {
            Step::KeepOutcome {
                payment_id: pay_id(payment_id),
                outcome,
                attempts: 0,
                announce,
            }
        }

        #[test]
        fn a_new_order_with_nothing_waiting_arms_its_first_timer() {
            let (placement, order) = created();
            let plan = plan(
                &placement,
                &order,
                Some(&Waiting::default()),
                Delivery::First,
                now(),
                &rules(),
            );
            assert_eq!(
                plan.steps,
                [
                    Step::ArmTimer {
                        check: Attempt::FIRST,
                        due_at: at("2026-11-27T08:01:00Z")
                    },
                    Step::AnnounceOwed(Claim::First),
                ]
            );
            // A plain repeat arms no second timer.
            let known = Placement::Known(order.clone());
            assert_eq!(
                plan_steps(&known, &order, None, Delivery::First),
                [Step::AnnounceOwed(Claim::First)]
            );
        }

        fn plan_steps(
            placement: &Placement,
            order: &Order,
            waiting: Option<&Waiting>,
            delivery: Delivery,
        ) -> Vec<Step> {
            plan(placement, order, waiting, delivery, now(), &rules()).steps
        }

        #[test]
        fn what_came_before_the_transition_is_kept_before_it_and_the_rest_after() {
            let (placement, order) = created();
            let waiting = Waiting {
                payments: vec![
                    waiting("PAY-1", 1, Some(1)),
                    waiting("PAY-2", 2, None),
                    waiting("PAY-3", 3, None),
                ],
                cancellation: None,
                deadline_change: None,
            };
            assert_eq!(
                plan_steps(&placement, &order, Some(&waiting), Delivery::First),
                [
                    keep("PAY-1", PaymentOutcome::Mismatch, Claim::First),
                    Step::Settle {
                        payment_id: pay_id("PAY-2"),
                        by_check: None
                    },
                    keep("PAY-3", PaymentOutcome::Twice, Claim::First),
                    Step::Announce,
                ]
            );
            // Seen before: every payment event owed is published again,
            // and nothing is left to a claim.
            assert_eq!(
                plan_steps(&placement, &order, Some(&waiting), Delivery::Again),
                [
                    keep("PAY-1", PaymentOutcome::Mismatch, Claim::Skip),
                    Step::Settle {
                        payment_id: pay_id("PAY-2"),
                        by_check: None
                    },
                    keep("PAY-3", PaymentOutcome::Twice, Claim::Skip),
                    Step::AnnouncePayments,
                    Step::Announce,
                ]
            );
        }

        #[test]
        fn a_cancellation_that_waited_closes_the_order_at_once() {
            let (placement, order) = created();
            let waiting = Waiting {
                payments: vec![waiting("PAY-1", 5, None)],
                cancellation: Some(cancelled_at(4)),
                deadline_change: None,
            };
            assert_eq!(
                plan_steps(&placement, &order, Some(&waiting), Delivery::First),
                [
                    Step::Close {
                        by_check: None,
                        reason: CloseReason::Cancelled
                    },
                    keep("PAY-1", PaymentOutcome::AfterClose, Claim::First),
                    Step::Announce,
                ]
            );
        }
    }
}
