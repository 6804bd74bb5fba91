//! The steps of a sequence: what happens to paywait, how the reference
//! model reads each one, and how the driver plays it on the core.

use std::{collections::BTreeMap, fmt, sync::Arc};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use paywait::domain::{Currency, Kind, PaymentId, gateway};
use paywait_testkit::model::{self, Input, Millis, Model};
use proptest::{prelude::*, sample::select};
use serde_json::json;

use crate::driver::Driver;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// The orders a sequence is about: few, so that messages meet.
pub const ORDERS: [&str; 3] = ["A-1", "A-2", "A-3"];

/// The instant every [`Millis`] counts from.
pub fn epoch() -> DateTime<Utc> {
    "2026-11-27T08:00:00Z".parse().expect("a date")
}

pub fn instant(at: Millis) -> DateTime<Utc> {
    epoch() + TimeDelta::milliseconds(at)
}

/// The id of payment number `n` of an order.
pub fn payment_id(order: &str, n: u8) -> String {
    format!("{order}/P{n}")
}

/// A payment, as a `payment.succeeded` or a racing payment states it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pay {
    pub order: &'static str,
    pub n: u8,
    pub amount_cents: Option<i64>,
    pub currency: Option<&'static str>,
}

/// An inbound message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Placed {
        order: &'static str,
        amount_cents: Option<i64>,
        currency: Option<&'static str>,
        placed_at: Millis,
        /// Its own deadline, this long after `placed_at`.
        expires_in: Option<Millis>,
    },
    Payment(Pay),
    Cancelled {
        order: &'static str,
    },
    DeadlineChanged {
        order: &'static str,
        expires_at: Millis,
    },
}

/// What the payment gateway answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Paid by payment number `n` of the order asked about.
    Paid {
        n: u8,
        amount_cents: Option<i64>,
        currency: Option<&'static str>,
    },
    Unpaid,
    Pending,
    Unusable,
}

/// One thing that happens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The broker delivers a message (`redelivered`: flagged as delivered
    /// before); with `dies_after`, the worker dies after that many effects
    /// and the message is delivered again.
    Deliver {
        message: Message,
        redelivered: bool,
        dies_after: Option<u32>,
    },
    /// A payment service marks the order paid in SQL.
    PaidInSql { order: &'static str },
    /// The order's next timer fires at `at`.
    Timer {
        order: &'static str,
        at: Millis,
        answer: Answer,
        dies_after: Option<u32>,
    },
    /// The order's last timer is delivered again, at `at`.
    TimerAgain {
        order: &'static str,
        at: Millis,
        redelivered: bool,
    },
    /// The order's next timer fires at `at` and is about to close it when
    /// this payment commits first (the gateway, if any, says `unpaid`).
    RacedClose {
        order: &'static str,
        at: Millis,
        payment: Pay,
    },
}

impl Pay {
    fn to_model(self) -> model::Payment {
        model::Payment {
            order_id: self.order.into(),
            payment_id: payment_id(self.order, self.n),
            amount_cents: self.amount_cents,
            currency: self.currency.map(Into::into),
        }
    }

    fn body(self) -> Vec<u8> {
        json!({
            "order_id": self.order,
            "payment_id": payment_id(self.order, self.n),
            "amount_cents": self.amount_cents,
            "currency": self.currency,
        })
        .to_string()
        .into_bytes()
    }
}

impl Message {
    fn to_model(self) -> Input {
        match self {
            Self::Placed {
                order,
                amount_cents,
                currency,
                placed_at,
                expires_in,
            } => Input::OrderPlaced(model::OrderPlaced {
                order_id: order.into(),
                amount_cents,
                currency: currency.map(Into::into),
                placed_at,
                expires_at: expires_in.map(|window| placed_at + window),
            }),
            Self::Payment(pay) => Input::PaymentSucceeded(pay.to_model()),
            Self::Cancelled { order } => Input::OrderCancelled {
                order_id: order.into(),
            },
            Self::DeadlineChanged { order, expires_at } => Input::DeadlineChanged {
                order_id: order.into(),
                expires_at,
            },
        }
    }

