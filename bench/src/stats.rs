//! Percentiles, medians and the printed tables.

use std::time::Duration;

use diesel::{QueryableByName, sql_types::Double};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Sorted samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self(values)
    }

    /// Every sample of every one of `runs`.
    pub fn pooled<'a>(runs: impl IntoIterator<Item = &'a Samples>) -> Self {
        Self::new(runs.into_iter().flat_map(|s| s.0.iter().copied()).collect())
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank]
    }

    pub fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The samples, smallest first.
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    /// How many samples are at most `limit`.
    pub fn at_most(&self, limit: f64) -> usize {
        self.0.partition_point(|value| *value <= limit)
    }
}

pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    Samples::new(values.into_iter().collect()).percentile(50.0)
}

/// Lateness figures of one run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Lateness {
    pub fn of(samples: &Samples) -> Self {
        Self {
            p50: samples.percentile(50.0),
            p99: samples.percentile(99.0),
            max: samples.max(),
        }
    }
}

/// One burst of paywait.
#[derive(Debug, Clone, Copy)]
pub struct BurstRun {
    pub orders_per_second: f64,
    pub duplicates: usize,
    pub cpu_ms_per_order: f64,
    pub peak_rss_mib: f64,
}

/// One steady-rate precision run of paywait.
#[derive(Debug, Clone)]
pub struct PrecisionRun {
    pub label: String,
    /// `closed_at − expires_at`: when the close was decided.
    pub lateness: Lateness,
    pub decided: Samples,
    /// `order.closed` received downstream − `expires_at`.
    pub announced: Lateness,
    pub duplicates: usize,
    /// Timers that arrived before they were due, so could wait in process.
    pub arrived_in_time: f64,
    pub hops_per_order: f64,
    pub peak_rss_mib: f64,
}

/// One broker-ceiling run.
#[derive(Debug, Clone)]
pub struct CeilingRun {
    pub orders_per_second: f64,
    pub ttl_lateness: Lateness,
    pub ttl_samples: Samples,
}

/// One deadline storm.
#[derive(Debug, Clone)]
pub struct StormRun {
    pub orders: usize,
    pub placed_in: Duration,
    /// `closed_at − deadline`, ms.
    pub decided: Samples,
    /// `order.closed` received − deadline, ms.
    pub announced: Samples,
    pub duplicates: usize,
    pub peak_rss_mib: f64,
}

/// A million pending orders.
#[derive(Debug, Clone)]
pub struct MillionRun {
    pub orders: usize,
    pub published_in: Duration,
    pub armed_in: Duration,
    pub peak_rss_mib: f64,
    pub broker_memory_bytes_per_timer: f64,
    pub broker_memory_after: f64,
    pub broker_disk_bytes_per_timer: f64,
    pub database_bytes_per_order: f64,
    pub database_bytes: f64,
    /// How long the status page, its JSON and an order's page took to
    /// answer with every order pending, in seconds.
    pub pages: Vec<(&'static str, Samples)>,
}

/// One scanner run.
#[derive(Debug, Clone)]
pub struct ScanRun {
    pub rows: usize,
    pub indexed: bool,
    pub closed: usize,
    pub scan_ms: f64,
    pub db_ms_per_closed: f64,
    pub lateness: Lateness,
    pub samples: Samples,
}

pub fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let kib: f64 = text
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown memory".into())
}

fn lateness_cells(runs: impl Iterator<Item = Lateness> + Clone) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        median(runs.clone().map(|l| l.p50)),
        median(runs.clone().map(|l| l.p99)),
        median(runs.map(|l| l.max)),
    )
}

