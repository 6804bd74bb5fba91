//! The contract of SPEC.md as an executable reference model: what paywait
//! must do with orders, payments, cancellations, orders paid in SQL, checks
//! at the deadline and the payment gateway's answers — a small,
//! deterministic state machine written from the contract alone, knowing
//! nothing of how paywait is built. `tests/model` hands the same messages to
//! this model and to paywait's core and requires the same orders and events.
//!
//! # What goes in
//!
//! [`Input`]s, in the order the broker delivered them, each once it was
//! handled to the end. A message delivered twice is handed over twice: the
//! model is idempotent by the contract's rules (a known order, a known
//! `payment_id`, a settled order), not by remembering messages. A timer
//! delivered again is not handed over at all: a check already made changes
//! nothing when it is made again.
//!
//! Time is counted in milliseconds ([`Millis`]) from whatever epoch the
//! caller chooses; only the order of instants matters.
//!
//! # What comes out
//!
//! - [`Model::rows`]: each order's [`Row`] — its status, why it was closed,
//!   and the payment that paid it.
//! - [`Model::events`]: the [`Event`]s owed downstream. Events are
//!   published at least once, so this is a set: each must be published, at
//!   least once, and nothing else may be. Only a terminal order owes the
//!   event of its status; an order paid in SQL owes `order.paid` too (the
//!   next check publishes it).
//!
//! # The rules, as SPEC.md states them
//!
//! - An order is `pending` until it is `paid` or `closed`; both are
//!   terminal and exclusive. A repeated `order.placed` changes nothing, and
//!   an `order.placed` whose own deadline is not after `placed_at`, or more
//!   than `checks.max_deadline` after it, is refused.
//! - A payment settles a pending order only if it matches it: where both
//!   state an amount they are equal, where both state a currency it is the
//!   same. One that does not match is kept and announced
//!   (`order.payment_mismatch`); the order stays pending.
//! - The same `payment_id` again is the same payment: nothing new. What a
//!   payment did is decided once and kept.
//! - A payment for a paid order is a second payment (`order.paid_twice`),
//!   whatever its amount; one for a closed order is a payment after the
//!   close (`order.paid_after_close`).
//! - An order paid in SQL names no payment: the first payment that matches
//!   it is taken as the one that paid it (nothing published); every other
//!   payment for it is a second payment.
//! - `order.cancelled` closes a pending order (`cancelled`) and leaves a
//!   paid or closed one as it is.
//! - Payments and cancellations for an order not placed yet wait for it,
//!   and are played in the order they came when it arrives.
//! - A check at or after the deadline closes a pending order (`expired`);
//!   one before it does nothing. With a gateway, the gateway is asked first:
//!   `paid` is that payment arriving (amount checks apply; an order still
//!   pending after it closes `expired`), `unpaid` closes `expired`, and
//!   `pending` or no usable answer asks again, up to `max_retries` more
//!   times, then closes `unverified`.
//! - Events about one payment carry the status their payment was decided
//!   with: a mismatch is only ever decided on a pending order, a second
//!   payment on a paid one, a payment after the close on a closed one.
//! - `order.deadline_changed` moves a pending order's deadline to one after
//!   its `placed_at` and at most `checks.max_deadline` after it (any other
//!   is refused), and owes `order.deadline_changed` under
//!   `<order_id>/order.deadline_changed/<expires_at>`; the same deadline
//!   again, or a change of a paid or closed order, changes nothing. Changes
//!   come in the order they were delivered; one for an order not placed yet
//!   waits for it, and the last that waited is applied once what else
//!   waited is played.
//!
//! Left out: `payment.started` holds, reminders, trusted publishers, bad
//! input, and everything about the broker and the database (they are what
//! the model's caller plays out).

use std::collections::{BTreeMap, BTreeSet};

/// An instant, in milliseconds from the caller's epoch.
pub type Millis = i64;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pending,
    Paid,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Paid, Self::Closed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// Why an order was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseReason {
    Expired,
    Cancelled,
    Unverified,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Unverified => "unverified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Expired, Self::Cancelled, Self::Unverified]
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

/// The settings the rules depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sum of `checks.schedule`: the deadline of an order that states
    /// none is this long after it was placed.
    pub schedule_total: Millis,
    /// `checks.max_deadline`.
    pub max_deadline: Millis,
    /// `gateway.max_retries` when `gateway.url` is set; `None` without a
    /// gateway.
    pub gateway_max_retries: Option<u32>,
    /// How the caller writes an instant in an event (RFC 3339, as the
    /// event's body does): `order.deadline_changed`'s id holds one.
    pub time_text: fn(Millis) -> String,
}

