//! The broker's ceiling: a bare lapin client moving the same messages
//! through the same kinds of queues as paywait — inbound, a TTL queue that
//! dead-letters into a check queue, events — with publisher confirms and
//! acknowledgements, but no database and no decisions beyond "was it paid".

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, ensure};
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use paywait::{
    amqp::Topology,
    amqp::{Outgoing, Publisher},
    domain::Inbox,
};
use paywait_testkit::Client;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    Options,
    client::{self, Pipeline},
    harness,
    stats::{CeilingRun, Lateness, Samples},
};

const PREFIX: &str = "paywait_ceiling";
/// The TTL of the queue the relay parks every timer in: the one paywait
/// uses for a one-second wait with the default early margin.
const TTL: Duration = Duration::from_millis(900);

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

async fn publish_confirmed(
    publisher: &Publisher,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    publisher
        .publish(Outgoing {
            what: "a relayed message",
            exchange,
            routing_key,
            body,
            properties: BasicProperties::default().with_delivery_mode(2),
        })
        .await?;
    Ok(())
}

/// What the relay does with one delivery, and the TTL lateness it saw.
async fn relay(
    topology: &Topology,
    publisher: &Publisher,
    inbox: Inbox,
    delivery: &Delivery,
) -> anyhow::Result<Option<f64>> {
    let mut body: Value = serde_json::from_slice(&delivery.data)?;
    if inbox == Inbox::Placed {
        body["armed_at"] = json!(now_micros());
        let wait_queue = &topology.wait_queue(TTL).name;
        publish_confirmed(publisher, "", wait_queue, body.to_string().as_bytes()).await?;
        Ok(None)
    } else if inbox == Inbox::Payments {
        let event = json!({"event": "order.paid", "order_id": body["order_id"]});
        publish_confirmed(
            publisher,
            topology.events_exchange(),
            "order.paid",
            event.to_string().as_bytes(),
        )
        .await?;
        Ok(None)
    } else {
        let due = body["armed_at"].as_u64().unwrap_or_default() + TTL.as_micros() as u64;
        let lateness_ms = (now_micros() as f64 - due as f64) / 1000.0;
        if body["paid"] != json!(true) {
            let event = json!({"event": "order.closed", "order_id": body["order_id"]});
            publish_confirmed(
                publisher,
                topology.events_exchange(),
                "order.closed",
                event.to_string().as_bytes(),
            )
            .await?;
        }
        Ok(Some(lateness_ms))
    }
}

/// Consumes the three queues, relaying each delivery concurrently up to the
/// same prefetch paywait uses.
async fn start_relay(
    url: &str,
    topology: Arc<Topology>,
    prefetch: u16,
    stop: CancellationToken,
) -> anyhow::Result<(Arc<Client>, Arc<Mutex<Vec<f64>>>)> {
    let client = Arc::new(client::connect(url).await?);
    let publisher = client.publisher().clone();
    let lateness = Arc::new(Mutex::new(Vec::new()));
    for inbox in Inbox::ALL {
        let queue = topology.queue(inbox).to_owned();
        let channel = client.open_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "ceiling".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (topology, publisher, lateness, stop, client) = (
            topology.clone(),
            publisher.clone(),
            lateness.clone(),
            stop.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let _keep_alive = client;
            loop {
                let delivery = tokio::select! {
                    () = stop.cancelled() => break,
                    delivery = consumer.next() => delivery,
                };
                let Some(Ok(delivery)) = delivery else { break };
                let (topology, publisher, lateness) =
                    (topology.clone(), publisher.clone(), lateness.clone());
                tokio::spawn(async move {
                    match relay(&topology, &publisher, inbox, &delivery).await {
                        Ok(seen) => {
                            if let Some(ms) = seen {
                                lateness.lock().unwrap().push(ms);
                            }
                            let _ = delivery.ack(BasicAckOptions::default()).await;
                        }
                        Err(error) => eprintln!("ceiling relay: {error}"),
                    }
                });
            }
        });
    }
    Ok((client, lateness))
}

pub async fn run(options: &Options) -> anyhow::Result<CeilingRun> {
    let environment = harness::environment(options, "paywait_ceiling_unused", PREFIX, "1s");
    let settings = harness::settings(&environment)?;
    // One TTL queue, whatever timers the daemon's settings would need.
    let topology = Arc::new(Topology::new(PREFIX, settings.topology.queue_type, &[TTL]));
    let client = client::connect(&options.amqp_url).await?;
    let channel = client.channel();
    client::delete_topology(channel, &topology).await?;
    paywait::amqp::declare(channel, &topology).await?;
    let mut events = client::event_sink(&client, &topology).await?;
    let stop = CancellationToken::new();
    let (relay, lateness) = start_relay(
        &options.amqp_url,
        topology.clone(),
        settings.amqp.prefetch.get(),
        stop.clone(),
    )
    .await?;
    let mut pipeline = Pipeline::new(client.publisher().clone(), 1_000);

    let started = Instant::now();
    for i in 0..options.orders {
        let paid = i % 2 == 0;
        pipeline
            .publish(
                topology.orders_exchange(),
                "order.placed",
                json!({"order_id": format!("B-{i}"), "paid": paid})
                    .to_string()
                    .as_bytes(),
            )
            .await?;
        if paid {
            pipeline
                .publish(
                    topology.orders_exchange(),
                    "payment.succeeded",
                    json!({"order_id": format!("B-{i}")}).to_string().as_bytes(),
                )
                .await?;
        }
    }
    pipeline.finish().await?;
    let mut terminal: HashMap<String, usize> = HashMap::new();
    let mut last = started;
    while terminal.len() < options.orders {
        let received = tokio::time::timeout(Duration::from_secs(120), events.recv())
            .await
            .ok()
            .flatten()
            .context("the ceiling run did not resolve every order")?;
        let body: Value = serde_json::from_slice(&received.body)?;
        *terminal
            .entry(body["order_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        last = received.at;
    }
    let burst_seconds = (last - started).as_secs_f64();

    // Steady rate, unpaid: the broker's own TTL lateness.
    lateness.lock().unwrap().clear();
    let precision_orders = options.precision_orders();
    pipeline
        .place_steadily(
            topology.orders_exchange(),
            options.rate,
            precision_orders,
            |i| json!({"order_id": format!("P-{i}"), "paid": false}),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while lateness.lock().unwrap().len() < precision_orders {
        ensure!(
            Instant::now() < deadline,
            "the ceiling's timers did not all fire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    relay.close().await;
    let samples = Samples::new(lateness.lock().unwrap().clone());
    client::delete_topology(channel, &topology).await?;
    client.close().await;
    Ok(CeilingRun {
        orders_per_second: options.orders as f64 / burst_seconds,
        ttl_lateness: Lateness::of(&samples),
        ttl_samples: samples,
    })
}