    fn kind_and_body(self) -> (Kind, Vec<u8>) {
        let stamp = |at: Millis| instant(at).to_rfc3339_opts(SecondsFormat::Millis, true);
        match self {
            Self::Placed {
                order,
                amount_cents,
                currency,
                placed_at,
                expires_in,
            } => {
                let body = json!({
                    "order_id": order,
                    "amount_cents": amount_cents,
                    "currency": currency,
                    "placed_at": stamp(placed_at),
                    "expires_at": expires_in.map(|window| stamp(placed_at + window)),
                });
                (Kind::OrderPlaced, body.to_string().into_bytes())
            }
            Self::Payment(pay) => (Kind::PaymentSucceeded, pay.body()),
            Self::Cancelled { order } => {
                let body = json!({"order_id": order, "reason": "customer"});
                (Kind::OrderCancelled, body.to_string().into_bytes())
            }
            Self::DeadlineChanged { order, expires_at } => {
                let body = json!({"order_id": order, "expires_at": stamp(expires_at)});
                (Kind::DeadlineChanged, body.to_string().into_bytes())
            }
        }
    }
}

impl Answer {
    pub fn to_model(self, order: &str) -> model::GatewayAnswer {
        match self {
            Self::Paid {
                n,
                amount_cents,
                currency,
            } => model::GatewayAnswer::Paid {
                payment_id: payment_id(order, n),
                amount_cents,
                currency: currency.map(Into::into),
            },
            Self::Unpaid => model::GatewayAnswer::Unpaid,
            Self::Pending => model::GatewayAnswer::Pending,
            Self::Unusable => model::GatewayAnswer::Unusable,
        }
    }

    pub fn to_core(self, order: &str) -> gateway::GatewayAnswer {
        match self {
            Self::Paid {
                n,
                amount_cents,
                currency,
            } => gateway::GatewayAnswer::Paid {
                payment_id: PaymentId::parse(&payment_id(order, n)).expect("a payment id"),
                amount_cents,
                currency: currency.map(|c| Currency::parse(c).expect("a currency")),
            },
            Self::Unpaid => gateway::GatewayAnswer::Unpaid,
            Self::Pending => gateway::GatewayAnswer::Pending,
            Self::Unusable => gateway::GatewayAnswer::Unusable("no answer in time".into()),
        }
    }
}

impl Step {
    /// What the step is to the contract, in the order it happens.
    pub fn inputs(self) -> Vec<Input> {
        match self {
            Self::Deliver { message, .. } => vec![message.to_model()],
            Self::PaidInSql { order } => vec![Input::PaidInSql {
                order_id: order.into(),
            }],
            Self::Timer {
                order, at, answer, ..
            } => vec![Input::Check {
                order_id: order.into(),
                at,
                gateway: answer.to_model(order),
            }],
            // A check already made changes nothing when made again.
            Self::TimerAgain { .. } => vec![],
            // The payment committed first: it came before the check.
            Self::RacedClose { order, at, payment } => vec![
                Input::PaymentSucceeded(payment.to_model()),
                Input::Check {
                    order_id: order.into(),
                    at,
                    gateway: model::GatewayAnswer::Unpaid,
                },
            ],
        }
    }

    /// Plays the step on the core.
    pub fn run(self, driver: &mut Driver) {
        match self {
            Self::Deliver {
                message,
                redelivered,
                dies_after,
            } => {
                let (kind, body) = message.kind_and_body();
                driver.deliver(kind, &body, redelivered, dies_after);
            }
            Self::PaidInSql { order } => driver.paid_in_sql(order),
            Self::Timer {
                order,
                at,
                answer,
                dies_after,
            } => driver.fire_timer(order, instant(at), &answer.to_core(order), dies_after, None),
            Self::TimerAgain {
                order,
                at,
                redelivered,
            } => driver.fire_timer_again(order, instant(at), redelivered),
            Self::RacedClose { order, at, payment } => {
                let unpaid = gateway::GatewayAnswer::Unpaid;
                driver.fire_timer(order, instant(at), &unpaid, None, Some(&payment.body()));
            }
        }
    }
}