/// `order.placed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    pub order_id: String,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub placed_at: Millis,
    /// Its own deadline, if it states one.
    pub expires_at: Option<Millis>,
}

/// A payment: a `payment.succeeded`, or the gateway's `paid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: String,
    pub payment_id: String,
    pub amount_cents: Option<i64>,
    /// `None`: in the order's currency.
    pub currency: Option<String>,
}

/// What the payment gateway answers when asked about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayAnswer {
    Paid {
        payment_id: String,
        amount_cents: Option<i64>,
        currency: Option<String>,
    },
    Unpaid,
    Pending,
    /// A time-out, a status other than 200, a body that does not parse.
    Unusable,
}

/// One thing that happens to paywait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    OrderPlaced(OrderPlaced),
    PaymentSucceeded(Payment),
    OrderCancelled {
        order_id: String,
    },
    /// A payment service ran `UPDATE orders SET status = 'paid' ... WHERE
    /// status = 'pending'`.
    PaidInSql {
        order_id: String,
    },
    /// `order.deadline_changed`.
    DeadlineChanged {
        order_id: String,
        expires_at: Millis,
    },
    /// The order's timer fired and its check is made at `at`; `gateway` is
    /// what the gateway answers if it is asked.
    Check {
        order_id: String,
        at: Millis,
        gateway: GatewayAnswer,
    },
}

/// What a payment did, decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// It paid its order (or was taken as the payment of an order paid in
    /// SQL).
    Settled,
    Mismatch,
    Twice,
    AfterClose,
}

/// An order as the contract sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub placed_at: Millis,
    pub expires_at: Millis,
    pub status: Status,
    pub close_reason: Option<CloseReason>,
    /// The payment that paid it.
    pub paid_by: Option<String>,
    /// Paid by a payment service's SQL, which names no payment.
    pub paid_in_sql: bool,
    /// Answers `pending` or unusable since the deadline: each asks again.
    pub unsure_answers: u32,
}

/// An order's observable end: what `paywait show` tells.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub status: Status,
    pub close_reason: Option<CloseReason>,
    pub paid_by: Option<String>,
}

/// An event as downstream tells it apart: its `message_id`, its name
/// (routing key), and the `status` (and, on `order.closed`, the `reason`)
/// it carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Event {
    pub message_id: String,
    pub event: String,
    pub status: Status,
    pub reason: Option<CloseReason>,
}

impl Event {
    /// The event of an order's terminal status: `<order_id>/<event>`.
    fn of_order(order_id: &str, order: &Order) -> Option<Self> {
        let (event, reason) = match order.status {
            Status::Pending => return None,
            Status::Paid => ("order.paid", None),
            Status::Closed => ("order.closed", order.close_reason),
        };
        Some(Self {
            message_id: format!("{order_id}/{event}"),
            event: event.to_owned(),
            status: order.status,
            reason,
        })
    }

    /// The event of a payment that did not settle its order:
    /// `<order_id>/<event>/<payment_id>`, with the status it was decided
    /// with.
    fn of_payment(payment: &Payment, outcome: Outcome) -> Option<Self> {
        let (event, status) = match outcome {
            Outcome::Settled => return None,
            Outcome::Mismatch => ("order.payment_mismatch", Status::Pending),
            Outcome::Twice => ("order.paid_twice", Status::Paid),
            Outcome::AfterClose => ("order.paid_after_close", Status::Closed),
        };
        Some(Self {
            message_id: format!("{}/{event}/{}", payment.order_id, payment.payment_id),
            event: event.to_owned(),
            status,
            reason: None,
        })
    }
}

/// Something that came for an order not placed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Early {
    Payment(String),
    Cancellation,
    DeadlineChange(Millis),
}

/// The contract's state: the orders, every payment, and what waits for an
/// order not placed yet.
#[derive(Debug, Clone)]
pub struct Model {
    settings: Settings,
    orders: BTreeMap<String, Order>,
    /// Every payment by `payment_id`, with what it did once its order was
    /// known.
    payments: BTreeMap<String, (Payment, Option<Outcome>)>,
    /// What came for orders not placed yet, in the order it came.
    waiting: BTreeMap<String, Vec<Early>>,
    /// The deadline changes applied, by order and new deadline.
    changes: BTreeSet<(String, Millis)>,
}

