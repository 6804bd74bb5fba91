//! What each command does.

use chrono::{SecondsFormat, SubsecRound, Utc};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::Topology,
    amqp::{self, Broker, ReplayMode, Replayed},
    cli::{Cli, Command},
    configuration::{Settings, Sources},
    db::{self, Database},
    domain::{
        Currency, DeadlineChanged, Kind, OrderCancelled, OrderId, OrderPlaced, PaymentId,
        PaymentSucceeded, describe_event, to_the_microsecond,
    },
    error::{Error, Result},
    shutdown,
    startup::Application,
    telemetry,
};

/// Runs the command the user asked for.
pub async fn execute(cli: Cli) -> Result<()> {
    let settings = Settings::load(&Sources::from_process(cli.config.as_deref()))?;
    let default_level = match cli.command {
        Command::Run | Command::Migrate => "info",
        _ => "warn",
    };
    telemetry::init(settings.log.format, default_level);
    match cli.command {
        Command::Run => run(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Topology { print: true } => print_topology(&settings),
        Command::Topology { print: false } => declare_topology(&settings).await,
        Command::Place {
            order_id,
            amount_cents,
            currency,
        } => place(&settings, &order_id, amount_cents, currency.as_ref()).await,
        Command::Pay {
            order_id,
            payment_id,
            amount_cents,
            currency,
        } => {
            pay(
                &settings,
                &order_id,
                &payment_id,
                amount_cents,
                currency.as_ref(),
            )
            .await
        }
        Command::Cancel { order_id, reason } => cancel(&settings, &order_id, reason).await,
        Command::Extend {
            order_id,
            expires_at,
        } => extend(&settings, &order_id, expires_at).await,
        Command::Show { order_id, json } => show(&settings, &order_id, json).await,
        Command::Replay {
            limit,
            dry_run,
            discard,
        } => {
            let mode = match (dry_run, discard) {
                (true, _) => ReplayMode::List,
                (false, true) => ReplayMode::Discard,
                (false, false) => ReplayMode::Move,
            };
            replay(&settings, limit, mode).await
        }
        Command::Watch { json } => watch(&settings, json).await,
        Command::Status { json } => status(&settings, json).await,
    }
}

async fn run(settings: Settings) -> Result<()> {
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone()).map_err(Error::Signal)?;
    let app = Application::build(settings).await?;
    tracing::info!(http = %app.http_address(), "serving /healthz, /readyz, /metrics");
    app.run_until_stopped(stop).await
}

async fn migrate(settings: &Settings) -> Result<()> {
    let applied = db::migrate(&settings.database).await?;
    if applied.is_empty() {
        println!("database {} is up to date", settings.database.name());
    }
    for migration in applied {
        println!("applied {migration}");
    }
    Ok(())
}

fn print_topology(settings: &Settings) -> Result<()> {
    let definitions = Topology::from_settings(settings).definitions("/");
    println!(
        "{}",
        serde_json::to_string_pretty(&definitions).expect("definitions serialise")
    );
    Ok(())
}

async fn declare_topology(settings: &Settings) -> Result<()> {
    let broker = Broker::new(&settings.amqp)?;
    let topology = Topology::from_settings(settings);
    broker.declare(&topology).await?;
    broker.close();
    for queue in topology.queues() {
        println!("queue     {}", queue.name);
    }
    for exchange in topology.exchanges() {
        println!("exchange  {} ({})", exchange.name, exchange.kind.as_str());
    }
    Ok(())
}

/// Publishes an inbound message as the order or payment service would,
/// under the broker user of `amqp.url` (set as `user_id`, which
/// `payments.trusted_users` checks).
async fn publish_inbound(
    settings: &Settings,
    kind: Kind,
    order_id: &OrderId,
    body: &[u8],
) -> Result<()> {
    let broker = Broker::new(&settings.amqp)?;
    let publisher = broker.publisher(settings.amqp.confirm_timeout).await?;
    let topology = Topology::from_settings(settings);
    let what = format!("{} for {order_id}", kind.routing_key());
    publisher
        .publish_inbound(
            &topology,
            kind,
            &what,
            body,
            Some(&settings.amqp.nodes()[0].username()),
        )
        .await?;
    publisher.close().await;
    broker.close();
    println!("published {what}");
    Ok(())
}

async fn place(
    settings: &Settings,
    order_id: &OrderId,
    amount_cents: Option<u32>,
    currency: Option<&Currency>,
) -> Result<()> {
    let placed = OrderPlaced {
        order_id: order_id.clone(),
        amount_cents: amount_cents.map(i64::from),
        currency: currency.cloned(),
        placed_at: Some(Utc::now().trunc_subsecs(3)),
        expires_at: None,
    };
    publish_inbound(settings, Kind::OrderPlaced, order_id, &placed.to_body()).await
}

async fn pay(
    settings: &Settings,
    order_id: &OrderId,
    payment_id: &PaymentId,
    amount_cents: Option<u32>,
    currency: Option<&Currency>,
) -> Result<()> {
    let payment = PaymentSucceeded {
        order_id: order_id.clone(),
        payment_id: payment_id.clone(),
        amount_cents: amount_cents.map(i64::from),
        currency: currency.cloned(),
        paid_at: Some(Utc::now().trunc_subsecs(3)),
    };
    publish_inbound(
        settings,
        Kind::PaymentSucceeded,
        order_id,
        &payment.to_body(),
    )
    .await
}