// ---- Reading a sequence ----

/// `T+5m0.001s`: an instant relative to the epoch.
pub struct At(pub Millis);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        write!(f, "T{sign}{}", Span(self.0.abs()))
    }
}

/// `30d`, `1h`, `4m59.999s`: a length of time.
struct Span(Millis);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.0;
        if left == 0 {
            return f.write_str("0");
        }
        for (unit, size) in [("d", DAY), ("h", HOUR), ("m", MINUTE)] {
            if left >= size {
                write!(f, "{}{unit}", left / size)?;
                left %= size;
            }
        }
        match (left / SECOND, left % SECOND) {
            (0, 0) => Ok(()),
            (seconds, 0) => write!(f, "{seconds}s"),
            (seconds, millis) => write!(f, "{seconds}.{millis:03}s"),
        }
    }
}

struct Money(Option<i64>, Option<&'static str>);

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cents) => write!(f, "{cents}")?,
            None => f.write_str("any amount")?,
        }
        match self.1 {
            Some(currency) => write!(f, " {currency}"),
            None => f.write_str(" (no currency)"),
        }
    }
}

impl fmt::Debug for Pay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payment.succeeded {} for {}: {}",
            payment_id(self.order, self.n),
            self.order,
            Money(self.amount_cents, self.currency)
        )
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Placed {
                order,
                amount_cents,
                currency,
                placed_at,
                expires_in,
            } => {
                write!(
                    f,
                    "order.placed {order}: {}, placed {}",
                    Money(amount_cents, currency),
                    At(placed_at)
                )?;
                match expires_in {
                    Some(window) => write!(f, ", due {} later", Span(window)),
                    None => f.write_str(", due after the schedule"),
                }
            }
            Self::Payment(pay) => write!(f, "{pay:?}"),
            Self::Cancelled { order } => write!(f, "order.cancelled {order}"),
            Self::DeadlineChanged { order, expires_at } => {
                write!(f, "order.deadline_changed {order}: due {}", At(expires_at))
            }
        }
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Paid {
                n,
                amount_cents,
                currency,
            } => write!(f, "paid by P{n}, {}", Money(amount_cents, currency)),
            Self::Unpaid => f.write_str("unpaid"),
            Self::Pending => f.write_str("pending"),
            Self::Unusable => f.write_str("no usable answer"),
        }
    }
}

fn fault(f: &mut fmt::Formatter<'_>, redelivered: bool, dies_after: Option<u32>) -> fmt::Result {
    if redelivered {
        f.write_str(" [redelivered]")?;
    }
    if let Some(effects) = dies_after {
        write!(
            f,
            " [worker dies after {effects} effects, then it is redelivered]"
        )?;
    }
    Ok(())
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Deliver {
                message,
                redelivered,
                dies_after,
            } => {
                write!(f, "{message:?}")?;
                fault(f, redelivered, dies_after)
            }
            Self::PaidInSql { order } => write!(f, "{order} marked paid in SQL"),
            Self::Timer {
                order,
                at,
                answer,
                dies_after,
            } => {
                write!(
                    f,
                    "timer of {order} fires at {} (gateway: {answer:?})",
                    At(at)
                )?;
                fault(f, false, dies_after)
            }
            Self::TimerAgain {
                order,
                at,
                redelivered,
            } => {
                write!(f, "last timer of {order} delivered again at {}", At(at))?;
                fault(f, redelivered, None)
            }
            Self::RacedClose { order, at, payment } => write!(
                f,
                "timer of {order} fires at {} (gateway: unpaid); before its close is written, {payment:?}",
                At(at)
            ),
        }
    }
}

// ---- Generating a sequence ----

/// What a generated step may know of an order: amount, currency, deadline.
type Known = Arc<BTreeMap<&'static str, (Option<i64>, Option<String>, Millis)>>;