impl Model {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            orders: BTreeMap::new(),
            payments: BTreeMap::new(),
            waiting: BTreeMap::new(),
            changes: BTreeSet::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn order(&self, order_id: &str) -> Option<&Order> {
        self.orders.get(order_id)
    }

    /// What a payment did; `None` while its order is not known.
    pub fn outcome(&self, payment_id: &str) -> Option<Outcome> {
        self.payments
            .get(payment_id)
            .and_then(|(_, outcome)| *outcome)
    }

    pub fn apply(&mut self, input: &Input) {
        match input {
            Input::OrderPlaced(placed) => self.place(placed),
            Input::PaymentSucceeded(payment) => self.pay(payment),
            Input::OrderCancelled { order_id } => self.cancel(order_id),
            Input::DeadlineChanged {
                order_id,
                expires_at,
            } => self.change_deadline(order_id, *expires_at),
            Input::PaidInSql { order_id } => {
                if let Some(order) = self.pending(order_id) {
                    order.status = Status::Paid;
                    order.paid_in_sql = true;
                }
            }
            Input::Check {
                order_id,
                at,
                gateway,
            } => self.check(order_id, *at, gateway),
        }
    }

    /// Every timer still running fires at `at` (after every deadline), the
    /// gateway answering `answer` each time it is asked, until no order is
    /// pending.
    pub fn run_out(&mut self, at: Millis, answer: &GatewayAnswer) {
        let ids: Vec<String> = self.orders.keys().cloned().collect();
        for order_id in ids {
            while let Some(before) = self.pending(&order_id).map(|order| order.clone()) {
                self.check(&order_id, at, answer);
                assert_ne!(
                    self.orders[&order_id], before,
                    "{at} is before the deadline of {order_id}"
                );
            }
        }
    }

    /// Each order's row.
    pub fn rows(&self) -> BTreeMap<String, Row> {
        self.orders
            .iter()
            .map(|(order_id, order)| {
                let row = Row {
                    status: order.status,
                    close_reason: order.close_reason,
                    paid_by: order.paid_by.clone(),
                };
                (order_id.clone(), row)
            })
            .collect()
    }

    /// The events owed downstream as things stand.
    pub fn events(&self) -> BTreeSet<Event> {
        let of_orders = self
            .orders
            .iter()
            .filter_map(|(order_id, order)| Event::of_order(order_id, order));
        let of_payments = self
            .payments
            .values()
            .filter_map(|(payment, outcome)| Event::of_payment(payment, (*outcome)?));
        let of_changes = self.changes.iter().map(|(order_id, expires_at)| Event {
            message_id: format!(
                "{order_id}/order.deadline_changed/{}",
                (self.settings.time_text)(*expires_at)
            ),
            event: "order.deadline_changed".to_owned(),
            status: Status::Pending,
            reason: None,
        });
        of_orders.chain(of_payments).chain(of_changes).collect()
    }

    fn pending(&mut self, order_id: &str) -> Option<&mut Order> {
        self.orders
            .get_mut(order_id)
            .filter(|order| order.status == Status::Pending)
    }

    fn place(&mut self, placed: &OrderPlaced) {
        let expires_at = match placed.expires_at {
            None => placed.placed_at + self.settings.schedule_total,
            Some(expires_at) => {
                let window = expires_at - placed.placed_at;
                if window <= 0 || window > self.settings.max_deadline {
                    return; // refused: parked, the order stays unknown
                }
                expires_at
            }
        };
        if self.orders.contains_key(&placed.order_id) {
            return;
        }
        let order = Order {
            amount_cents: placed.amount_cents,
            currency: placed.currency.clone(),
            placed_at: placed.placed_at,
            expires_at,
            status: Status::Pending,
            close_reason: None,
            paid_by: None,
            paid_in_sql: false,
            unsure_answers: 0,
        };
        self.orders.insert(placed.order_id.clone(), order);
        let mut last_change = None;
        for early in self.waiting.remove(&placed.order_id).unwrap_or_default() {
            match early {
                Early::Payment(payment_id) => self.decide(&payment_id),
                Early::Cancellation => self.cancel(&placed.order_id),
                Early::DeadlineChange(expires_at) => last_change = Some(expires_at),
            }
        }
        if let Some(expires_at) = last_change {
            self.change_deadline(&placed.order_id, expires_at);
        }
    }

