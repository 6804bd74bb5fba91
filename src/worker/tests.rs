//! The worker's own sequencing, on ports that misbehave in ways the real
//! database and broker should not: each plan must end, or the message is
//! tried again — never acknowledged half done.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};

use super::*;
use crate::domain::{
    CheckKind, CloseReason, DeadlineChanged, IntegerHeader, Kind, Limits, NewOrder, OrderCancelled,
    OrderStatus, Parked, PaymentId, PaymentOutcome, PaymentSucceeded, Placement, Plan,
    RecordedPayment, ReminderDue, Route, Schedule, Step, Waiting,
    deadline::RecordedChange,
    reminder::{RecordedReminder, RemindBefore},
    test_order,
};

/// A store whose order is always pending, however often it is closed or
/// paid: every conditional write finds it moved, as if another daemon
/// always came first and was then undone.
#[derive(Default)]
struct AlwaysMoved {
    writes: AtomicUsize,
}

impl AlwaysMoved {
    fn order(&self) -> Order {
        test_order(OrderStatus::Pending)
    }

    fn payment(&self) -> RecordedPayment {
        RecordedPayment {
            payment_id: PaymentId::parse("PAY-1").unwrap(),
            order_id: self.order().order_id,
            amount_cents: None,
            currency: None,
            paid_at: None,
            received_at: self.order().placed_at,
            outcome: None,
            event_published_at: None,
            decided_attempts: None,
        }
    }

    fn lost(&self) -> Result<Option<Order>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
}

const NOT_IN_THESE_PLANS: &str = "not a step of the plans under test";