fn joined<T: ToString>(values: impl Iterator<Item = T>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

pub fn report_burst(bursts: &[BurstRun], ceiling: &[CeilingRun]) {
    let runs = bursts.len();
    let throughput = median(bursts.iter().map(|r| r.orders_per_second));
    let ceiling_throughput = median(ceiling.iter().map(|r| r.orders_per_second));
    let ratios = bursts
        .iter()
        .zip(ceiling)
        .map(|(p, c)| p.orders_per_second / c.orders_per_second);
    println!("## Burst: paywait and the broker's ceiling (median of {runs} runs)\n");
    println!("| figure | paywait | broker alone (same hops, no database) |");
    println!("| --- | --- | --- |");
    println!("| burst throughput, orders/s | {throughput:.0} | {ceiling_throughput:.0} |");
    println!(
        "| throughput / ceiling (per run, median) | {:.2} | 1 |",
        median(ratios)
    );
    println!(
        "| daemon CPU time per order | {:.3} ms | – |",
        median(bursts.iter().map(|r| r.cpu_ms_per_order))
    );
    println!(
        "| daemon peak RSS | {:.1} MiB | – |",
        median(bursts.iter().map(|r| r.peak_rss_mib))
    );
    println!(
        "| duplicate events, per run | {} | – |",
        joined(bursts.iter().map(|r| r.duplicates))
    );
    println!("\nper run:\n");
    for (i, (p, c)) in bursts.iter().zip(ceiling).enumerate() {
        println!(
            "- run {}: paywait {:.0}/s vs ceiling {:.0}/s; CPU {:.3} ms/order; RSS {:.1} MiB",
            i + 1,
            p.orders_per_second,
            c.orders_per_second,
            p.cpu_ms_per_order,
            p.peak_rss_mib
        );
    }
    println!();
}

pub fn report_precision(runs: &[PrecisionRun], ceiling: &[CeilingRun], rate: u32) {
    println!("## Close lateness at {rate} orders/s (ms after expires_at; medians of runs)\n");
    println!(
        "| deadlines | close decided (closed_at) p50 / p99 / max | order.closed received p50 / p99 / max | timers in time | hops per order | duplicates | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    labels.dedup();
    for label in labels {
        let of_label: Vec<&PrecisionRun> = runs.iter().filter(|r| r.label == label).collect();
        println!(
            "| {label} | {} | {} | {:.2}% | {:.2} | {} | {:.1} MiB |",
            lateness_cells(of_label.iter().map(|r| r.lateness)),
            lateness_cells(of_label.iter().map(|r| r.announced)),
            median(of_label.iter().map(|r| r.arrived_in_time * 100.0)),
            median(of_label.iter().map(|r| r.hops_per_order)),
            joined(of_label.iter().map(|r| r.duplicates)),
            median(of_label.iter().map(|r| r.peak_rss_mib)),
        );
    }
    if !ceiling.is_empty() {
        println!(
            "| the broker alone: one TTL hop, dead-lettered − due | {} | – | – | 1 | – | – |",
            lateness_cells(ceiling.iter().map(|r| r.ttl_lateness))
        );
    }
    println!("\nper run (p50 / p99 / max of the close decided):\n");
    for run in runs {
        println!(
            "- {}: {:.1} / {:.1} / {:.1} ms",
            run.label, run.lateness.p50, run.lateness.p99, run.lateness.max
        );
    }
    println!();
}

pub fn report_storm(storm: &StormRun) {
    let seconds = |ms: f64| ms / 1000.0;
    println!(
        "## Deadline storm: {} orders due in the same instant\n",
        storm.orders
    );
    println!("placed in {:.1} s\n", storm.placed_in.as_secs_f64());
    println!("| after the deadline | closes decided | order.closed received |");
    println!("| --- | --- | --- |");
    for limit in [100.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0] {
        println!(
            "| within {} s | {} | {} |",
            seconds(limit),
            storm.decided.at_most(limit),
            storm.announced.at_most(limit)
        );
    }
    println!(
        "| first / median / last | {:.0} / {:.0} / {:.0} ms | {:.0} / {:.0} / {:.0} ms |",
        storm.decided.percentile(0.0),
        storm.decided.percentile(50.0),
        storm.decided.max(),
        storm.announced.percentile(0.0),
        storm.announced.percentile(50.0),
        storm.announced.max()
    );
    println!(
        "\nduplicates: {}; daemon peak RSS {:.1} MiB\n",
        storm.duplicates, storm.peak_rss_mib
    );
}

pub fn report_million(million: &MillionRun) {
    const MIB: f64 = 1024.0 * 1024.0;
    println!("## {} pending orders (1-hour deadline)\n", million.orders);
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| published (confirmed) in | {:.0} s ({:.0} orders/s) |",
        million.published_in.as_secs_f64(),
        million.orders as f64 / million.published_in.as_secs_f64()
    );
    println!(
        "| every order stored and its timer armed in | {:.0} s ({:.0} orders/s) |",
        million.armed_in.as_secs_f64(),
        million.orders as f64 / million.armed_in.as_secs_f64()
    );
    println!("| daemon peak RSS | {:.1} MiB |", million.peak_rss_mib);
    println!(
        "| broker memory per pending timer | {:.0} bytes (node at {:.0} MiB) |",
        million.broker_memory_bytes_per_timer,
        million.broker_memory_after / MIB
    );
    println!(
        "| broker disk per pending timer | {:.0} bytes |",
        million.broker_disk_bytes_per_timer
    );
    println!(
        "| database size | {:.0} MiB ({:.0} bytes per order) |",
        million.database_bytes / MIB,
        million.database_bytes_per_order
    );
    for (path, seconds) in &million.pages {
        println!(
            "| `GET {path}` answered in (median / slowest of {}) | {:.1} / {:.1} ms |",
            seconds.len(),
            seconds.percentile(50.0) * 1e3,
            seconds.max() * 1e3
        );
    }
    println!();
}

pub fn report_scanner(scans: &[ScanRun], every: Duration) {
    println!("## The table scan it replaces (a query every {every:?})\n");
    println!(
        "| rows | index on pending expires_at | orders closed | DB time per scan | DB time per closed order | lateness p50 / p99 / max ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for scan in scans {
        println!(
            "| {} | {} | {} | {:.1} ms | {:.3} ms | {:.0} / {:.0} / {:.0} |",
            scan.rows,
            if scan.indexed { "yes" } else { "no" },
            scan.closed,
            scan.scan_ms,
            scan.db_ms_per_closed,
            scan.lateness.p50,
            scan.lateness.p99,
            scan.lateness.max
        );
    }
    println!();
}

#[derive(QueryableByName)]
struct Millis {
    #[diesel(sql_type = Double)]
    ms: f64,
}

/// How late each closed order whose id starts with `id_prefix` was closed,
/// in milliseconds after its deadline, as the database recorded it.
pub async fn close_lateness(
    conn: &mut AsyncPgConnection,
    id_prefix: &str,
) -> anyhow::Result<Samples> {
    let lateness: Vec<Millis> = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM (closed_at - expires_at))::float8 * 1000 AS ms \
         FROM orders WHERE starts_with(order_id, $1) AND status = 'closed'",
    )
    .bind::<diesel::sql_types::Text, _>(id_prefix)
    .load(conn)
    .await?;
    Ok(Samples::new(lateness.into_iter().map(|m| m.ms).collect()))
}
