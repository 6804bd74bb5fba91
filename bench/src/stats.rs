//! Percentiles, medians and the printed tables.

use std::time::Duration;

use diesel::{QueryableByName, sql_types::Double};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Sorted samples in milliseconds.
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self(values)
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

/// One paywait run.
#[derive(Debug, Clone, Copy)]
pub struct PaywaitRun {
    pub orders_per_second: f64,
    pub duplicates: usize,
    pub lateness: Lateness,
    pub cpu_ms_per_order: f64,
    pub peak_rss_mib: f64,
}

/// One broker-ceiling run.
#[derive(Debug, Clone, Copy)]
pub struct CeilingRun {
    pub orders_per_second: f64,
    pub ttl_lateness: Lateness,
}

/// One scanner run.
#[derive(Debug, Clone, Copy)]
pub struct ScanRun {
    pub rows: usize,
    pub indexed: bool,
    pub closed: usize,
    pub scan_ms: f64,
    pub db_ms_per_closed: f64,
    pub lateness: Lateness,
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

pub fn report_paywait(paywait: &[PaywaitRun], ceiling: &[CeilingRun]) {
    let runs = paywait.len();
    let throughput = median(paywait.iter().map(|r| r.orders_per_second));
    let ceiling_throughput = median(ceiling.iter().map(|r| r.orders_per_second));
    let ratios: Vec<f64> = paywait
        .iter()
        .zip(ceiling)
        .map(|(p, c)| p.orders_per_second / c.orders_per_second)
        .collect();
    println!("## paywait and the broker's ceiling (median of {runs} runs)\n");
    println!("| figure | paywait | broker alone (same hops, no database) |");
    println!("| --- | --- | --- |");
    println!("| burst throughput, orders/s | {throughput:.0} | {ceiling_throughput:.0} |");
    println!(
        "| throughput / ceiling (per run, median) | {:.2} | 1 |",
        median(ratios.iter().copied())
    );
    println!(
        "| lateness at the rate, p50 / p99 / max ms | {} (close committed − expires_at) | {} (dead-lettered − TTL due) |",
        lateness_cells(paywait.iter().map(|r| r.lateness)),
        lateness_cells(ceiling.iter().map(|r| r.ttl_lateness)),
    );
    println!(
        "| daemon CPU time per order (burst) | {:.3} ms | – |",
        median(paywait.iter().map(|r| r.cpu_ms_per_order))
    );
    println!(
        "| daemon peak RSS | {:.1} MiB | – |",
        median(paywait.iter().map(|r| r.peak_rss_mib))
    );
    println!(
        "| duplicate events in the burst | {} | – |",
        paywait
            .iter()
            .map(|r| r.duplicates.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("\nper run:\n");
    for (i, (p, c)) in paywait.iter().zip(ceiling).enumerate() {
        println!(
            "- run {}: paywait {:.0}/s vs ceiling {:.0}/s; lateness p99 {:.1} ms vs broker {:.1} ms; CPU {:.3} ms/order; RSS {:.1} MiB",
            i + 1,
            p.orders_per_second,
            c.orders_per_second,
            p.lateness.p99,
            c.ttl_lateness.p99,
            p.cpu_ms_per_order,
            p.peak_rss_mib
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