    fn change_deadline(&mut self, order_id: &str, expires_at: Millis) {
        if !self.orders.contains_key(order_id) {
            self.waiting
                .entry(order_id.to_owned())
                .or_default()
                .push(Early::DeadlineChange(expires_at));
            return;
        }
        let max_deadline = self.settings.max_deadline;
        let Some(order) = self.pending(order_id) else {
            return; // settled: nothing changes
        };
        let window = expires_at - order.placed_at;
        if expires_at == order.expires_at || window <= 0 || window > max_deadline {
            return; // the same deadline, or one refused (parked)
        }
        order.expires_at = expires_at;
        self.changes.insert((order_id.to_owned(), expires_at));
    }

    fn pay(&mut self, payment: &Payment) {
        if self.payments.contains_key(&payment.payment_id) {
            return; // the same payment again
        }
        self.payments
            .insert(payment.payment_id.clone(), (payment.clone(), None));
        if self.orders.contains_key(&payment.order_id) {
            self.decide(&payment.payment_id);
        } else {
            self.waiting
                .entry(payment.order_id.clone())
                .or_default()
                .push(Early::Payment(payment.payment_id.clone()));
        }
    }

    /// Decides what a recorded payment does to its known order.
    fn decide(&mut self, payment_id: &str) {
        let (payment, outcome) = self.payments.get_mut(payment_id).expect("recorded");
        let order = self.orders.get_mut(&payment.order_id).expect("known");
        let matches = matches(order, payment);
        *outcome = Some(match order.status {
            Status::Pending if matches => {
                order.status = Status::Paid;
                order.paid_by = Some(payment_id.to_owned());
                Outcome::Settled
            }
            Status::Pending => Outcome::Mismatch,
            Status::Paid if order.paid_in_sql && order.paid_by.is_none() && matches => {
                order.paid_by = Some(payment_id.to_owned());
                Outcome::Settled
            }
            Status::Paid => Outcome::Twice,
            Status::Closed => Outcome::AfterClose,
        });
    }

    fn cancel(&mut self, order_id: &str) {
        if !self.orders.contains_key(order_id) {
            self.waiting
                .entry(order_id.to_owned())
                .or_default()
                .push(Early::Cancellation);
        } else if let Some(order) = self.pending(order_id) {
            order.status = Status::Closed;
            order.close_reason = Some(CloseReason::Cancelled);
        }
    }

    fn check(&mut self, order_id: &str, at: Millis, answer: &GatewayAnswer) {
        let max_retries = self.settings.gateway_max_retries;
        let Some(order) = self.pending(order_id) else {
            return; // unknown (no timer), or settled: nothing to decide
        };
        if at < order.expires_at {
            return;
        }
        let Some(max_retries) = max_retries else {
            return close(order, CloseReason::Expired);
        };
        match answer {
            GatewayAnswer::Paid {
                payment_id,
                amount_cents,
                currency,
            } => {
                self.pay(&Payment {
                    order_id: order_id.to_owned(),
                    payment_id: payment_id.clone(),
                    amount_cents: *amount_cents,
                    currency: currency.clone(),
                });
                if let Some(order) = self.pending(order_id) {
                    close(order, CloseReason::Expired);
                }
            }
            GatewayAnswer::Unpaid => close(order, CloseReason::Expired),
            GatewayAnswer::Pending | GatewayAnswer::Unusable => {
                if order.unsure_answers < max_retries {
                    order.unsure_answers += 1;
                } else {
                    close(order, CloseReason::Unverified);
                }
            }
        }
    }
}

fn close(order: &mut Order, reason: CloseReason) {
    order.status = Status::Closed;
    order.close_reason = Some(reason);
}