impl Store for AlwaysMoved {
    async fn find(&self, _: &OrderId) -> Result<Option<Order>> {
        Ok(Some(self.order()))
    }
    async fn place(&self, _: NewOrder) -> Result<Placement> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn waiting_for(&self, _: &OrderId) -> Result<Waiting> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn record_payment(
        &self,
        _: &PaymentSucceeded,
        _: DateTime<Utc>,
    ) -> Result<(bool, RecordedPayment)> {
        Ok((true, self.payment()))
    }
    async fn decide_payment(
        &self,
        _: &PaymentId,
        _: PaymentOutcome,
        _: u32,
    ) -> Result<(bool, RecordedPayment)> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn adopt(&self, _: &OrderId, _: &PaymentId) -> Result<bool> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn claim_announcement(&self, _: &OrderId) -> Result<Option<Order>> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn payment(&self, _: &PaymentId) -> Result<Option<RecordedPayment>> {
        Ok(Some(self.payment()))
    }
    async fn payments_of(&self, _: &OrderId) -> Result<Vec<RecordedPayment>> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn settle(
        &self,
        _: &OrderId,
        _: &PaymentId,
        _: Option<Attempt>,
    ) -> Result<Option<Order>> {
        self.lost()
    }
    async fn close(
        &self,
        _: &OrderId,
        _: Option<Attempt>,
        _: DateTime<Utc>,
        _: CloseReason,
    ) -> Result<Option<Order>> {
        self.lost()
    }
    async fn record_cancellation(&self, _: &OrderCancelled, _: DateTime<Utc>) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn record_check(
        &self,
        _: &OrderId,
        _: Attempt,
        _: DateTime<Utc>,
        _: CheckKind,
    ) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn mark_announced(&self, _: &OrderId, _: OrderStatus, _: u32) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn mark_payment_announced(&self, _: &PaymentId) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn record_parked(&self, _: &Parked) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn change_deadline(
        &self,
        _: &OrderId,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<Option<Order>> {
        self.lost()
    }
    async fn keep_deadline_change(
        &self,
        _: &OrderId,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn deadline_change(
        &self,
        _: &OrderId,
        _: DateTime<Utc>,
    ) -> Result<Option<RecordedChange>> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn mark_deadline_change_announced(&self, _: &OrderId, _: DateTime<Utc>) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn keep_reminder(&self, _: &ReminderDue, _: u32) -> Result<RecordedReminder> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn mark_reminded(&self, _: &ReminderDue) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
}

/// A broker whose payments are always handled, and that takes timers but
/// no event.
struct NoBacklog;

impl Bus for NoBacklog {
    async fn arm_timer(&self, _: &OrderId, _: Attempt, _: DateTime<Utc>, _: Route) -> Result<()> {
        Ok(())
    }
    async fn arm_reminder(&self, _: &ReminderDue, _: Route) -> Result<()> {
        Ok(())
    }
    async fn announce(&self, _: &OrderEvent) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
    async fn wait_for_payments(&self, _: DateTime<Utc>) -> Result<Duration> {
        Ok(Duration::ZERO)
    }
    async fn barrier_passed(&self, _: &str) -> Result<()> {
        unreachable!("{NOT_IN_THESE_PLANS}")
    }
}

fn worker() -> Worker<AlwaysMoved, NoBacklog> {
    let schedule = Schedule::parse(&["30m"]).unwrap();
    Worker {
        store: AlwaysMoved::default(),
        bus: NoBacklog,
        clock: Utc::now,
        timers: Timers::new(&schedule, &[], Duration::ZERO),
        schedule,
        remind_before: RemindBefore::default(),
        limits: Limits {
            max_deadline: Duration::from_secs(24 * 3600),
            max_clock_skew: Duration::from_secs(60),
        },
        metrics: Arc::new(Metrics::new()),
        trusted_users: Vec::new(),
        gateway: None,
        checks_in_flight: ChecksInFlight::default(),
        progress: Progress::default(),
    }
}

fn inbound(kind: Kind, body: Vec<u8>) -> Inbound {
    Inbound {
        inbox: kind.inbox(),
        body,
        attempt: IntegerHeader::Missing,
        due_at: IntegerHeader::Missing,
        routing_key: kind.routing_key().to_owned(),
        user_id: None,
        seen_before: false,
        received_at: Utc::now(),
    }
}

fn unfinished(handled: Result<Verdict>) -> &'static str {
    match handled {
        Err(Error::Unfinished(why)) => why,
        other => panic!("expected an unfinished message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cancellation_that_never_closes_its_order_is_tried_again() {
    let worker = worker();
    let cancelled = OrderCancelled {
        order_id: worker.store.order().order_id,
        reason: None,
    };
    let handled = worker
        .handle(&inbound(Kind::OrderCancelled, cancelled.to_body()))
        .await;
    assert!(unfinished(handled).contains("cancellation"));
    assert_eq!(
        worker.store.writes.load(Ordering::SeqCst),
        cancellations::PLANS
    );
}

#[tokio::test]
async fn a_payment_that_never_settles_its_order_is_tried_again() {
    let worker = worker();
    let payment = PaymentSucceeded {
        order_id: worker.store.order().order_id,
        payment_id: PaymentId::parse("PAY-1").unwrap(),
        amount_cents: None,
        currency: None,
        paid_at: None,
    };
    let handled = worker
        .handle(&inbound(Kind::PaymentSucceeded, payment.to_body()))
        .await;
    assert!(unfinished(handled).contains("payment"));
    assert_eq!(worker.store.writes.load(Ordering::SeqCst), money::PLANS);
}

#[tokio::test]
async fn a_deadline_change_that_never_moves_its_order_is_tried_again() {
    let worker = worker();
    let changed = DeadlineChanged {
        order_id: worker.store.order().order_id,
        expires_at: worker.store.order().expires_at + chrono::TimeDelta::minutes(10),
    };
    let handled = worker
        .handle(&inbound(Kind::DeadlineChanged, changed.to_body()))
        .await;
    assert!(unfinished(handled).contains("deadline"));
    assert_eq!(worker.store.writes.load(Ordering::SeqCst), deadlines::PLANS);
}

#[tokio::test]
async fn a_plan_that_asks_a_gateway_this_daemon_has_not_is_an_error() {
    let worker = worker();
    let order = worker.store.order();
    let executed = worker
        .execute(
            &order.order_id,
            Some(order.clone()),
            &Plan::steps([Step::AskGateway]),
        )
        .await;
    match executed {
        Err(Error::Unfinished(why)) => assert!(why.contains("gateway"), "{why}"),
        other => panic!("{other:?}"),
    }
}
