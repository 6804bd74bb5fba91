//! What the worker needs of the world outside it, as traits: the database
//! ([`Store`]), the broker ([`Bus`]) and the payment gateway
//! ([`AskGateway`]). A live daemon plugs in `db::Database`, [`Live`] and
//! `gateway::Gateway`; the model tests plug in an in-memory store and
//! broker, and so drive this very worker, its order of steps included,
//! with a fault between any two of them.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use super::Barriers;
use crate::{
    amqp::{Publisher, Topology},
    db::Database,
    domain::{
        Attempt, CheckKind, CloseReason, NewOrder, Order, OrderCancelled, OrderEvent, OrderId,
        OrderStatus, Parked, PaymentId, PaymentOutcome, PaymentSucceeded, Placement,
        RecordedPayment, ReminderDue, Route, Waiting,
        deadline::RecordedChange,
        gateway::{AskPolicy, GatewayAnswer},
        reminder::RecordedReminder,
    },
    error::Result,
    gateway::Gateway,
};

/// Where orders, payments and cancellations are kept. Every write that
/// moves an order is conditional, and its result says whether it did.
/// (Each method is `db::Database`'s of the same name.)
pub trait Store: Send + Sync + 'static {
    fn find(&self, order_id: &OrderId) -> impl Future<Output = Result<Option<Order>>> + Send;
    fn place(&self, new: NewOrder) -> impl Future<Output = Result<Placement>> + Send;
    fn waiting_for(&self, order_id: &OrderId) -> impl Future<Output = Result<Waiting>> + Send;
    fn record_payment(
        &self,
        payment: &PaymentSucceeded,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(bool, RecordedPayment)>> + Send;
    fn decide_payment(
        &self,
        payment_id: &PaymentId,
        outcome: PaymentOutcome,
        attempts: u32,
    ) -> impl Future<Output = Result<(bool, RecordedPayment)>> + Send;
    fn adopt(
        &self,
        order_id: &OrderId,
        payment_id: &PaymentId,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn claim_announcement(
        &self,
        order_id: &OrderId,
    ) -> impl Future<Output = Result<Option<Order>>> + Send;
    fn payment(
        &self,
        payment_id: &PaymentId,
    ) -> impl Future<Output = Result<Option<RecordedPayment>>> + Send;
    fn payments_of(
        &self,
        order_id: &OrderId,
    ) -> impl Future<Output = Result<Vec<RecordedPayment>>> + Send;
    fn settle(
        &self,
        order_id: &OrderId,
        payment_id: &PaymentId,
        by_check: Option<Attempt>,
    ) -> impl Future<Output = Result<Option<Order>>> + Send;
    fn close(
        &self,
        order_id: &OrderId,
        by_check: Option<Attempt>,
        now: DateTime<Utc>,
        reason: CloseReason,
    ) -> impl Future<Output = Result<Option<Order>>> + Send;
    fn record_cancellation(
        &self,
        cancelled: &OrderCancelled,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn record_check(
        &self,
        order_id: &OrderId,
        check: Attempt,
        next_check_at: DateTime<Utc>,
        kind: CheckKind,
    ) -> impl Future<Output = Result<()>> + Send;
    fn mark_announced(
        &self,
        order_id: &OrderId,
        status: OrderStatus,
        attempts: u32,
    ) -> impl Future<Output = Result<()>> + Send;
    fn mark_payment_announced(
        &self,
        payment_id: &PaymentId,
    ) -> impl Future<Output = Result<()>> + Send;
    fn record_parked(&self, parked: &Parked) -> impl Future<Output = Result<()>> + Send;
    fn change_deadline(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Order>>> + Send;
    fn keep_deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<RecordedChange>>> + Send;
    fn mark_deadline_change_announced(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn keep_reminder(
        &self,
        reminder: &ReminderDue,
        attempts: u32,
    ) -> impl Future<Output = Result<RecordedReminder>> + Send;
    fn mark_reminded(&self, reminder: &ReminderDue) -> impl Future<Output = Result<()>> + Send;
}

/// The broker, as the worker publishes to it: every call returns once the
/// broker confirmed.
pub trait Bus: Send + Sync + 'static {
    /// Publishes the timer of check number `attempt`, due at `due_at`, by
    /// `route`.
    fn arm_timer(
        &self,
        order_id: &OrderId,
        attempt: Attempt,
        due_at: DateTime<Utc>,
        route: Route,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Publishes a reminder's timer by `route`.
    fn arm_reminder(
        &self,
        reminder: &ReminderDue,
        route: Route,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Publishes an event under its own message id.
    fn announce(&self, event: &OrderEvent) -> impl Future<Output = Result<()>> + Send;
    /// Waits until every payment that reached the broker before `at` has
    /// been handled; returns how long that took.
    fn wait_for_payments(&self, at: DateTime<Utc>)
    -> impl Future<Output = Result<Duration>> + Send;
    /// A barrier came through the payments queue (see `barrier`).
    fn barrier_passed(&self, token: &str) -> impl Future<Output = Result<()>> + Send;
}

/// A future of the gateway's answer.
pub type Answer<'a> = Pin<Box<dyn Future<Output = GatewayAnswer> + Send + 'a>>;

/// The payment gateway, asked about an order at its deadline.
pub trait AskGateway: Send + Sync + 'static {
    /// Never fails: every trouble is an unusable answer.
    fn ask<'a>(&'a self, order: &'a Order) -> Answer<'a>;
    fn policy(&self) -> &AskPolicy;
    /// The wait before asking about an order again.
    fn wait_before_asking_again(&self) -> Duration;
}

impl Store for Database {
    async fn find(&self, order_id: &OrderId) -> Result<Option<Order>> {
        Ok(Database::find(self, order_id).await?)
    }
    async fn place(&self, new: NewOrder) -> Result<Placement> {
        Ok(Database::place(self, new).await?)
    }
    async fn waiting_for(&self, order_id: &OrderId) -> Result<Waiting> {
        Ok(Database::waiting_for(self, order_id).await?)
    }
    async fn record_payment(
        &self,
        payment: &PaymentSucceeded,
        received_at: DateTime<Utc>,
    ) -> Result<(bool, RecordedPayment)> {
        Ok(Database::record_payment(self, payment, received_at).await?)
    }
    async fn decide_payment(
        &self,
        payment_id: &PaymentId,
        outcome: PaymentOutcome,
        attempts: u32,
    ) -> Result<(bool, RecordedPayment)> {
        Ok(Database::decide_payment(self, payment_id, outcome, attempts).await?)
    }
    async fn adopt(&self, order_id: &OrderId, payment_id: &PaymentId) -> Result<bool> {
        Ok(Database::adopt(self, order_id, payment_id).await?)
    }
    async fn claim_announcement(&self, order_id: &OrderId) -> Result<Option<Order>> {
        Ok(Database::claim_announcement(self, order_id).await?)
    }
    async fn payment(&self, payment_id: &PaymentId) -> Result<Option<RecordedPayment>> {
        Ok(Database::payment(self, payment_id).await?)
    }
    async fn payments_of(&self, order_id: &OrderId) -> Result<Vec<RecordedPayment>> {
        Ok(Database::payments_of(self, order_id).await?)
    }
    async fn settle(
        &self,
        order_id: &OrderId,
        payment_id: &PaymentId,
        by_check: Option<Attempt>,
    ) -> Result<Option<Order>> {
        Ok(Database::settle(self, order_id, payment_id, by_check).await?)
    }
    async fn close(
        &self,
        order_id: &OrderId,
        by_check: Option<Attempt>,
        now: DateTime<Utc>,
        reason: CloseReason,
    ) -> Result<Option<Order>> {
        Ok(Database::close(self, order_id, by_check, now, reason).await?)
    }
    async fn record_cancellation(
        &self,
        cancelled: &OrderCancelled,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(Database::record_cancellation(self, cancelled, received_at).await?)
    }
    async fn record_check(
        &self,
        order_id: &OrderId,
        check: Attempt,
        next_check_at: DateTime<Utc>,
        kind: CheckKind,
    ) -> Result<()> {
        Ok(Database::record_check(self, order_id, check, next_check_at, kind).await?)
    }
    async fn mark_announced(
        &self,
        order_id: &OrderId,
        status: OrderStatus,
        attempts: u32,
    ) -> Result<()> {
        Ok(Database::mark_announced(self, order_id, status, attempts).await?)
    }
    async fn mark_payment_announced(&self, payment_id: &PaymentId) -> Result<()> {
        Ok(Database::mark_payment_announced(self, payment_id).await?)
    }
    async fn record_parked(&self, parked: &Parked) -> Result<()> {
        Ok(Database::record_parked(self, parked).await?)
    }
    async fn change_deadline(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Order>> {
        Ok(
            Database::change_deadline(self, order_id, expires_at, next_check_at, received_at, now)
                .await?,
        )
    }
    async fn keep_deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(Database::keep_deadline_change(self, order_id, expires_at, received_at).await?)
    }
    async fn deadline_change(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<RecordedChange>> {
        Ok(Database::deadline_change(self, order_id, expires_at).await?)
    }
    async fn mark_deadline_change_announced(
        &self,
        order_id: &OrderId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(Database::mark_deadline_change_announced(self, order_id, expires_at).await?)
    }
    async fn keep_reminder(
        &self,
        reminder: &ReminderDue,
        attempts: u32,
    ) -> Result<RecordedReminder> {
        Ok(Database::keep_reminder(self, reminder, attempts).await?)
    }
    async fn mark_reminded(&self, reminder: &ReminderDue) -> Result<()> {
        Ok(Database::mark_reminded(self, reminder).await?)
    }
}

/// The broker as a live daemon reaches it: its session's publisher, and the
/// barriers closes wait for, which outlive sessions.
pub struct Live {
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub barriers: Arc<Barriers>,
    /// Where barriers passed for another daemon are recorded.
    pub db: Database,
}

impl Bus for Live {
    async fn arm_timer(
        &self,
        order_id: &OrderId,
        attempt: Attempt,
        due_at: DateTime<Utc>,
        route: Route,
    ) -> Result<()> {
        Ok(self
            .publisher
            .arm_timer(&self.topology, order_id, attempt, due_at, route)
            .await?)
    }

    async fn arm_reminder(&self, reminder: &ReminderDue, route: Route) -> Result<()> {
        Ok(self
            .publisher
            .arm_reminder(&self.topology, reminder, route)
            .await?)
    }

    async fn announce(&self, event: &OrderEvent) -> Result<()> {
        Ok(self.publisher.announce(&self.topology, event).await?)
    }

    async fn wait_for_payments(&self, at: DateTime<Utc>) -> Result<Duration> {
        self.barriers.wait_through(self, at).await
    }

    async fn barrier_passed(&self, token: &str) -> Result<()> {
        // Another daemon's (or no one's): its publisher looks for it in the
        // database.
        if !self.barriers.passed(token) {
            self.db.record_barrier_passed(token).await?;
        }
        Ok(())
    }
}

impl AskGateway for Gateway {
    fn ask<'a>(&'a self, order: &'a Order) -> Answer<'a> {
        Box::pin(Gateway::ask(self, order))
    }
    fn policy(&self) -> &AskPolicy {
        Gateway::policy(self)
    }
    fn wait_before_asking_again(&self) -> Duration {
        Gateway::wait_before_asking_again(self)
    }
}
