//! A million pending orders: every timer in flight in the broker at once.
//! What it costs the daemon, the broker and the database.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::{
    Options,
    harness::Harness,
    stats::{MillionRun, Samples},
};

pub async fn run(options: &Options, binary: &Path) -> anyhow::Result<MillionRun> {
    let orders = options.million;
    let mut harness = Harness::start(options, binary, "1h").await?;
    let memory_before = settled_broker_memory().await?;
    let disk_before = disk_usage(&options.broker_data)?;

    let started = Instant::now();
    for i in 0..orders {
        harness
            .place(&json!({"order_id": format!("M-{i}")}))
            .await?;
    }
    harness.pipeline.finish().await?;
    let published_in = started.elapsed();

    let mut conn = harness.database().await?;
    let give_up = Instant::now() + Duration::from_secs(3_600);
    loop {
        let armed = timers_in_flight(&harness).await;
        if armed >= orders as u64
            && count(&mut conn, "SELECT count(*) AS n FROM orders").await? >= orders as i64
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < give_up,
            "{armed} of {orders} timers armed after an hour"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let armed_in = started.elapsed();
    let memory_after = settled_broker_memory().await?;
    let disk_after = disk_usage(&options.broker_data)?;
    let database_bytes = count(
        &mut conn,
        "SELECT pg_database_size(current_database()) AS n",
    )
    .await? as f64;
    let peak_rss_mib = harness.peak_rss_mib()?;
    let mut pages = Vec::new();
    for path in ["/", "/api/status", "/orders/M-1"] {
        pages.push((path, page_times(&harness, path).await?));
    }
    drop(conn);
    harness.stop().await?;
    Ok(MillionRun {
        orders,
        published_in,
        armed_in,
        peak_rss_mib,
        broker_memory_bytes_per_timer: (memory_after - memory_before) / orders as f64,
        broker_memory_after: memory_after,
        broker_disk_bytes_per_timer: (disk_after - disk_before) / orders as f64,
        database_bytes_per_order: database_bytes / orders as f64,
        database_bytes,
        pages,
    })
}

/// How long the daemon takes to answer `path`, asked 20 times in a row
/// (the first answer warms nothing up: every request reads afresh).
async fn page_times(harness: &Harness, path: &str) -> anyhow::Result<Samples> {
    let mut seconds = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        let (status, _) = harness.daemon.get(path).await;
        anyhow::ensure!(status == 200, "{path} answered {status}");
        seconds.push(asked.elapsed().as_secs_f64());
    }
    Ok(Samples::new(seconds))
}

/// Timers waiting in the run's TTL queues.
async fn timers_in_flight(harness: &Harness) -> u64 {
    let mut waiting = 0;
    for queue in harness.topology.wait_queues() {
        waiting += u64::from(harness.client.queue_depth(&queue.name).await);
    }
    waiting
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, query: &str) -> anyhow::Result<i64> {
    let row: Count = diesel::sql_query(query).get_result(conn).await?;
    Ok(row.n)
}

/// The broker's memory once it has settled: the least of samples taken
/// over 30 s, since garbage collection and the flush of the quorum queues'
/// log to segment files lag behind the work that caused them.
async fn settled_broker_memory() -> anyhow::Result<f64> {
    let mut least = f64::MAX;
    for _ in 0..15 {
        least = least.min(broker_memory().await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(least)
}

/// The memory the broker node uses, in bytes, from its management API.
async fn broker_memory() -> anyhow::Result<f64> {
    let nodes = tokio::task::spawn_blocking(|| paywait_testkit::management_json("nodes")).await?;
    nodes[0]["mem_used"]
        .as_f64()
        .context("the management API reports no mem_used (is rabbitmq_management enabled?)")
}

/// The disk space the files under `dir` take, in bytes.
fn disk_usage(dir: &Path) -> anyhow::Result<f64> {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        // Files come and go while the broker runs: skip what vanished.
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => pending.push(entry.path()),
                Ok(metadata) => bytes += metadata.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    Ok(bytes as f64)
}
