//! The model test: random sequences of orders, payments, cancellations,
//! orders paid in SQL, timers and gateway answers — with duplicates,
//! redeliveries and a worker that dies half-way — played on paywait's own
//! worker (through its ports, over an in-memory store and broker) and on
//! the reference model of the contract (`paywait_testkit::model`). After
//! every step the orders must agree; once every timer has run out, the
//! events must too, and every copy of an event must be byte for byte the
//! same.
//!
//! `cargo test --test model`. A failure prints the shortest sequence found
//! that fails, one step a line, and the seed: `PROPTEST_RNG_SEED=<seed>`
//! replays the run, `PROPTEST_CASES=<n>` sets how many sequences are tried.

mod driver;
mod regressions;
mod scenarios;
mod steps;

use std::{
    cell::Cell,
    collections::{BTreeMap, BTreeSet},
    fmt::{self, Write},
    hash::{BuildHasher, RandomState},
    sync::{LazyLock, Once},
    time::Duration,
};

use paywait::domain::{Limits, Order, OrderStatus, PaymentOutcome, Schedule, gateway::AskPolicy};
use paywait_testkit::model::{self, CloseReason, Event, Model, Row, Status};
use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed},
};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

use driver::Driver;
use steps::{At, DAY, MINUTE, Message, Step, instant};

/// Every timer left fires this long after the epoch: after every deadline.
const LATE: model::Millis = 31 * DAY;

/// How paywait is configured for a sequence. Always: `checks.schedule`
/// `["1m", "4m"]` (a deadline 5 minutes after `placed_at`),
/// `checks.max_deadline` 30 days, and with a gateway `gateway.retry` 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// `gateway.max_retries`, with a gateway; `None`: no gateway.
    pub gateway_max_retries: Option<u32>,
    /// What the gateway answers once every timer left runs out: `unpaid`
    /// or `pending`.
    pub last_answer: steps::Answer,
}

impl Setup {
    pub const PLAIN: Self = Self {
        gateway_max_retries: None,
        last_answer: steps::Answer::Unpaid,
    };

    pub fn with_gateway(max_retries: u32) -> Self {
        Self {
            gateway_max_retries: Some(max_retries),
            ..Self::PLAIN
        }
    }

    fn model(self) -> Model {
        Model::new(model::Settings {
            schedule_total: 5 * MINUTE,
            max_deadline: 30 * DAY,
            gateway_max_retries: self.gateway_max_retries,
            time_text: |at| steps::instant(at).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        })
    }

    fn driver(self) -> Driver {
        let schedule = Schedule::parse(&["1m", "4m"]).expect("a schedule");
        let limits = Limits {
            max_deadline: Duration::from_secs(30 * 24 * 3600),
            max_clock_skew: Duration::from_secs(60),
        };
        let gateway = self.gateway_max_retries.map(|max_retries| AskPolicy {
            retry: Duration::from_secs(30),
            max_retries,
        });
        Driver::new(schedule, limits, gateway, steps::epoch())
    }
}

/// The reference side: the model, and the messages delivered so far (so
/// that they can come again).
#[derive(Clone)]
pub struct Reference {
    setup: Setup,
    model: Model,
    history: Vec<Message>,
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.setup)
    }
}

/// The contract as proptest's reference state machine: it generates the
/// steps (from what the model knows so far) and plays them on the model.
pub struct Contract;

impl ReferenceStateMachine for Contract {
    type State = Reference;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Reference> {
        let retries = prop_oneof![Just(None), Just(Some(0)), Just(Some(1)), Just(Some(3))];
        let last = prop_oneof![Just(steps::Answer::Unpaid), Just(steps::Answer::Pending)];
        (retries, last)
            .prop_map(|(gateway_max_retries, last_answer)| {
                let setup = Setup {
                    gateway_max_retries,
                    last_answer,
                };
                Reference {
                    setup,
                    model: setup.model(),
                    history: Vec::new(),
                }
            })
            .boxed()
    }

    fn transitions(state: &Reference) -> BoxedStrategy<Step> {
        steps::next_step(&state.model, &state.history)
    }

    fn apply(mut state: Reference, step: &Step) -> Reference {
        for input in step.inputs() {
            state.model.apply(&input);
        }
        if let Step::Deliver { message, .. } = step {
            state.history.push(*message);
        }
        state
    }
}

