//! paywait's core, driven as `src/worker` drives it, over an in-memory
//! store that writes as `src/db` does: an order leaves `pending` once, by a
//! conditional write; a payment's outcome is decided once and kept; an
//! order and a payment id are stored once. Timers are armed into a set per
//! order and fired when the test says; events are appended to a log.
//!
//! Every handler here is the worker's, step for step, with the core's
//! functions making every decision; what is left out is what the pure core
//! does not see: batching, the broker's routes for timers that come back
//! early, time-outs, metrics and logs.
//!
//! A fault can be injected into any delivery: the worker dies right after
//! its n-th effect (a committed write, a confirmed publish), and the broker
//! delivers the message again, marked as redelivered, before any other.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use paywait::domain::{
    Attempt, CheckDecision, CloseReason, Inbox, Limits, NewOrder, Order, OrderCancelled,
    OrderEvent, OrderId, OrderPlaced, OrderStatus, PaymentDecision, PaymentOutcome,
    PaymentSucceeded, Placement, RecordedPayment, Schedule, Sweep, Transition, WaitingCancellation,
    after_lost_close,
    cancellation::{self, CancelDecision},
    check,
    gateway::{AfterAnswer, AskPolicy, GatewayAnswer, after_answer},
    intake::{new_order, on_arrival},
    payment,
};

/// The worker died; the message it was handling is delivered again.
#[derive(Debug)]
pub struct Died;

type Run<T> = Result<T, Died>;

/// An event as the broker confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub routing_key: &'static str,
    pub message_id: String,
    pub body: Vec<u8>,
}

/// The database and the broker, as far as the core's decisions reach them.
#[derive(Debug, Default)]
pub struct Store {
    pub orders: BTreeMap<String, Order>,
    /// Orders whose announcement a handler claimed (`announce_claimed_at`).
    claimed: BTreeSet<String>,
    pub payments: BTreeMap<String, RecordedPayment>,
    cancellations: BTreeMap<String, WaitingCancellation>,
    /// The timers armed and not delivered yet: order id → check numbers.
    timers: BTreeMap<String, BTreeSet<u32>>,
    pub published: Vec<Published>,
    /// Effects left before the worker dies.
    fuse: Option<u32>,
}