fn known(model: &Model) -> Known {
    let known = ORDERS
        .iter()
        .filter_map(|&id| {
            let order = model.order(id)?;
            Some((
                id,
                (order.amount_cents, order.currency.clone(), order.expires_at),
            ))
        })
        .collect();
    Arc::new(known)
}

fn amounts() -> impl Strategy<Value = Option<i64>> + Clone {
    prop_oneof![
        Just(Some(100)),
        Just(None),
        Just(Some(0)),
        Just(Some(i64::MAX)),
    ]
}

fn currencies() -> impl Strategy<Value = Option<&'static str>> + Clone {
    prop_oneof![Just(Some("CNY")), Just(None), Just(Some("USD"))]
}

fn faults() -> impl Strategy<Value = Option<u32>> + Clone {
    prop_oneof![5 => Just(None), 1 => (1u32..=6).prop_map(Some)]
}

/// An amount and a currency for a payment of `order`: mostly the order's
/// own, so that payments often match.
fn money_for(
    known: &Known,
    order: &'static str,
) -> BoxedStrategy<(Option<i64>, Option<&'static str>)> {
    let (amount, currency) = match known.get(order) {
        Some((amount, currency, _)) => {
            let currency: Option<&'static str> = match currency.as_deref() {
                Some("CNY") => Some("CNY"),
                Some("USD") => Some("USD"),
                _ => None,
            };
            (*amount, currency)
        }
        None => (Some(100), Some("CNY")),
    };
    prop_oneof![
        3 => Just((amount, currency)),
        1 => Just((amount, None)),
        2 => (amounts(), currencies()),
    ]
    .boxed()
}

/// When a timer of `order` fires: around its deadline, if it is known.
fn instants_for(known: &Known, order: &'static str) -> BoxedStrategy<Millis> {
    match known.get(order) {
        Some(&(_, _, deadline)) => prop_oneof![
            Just(deadline),
            Just(deadline - 4 * MINUTE),
            Just(deadline - 1),
            Just(deadline + 1),
            Just(deadline + HOUR),
        ]
        .boxed(),
        None => Just(0).boxed(),
    }
}

/// A new deadline for `order`: around its own, before now, the same, or
/// one it may not have.
fn deadlines_for(known: &Known, order: &'static str) -> BoxedStrategy<Millis> {
    match known.get(order) {
        Some(&(_, _, deadline)) => prop_oneof![
            2 => Just(deadline + HOUR),
            2 => Just(deadline - 4 * MINUTE),
            1 => Just(deadline + 1),
            1 => Just(deadline),
            1 => Just(-2 * HOUR),
            1 => Just(40 * DAY),
        ]
        .boxed(),
        None => prop_oneof![Just(10 * MINUTE), Just(2 * MINUTE), Just(-2 * HOUR)].boxed(),
    }
}

fn pay_for(known: &Known, order: &'static str) -> BoxedStrategy<Pay> {
    (1u8..=3, money_for(known, order))
        .prop_map(move |(n, (amount_cents, currency))| Pay {
            order,
            n,
            amount_cents,
            currency,
        })
        .boxed()
}

fn answers_for(known: &Known, order: &'static str) -> BoxedStrategy<Answer> {
    prop_oneof![
        Just(Answer::Unpaid),
        Just(Answer::Pending),
        Just(Answer::Unusable),
        (1u8..=3, money_for(known, order)).prop_map(|(n, (amount_cents, currency))| {
            Answer::Paid {
                n,
                amount_cents,
                currency,
            }
        }),
    ]
    .boxed()
}

