//! The design paywait replaces: a job that closes expired orders with a
//! periodic query over the whole orders table.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{
    Options, harness,
    stats::{self, Lateness, ScanRun},
};

const DATABASE: &str = "paywait_bench_scan";

/// What a cron job runs: close every pending order whose deadline passed.
const SCAN: &str = "UPDATE orders SET status = 'closed', close_reason = 'expired', closed_at = clock_timestamp() \
                    WHERE status = 'pending' AND expires_at <= now()";

pub async fn run(options: &Options, rows: usize, indexed: bool) -> anyhow::Result<ScanRun> {
    let environment = harness::environment(options, DATABASE, "paywait_bench_scan", "1s");
    let settings = harness::settings(&environment)?;
    harness::fresh_database(options, &settings).await?;
    let mut conn = AsyncPgConnection::establish(&settings.database.url.expose()).await?;

    // Orders expire at the same rate as in the precision run, starting in 2 s.
    let pending = (options.rate as f64 * options.precision_for.as_secs_f64()) as usize;
    let settled = rows.saturating_sub(pending);
    // The cron job's table is paywait's, without what paywait adds for its
    // own status figures: the counting triggers and, unless this run is
    // the indexed one, the index on pending orders' deadlines.
    for trigger in ["insert", "update", "delete"] {
        diesel::sql_query(format!(
            "DROP TRIGGER IF EXISTS order_counts_on_{trigger} ON orders"
        ))
        .execute(&mut conn)
        .await?;
    }
    for statement in [
        format!(
            "INSERT INTO orders (order_id, status, close_reason, placed_at, expires_at, paid_at, closed_at, attempts, event_published_at) \
             SELECT 'S-' || g, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'closed' END, \
                    CASE WHEN g % 2 = 1 THEN 'expired' END, \
                    now() - interval '2 days', now() - interval '2 days' + interval '30 minutes', \
                    CASE WHEN g % 2 = 0 THEN now() - interval '2 days' END, \
                    CASE WHEN g % 2 = 1 THEN now() - interval '1 day' END, 4, now() - interval '1 day' \
             FROM generate_series(1, {settled}) g"
        ),
        if indexed {
            "CREATE INDEX IF NOT EXISTS orders_pending_expires_at ON orders (expires_at) \
             WHERE status = 'pending'"
                .to_owned()
        } else {
            "DROP INDEX IF EXISTS orders_pending_expires_at".to_owned()
        },
        format!(
            "INSERT INTO orders (order_id, placed_at, expires_at) \
             SELECT 'Q-' || g, now(), now() + interval '2 seconds' + g * interval '{} microseconds' \
             FROM generate_series(0, {}) g",
            1_000_000 / options.rate.max(1),
            pending - 1
        ),
        "ANALYZE orders".to_owned(),
    ] {
        diesel::sql_query(statement).execute(&mut conn).await?;
    }

    let window = Duration::from_secs(2) + options.precision_for + options.scan_every * 2;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(options.scan_every);
    let (mut scans, mut scan_time, mut closed) = (0u32, Duration::ZERO, 0usize);
    while started.elapsed() < window {
        ticks.tick().await;
        let before = Instant::now();
        closed += diesel::sql_query(SCAN).execute(&mut conn).await?;
        scan_time += before.elapsed();
        scans += 1;
    }
    let samples = stats::close_lateness(&mut conn, "Q-").await?;
    drop(conn);
    let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", options.postgres)).await?;
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS \"{DATABASE}\" WITH (FORCE)"
    ))
    .execute(&mut admin)
    .await?;
    Ok(ScanRun {
        rows,
        indexed,
        closed,
        scan_ms: scan_time.as_secs_f64() * 1000.0 / scans.max(1) as f64,
        db_ms_per_closed: scan_time.as_secs_f64() * 1000.0 / closed.max(1) as f64,
        lateness: Lateness::of(&samples),
        samples,
    })
}
