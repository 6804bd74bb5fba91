//! The reference model against the live daemon: a few hundred orders, each
//! with a random story of payments (matching or not, the same one again, a
//! second one), cancellations, payments made in SQL, and messages before
//! the order and after its close, injected concurrently into the real
//! binary on the real broker and database — which is killed with SIGKILL in
//! the middle and started again. After each round, the rows and the
//! payments' outcomes must be what `paywait_testkit::model` says; at the
//! end, so must the set of events, each copy of an event byte for byte the
//! same.
//!
//! The messages of one order within a round go to one queue only: paywait
//! handles the messages of a queue concurrently and makes no promise about
//! the order of two that do not commute (a cancellation and a payment, a
//! mismatch and a settling payment), so a round never holds two such.
//!
//! The run's seed is printed; `PAYWAIT_MODEL_SEED=<seed>` replays it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use paywait_testkit::{
    Client, Daemon, Log, Sandbox, TestApp,
    model::{self, Input, Model},
};
use serde_json::{Value, json};

const ORDERS: usize = 200;
/// Every order is due this long after the round that places it began: time
/// for two more rounds and a restart on a loaded machine.
const WINDOW: TimeDelta = TimeDelta::seconds(40);
/// How long a round may take to settle before the test gives up.
const SETTLE: Duration = Duration::from_secs(60);

/// One thing the test does to an order in a round, `copies` times.
#[derive(Debug, Clone)]
enum Act {
    Place,
    Pay {
        payment_id: String,
        amount_cents: Option<i64>,
        currency: Option<&'static str>,
    },
    Cancel,
    PaidInSql,
}

#[derive(Debug, Clone)]
struct Story {
    order_id: String,
    amount_cents: Option<i64>,
    currency: Option<&'static str>,
    /// Round by round: what happens to the order, and how many copies.
    rounds: [Option<(Act, u32)>; 5],
}

const AMOUNTS: [Option<i64>; 4] = [None, Some(0), Some(12900), Some(i64::MAX)];
const CURRENCIES: [Option<&str>; 3] = [None, Some("CNY"), Some("EUR")];