/// The core's side: the driver, and the steps played so far (for the
/// report).
pub struct Played {
    setup: Setup,
    driver: Driver,
    steps: Vec<Step>,
}

impl Played {
    fn new(setup: Setup) -> Self {
        Self {
            setup,
            driver: setup.driver(),
            steps: Vec::new(),
        }
    }

    /// Plays one step, then compares the orders with the model's.
    fn step(&mut self, step: Step, model: &Model) -> Result<(), String> {
        step.run(&mut self.driver);
        self.steps.push(step);
        self.compare_rows(model)
            .map_err(|diff| self.report("after the last step, the orders differ", &diff))
    }

    /// Runs every timer out on both sides, then compares the orders and the
    /// events.
    fn finish(&mut self, mut model: Model) -> Result<(), String> {
        let answer = self.setup.last_answer;
        model.run_out(LATE, &answer.to_model("any"));
        self.driver.run_out(instant(LATE), &answer.to_core("any"));
        let what = format!(
            "once every timer ran out at {} (the gateway, if any, answering {answer:?})",
            At(LATE)
        );
        let mut diff = String::new();
        if let Err(rows) = self.compare_rows(&model) {
            diff.push_str(&rows);
        }
        if let Err(events) = self.compare_events(&model) {
            diff.push_str(&events);
        }
        if diff.is_empty() {
            Ok(())
        } else {
            Err(self.report(&format!("{what}, they differ"), &diff))
        }
    }

    fn compare_rows(&self, model: &Model) -> Result<(), String> {
        let expected = model.rows();
        let actual = self.rows();
        let mut diff = String::new();
        let ids: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
        for id in ids {
            let (want, got) = (expected.get(id), actual.get(id));
            if want != got {
                let _ = writeln!(
                    diff,
                    "  order {id}:\n    contract: {}\n    core:     {}",
                    show_row(want),
                    show_row(got)
                );
            }
        }
        if diff.is_empty() { Ok(()) } else { Err(diff) }
    }

    fn compare_events(&self, model: &Model) -> Result<(), String> {
        let expected = model.events();
        let mut published: BTreeMap<&str, &driver::Published> = BTreeMap::new();
        let mut diff = String::new();
        let mut actual = BTreeSet::new();
        let store = self.driver.store();
        for event in &store.published {
            match read_event(event) {
                Ok(read) => {
                    actual.insert(read);
                }
                Err(why) => {
                    let _ = writeln!(diff, "  unreadable event {}: {why}", event.message_id);
                }
            }
            // Every copy of an event is the same, byte for byte.
            if let Some(first) = published.insert(&event.message_id, event)
                && first.body != event.body
            {
                let _ = writeln!(
                    diff,
                    "  two copies of {} differ:\n    {}\n    {}",
                    event.message_id,
                    String::from_utf8_lossy(&first.body),
                    String::from_utf8_lossy(&event.body)
                );
                published.insert(&event.message_id, first);
            }
        }
        for missing in expected.difference(&actual) {
            let _ = writeln!(diff, "  owed but never published:  {}", show_event(missing));
        }
        for unexpected in actual.difference(&expected) {
            let _ = writeln!(
                diff,
                "  published but not owed:    {}",
                show_event(unexpected)
            );
        }
        if diff.is_empty() { Ok(()) } else { Err(diff) }
    }

    /// The core's orders as rows: the payment that paid an order is the one
    /// it names, or else the one recorded as having settled it.
    fn rows(&self) -> BTreeMap<String, Row> {
        let store = self.driver.store();
        store
            .orders
            .iter()
            .map(|(id, order)| {
                let settled = store.payments.values().find(|payment| {
                    payment.order_id.as_str() == id
                        && payment.outcome == Some(PaymentOutcome::Settled)
                });
                let paid_by = order
                    .payment_id
                    .as_ref()
                    .or(settled.map(|payment| &payment.payment_id))
                    .map(|payment_id| payment_id.as_str().to_owned());
                (id.clone(), row_of(order, paid_by))
            })
            .collect()
    }