impl Store {
    /// Counts one effect of the handler at work; dies when the fuse is out.
    fn effect(&mut self) -> Run<()> {
        match self.fuse {
            Some(1) => {
                self.fuse = None;
                Err(Died)
            }
            Some(left) => {
                self.fuse = Some(left - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn find(&self, order_id: &OrderId) -> Option<Order> {
        self.orders.get(order_id.as_str()).cloned()
    }

    fn payment(&self, payment_id: &str) -> Option<RecordedPayment> {
        self.payments.get(payment_id).cloned()
    }

    /// Every payment of an order, oldest first.
    fn payments_of(&self, order_id: &OrderId) -> Vec<RecordedPayment> {
        let mut payments: Vec<_> = self
            .payments
            .values()
            .filter(|payment| payment.order_id == order_id.as_str())
            .cloned()
            .collect();
        payments
            .sort_by(|a, b| (a.received_at, &a.payment_id).cmp(&(b.received_at, &b.payment_id)));
        payments
    }

    /// `INSERT ... ON CONFLICT DO NOTHING`, then the row.
    fn place(&mut self, new: NewOrder) -> Run<Placement> {
        let key = new.order_id.as_str().to_owned();
        let created = !self.orders.contains_key(&key);
        if created {
            let order = Order {
                order_id: new.order_id,
                status: OrderStatus::Pending,
                amount_cents: new.amount_cents,
                currency: new.currency,
                placed_at: new.placed_at,
                expires_at: new.expires_at,
                paid_at: None,
                closed_at: None,
                close_reason: None,
                attempts: 0,
                gateway_asks: 0,
                payment_id: None,
                event_published_at: None,
                next_check_at: Some(new.next_check_at),
                adopted_payment_id: None,
            };
            self.orders.insert(key.clone(), order);
        }
        self.effect()?;
        Ok(Placement::of(self.orders[&key].clone(), created))
    }

    /// The undecided payments and the cancellation of an order, in the
    /// order they came.
    fn waiting_for(
        &self,
        order_id: &OrderId,
    ) -> (Vec<RecordedPayment>, Option<WaitingCancellation>) {
        let payments = self
            .payments_of(order_id)
            .into_iter()
            .filter(|payment| payment.outcome.is_none())
            .collect();
        let cancellation = self.cancellations.get(order_id.as_str()).cloned();
        (payments, cancellation)
    }

    fn record_payment(
        &mut self,
        payment: &PaymentSucceeded,
        received_at: DateTime<Utc>,
    ) -> Run<(bool, RecordedPayment)> {
        let key = payment.payment_id.as_str().to_owned();
        let first_time = !self.payments.contains_key(&key);
        if first_time {
            let recorded = RecordedPayment {
                payment_id: key.clone(),
                order_id: payment.order_id.as_str().to_owned(),
                amount_cents: payment.amount_cents,
                currency: payment.currency.as_ref().map(|c| c.as_str().to_owned()),
                paid_at: payment.paid_at,
                received_at,
                outcome: None,
                event_published_at: None,
                decided_attempts: None,
            };
            self.payments.insert(key.clone(), recorded);
        }
        self.effect()?;
        Ok((first_time, self.payments[&key].clone()))
    }

    /// `... SET outcome = $2, decided_attempts = $3 WHERE outcome IS NULL`.
    fn decide_payment(
        &mut self,
        payment_id: &str,
        outcome: PaymentOutcome,
        attempts: u32,
    ) -> Run<(bool, RecordedPayment)> {
        let payment = self.payments.get_mut(payment_id).expect("recorded");
        let decided_now = payment.outcome.is_none();
        if decided_now {
            payment.outcome = Some(outcome);
            payment.decided_attempts = Some(attempts);
        }
        let payment = payment.clone();
        self.effect()?;
        Ok((decided_now, payment))
    }

    /// Takes an undecided payment as the one that paid an order marked paid
    /// in SQL, unless another was taken first.
    fn adopt(&mut self, order_id: &OrderId, payment_id: &str) -> Run<bool> {
        let payment = self
            .payments
            .get_mut(payment_id)
            .filter(|p| p.order_id == order_id.as_str() && p.outcome.is_none());
        let order = self.orders.get_mut(order_id.as_str()).filter(|order| {
            order.status == OrderStatus::Paid
                && order.payment_id.is_none()
                && order.adopted_payment_id.is_none()
        });
        let adopted = match (order, payment) {
            (Some(order), Some(payment)) => {
                order.adopted_payment_id = Some(payment.payment_id.clone());
                payment.outcome = Some(PaymentOutcome::Settled);
                true
            }
            _ => false,
        };
        self.effect()?;
        Ok(adopted)
    }

    /// Pays a pending order with an undecided payment of its own, counting
    /// the check that brought it, if one did.
    fn settle(
        &mut self,
        order_id: &OrderId,
        payment_id: &str,
        by_check: Option<Attempt>,
    ) -> Run<Option<Order>> {
        let payment = self
            .payments
            .get_mut(payment_id)
            .filter(|p| p.order_id == order_id.as_str() && p.outcome.is_none());
        let order = self
            .orders
            .get_mut(order_id.as_str())
            .filter(|order| order.status == OrderStatus::Pending);
        let settled = match (order, payment) {
            (Some(order), Some(payment)) => {
                order.status = OrderStatus::Paid;
                order.paid_at = Some(payment.paid_at.unwrap_or(payment.received_at));
                order.payment_id = Some(payment.payment_id.clone());
                order.attempts = order.attempts.max(by_check.map_or(0, Attempt::get));
                order.next_check_at = None;
                order.event_published_at = None;
                payment.outcome = Some(PaymentOutcome::Settled);
                self.claimed.insert(order_id.as_str().to_owned());
                Some(order.clone())
            }
            _ => None,
        };
        self.effect()?;
        Ok(settled)
    }

    fn close(
        &mut self,
        order_id: &OrderId,
        attempt: u32,
        at: DateTime<Utc>,
        reason: CloseReason,
    ) -> Run<Option<Order>> {
        let closed = self
            .orders
            .get_mut(order_id.as_str())
            .filter(|order| order.status == OrderStatus::Pending)
            .map(|order| {
                order.status = OrderStatus::Closed;
                order.closed_at = Some(at);
                order.close_reason = Some(reason);
                order.attempts = order.attempts.max(attempt);
                order.next_check_at = None;
                order.event_published_at = None;
                order.clone()
            });
        if closed.is_some() {
            self.claimed.insert(order_id.as_str().to_owned());
        }
        self.effect()?;
        Ok(closed)
    }

    fn record_cancellation(
        &mut self,
        cancelled: &OrderCancelled,
        received_at: DateTime<Utc>,
    ) -> Run<()> {
        self.cancellations
            .entry(cancelled.order_id.as_str().to_owned())
            .or_insert_with(|| WaitingCancellation {
                reason: cancelled.reason.clone(),
                received_at,
            });
        self.effect()
    }

    fn record_check(
        &mut self,
        order_id: &OrderId,
        attempt: u32,
        next_check_at: DateTime<Utc>,
        asked_gateway: bool,
    ) -> Run<()> {
        if let Some(order) = self.orders.get_mut(order_id.as_str())
            && order.status == OrderStatus::Pending
            && order.attempts < attempt
        {
            order.attempts = attempt;
            order.next_check_at = Some(next_check_at);
            order.gateway_asks += u32::from(asked_gateway);
        }
        self.effect()
    }

    fn mark_announced(
        &mut self,
        order_id: &OrderId,
        status: OrderStatus,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Run<()> {
        if let Some(order) = self.orders.get_mut(order_id.as_str())
            && order.status == status
        {
            order.event_published_at = Some(at);
            order.attempts = order.attempts.max(attempts);
        }
        self.effect()
    }

    /// Claims the announcement of a terminal order whose event is owed and
    /// that no handler claimed. (A claim's lease never runs out here: the
    /// handler that holds it is always delivered again.)
    fn claim_announcement(&mut self, order_id: &OrderId) -> Run<Option<Order>> {
        let key = order_id.as_str();
        let claimed = self
            .orders
            .get(key)
            .filter(|order| {
                order.status != OrderStatus::Pending
                    && order.event_published_at.is_none()
                    && !self.claimed.contains(key)
            })
            .cloned();
        if claimed.is_some() {
            self.claimed.insert(key.to_owned());
        }
        self.effect()?;
        Ok(claimed)
    }

    fn mark_payment_announced(&mut self, payment_id: &str, at: DateTime<Utc>) -> Run<()> {
        if let Some(payment) = self.payments.get_mut(payment_id) {
            payment.event_published_at = Some(at);
        }
        self.effect()
    }

    /// What the sweeper does for one order whose timer was lost: claims it
    /// if its event is owed and a check is planned, and says which check
    /// the timer it arms again is for.
    fn sweep(&mut self, order_id: &str, due_at: DateTime<Utc>) -> Option<Attempt> {
        let order = self.orders.get_mut(order_id)?;
        if order.event_published_at.is_some() || order.next_check_at.is_none() {
            return None;
        }
        order.next_check_at = Some(due_at);
        Some(Sweep::next_attempt(order.attempts))
    }

    fn arm(&mut self, order_id: &OrderId, attempt: Attempt) -> Run<()> {
        self.timers
            .entry(order_id.as_str().to_owned())
            .or_default()
            .insert(attempt.get());
        self.effect()
    }

    fn publish(&mut self, event: &OrderEvent) -> Run<()> {
        self.published.push(Published {
            routing_key: event.event.name(),
            message_id: event.message_id(),
            body: event.to_json(),
        });
        self.effect()
    }
}

/// What asking the gateway left to do (as in `src/worker/checks.rs`).
enum AfterAsk {
    Close(CloseReason),
    Paid,
    AskedAgain,
}

/// The worker: paywait's core making every decision, the [`Store`]
/// carrying them out.
#[derive(Debug)]
pub struct Driver {
    pub store: Store,
    schedule: Schedule,
    limits: Limits,
    gateway: Option<AskPolicy>,
    /// The time a delivery is received at: a millisecond after the last.
    clock: DateTime<Utc>,
    /// The check number of the last timer delivered for each order.
    last_fired: BTreeMap<String, Attempt>,
}

impl Driver {
    pub fn new(
        schedule: Schedule,
        limits: Limits,
        gateway: Option<AskPolicy>,
        epoch: DateTime<Utc>,
    ) -> Self {
        Self {
            store: Store::default(),
            schedule,
            limits,
            gateway,
            clock: epoch,
            last_fired: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += TimeDelta::milliseconds(1);
        self.clock
    }

    /// Delivers `body` to the inbox, dying after `dies_after` effects, and
    /// then delivering it again, if it is set.
    pub fn deliver(
        &mut self,
        inbox: Inbox,
        body: &[u8],
        redelivered: bool,
        dies_after: Option<u32>,
    ) {
        self.with_redelivery(dies_after, redelivered, |driver, seen_before| {
            let received_at = driver.tick();
            match inbox {
                Inbox::Placed => driver.order_placed(body, seen_before),
                Inbox::Payments => driver.payment_succeeded(body, received_at, seen_before),
                Inbox::Cancellations => driver.order_cancelled(body, received_at, seen_before),
                Inbox::Checks => unreachable!("timers are fired with `fire_timer`"),
            }
        });
    }

    /// A payment service's `UPDATE orders SET status = 'paid' ... WHERE
    /// status = 'pending'`.
    pub fn paid_in_sql(&mut self, order_id: &str) {
        let at = self.tick();
        if let Some(order) = self.store.orders.get_mut(order_id)
            && order.status == OrderStatus::Pending
        {
            order.status = OrderStatus::Paid;
            order.paid_at = Some(at);
        }
    }

    /// The order's next timer fires at `at` (the sweeper arms one again if
    /// it was lost); timers of checks already made are passed over, as the
    /// core finds them stale. The gateway, if asked, answers `answer`.
    /// `race`: a `payment.succeeded` handled while the check is about to
    /// close the order, committing first; delivered after the check if the
    /// check closes nothing.
    pub fn fire_timer(
        &mut self,
        order_id: &str,
        at: DateTime<Utc>,
        answer: &GatewayAnswer,
        dies_after: Option<u32>,
        mut race: Option<&[u8]>,
    ) {
        for _ in 0..100 {
            let armed = self
                .store
                .timers
                .get_mut(order_id)
                .and_then(BTreeSet::pop_first);
            let attempt = match armed.or_else(|| self.store.sweep(order_id, at).map(Attempt::get)) {
                Some(attempt) => Attempt::new(attempt).expect("a check number"),
                None => break,
            };
            let id = OrderId::parse(order_id).expect("an order id");
            self.last_fired.insert(order_id.to_owned(), attempt);
            // Whether the timer was stale when it came (not when it came
            // again after the worker died handling it).
            let (mut runs, mut stale) = (0, false);
            self.with_redelivery(dies_after, false, |driver, seen_before| {
                runs += 1;
                let decision =
                    driver.timer_fired(&id, attempt, at, answer, seen_before, &mut race)?;
                stale = runs == 1 && decision == CheckDecision::Stale;
                Ok(())
            });
            if !stale {
                break;
            }
        }
        if let Some(body) = race {
            self.deliver(Inbox::Payments, body, false, None);
        }
    }

    /// The last timer delivered for the order is delivered again at `at`.
    /// A check made again never asks the gateway; should it, the gateway
    /// says `unpaid`.
    pub fn fire_timer_again(&mut self, order_id: &str, at: DateTime<Utc>, redelivered: bool) {
        let Some(&attempt) = self.last_fired.get(order_id) else {
            return;
        };
        let id = OrderId::parse(order_id).expect("an order id");
        self.with_redelivery(None, redelivered, |driver, seen_before| {
            driver
                .timer_fired(
                    &id,
                    attempt,
                    at,
                    &GatewayAnswer::Unpaid,
                    seen_before,
                    &mut None,
                )
                .map(drop)
        });
    }

    /// Fires every timer left, and those the sweeper arms again, at `at`,
    /// the gateway answering `answer`, until none is left.
    pub fn run_out(&mut self, at: DateTime<Utc>, answer: &GatewayAnswer) {
        for _ in 0..100 {
            let busy: Vec<String> = self
                .store
                .orders
                .iter()
                .filter(|(id, order)| {
                    self.store.timers.get(*id).is_some_and(|t| !t.is_empty())
                        || (order.event_published_at.is_none() && order.next_check_at.is_some())
                })
                .map(|(id, _)| id.clone())
                .collect();
            if busy.is_empty() {
                return;
            }
            for order_id in busy {
                self.fire_timer(&order_id, at, answer, None, None);
            }
        }
        panic!("timers still fire after 100 rounds: {:#?}", self.store);
    }

    fn with_redelivery(
        &mut self,
        dies_after: Option<u32>,
        redelivered: bool,
        mut handle: impl FnMut(&mut Self, bool) -> Run<()>,
    ) {
        self.store.fuse = dies_after;
        let first = handle(self, redelivered);
        self.store.fuse = None;
        if first.is_err() {
            handle(self, true).expect("a redelivery runs without a fault");
        }
    }

    // ---- src/worker/intake.rs ----

    fn order_placed(&mut self, body: &[u8], seen_before: bool) -> Run<()> {
        let Ok(placed) = OrderPlaced::parse(body) else {
            return Ok(()); // parked
        };
        let now = self.clock;
        let Ok((new, _skew)) = new_order(placed, now, &self.schedule, &self.limits) else {
            return Ok(()); // parked
        };
        let placement = self.store.place(new)?;
        let mut order = placement.order().clone();
        let mut moved = false;
        if placement.looks_for_waiting(seen_before) {
            (order, moved) = self.play_what_waited(order, seen_before)?;
        }
        if placement.arms_first_timer(&order, seen_before) {
            self.store.arm(&order.order_id, Attempt::FIRST)?;
        }
        if moved {
            self.announce(&order)
        } else {
            self.announce_owed(&order, seen_before)
        }
    }

    fn decide_waiting(
        &mut self,
        order: &Order,
        outcomes: Vec<(String, PaymentOutcome)>,
        seen_before: bool,
    ) -> Run<()> {
        for (payment_id, outcome) in outcomes {
            self.keep_outcome(Some(order), &payment_id, outcome, seen_before)?;
        }
        Ok(())
    }

    // ---- src/worker/money.rs ----

    fn reread(
        &self,
        order_id: &OrderId,
        payment: RecordedPayment,
    ) -> (Option<Order>, RecordedPayment) {
        let order = self.store.find(order_id);
        let payment = self.store.payment(&payment.payment_id).unwrap_or(payment);
        (order, payment)
    }

    fn keep_outcome(
        &mut self,
        order: Option<&Order>,
        payment_id: &str,
        outcome: PaymentOutcome,
        seen_before: bool,
    ) -> Run<RecordedPayment> {
        let attempts = order.map_or(0, |order| order.attempts);
        let (decided_now, kept) = self.store.decide_payment(payment_id, outcome, attempts)?;
        if let Some(order) = order
            && (decided_now || seen_before)
        {
            self.announce_payment(order, &kept)?;
        }
        Ok(kept)
    }

    fn play_what_waited(&mut self, mut order: Order, seen_before: bool) -> Run<(Order, bool)> {
        let order_id = order.order_id.clone();
        for _ in 0..3 {
            let (payments, cancellation) = self.store.waiting_for(&order_id);
            let arrival = on_arrival(&order, &payments, cancellation.as_ref());
            self.decide_waiting(&order, arrival.earlier, seen_before)?;
            let moved_now = arrival.transition.is_some();
            let moved = match &arrival.transition {
                None => Some(order.clone()),
                Some(Transition::Settle(payment)) => {
                    self.store.settle(&order_id, &payment.payment_id, None)?
                }
                Some(Transition::Cancel) => {
                    let now = self.clock;
                    self.store
                        .close(&order_id, 0, now, CloseReason::Cancelled)?
                }
            };
            let Some(moved) = moved else {
                order = self.store.find(&order_id).unwrap_or(order);
                continue;
            };
            order = moved;
            if let Some(payment_id) = &arrival.adopted
                && !self.store.adopt(&order_id, payment_id)?
            {
                order = self.store.find(&order_id).unwrap_or(order);
                continue;
            }
            self.decide_waiting(&order, arrival.later, seen_before)?;
            if seen_before {
                for payment in self.store.payments_of(&order_id) {
                    self.announce_payment(&order, &payment)?;
                }
            }
            return Ok((order, moved_now));
        }
        Ok((order, false))
    }

    // ---- src/worker/payments.rs and money.rs ----

    fn payment_succeeded(
        &mut self,
        body: &[u8],
        received_at: DateTime<Utc>,
        seen_before: bool,
    ) -> Run<()> {
        let Ok(payment) = PaymentSucceeded::parse(body) else {
            return Ok(()); // parked
        };
        let (_first_time, recorded) = self.store.record_payment(&payment, received_at)?;
        if recorded.order_id != payment.order_id.as_str() {
            return Ok(()); // parked: the payment id is another order's
        }
        self.apply_payment(&payment.order_id, recorded, seen_before, None)
            .map(drop)
    }

    fn apply_payment(
        &mut self,
        order_id: &OrderId,
        mut payment: RecordedPayment,
        seen_before: bool,
        by_check: Option<Attempt>,
    ) -> Run<Option<Order>> {
        let mut order = self.store.find(order_id);
        for _ in 0..3 {
            match payment::decide(order.as_ref(), &payment) {
                PaymentDecision::Settle => {
                    if let Some(paid) =
                        self.store.settle(order_id, &payment.payment_id, by_check)?
                    {
                        self.announce(&paid)?;
                        return Ok(Some(paid));
                    }
                    (order, payment) = self.reread(order_id, payment);
                }
                PaymentDecision::Adopt => {
                    if self.store.adopt(order_id, &payment.payment_id)? {
                        if let Some(order) = &order {
                            self.announce_owed(order, seen_before)?;
                        }
                        return Ok(order);
                    }
                    (order, payment) = self.reread(order_id, payment);
                }
                PaymentDecision::Keep(outcome) => {
                    let kept = self.keep_outcome(
                        order.as_ref(),
                        &payment.payment_id,
                        outcome,
                        seen_before,
                    )?;
                    if kept.outcome == Some(PaymentOutcome::Settled) {
                        payment = kept;
                        continue;
                    }
                    return Ok(order);
                }
                PaymentDecision::AlreadySettled => {
                    if let Some(order) = &order {
                        self.announce_owed(order, seen_before)?;
                    }
                    return Ok(order);
                }
                PaymentDecision::Early => return Ok(None),
            }
        }
        Ok(order)
    }

    // ---- src/worker/cancellations.rs ----

    fn order_cancelled(
        &mut self,
        body: &[u8],
        received_at: DateTime<Utc>,
        seen_before: bool,
    ) -> Run<()> {
        let Ok(cancelled) = OrderCancelled::parse(body) else {
            return Ok(()); // parked
        };
        let order_id = &cancelled.order_id;
        let mut order = self.store.find(order_id);
        for _ in 0..3 {
            match cancellation::decide(order.as_ref()) {
                CancelDecision::Close => {
                    match self
                        .store
                        .close(order_id, 0, received_at, CloseReason::Cancelled)?
                    {
                        Some(closed) => return self.announce(&closed),
                        None => order = self.store.find(order_id),
                    }
                }
                CancelDecision::LeaveAsItIs => {
                    if let Some(order) = &order {
                        self.announce_owed(order, seen_before)?;
                    }
                    return Ok(());
                }
                CancelDecision::KeepForArrival => {
                    self.store.record_cancellation(&cancelled, received_at)?;
                    order = self.store.find(order_id);
                    if order.is_none() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    // ---- src/worker/checks.rs ----

    fn timer_fired(
        &mut self,
        order_id: &OrderId,
        attempt: Attempt,
        now: DateTime<Utc>,
        answer: &GatewayAnswer,
        seen_before: bool,
        race: &mut Option<&[u8]>,
    ) -> Run<CheckDecision> {
        let order = self.store.find(order_id);
        let decide = if seen_before {
            check::decide_redelivered
        } else {
            check::decide
        };
        let decided = decide(order.as_ref(), attempt, now, &self.schedule);
        let (decision, order) = match (decided, order) {
            (CheckDecision::Close, Some(order)) => {
                let reason = match self.ask_gateway(&order, attempt, now, answer, seen_before)? {
                    AfterAsk::Close(reason) => reason,
                    AfterAsk::Paid | AfterAsk::AskedAgain => return Ok(decided),
                };
                if let Some(body) = race.take() {
                    self.deliver(Inbox::Payments, body, false, None);
                }
                self.close(order_id, attempt, now, reason)?
            }
            (decision, order) => (decision, order),
        };
        match decision {
            CheckDecision::Close => {
                if let Some(order) = order {
                    self.announce(&order)?;
                }
            }
            CheckDecision::Announce(_) => {
                if let Some(order) = &order
                    && let Some(owed) = self.claim_owed(order, seen_before)?
                {
                    self.announce(&owed)?;
                }
            }
            CheckDecision::Reschedule { next, due_at } => {
                self.store.arm(order_id, next)?;
                self.store
                    .record_check(order_id, attempt.get(), due_at, false)?;
            }
            CheckDecision::UnknownOrder | CheckDecision::Stale | CheckDecision::Settled(_) => {}
        }
        Ok(decision)
    }

    fn close(
        &mut self,
        order_id: &OrderId,
        attempt: Attempt,
        now: DateTime<Utc>,
        reason: CloseReason,
    ) -> Run<(CheckDecision, Option<Order>)> {
        match self.store.close(order_id, attempt.get(), now, reason)? {
            Some(closed) => Ok((CheckDecision::Close, Some(closed))),
            None => {
                let order = self.store.find(order_id);
                let decision = after_lost_close(order.as_ref(), attempt, now, &self.schedule);
                Ok((decision, order))
            }
        }
    }

    fn ask_gateway(
        &mut self,
        order: &Order,
        attempt: Attempt,
        now: DateTime<Utc>,
        answer: &GatewayAnswer,
        seen_before: bool,
    ) -> Run<AfterAsk> {
        let Some(policy) = self.gateway.clone() else {
            return Ok(AfterAsk::Close(CloseReason::Expired));
        };
        let order_id = &order.order_id;
        let mut answer = answer.clone();
        if let GatewayAnswer::Paid { payment_id, .. } = &answer
            && let Some(recorded) = self.store.payment(payment_id.as_str())
            && recorded.order_id != order_id.as_str()
        {
            answer = GatewayAnswer::Unusable("another order's payment".into());
        }
        match after_answer(order, answer, &policy) {
            AfterAnswer::Pay(payment) => {
                let (_first_time, recorded) = self.store.record_payment(&payment, now)?;
                let after = self.apply_payment(order_id, recorded, seen_before, Some(attempt))?;
                match after.map(|order| order.status) {
                    Some(OrderStatus::Pending) => Ok(AfterAsk::Close(CloseReason::Expired)),
                    _ => Ok(AfterAsk::Paid),
                }
            }
            AfterAnswer::Close(reason) => Ok(AfterAsk::Close(reason)),
            AfterAnswer::AskAgain => {
                let wait = policy.wait_before_asking_again(0.0);
                let due_at = now + TimeDelta::from_std(wait).expect("a short retry");
                self.store
                    .record_check(order_id, attempt.get(), due_at, true)?;
                self.store.arm(order_id, attempt.next())?;
                Ok(AfterAsk::AskedAgain)
            }
        }
    }

    // ---- src/worker/mod.rs and money.rs: announcing ----

    fn announce(&mut self, order: &Order) -> Run<()> {
        let Some(event) = OrderEvent::for_status(order) else {
            return Ok(());
        };
        self.store.publish(&event)?;
        let at = self.clock;
        self.store
            .mark_announced(&order.order_id, order.status, order.attempts, at)
    }

    fn announce_payment(&mut self, order: &Order, payment: &RecordedPayment) -> Run<()> {
        let Some(event) = payment.owed_event(order) else {
            return Ok(());
        };
        self.store.publish(&event)?;
        let at = self.clock;
        self.store.mark_payment_announced(&payment.payment_id, at)
    }

    fn announce_owed(&mut self, order: &Order, seen_before: bool) -> Run<()> {
        if let Some(order) = self.claim_owed(order, seen_before)? {
            self.announce(&order)?;
        }
        Ok(())
    }

    fn claim_owed(&mut self, order: &Order, seen_before: bool) -> Run<Option<Order>> {
        if order.status == OrderStatus::Pending || order.event_published_at.is_some() {
            return Ok(None);
        }
        if seen_before {
            return Ok(Some(order.clone()));
        }
        self.store.claim_announcement(&order.order_id)
    }
}