async fn extend(
    settings: &Settings,
    order_id: &OrderId,
    expires_at: chrono::DateTime<Utc>,
) -> Result<()> {
    let changed = DeadlineChanged {
        order_id: order_id.clone(),
        expires_at: to_the_microsecond(expires_at),
    };
    publish_inbound(
        settings,
        Kind::DeadlineChanged,
        order_id,
        &changed.to_body(),
    )
    .await
}

async fn cancel(settings: &Settings, order_id: &OrderId, reason: Option<String>) -> Result<()> {
    let cancelled = OrderCancelled {
        order_id: order_id.clone(),
        reason,
    };
    publish_inbound(
        settings,
        Kind::OrderCancelled,
        order_id,
        &cancelled.to_body(),
    )
    .await
}

async fn replay(settings: &Settings, limit: u32, mode: ReplayMode) -> Result<()> {
    let broker = Broker::new(&settings.amqp)?;
    let topology = Topology::from_settings(settings);
    let mut moved = Vec::new();
    let replayed = amqp::replay_parked(
        &broker,
        &topology,
        settings.amqp.confirm_timeout,
        limit,
        mode,
        |parked, outcome| {
            println!(
                "{}\t{}\t{}",
                parked.source_queue.as_deref().unwrap_or("?"),
                parked.error.as_deref().unwrap_or("?"),
                parked.preview
            );
            if outcome == Replayed::Skipped {
                eprintln!("paywait: skipped a parked message that names no source queue");
            }
            if let (Replayed::Moved | Replayed::Discarded, Some(parked_id)) =
                (outcome, &parked.parked_id)
            {
                moved.push(parked_id.clone());
            }
        },
    )
    .await;
    broker.close();
    if !moved.is_empty() {
        Database::new(&settings.database)?
            .forget_parked(&moved)
            .await?;
    }
    let replayed = replayed?;
    match mode {
        ReplayMode::List => {}
        ReplayMode::Move => println!("replayed {replayed} message(s)"),
        ReplayMode::Discard => println!("discarded {replayed} message(s)"),
    }
    Ok(())
}

async fn show(settings: &Settings, order_id: &OrderId, as_json: bool) -> Result<()> {
    let db = Database::new(&settings.database)?;
    let order = db
        .find(order_id)
        .await?
        .ok_or_else(|| Error::OrderNotFound(order_id.clone()))?;
    let payments = db.payments_of(order_id).await?;
    if as_json {
        let mut value = serde_json::to_value(&order).expect("an order serialises");
        value["payments"] = serde_json::to_value(&payments).expect("payments serialise");
        println!("{value}");
        return Ok(());
    }
    let time = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.to_rfc3339_opts(SecondsFormat::Millis, true)
        })
    };
    let text = |t: Option<String>| t.unwrap_or_else(|| "-".to_owned());
    let rows = [
        ("order_id", order.order_id.to_string()),
        ("status", order.status.to_string()),
        (
            "amount_cents",
            text(order.amount_cents.map(|c| c.to_string())),
        ),
        ("currency", text(order.currency.map(|c| c.to_string()))),
        ("placed_at", time(Some(order.placed_at))),
        ("expires_at", time(Some(order.expires_at))),
        ("paid_at", time(order.paid_at)),
        ("closed_at", time(order.closed_at)),
        ("attempts", order.attempts.to_string()),
        (
            "payment_id",
            text(order.payment_id.as_ref().map(PaymentId::to_string)),
        ),
        ("event_published_at", time(order.event_published_at)),
        ("next_check_at", time(order.next_check_at)),
    ];
    for (name, value) in rows {
        println!("{name:<20}{value}");
    }
    for payment in payments {
        let amount = match (payment.amount_cents, &payment.currency) {
            (Some(cents), Some(currency)) => format!(" {cents} {currency}"),
            (Some(cents), None) => format!(" {cents}"),
            _ => String::new(),
        };
        let outcome = payment
            .outcome
            .map_or("waiting for its order", |outcome| outcome.as_str());
        println!(
            "{:<20}{}{amount} received {} ({outcome})",
            "payment",
            payment.payment_id,
            time(Some(payment.received_at)),
        );
    }
    Ok(())
}

async fn watch(settings: &Settings, as_json: bool) -> Result<()> {
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone()).map_err(Error::Signal)?;
    let broker = Broker::new(&settings.amqp)?;
    let topology = Topology::from_settings(settings);
    let watched = amqp::watch_events(
        &broker,
        &topology,
        stop,
        |unrouted| {
            eprintln!("watching {} (Ctrl-C to stop)", topology.events_exchange());
            if unrouted > 0 {
                eprintln!(
                    "note: {unrouted} events wait in {}, so some events have no downstream \
                     queue; while this watch runs, such events reach only the watch",
                    topology.unrouted_queue()
                );
            }
        },
        |routing_key, body| {
            if as_json {
                println!("{}", String::from_utf8_lossy(body).trim_end());
            } else {
                println!("{}", describe_event(routing_key, body));
            }
        },
    )
    .await;
    broker.close();
    Ok(watched?)
}

async fn status(settings: &Settings, as_json: bool) -> Result<()> {
    let db = Database::new(&settings.database)?;
    let broker = Broker::new(&settings.amqp)?;
    let topology = Topology::from_settings(settings);
    let daemon = crate::status::ask_daemon(settings.http.listen).await;
    let status = crate::status::gather(&db, &broker, &topology, daemon).await;
    broker.close();
    let status = status?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("a status serialises")
        );
    } else {
        print!("{}", status.render());
    }
    if status.healthy {
        Ok(())
    } else {
        Err(Error::Unhealthy(status.problems.join("; ")))
    }
}