fn placed() -> impl Strategy<Value = Message> {
    let windows = prop_oneof![
        4 => Just(None),
        2 => Just(Some(MINUTE)),
        1 => Just(Some(1)),
        1 => Just(Some(5 * MINUTE)),
        1 => Just(Some(30 * DAY)),
        1 => Just(Some(30 * DAY + 1)),
        1 => Just(Some(0)),
    ];
    (
        select(ORDERS.to_vec()),
        amounts(),
        currencies(),
        prop_oneof![3 => Just(0), 1 => Just(-HOUR)],
        windows,
    )
        .prop_map(
            |(order, amount_cents, currency, placed_at, expires_in)| Message::Placed {
                order,
                amount_cents,
                currency,
                placed_at,
                expires_in,
            },
        )
}

/// The next step, given what the contract knows so far and the messages
/// delivered before (which may come again).
pub fn next_step(model: &Model, history: &[Message]) -> BoxedStrategy<Step> {
    let known = known(model);
    let order = select(ORDERS.to_vec());
    let deliver = |message: BoxedStrategy<Message>| {
        (message, any::<bool>(), faults()).prop_map(|(message, redelivered, dies_after)| {
            Step::Deliver {
                message,
                redelivered,
                dies_after,
            }
        })
    };
    let place = deliver(placed().boxed());
    let k = known.clone();
    let pay = deliver(
        order
            .clone()
            .prop_flat_map(move |order| pay_for(&k, order).prop_map(Message::Payment))
            .boxed(),
    );
    let cancel = deliver(
        order
            .clone()
            .prop_map(|order| Message::Cancelled { order })
            .boxed(),
    );
    let k = known.clone();
    let change = deliver(
        order
            .clone()
            .prop_flat_map(move |order| {
                deadlines_for(&k, order)
                    .prop_map(move |expires_at| Message::DeadlineChanged { order, expires_at })
            })
            .boxed(),
    );
    let again = if history.is_empty() {
        deliver(placed().boxed())
    } else {
        deliver(select(history.to_vec()).boxed())
    };
    let paid_in_sql = order.clone().prop_map(|order| Step::PaidInSql { order });
    let k = known.clone();
    let timer = order.clone().prop_flat_map(move |order| {
        (instants_for(&k, order), answers_for(&k, order), faults()).prop_map(
            move |(at, answer, dies_after)| Step::Timer {
                order,
                at,
                answer,
                dies_after,
            },
        )
    });
    let k = known.clone();
    let timer_again = order.clone().prop_flat_map(move |order| {
        (instants_for(&k, order), any::<bool>()).prop_map(move |(at, redelivered)| {
            Step::TimerAgain {
                order,
                at,
                redelivered,
            }
        })
    });
    let k = known;
    let raced = order.prop_flat_map(move |order| {
        (instants_for(&k, order), pay_for(&k, order))
            .prop_map(move |(at, payment)| Step::RacedClose { order, at, payment })
    });
    prop_oneof![
        3 => place,
        4 => pay,
        1 => cancel,
        2 => change,
        2 => again,
        1 => paid_in_sql,
        4 => timer,
        1 => timer_again,
        1 => raced,
    ]
    .boxed()
}

// ---- Writing a sequence by hand ----

pub fn deliver(message: Message) -> Step {
    Step::Deliver {
        message,
        redelivered: false,
        dies_after: None,
    }
}

/// `order.placed` for `order`, placed at the epoch, due after the schedule.
pub fn place(
    order: &'static str,
    amount_cents: Option<i64>,
    currency: Option<&'static str>,
) -> Step {
    deliver(Message::Placed {
        order,
        amount_cents,
        currency,
        placed_at: 0,
        expires_in: None,
    })
}

pub fn pay(
    order: &'static str,
    n: u8,
    amount_cents: Option<i64>,
    currency: Option<&'static str>,
) -> Step {
    deliver(Message::Payment(Pay {
        order,
        n,
        amount_cents,
        currency,
    }))
}

pub fn cancel(order: &'static str) -> Step {
    deliver(Message::Cancelled { order })
}

pub fn paid_in_sql(order: &'static str) -> Step {
    Step::PaidInSql { order }
}

pub fn timer(order: &'static str, at: Millis, answer: Answer) -> Step {
    Step::Timer {
        order,
        at,
        answer,
        dies_after: None,
    }
}