    fn report(&self, what: &str, diff: &str) -> String {
        let mut report = format!(
            "paywait's core and the contract disagree ({:?}).\nThe sequence:\n",
            self.setup
        );
        for (n, step) in self.steps.iter().enumerate() {
            let _ = writeln!(report, "  {:>2}. {step:?}", n + 1);
        }
        let _ = write!(report, "{what}:\n{diff}");
        report
    }
}

fn row_of(order: &Order, paid_by: Option<String>) -> Row {
    Row {
        status: match order.status {
            OrderStatus::Pending => Status::Pending,
            OrderStatus::Paid => Status::Paid,
            OrderStatus::Closed => Status::Closed,
        },
        close_reason: order
            .close_reason
            .and_then(|reason| CloseReason::parse(reason.as_str())),
        paid_by,
    }
}

fn show_row(row: Option<&Row>) -> String {
    let Some(row) = row else {
        return "unknown".into();
    };
    let mut text = row.status.as_str().to_owned();
    if let Some(reason) = row.close_reason {
        let _ = write!(text, " ({})", reason.as_str());
    }
    if let Some(payment) = &row.paid_by {
        let _ = write!(text, ", paid by {payment}");
    }
    text
}

fn show_event(event: &Event) -> String {
    let mut text = format!("{} status={}", event.message_id, event.status.as_str());
    if let Some(reason) = event.reason {
        let _ = write!(text, " reason={}", reason.as_str());
    }
    text
}

/// An event as downstream reads it: the routing key, the `message_id`,
/// and the body's `status` and `reason`.
fn read_event(published: &driver::Published) -> Result<Event, String> {
    let body: serde_json::Value =
        serde_json::from_slice(&published.body).map_err(|e| e.to_string())?;
    if body["event"] != published.routing_key {
        return Err(format!(
            "published as {} but says {}",
            published.routing_key, body["event"]
        ));
    }
    let status = body["status"]
        .as_str()
        .and_then(Status::parse)
        .ok_or_else(|| format!("status {}", body["status"]))?;
    Ok(Event {
        message_id: published.message_id.clone(),
        event: published.routing_key.to_owned(),
        status,
        reason: body["reason"].as_str().and_then(CloseReason::parse),
    })
}

/// Plays `steps` on both sides, comparing after each step and at the end.
pub fn replay(setup: Setup, steps: &[Step]) -> Result<(), String> {
    let mut model = setup.model();
    let mut played = Played::new(setup);
    for step in steps {
        for input in step.inputs() {
            model.apply(&input);
        }
        played.step(*step, &model)?;
    }
    played.finish(model)
}

/// Panics with the report if `steps` make the core and the contract differ.
pub fn agree(setup: Setup, steps: &[Step]) {
    if let Err(report) = replay(setup, steps) {
        panic!("{report}");
    }
}

/// paywait's core as the system under test, compared with [`Contract`]
/// after every step and once every timer has run out.
pub struct Core;

impl StateMachineTest for Core {
    type SystemUnderTest = Played;
    type Reference = Contract;

    fn init_test(reference: &Reference) -> Played {
        quiet_panics_on_this_thread();
        Played::new(reference.setup)
    }

    fn apply(mut played: Played, reference: &Reference, step: Step) -> Played {
        if let Err(report) = played.step(step, &reference.model) {
            panic!("{report}");
        }
        played
    }

    fn teardown(mut played: Played, reference: Reference) {
        if let Err(report) = played.finish(reference.model) {
            panic!("{report}");
        }
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the panics of the random test's thread from printing, but for
/// proptest's verdict: while it shrinks a failing sequence each try panics,
/// and the verdict holds the shortest one's report. Other tests print as
/// usual.
fn quiet_panics_on_this_thread() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            let verdict = message.is_some_and(|m| m.starts_with("Test failed"));
            if verdict || !QUIET.with(Cell::get) {
                print(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
}

/// A few thousand sequences; the seed is printed so that a failure can be
/// replayed with `PROPTEST_RNG_SEED`.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 5000;
    }
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(RandomState::new().hash_one("paywait"));
    }
    config.failure_persistence = None;
    eprintln!(
        "{} sequences, seed {} (PROPTEST_RNG_SEED={} replays them)",
        config.cases, config.rng_seed, config.rng_seed
    );
    config
});

prop_state_machine! {
    #![proptest_config(CONFIG.clone())]

    #[test]
    fn the_core_does_what_the_contract_says(sequential 1..40 => Core);
}