fn story(rng: &mut fastrand::Rng, n: usize) -> Story {
    let order_id = format!("LM-{n:03}");
    let amount_cents = AMOUNTS[rng.usize(..AMOUNTS.len())];
    let currency = CURRENCIES[rng.usize(..CURRENCIES.len())];
    let mut payments: Vec<(String, Option<i64>, Option<&'static str>)> = Vec::new();
    let mut pay = |rng: &mut fastrand::Rng| {
        // The same payment again, now and then; otherwise a new one, of
        // the order's amount or another, in its currency or another.
        if !payments.is_empty() && rng.u8(..4) == 0 {
            let (payment_id, amount_cents, currency) =
                payments[rng.usize(..payments.len())].clone();
            return Act::Pay {
                payment_id,
                amount_cents,
                currency,
            };
        }
        let payment_id = format!("PAY-{order_id}-{}", payments.len());
        let amount = match rng.u8(..4) {
            0 => None,
            1 => Some(1),
            _ => amount_cents,
        };
        let currency = match rng.u8(..4) {
            0 => CURRENCIES[rng.usize(..CURRENCIES.len())],
            1 => None,
            _ => currency,
        };
        payments.push((payment_id.clone(), amount, currency));
        Act::Pay {
            payment_id,
            amount_cents: amount,
            currency,
        }
    };
    let copies = |rng: &mut fastrand::Rng| if rng.u8(..5) == 0 { 2 } else { 1 };
    let mut rounds: [Option<(Act, u32)>; 5] = Default::default();
    rounds[0] = match rng.u8(..4) {
        0 => Some((pay(rng), copies(rng))),
        1 => Some((Act::Cancel, copies(rng))),
        _ => None,
    };
    rounds[1] = Some((Act::Place, copies(rng)));
    for round in &mut rounds[2..4] {
        *round = match rng.u8(..8) {
            0..=2 => Some((pay(rng), copies(rng))),
            3 => Some((Act::Cancel, copies(rng))),
            4 => Some((Act::PaidInSql, 1)),
            _ => None,
        };
    }
    rounds[4] = match rng.u8(..3) {
        0 => Some((pay(rng), copies(rng))),
        1 => Some((Act::Cancel, copies(rng))),
        _ => None,
    };
    Story {
        order_id,
        amount_cents,
        currency,
        rounds,
    }
}

/// The daemon under test, its broker and database, and the clients that
/// feed it and read what it tells downstream.
struct World {
    sandbox: Sandbox,
    environment: Vec<(String, String)>,
    log: std::path::PathBuf,
    daemon: Daemon,
    client: Client,
    model: Model,
    epoch: DateTime<Utc>,
    seed: u64,
    /// The payments sent so far.
    payments: BTreeSet<String>,
}

const DOWNSTREAM: &str = "model.downstream";

impl World {
    async fn start(seed: u64) -> Self {
        let sandbox = Sandbox::create().await;
        let environment = sandbox.environment("10s");
        let log = std::env::temp_dir().join(format!("paywait-{}.log", sandbox.vhost));
        let mut daemon = Daemon::start(
            env!("CARGO_BIN_EXE_paywait").as_ref(),
            &environment,
            Log::File(log.clone()),
        );
        daemon.wait_ready(Duration::from_secs(60)).await;
        let client = TestApp::client_for(&sandbox).await;
        client
            .declare_bound_queue(DOWNSTREAM, "quorum", "paywait.events", "#")
            .await;
        let model = Model::new(model::Settings {
            schedule_total: 10_000,
            max_deadline: 30 * 24 * 3600 * 1000,
            gateway_max_retries: None,
            // Its sequences move no deadline.
            time_text: |_| unreachable!("the live model moves no deadline"),
        });
        Self {
            sandbox,
            environment,
            log,
            daemon,
            client,
            model,
            epoch: Utc::now(),
            seed,
            payments: BTreeSet::new(),
        }
    }

    fn millis(&self, at: DateTime<Utc>) -> model::Millis {
        (at - self.epoch).num_milliseconds()
    }

    async fn kill_and_restart(&mut self) {
        self.daemon.kill();
        self.daemon = Daemon::start(
            env!("CARGO_BIN_EXE_paywait").as_ref(),
            &self.environment,
            Log::File(self.log.clone()),
        );
        self.daemon.wait_ready(Duration::from_secs(60)).await;
    }

    /// Does `act` to the story's order, as the outside world would, and
    /// tells the model.
    async fn act(&mut self, story: &Story, act: &Act, expires_at: DateTime<Utc>) {
        let order_id = story.order_id.as_str();
        let input = match act {
            Act::Place => {
                let placed_at = Utc::now();
                let body = json!({
                    "order_id": order_id, "amount_cents": story.amount_cents,
                    "currency": story.currency, "placed_at": placed_at, "expires_at": expires_at,
                });
                self.client
                    .publish_inbound("order.placed", body.to_string().as_bytes())
                    .await;
                Input::OrderPlaced(model::OrderPlaced {
                    order_id: order_id.to_owned(),
                    amount_cents: story.amount_cents,
                    currency: story.currency.map(str::to_owned),
                    placed_at: self.millis(placed_at),
                    expires_at: Some(self.millis(expires_at)),
                })
            }
            Act::Pay {
                payment_id,
                amount_cents,
                currency,
            } => {
                let body = json!({
                    "order_id": order_id, "payment_id": payment_id,
                    "amount_cents": amount_cents, "currency": currency,
                });
                self.client
                    .publish_inbound("payment.succeeded", body.to_string().as_bytes())
                    .await;
                self.payments.insert(payment_id.clone());
                Input::PaymentSucceeded(model::Payment {
                    order_id: order_id.to_owned(),
                    payment_id: payment_id.clone(),
                    amount_cents: *amount_cents,
                    currency: currency.map(str::to_owned),
                })
            }
            Act::Cancel => {
                let body = json!({"order_id": order_id, "reason": "customer"});
                self.client
                    .publish_inbound("order.cancelled", body.to_string().as_bytes())
                    .await;
                Input::OrderCancelled {
                    order_id: order_id.to_owned(),
                }
            }
            Act::PaidInSql => {
                self.sandbox
                    .execute(&[&format!(
                        "UPDATE orders SET status = 'paid', paid_at = now() \
                         WHERE order_id = '{order_id}' AND status = 'pending'"
                    )])
                    .await;
                Input::PaidInSql {
                    order_id: order_id.to_owned(),
                }
            }
        };
        self.model.apply(&input);
    }

    /// What the database holds: each order's status, close reason and the
    /// payment that paid it, and each payment's outcome.
    async fn observed(&self) -> BTreeMap<String, String> {
        let orders = self
            .sandbox
            .count_by(
                "SELECT 'order ' || order_id || ': ' || status || ' ' || coalesce(close_reason, '-') \
                 || ' ' || coalesce(payment_id, adopted_payment_id, '-') AS key, 1::bigint AS n \
                 FROM orders",
            )
            .await;
        let payments = self
            .sandbox
            .count_by(
                "SELECT 'payment ' || payment_id || ': ' || coalesce(outcome, '-') AS key, \
                 1::bigint AS n FROM payments",
            )
            .await;
        orders
            .into_iter()
            .chain(payments)
            .filter_map(|(key, _)| {
                let (id, state) = key.split_once(": ")?;
                Some((id.to_owned(), state.to_owned()))
            })
            .collect()
    }

    /// What the model says the database holds, in the same words.
    fn expected(&self) -> BTreeMap<String, String> {
        let mut expected = BTreeMap::new();
        for (order_id, row) in self.model.rows() {
            let state = format!(
                "{} {} {}",
                row.status.as_str(),
                row.close_reason.map_or("-", |reason| reason.as_str()),
                row.paid_by.as_deref().unwrap_or("-")
            );
            expected.insert(format!("order {order_id}"), state);
        }
        for payment_id in &self.payments {
            let outcome = match self.model.outcome(payment_id) {
                None => "-",
                Some(model::Outcome::Settled) => "settled",
                Some(model::Outcome::Mismatch) => "mismatch",
                Some(model::Outcome::Twice) => "twice",
                Some(model::Outcome::AfterClose) => "after_close",
            };
            expected.insert(format!("payment {payment_id}"), outcome.to_owned());
        }
        expected
    }

    /// Waits until the database holds what the model says.
    async fn settle(&self, round: &str) {
        let expected = self.expected();
        let deadline = Instant::now() + SETTLE;
        loop {
            let observed = self.observed().await;
            if observed == expected {
                return;
            }
            if Instant::now() > deadline {
                let differ: Vec<String> = expected
                    .keys()
                    .chain(observed.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|key| expected.get(*key) != observed.get(*key))
                    .map(|key| {
                        format!(
                            "{key}: the model says {:?}, the database {:?}",
                            expected.get(key),
                            observed.get(key)
                        )
                    })
                    .collect();
                panic!(
                    "after {round}, seed {}: {} differences:\n{}\n(daemon log: {})",
                    self.seed,
                    differ.len(),
                    differ.join("\n"),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_daemon_does_what_the_model_says_across_a_kill() {
    let seed = std::env::var("PAYWAIT_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (PAYWAIT_MODEL_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let stories: Vec<Story> = (0..ORDERS).map(|n| story(&mut rng, n)).collect();
    let mut world = World::start(seed).await;

    let mut expires_at = Utc::now() + WINDOW;
    for round in 0..5 {
        if round == 1 {
            expires_at = Utc::now() + WINDOW;
        }
        if round == 4 {
            // Every order's deadline passes and its last check closes it,
            // or announces what paid it.
            let wait = (expires_at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            for story in &stories {
                if world.model.order(&story.order_id).is_some() {
                    let at = world.millis(expires_at);
                    world.model.apply(&Input::Check {
                        order_id: story.order_id.clone(),
                        at,
                        gateway: model::GatewayAnswer::Unpaid,
                    });
                }
            }
            world.settle("the deadlines").await;
        }
        let acts: Vec<(&Story, &Act, u32)> = stories
            .iter()
            .filter_map(|story| {
                let (act, copies) = story.rounds[round].as_ref()?;
                Some((story, act, *copies))
            })
            .collect();
        for (n, (story, act, copies)) in acts.iter().enumerate() {
            if round == 2 && n == acts.len() / 2 {
                // In the middle of a stream, with messages in flight.
                world.kill_and_restart().await;
            }
            for _ in 0..*copies {
                world.act(story, act, expires_at).await;
            }
        }
        if (2..4).contains(&round) {
            assert!(
                Utc::now() + TimeDelta::seconds(3) < expires_at,
                "round {round} ended too near the deadlines to judge: the machine is too slow"
            );
        }
        world.settle(&format!("round {round}")).await;
    }

    // Every event owed, and nothing else; every copy the same.
    let expected: BTreeSet<model::Event> = world.model.events();
    let messages = world
        .client
        .take_messages(DOWNSTREAM, usize::MAX, Duration::from_secs(10))
        .await;
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    let mut got = BTreeSet::new();
    for message in &messages {
        let message_id = message.message_id().expect("an event has a message_id");
        if let Some(first) = bodies.insert(message_id.clone(), message.body.clone()) {
            assert_eq!(
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&message.body),
                "seed {seed}: two copies of {message_id} differ"
            );
        }
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        got.insert(model::Event {
            message_id,
            event: message.routing_key.clone(),
            status: model::Status::parse(body["status"].as_str().unwrap()).unwrap(),
            reason: body["reason"]
                .as_str()
                .map(|reason| model::CloseReason::parse(reason).unwrap()),
        });
    }
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "seed {seed}: events owed but not published: {missing:#?}\npublished but not owed: {extra:#?}"
    );
    println!(
        "{} orders, {} events ({} copies) as the model says",
        ORDERS,
        got.len(),
        messages.len()
    );
}