/// Whether `payment` may settle `order`: where both state an amount they
/// are equal, and where both state a currency it is the same.
pub fn matches(order: &Order, payment: &Payment) -> bool {
    fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
    agree(&order.amount_cents, &payment.amount_cents) && agree(&order.currency, &payment.currency)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Millis = 60_000;

    fn model(gateway_max_retries: Option<u32>) -> Model {
        Model::new(Settings {
            schedule_total: 5 * MINUTE,
            max_deadline: 30 * 24 * 60 * MINUTE,
            gateway_max_retries,
            time_text: |at| at.to_string(),
        })
    }

    fn placed(order_id: &str, amount_cents: Option<i64>) -> Input {
        Input::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            amount_cents,
            currency: Some("CNY".into()),
            placed_at: 0,
            expires_at: None,
        })
    }

    fn paid(order_id: &str, payment_id: &str, amount_cents: Option<i64>) -> Input {
        Input::PaymentSucceeded(Payment {
            order_id: order_id.into(),
            payment_id: payment_id.into(),
            amount_cents,
            currency: None,
        })
    }

    fn check(order_id: &str, at: Millis, gateway: GatewayAnswer) -> Input {
        Input::Check {
            order_id: order_id.into(),
            at,
            gateway,
        }
    }

    fn run(model: &mut Model, inputs: &[Input]) {
        for input in inputs {
            model.apply(input);
        }
    }

    fn row(model: &Model, order_id: &str) -> Row {
        model.rows()[order_id].clone()
    }

    fn ids(model: &Model) -> Vec<String> {
        model.events().into_iter().map(|e| e.message_id).collect()
    }

    #[test]
    fn a_matching_payment_pays_and_a_later_one_is_paid_twice() {
        let mut m = model(None);
        run(
            &mut m,
            &[
                placed("A", Some(100)),
                paid("A", "P1", Some(1)),
                paid("A", "P2", Some(100)),
                paid("A", "P2", Some(100)),
                paid("A", "P3", Some(1)),
            ],
        );
        assert_eq!(row(&m, "A").paid_by.as_deref(), Some("P2"));
        assert_eq!(
            ids(&m),
            [
                "A/order.paid",
                "A/order.paid_twice/P3",
                "A/order.payment_mismatch/P1"
            ]
        );
        let mismatch = m.events().into_iter().next_back().unwrap();
        assert_eq!(mismatch.status, Status::Pending);
    }

    #[test]
    fn what_came_before_the_order_is_played_in_the_order_it_came() {
        let mut m = model(None);
        run(
            &mut m,
            &[
                paid("A", "P1", Some(1)),
                Input::OrderCancelled {
                    order_id: "A".into(),
                },
                paid("A", "P2", Some(100)),
            ],
        );
        assert!(m.rows().is_empty());
        assert!(m.events().is_empty());
        m.apply(&placed("A", Some(100)));
        assert_eq!(
            row(&m, "A"),
            Row {
                status: Status::Closed,
                close_reason: Some(CloseReason::Cancelled),
                paid_by: None
            }
        );
        assert_eq!(m.outcome("P1"), Some(Outcome::Mismatch));
        assert_eq!(m.outcome("P2"), Some(Outcome::AfterClose));
    }

    #[test]
    fn an_order_paid_in_sql_takes_the_first_matching_payment_as_its_own() {
        let mut m = model(None);
        run(
            &mut m,
            &[
                placed("A", Some(100)),
                Input::PaidInSql {
                    order_id: "A".into(),
                },
                paid("A", "P1", Some(1)),
                paid("A", "P2", Some(100)),
                paid("A", "P3", Some(100)),
            ],
        );
        assert_eq!(row(&m, "A").paid_by.as_deref(), Some("P2"));
        assert_eq!(
            ids(&m),
            [
                "A/order.paid",
                "A/order.paid_twice/P1",
                "A/order.paid_twice/P3"
            ]
        );
    }

    #[test]
    fn a_check_closes_only_at_or_after_the_deadline() {
        let mut m = model(None);
        run(
            &mut m,
            &[
                placed("A", None),
                check("A", 5 * MINUTE - 1, GatewayAnswer::Unpaid),
            ],
        );
        assert_eq!(row(&m, "A").status, Status::Pending);
        m.apply(&check("A", 5 * MINUTE, GatewayAnswer::Unpaid));
        assert_eq!(row(&m, "A").close_reason, Some(CloseReason::Expired));
        m.apply(&paid("A", "P1", None));
        assert_eq!(m.outcome("P1"), Some(Outcome::AfterClose));
    }

    #[test]
    fn the_gateway_is_asked_again_up_to_max_retries_more_times() {
        let mut m = model(Some(2));
        m.apply(&placed("A", None));
        for _ in 0..2 {
            m.apply(&check("A", 5 * MINUTE, GatewayAnswer::Pending));
            assert_eq!(row(&m, "A").status, Status::Pending);
        }
        m.apply(&check("A", 5 * MINUTE, GatewayAnswer::Unusable));
        assert_eq!(row(&m, "A").close_reason, Some(CloseReason::Unverified));

        let mut m = model(Some(2));
        m.apply(&placed("A", Some(100)));
        m.apply(&check("A", 5 * MINUTE, GatewayAnswer::Pending));
        m.apply(&check("A", 5 * MINUTE, GatewayAnswer::Unpaid));
        assert_eq!(row(&m, "A").close_reason, Some(CloseReason::Expired));
    }

    #[test]
    fn the_gateways_payment_is_checked_like_any_other() {
        let mut m = model(Some(0));
        m.apply(&placed("A", Some(100)));
        let paid = |amount| GatewayAnswer::Paid {
            payment_id: "G".into(),
            amount_cents: Some(amount),
            currency: None,
        };
        m.apply(&check("A", 5 * MINUTE, paid(1)));
        assert_eq!(row(&m, "A").close_reason, Some(CloseReason::Expired));
        assert_eq!(ids(&m), ["A/order.closed", "A/order.payment_mismatch/G"]);

        let mut m = model(Some(0));
        m.apply(&placed("A", Some(100)));
        m.apply(&check("A", 5 * MINUTE, paid(100)));
        assert_eq!(row(&m, "A").paid_by.as_deref(), Some("G"));
    }

    #[test]
    fn orders_with_a_deadline_out_of_bounds_are_refused() {
        let mut m = model(None);
        for expires_at in [0, -1, 30 * 24 * 60 * MINUTE + 1] {
            m.apply(&Input::OrderPlaced(OrderPlaced {
                order_id: "A".into(),
                amount_cents: None,
                currency: None,
                placed_at: 0,
                expires_at: Some(expires_at),
            }));
        }
        assert!(m.rows().is_empty());
    }

    #[test]
    fn running_out_the_timers_leaves_no_order_pending() {
        let mut m = model(Some(1));
        run(&mut m, &[placed("A", None), placed("B", None)]);
        m.run_out(i64::MAX, &GatewayAnswer::Pending);
        assert!(
            m.rows()
                .values()
                .all(|row| row.close_reason == Some(CloseReason::Unverified))
        );
    }

    fn change(order_id: &str, expires_at: Millis) -> Input {
        Input::DeadlineChanged {
            order_id: order_id.into(),
            expires_at,
        }
    }

    #[test]
    fn a_deadline_change_moves_a_pending_orders_close_and_is_announced() {
        let mut m = model(None);
        // Due at 5 minutes; moved to 10: a check at 7 closes nothing.
        run(
            &mut m,
            &[
                placed("A", None),
                change("A", 10 * MINUTE),
                check("A", 7 * MINUTE, GatewayAnswer::Unpaid),
            ],
        );
        assert_eq!(row(&m, "A").status, Status::Pending);
        run(&mut m, &[check("A", 10 * MINUTE, GatewayAnswer::Unpaid)]);
        assert_eq!(row(&m, "A").status, Status::Closed);
        assert_eq!(
            ids(&m),
            [
                "A/order.closed".to_owned(),
                format!("A/order.deadline_changed/{}", 10 * MINUTE)
            ]
        );
    }

    #[test]
    fn what_a_deadline_change_leaves_alone() {
        let mut m = model(None);
        run(
            &mut m,
            &[
                placed("A", None),
                change("A", 5 * MINUTE),                // the same
                change("A", 0),                         // not after placed_at
                change("A", 30 * 24 * 60 * MINUTE + 1), // too far
                placed("B", None),
                paid("B", "P", None),
                change("B", 60 * MINUTE),
            ],
        );
        assert_eq!(m.order("A").unwrap().expires_at, 5 * MINUTE);
        assert_eq!(m.order("B").unwrap().expires_at, 5 * MINUTE);
        assert!(!ids(&m).iter().any(|id| id.contains("deadline_changed")));
    }

    #[test]
    fn the_last_change_before_an_order_applies_once_it_arrives() {
        let mut m = model(None);
        run(
            &mut m,
            &[
                change("A", 20 * MINUTE),
                change("A", 30 * MINUTE),
                placed("A", None),
            ],
        );
        assert_eq!(m.order("A").unwrap().expires_at, 30 * MINUTE);
        assert_eq!(
            ids(&m),
            [format!("A/order.deadline_changed/{}", 30 * MINUTE)]
        );
    }
}
