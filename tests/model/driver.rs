//! paywait's own worker (`src/worker`), its order of steps included, run
//! through its ports over an in-memory store that writes as `src/db` does:
//! an order leaves `pending` once, by a conditional write; a payment's
//! outcome is decided once and kept; an order and a payment id are stored
//! once. Timers are armed into a set per order and fired when the test
//! says; events are appended to a log; the gateway answers what the test
//! says. What is left out is what a store in memory does not see: batching,
//! time-outs, and timers that come back early (every timer is fired at or
//! after its due time).
//!
//! A fault can be injected into any delivery: the worker dies right after
//! its n-th effect (a committed write, a confirmed publish), and the broker
//! delivers the message again, marked as redelivered, before any other.

use std::{
    cell::Cell,
    collections::{BTreeMap, BTreeSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, OnceLock, Weak},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use paywait::{
    Error, Result,
    amqp::Handler,
    domain::{
        Attempt, CheckDecision, CheckKind, CloseReason, Inbound, Inbox, IntegerHeader, Kind,
        Limits, NewOrder, Order, OrderCancelled, OrderEvent, OrderId, OrderStatus, Parked,
        PaymentId, PaymentOutcome, PaymentSucceeded, Placement, RecordedPayment, ReminderDue,
        Route, Schedule, Sweep, Timers, Waiting, WaitingCancellation, WaitingChange, check,
        deadline::RecordedChange,
        gateway::{AskPolicy, GatewayAnswer},
        reminder::{RecordedReminder, RemindBefore},
    },
    metrics::Metrics,
    progress::Progress,
    worker::{Answer, AskGateway, Bus, ChecksInFlight, Worker},
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
    /// Reminders kept, by order, deadline and offset.
    pub reminders: BTreeMap<(String, DateTime<Utc>, Duration), RecordedReminder>,
    /// Reminders' timers armed.
    pub reminders_armed: Vec<ReminderDue>,
    /// Deadline changes, by order and deadline.
    pub deadline_changes: BTreeMap<(String, DateTime<Utc>), RecordedChange>,
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
            .filter(|payment| payment.order_id == *order_id)
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
                deadline_changed_at: None,
            };
            self.orders.insert(key.clone(), order);
        }
        self.effect()?;
        let order = self.orders[&key].clone();
        Ok(if created {
            Placement::Created(order)
        } else {
            Placement::Known(order)
        })
    }

    /// The undecided payments and the cancellation of an order, in the
    /// order they came.
    fn waiting_for(&self, order_id: &OrderId) -> Waiting {
        let payments = self
            .payments_of(order_id)
            .into_iter()
            .filter(|payment| payment.outcome.is_none())
            .collect();
        let cancellation = self.cancellations.get(order_id.as_str()).cloned();
        let deadline_change = self
            .deadline_changes
            .iter()
            .filter(|((id, _), change)| {
                id == order_id.as_str()
                    && (change.applied_at.is_none() || change.event_published_at.is_none())
            })
            .map(|(_, change)| WaitingChange {
                expires_at: change.expires_at,
                received_at: change.received_at,
                applied: change.applied_at.is_some(),
            })
            .max_by_key(|change| change.received_at);
        Waiting {
            payments,
            cancellation,
            deadline_change,
        }
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
                payment_id: payment.payment_id.clone(),
                order_id: payment.order_id.clone(),
                amount_cents: payment.amount_cents,
                currency: payment.currency,
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
            .filter(|p| p.order_id == *order_id && p.outcome.is_none());
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
            .filter(|p| p.order_id == *order_id && p.outcome.is_none());
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
            .filter(|order| {
                order.status == OrderStatus::Pending
                    && (reason == CloseReason::Cancelled || order.expires_at <= at)
            })
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

    /// The conditional write of a deadline change, and the change kept.
    fn change_deadline(
        &mut self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Run<Option<Order>> {
        let moved = self
            .orders
            .get_mut(order_id.as_str())
            .filter(|order| {
                order.status == OrderStatus::Pending
                    && order
                        .deadline_changed_at
                        .is_none_or(|applied| applied <= received_at)
            })
            .map(|order| {
                order.expires_at = expires_at;
                order.next_check_at = Some(next_check_at);
                order.deadline_changed_at = Some(received_at);
                order.clone()
            });
        if let Some(order) = &moved {
            let kept = self
                .deadline_changes
                .entry((order_id.as_str().to_owned(), expires_at))
                .or_insert(RecordedChange {
                    expires_at,
                    received_at,
                    applied_at: None,
                    attempts: 0,
                    event_published_at: None,
                });
            kept.received_at = received_at;
            if kept.applied_at.is_none() {
                kept.applied_at = Some(now);
                kept.attempts = order.attempts;
            }
        }
        self.effect()?;
        Ok(moved)
    }

    fn keep_deadline_change(
        &mut self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Run<()> {
        let kept = self
            .deadline_changes
            .entry((order_id.as_str().to_owned(), expires_at))
            .or_insert(RecordedChange {
                expires_at,
                received_at,
                applied_at: None,
                attempts: 0,
                event_published_at: None,
            });
        if kept.applied_at.is_none() && kept.received_at < received_at {
            kept.received_at = received_at;
        }
        self.effect()
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

/// The store, the broker and the gateway the worker sees, shared with the
/// driver.
pub struct World {
    store: Mutex<Store>,
    /// What the gateway answers now.
    answer: Mutex<GatewayAnswer>,
    policy: Option<AskPolicy>,
    /// A payment delivered while a close waits for the payments before it.
    race: Mutex<Option<Vec<u8>>>,
    /// The worker, for the payment a close waits for.
    worker: OnceLock<Weak<ModelWorker>>,
}

/// The worker the model drives: paywait's, through the model's ports.
type ModelWorker = Worker<Port, Port>;

/// The world, as the worker's ports.
#[derive(Clone)]
pub struct Port(Arc<World>);

thread_local! {
    /// The worker's clock: the time of the delivery at hand.
    static NOW: Cell<DateTime<Utc>> = const { Cell::new(DateTime::UNIX_EPOCH) };
}

fn now() -> DateTime<Utc> {
    NOW.with(Cell::get)
}

fn died(_: Died) -> Error {
    Error::TaskFailed {
        task: "the model's worker",
        message: "it died after the effect the test chose".into(),
    }
}

impl Port {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.0.store.lock().unwrap()
    }
}

impl paywait::worker::Store for Port {
    async fn find(&self, order_id: &OrderId) -> Result<Option<Order>> {
        Ok(self.store().find(order_id))
    }
    async fn place(&self, new: NewOrder) -> Result<Placement> {
        self.store().place(new).map_err(died)
    }
    async fn waiting_for(&self, order_id: &OrderId) -> Result<Waiting> {
        Ok(self.store().waiting_for(order_id))
    }
    async fn record_payment(
        &self,
        payment: &PaymentSucceeded,
        received_at: DateTime<Utc>,
    ) -> Result<(bool, RecordedPayment)> {
        self.store()
            .record_payment(payment, received_at)
            .map_err(died)
    }
    async fn decide_payment(
        &self,
        payment_id: &PaymentId,
        outcome: PaymentOutcome,
        attempts: u32,
    ) -> Result<(bool, RecordedPayment)> {
        self.store()
            .decide_payment(payment_id.as_str(), outcome, attempts)
            .map_err(died)
    }
    async fn adopt(&self, order_id: &OrderId, payment_id: &PaymentId) -> Result<bool> {
        self.store()
            .adopt(order_id, payment_id.as_str())
            .map_err(died)
    }
    async fn claim_announcement(&self, order_id: &OrderId) -> Result<Option<Order>> {
        self.store().claim_announcement(order_id).map_err(died)
    }
    async fn payment(&self, payment_id: &PaymentId) -> Result<Option<RecordedPayment>> {
        Ok(self.store().payment(payment_id.as_str()))
    }
    async fn payments_of(&self, order_id: &OrderId) -> Result<Vec<RecordedPayment>> {
        Ok(self.store().payments_of(order_id))
    }
    async fn settle(
        &self,
        order_id: &OrderId,
        payment_id: &PaymentId,
        by_check: Option<Attempt>,
    ) -> Result<Option<Order>> {
        self.store()
            .settle(order_id, payment_id.as_str(), by_check)
            .map_err(died)
    }
    async fn close(
        &self,
        order_id: &OrderId,
        by_check: Option<Attempt>,
        now: DateTime<Utc>,
        reason: CloseReason,
    ) -> Result<Option<Order>> {
        let attempt = by_check.map_or(0, Attempt::get);
        self.store()
            .close(order_id, attempt, now, reason)
            .map_err(died)
    }
    async fn record_cancellation(
        &self,
        cancelled: &OrderCancelled,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        self.store()
            .record_cancellation(cancelled, received_at)
            .map_err(died)
    }
    async fn record_check(
        &self,
        order_id: &OrderId,
        check: Attempt,
        next_check_at: DateTime<Utc>,
        kind: CheckKind,
    ) -> Result<()> {
        let asked_gateway = kind == CheckKind::AskedGateway;
        self.store()
            .record_check(order_id, check.get(), next_check_at, asked_gateway)
            .map_err(died)
    }
    async fn mark_announced(
        &self,
        order_id: &OrderId,
        status: OrderStatus,
        attempts: u32,
    ) -> Result<()> {
        self.store()
            .mark_announced(order_id, status, attempts, now())
            .map_err(died)
    }
    async fn mark_payment_announced(&self, payment_id: &PaymentId) -> Result<()> {
        self.store()
            .mark_payment_announced(payment_id.as_str(), now())
            .map_err(died)
    }
    async fn record_parked(&self, _: &Parked) -> Result<()> {
        Ok(())
    }
    async fn change_deadline(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Order>> {
        self.store()
            .change_deadline(order_id, expires_at, next_check_at, received_at, now)
            .map_err(died)
    }
    async fn keep_deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        self.store()
            .keep_deadline_change(order_id, expires_at, received_at)
            .map_err(died)
    }
    async fn deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<RecordedChange>> {
        Ok(self
            .store()
            .deadline_changes
            .get(&(order_id.as_str().to_owned(), expires_at))
            .cloned())
    }
    async fn keep_reminder(
        &self,
        reminder: &ReminderDue,
        attempts: u32,
    ) -> Result<RecordedReminder> {
        let mut store = self.store();
        let kept = store
            .reminders
            .entry(reminder_key(reminder))
            .or_insert(RecordedReminder {
                attempts,
                published_at: None,
            })
            .clone();
        store.effect().map_err(died)?;
        Ok(kept)
    }
    async fn mark_reminded(&self, reminder: &ReminderDue) -> Result<()> {
        let mut store = self.store();
        if let Some(kept) = store.reminders.get_mut(&reminder_key(reminder)) {
            kept.published_at.get_or_insert(now());
        }
        store.effect().map_err(died)
    }
    async fn mark_deadline_change_announced(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut store = self.store();
        if let Some(change) = store
            .deadline_changes
            .get_mut(&(order_id.as_str().to_owned(), expires_at))
        {
            change.event_published_at.get_or_insert(now());
        }
        store.effect().map_err(died)
    }
}

fn reminder_key(reminder: &ReminderDue) -> (String, DateTime<Utc>, Duration) {
    (
        reminder.order_id.as_str().to_owned(),
        reminder.expires_at,
        reminder.before,
    )
}

impl Bus for Port {
    async fn arm_reminder(&self, reminder: &ReminderDue, _: Route) -> Result<()> {
        let mut store = self.store();
        store.reminders_armed.push(reminder.clone());
        store.effect().map_err(died)
    }

    async fn arm_timer(
        &self,
        order_id: &OrderId,
        attempt: Attempt,
        _: DateTime<Utc>,
        _: Route,
    ) -> Result<()> {
        self.store().arm(order_id, attempt).map_err(died)
    }

    async fn announce(&self, event: &OrderEvent) -> Result<()> {
        self.store().publish(event).map_err(died)
    }

    /// The payment racing the close, if the test sends one, is handled
    /// here: it reached the broker before the close was decided. (Boxed:
    /// the worker's future holds this one, which holds the worker's.)
    #[allow(refining_impl_trait)]
    fn wait_for_payments(
        &self,
        _: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = Result<Duration>> + Send + '_>> {
        let race = self.0.race.lock().unwrap().take();
        Box::pin(async move {
            if let Some(body) = race {
                let worker = self.0.worker.get().and_then(Weak::upgrade);
                let worker = worker.expect("the worker lives while it handles");
                let inbound = inbound(
                    Some(Kind::PaymentSucceeded),
                    body,
                    IntegerHeader::Missing,
                    false,
                );
                worker
                    .handle(&inbound)
                    .await
                    .expect("the racing payment is handled");
            }
            Ok(Duration::ZERO)
        })
    }

    async fn barrier_passed(&self, _: &str) -> Result<()> {
        Ok(())
    }
}

impl AskGateway for Port {
    fn ask<'a>(&'a self, _: &'a Order) -> Answer<'a> {
        let answer = self.0.answer.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
    fn policy(&self) -> &AskPolicy {
        self.0.policy.as_ref().expect("asked only when configured")
    }
    fn wait_before_asking_again(&self) -> Duration {
        self.policy().wait_before_asking_again(0.0)
    }
}

/// A message as the consumer hands it to the worker: of `kind`, or a timer.
fn inbound(
    kind: Option<Kind>,
    body: Vec<u8>,
    attempt: IntegerHeader,
    seen_before: bool,
) -> Inbound {
    Inbound {
        inbox: kind.map_or(Inbox::Checks, Kind::inbox),
        body,
        attempt,
        due_at: IntegerHeader::Missing,
        routing_key: kind.map_or_else(String::new, |kind| kind.routing_key().to_owned()),
        user_id: None,
        seen_before,
        received_at: now(),
    }
}

/// Drives paywait's worker over the [`World`].
pub struct Driver {
    world: Arc<World>,
    worker: Arc<ModelWorker>,
    runtime: tokio::runtime::Runtime,
    schedule: Schedule,
    /// The time a delivery is received at: a millisecond after the last.
    clock: DateTime<Utc>,
    /// The check number of the last timer delivered for each order.
    last_fired: BTreeMap<String, Attempt>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("store", &*self.store())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Driver {
    pub fn new(
        schedule: Schedule,
        limits: Limits,
        gateway: Option<AskPolicy>,
        epoch: DateTime<Utc>,
    ) -> Self {
        let world = Arc::new(World {
            store: Mutex::new(Store::default()),
            answer: Mutex::new(GatewayAnswer::Unpaid),
            race: Mutex::new(None),
            worker: OnceLock::new(),
            policy: gateway.clone(),
        });
        let other_waits: Vec<Duration> = gateway.iter().map(|policy| policy.retry).collect();
        let port = Port(world.clone());
        let worker = Arc::new(Worker {
            store: port.clone(),
            bus: port.clone(),
            clock: now,
            timers: Timers::new(&schedule, &other_waits, Duration::ZERO),
            schedule: schedule.clone(),
            remind_before: RemindBefore::default(),
            limits,
            metrics: Arc::new(Metrics::new()),
            trusted_users: Vec::new(),
            gateway: gateway.map(|_| Arc::new(port) as Arc<dyn AskGateway>),
            checks_in_flight: ChecksInFlight::default(),
            progress: Progress::default(),
        });
        let _ = world.worker.set(Arc::downgrade(&worker));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        Self {
            world,
            worker,
            runtime,
            schedule,
            clock: epoch,
            last_fired: BTreeMap::new(),
        }
    }

    /// The store as the worker left it.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.world.store.lock().unwrap()
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += TimeDelta::milliseconds(1);
        self.clock
    }

    /// Delivers `body` to the inbox, dying after `dies_after` effects, and
    /// then delivering it again, if it is set.
    pub fn deliver(&mut self, kind: Kind, body: &[u8], redelivered: bool, dies_after: Option<u32>) {
        let at = self.tick();
        self.handle(
            at,
            dies_after,
            |seen_before| {
                inbound(
                    Some(kind),
                    body.to_vec(),
                    IntegerHeader::Missing,
                    seen_before,
                )
            },
            redelivered,
        );
    }

    /// A payment service's `UPDATE orders SET status = 'paid' ... WHERE
    /// status = 'pending'`.
    pub fn paid_in_sql(&mut self, order_id: &str) {
        let at = self.tick();
        if let Some(order) = self.store().orders.get_mut(order_id)
            && order.status == OrderStatus::Pending
        {
            order.status = OrderStatus::Paid;
            order.paid_at = Some(at);
        }
    }

    /// The order's next timer fires at `at` (the sweeper arms one again if
    /// it was lost); timers of checks already made are passed over, as the
    /// core finds them stale. The gateway, if asked, answers `answer`.
    /// `race`: a `payment.succeeded` handled while the check's close waits
    /// for the payments before it, committing first; delivered after the
    /// check if the check closes nothing.
    pub fn fire_timer(
        &mut self,
        order_id: &str,
        at: DateTime<Utc>,
        answer: &GatewayAnswer,
        dies_after: Option<u32>,
        race: Option<&[u8]>,
    ) {
        *self.world.answer.lock().unwrap() = answer.clone();
        *self.world.race.lock().unwrap() = race.map(<[u8]>::to_vec);
        for _ in 0..100 {
            let armed = self
                .store()
                .timers
                .get_mut(order_id)
                .and_then(BTreeSet::pop_first);
            let swept = || self.store().sweep(order_id, at).map(Attempt::get);
            let attempt = match armed.or_else(swept) {
                Some(attempt) => Attempt::new(attempt).expect("a check number"),
                None => break,
            };
            self.last_fired.insert(order_id.to_owned(), attempt);
            // Whether the timer was stale when it came (not when it came
            // again after the worker died handling it).
            let id = OrderId::parse(order_id).expect("an order id");
            let order = self.store().find(&id);
            let stale =
                check::decide(order.as_ref(), attempt, at, &self.schedule) == CheckDecision::Stale;
            self.fire(order_id, attempt, at, dies_after, false);
            if !stale {
                break;
            }
        }
        let race = self.world.race.lock().unwrap().take();
        if let Some(body) = race {
            self.deliver(Kind::PaymentSucceeded, &body, false, None);
        }
    }

    /// The last timer delivered for the order is delivered again at `at`.
    /// A check made again never asks the gateway; should it, the gateway
    /// says `unpaid`.
    pub fn fire_timer_again(&mut self, order_id: &str, at: DateTime<Utc>, redelivered: bool) {
        let Some(&attempt) = self.last_fired.get(order_id) else {
            return;
        };
        *self.world.answer.lock().unwrap() = GatewayAnswer::Unpaid;
        self.fire(order_id, attempt, at, None, redelivered);
    }

    fn fire(
        &mut self,
        order_id: &str,
        attempt: Attempt,
        at: DateTime<Utc>,
        dies_after: Option<u32>,
        redelivered: bool,
    ) {
        let body = paywait::domain::Message::Check(paywait::domain::CheckDue {
            order_id: OrderId::parse(order_id).expect("an order id"),
            attempt: Ok(attempt),
            due_at: None,
        })
        .to_body();
        let number = IntegerHeader::Integer(attempt.get().into());
        self.handle(
            at,
            dies_after,
            |seen_before| inbound(None, body.clone(), number.clone(), seen_before),
            redelivered,
        );
    }

    /// Fires every timer left, and those the sweeper arms again, at `at`,
    /// the gateway answering `answer`, until none is left.
    pub fn run_out(&mut self, at: DateTime<Utc>, answer: &GatewayAnswer) {
        for _ in 0..100 {
            let busy: Vec<String> = {
                let store = self.store();
                store
                    .orders
                    .iter()
                    .filter(|(id, order)| {
                        store.timers.get(*id).is_some_and(|t| !t.is_empty())
                            || (order.event_published_at.is_none() && order.next_check_at.is_some())
                    })
                    .map(|(id, _)| id.clone())
                    .collect()
            };
            if busy.is_empty() {
                return;
            }
            for order_id in busy {
                self.fire_timer(&order_id, at, answer, None, None);
            }
        }
        panic!("timers still fire after 100 rounds: {:#?}", self.store());
    }

    /// Hands the worker a message at `at`, dying after `dies_after`
    /// effects; a message it died on is delivered again, as redelivered,
    /// before any other.
    fn handle(
        &mut self,
        at: DateTime<Utc>,
        dies_after: Option<u32>,
        message: impl Fn(bool) -> Inbound,
        redelivered: bool,
    ) {
        NOW.with(|now| now.set(at));
        self.store().fuse = dies_after;
        let first = self
            .runtime
            .block_on(self.worker.handle(&message(redelivered)));
        self.store().fuse = None;
        if first.is_err() {
            self.runtime
                .block_on(self.worker.handle(&message(true)))
                .expect("a redelivery runs without a fault");
        }
    }
}
