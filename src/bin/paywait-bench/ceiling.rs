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
    BasicProperties, Channel, Connection,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions},
    types::FieldTable,
};
use paywait::topology::Topology;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    Options,
    client::{self, Pipeline},
    paywait_runs,
    stats::{CeilingRun, Lateness, Samples},
};

const PREFIX: &str = "paywait_ceiling";
const TTL: Duration = Duration::from_secs(1);

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    ensure!(confirmation.is_ack() && confirmation.take_message().is_none());
    Ok(())
}

/// What the relay does with one delivery, and the TTL lateness it saw.
async fn relay(
    topology: &Topology,
    publisher: &Channel,
    queue: &str,
    delivery: &Delivery,
) -> anyhow::Result<Option<f64>> {
    let mut body: Value = serde_json::from_slice(&delivery.data)?;
    if queue == topology.placed_queue {
        body["armed_at"] = json!(now_micros());
        let wait_queue = &topology.wait_queues[0].name;
        publish_confirmed(publisher, "", wait_queue, body.to_string().as_bytes()).await?;
        Ok(None)
    } else if queue == topology.payments_queue {
        let event = json!({"event": "order.paid", "order_id": body["order_id"]});
        publish_confirmed(
            publisher,
            &topology.events_exchange,
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
                &topology.events_exchange,
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
) -> anyhow::Result<(Arc<Connection>, Arc<Mutex<Vec<f64>>>)> {
    let (connection, publisher) = client::connect(url).await?;
    let connection = Arc::new(connection);
    let lateness = Arc::new(Mutex::new(Vec::new()));
    for queue in [
        topology.placed_queue.clone(),
        topology.payments_queue.clone(),
        topology.checks_queue.clone(),
    ] {
        let channel = connection.create_channel().await?;
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
        let (topology, publisher, lateness, stop, connection) = (
            topology.clone(),
            publisher.clone(),
            lateness.clone(),
            stop.clone(),
            connection.clone(),
        );
        tokio::spawn(async move {
            let _keep_alive = connection;
            loop {
                let delivery = tokio::select! {
                    () = stop.cancelled() => break,
                    delivery = consumer.next() => delivery,
                };
                let Some(Ok(delivery)) = delivery else { break };
                let (topology, publisher, lateness, queue) = (
                    topology.clone(),
                    publisher.clone(),
                    lateness.clone(),
                    queue.clone(),
                );
                tokio::spawn(async move {
                    match relay(&topology, &publisher, &queue, &delivery).await {
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
    Ok((connection, lateness))
}

pub async fn run(options: &Options) -> anyhow::Result<CeilingRun> {
    let environment = paywait_runs::environment(options, "paywait_ceiling_unused", PREFIX);
    let settings = paywait_runs::settings(&environment)?;
    let topology = Arc::new(Topology::from_settings(&settings));
    let (connection, channel) = client::connect(&options.amqp_url).await?;
    client::delete_topology(&channel, &topology).await?;
    paywait::amqp::declare(&channel, &topology).await?;
    let mut events = client::sink(
        &channel,
        &format!("{PREFIX}.bench.sink"),
        &topology.events_exchange,
        "#",
    )
    .await?;
    let stop = CancellationToken::new();
    let (relay, lateness) = start_relay(
        &options.amqp_url,
        topology.clone(),
        settings.amqp.prefetch,
        stop.clone(),
    )
    .await?;
    let mut pipeline = Pipeline::new(channel.clone(), 1_000);

    let started = Instant::now();
    for i in 0..options.orders {
        let paid = i % 2 == 0;
        pipeline
            .publish(
                &topology.orders_exchange,
                "order.placed",
                json!({"order_id": format!("B-{i}"), "paid": paid})
                    .to_string()
                    .as_bytes(),
            )
            .await?;
        if paid {
            pipeline
                .publish(
                    &topology.orders_exchange,
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
    let precision_orders = (options.rate as f64 * options.precision_for.as_secs_f64()) as usize;
    pipeline
        .place_steadily(
            &topology.orders_exchange,
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
    let _ = relay.close(200, "run done".into()).await;
    let samples = Samples::new(lateness.lock().unwrap().clone());
    client::delete_topology(&channel, &topology).await?;
    let _ = connection.close(200, "run done".into()).await;
    Ok(CeilingRun {
        orders_per_second: options.orders as f64 / burst_seconds,
        ttl_lateness: Lateness::of(&samples),
    })
}
