//! paywait-bench: how fast and how precise paywait is, beside the broker's
//! own ceiling for the same message hops and the table-scanning cron job it
//! replaces. It prints figures and writes plots; it asserts only that every
//! order was resolved exactly once, and none closed before its deadline.
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/paywait-bench
//! ```

mod burst;
mod ceiling;
mod client;
mod drills;
mod harness;
mod million;
mod plots;
mod precision;
mod reminders;
mod scanner;
mod stats;
mod storm;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

use crate::{
    precision::{Deadlines, FOUR_HOPS, ONE_HOP},
    stats::Samples,
};

/// Benchmarks paywait against RabbitMQ and PostgreSQL on this machine.
#[derive(Debug, Parser)]
#[command(name = "paywait-bench")]
struct Options {
    /// The runs to make, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "burst,precision,storm,million,scanner"
    )]
    runs: Vec<Run>,
    /// Orders in the burst run
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Orders per second in the timer-precision runs
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// How long the timer-precision runs publish
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    precision_for: Duration,
    /// The deadlines of the precision runs, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "one-hop,four-hops,per-order"
    )]
    deadlines: Vec<DeadlineKind>,
    /// Orders due in the same instant in the storm run
    #[arg(long, default_value_t = 20_000)]
    storm: usize,
    /// Pending orders in the million run
    #[arg(long, default_value_t = 1_000_000)]
    million: usize,
    /// The broker's data directory, whose growth the million run measures
    #[arg(long, default_value = "/var/lib/rabbitmq/mnesia")]
    broker_data: PathBuf,
    /// Table sizes for the scanner runs, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    scan_rows: Vec<usize>,
    /// How often the scanner runs its query
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    scan_every: Duration,
    /// How many times to repeat the burst, precision and ceiling runs (medians are reported)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where to write the plots
    #[arg(long, default_value = "docs/bench")]
    plots: PathBuf,
    /// The font the plots are written in
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
    /// The broker, with its vhost
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// The PostgreSQL server; the bench creates and drops its own databases
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Node-loss drills in the cluster run
    #[arg(long, default_value_t = 10)]
    drills: usize,
    /// Orders per second placed during each drill
    #[arg(long, default_value_t = 50)]
    drill_rate: u32,
    /// The paywait binary (default: the one next to this one)
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Extra settings for the daemon, e.g. PAYWAIT_AMQP__PREFETCH=128 (repeatable)
    #[arg(long = "daemon-env", value_name = "KEY=VALUE", value_parser = parse_setting)]
    daemon_env: Vec<(String, String)>,
}

/// One kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Run {
    /// Throughput: a burst of orders, half of them paid, beside the broker's ceiling
    Burst,
    /// Close lateness at a steady rate: one hop, four hops, per-order deadlines, the broker alone
    Precision,
    /// Many orders due in the same instant
    Storm,
    /// A million pending orders: memory, disk, database size
    Million,
    /// The table-scanning cron job
    Scanner,
    /// Nodes of a three-node cluster lost while orders come in (run as root; not run by default)
    Cluster,
    /// Reminders 2 s and 1 s before deadlines of 3 s, beside no reminders (not run by default)
    Reminders,
}

/// The deadlines of one precision run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeadlineKind {
    /// Every order 1 s after it was placed, schedule ["1s"]
    OneHop,
    /// Every order 1 s after it was placed, schedule ["250ms" x 4]
    FourHops,
    /// Each order its own expires_at, 0.1 to 10 s after it was placed
    PerOrder,
}

impl DeadlineKind {
    fn deadlines(self) -> Deadlines {
        match self {
            Self::OneHop => ONE_HOP,
            Self::FourHops => FOUR_HOPS,
            Self::PerOrder => Deadlines::PerOrder,
        }
    }
}

impl Options {
    /// How many orders a timer-precision run places.
    fn precision_orders(&self) -> usize {
        (f64::from(self.rate) * self.precision_for.as_secs_f64()) as usize
    }

    fn runs(&self, run: Run) -> bool {
        self.runs.contains(&run)
    }
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let daemon = match &options.daemon {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("paywait"),
    };
    anyhow::ensure!(
        daemon.exists(),
        "{} not found: build it with `cargo build --release --workspace`",
        daemon.display()
    );
    plots::use_font(&options.font)?;
    std::fs::create_dir_all(&options.plots)?;
    println!("# paywait-bench\n");
    println!(
        "machine: {} cores, {}; runs: {:?}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        stats::memory_total(),
        options.runs,
    );

    let mut ceiling = Vec::new();
    if options.runs(Run::Burst) || options.runs(Run::Precision) {
        for run in 1..=options.repeat {
            eprintln!("run {run}/{}: the broker alone", options.repeat);
            ceiling.push(ceiling::run(&options).await?);
        }
    }
    if options.runs(Run::Burst) {
        let mut bursts = Vec::new();
        for run in 1..=options.repeat {
            eprintln!("run {run}/{}: burst", options.repeat);
            bursts.push(burst::run(&options, &daemon).await?);
        }
        stats::report_burst(&bursts, &ceiling);
    }

    let mut lateness_series: Vec<(String, Samples)> = Vec::new();
    if options.runs(Run::Precision) {
        let mut runs = Vec::new();
        for deadlines in options.deadlines.iter().map(|kind| kind.deadlines()) {
            for run in 1..=options.repeat {
                eprintln!("run {run}/{}: {}", options.repeat, deadlines.label());
                runs.push(precision::run(&options, &daemon, deadlines).await?);
            }
            let of_label = runs.iter().filter(|r| r.label == deadlines.label());
            lateness_series.push((
                format!("paywait, {}", deadlines.label()),
                Samples::pooled(of_label.map(|r| &r.decided)),
            ));
        }
        stats::report_precision(&runs, &ceiling, options.rate);
        lateness_series.push((
            "the broker alone: one TTL hop".to_owned(),
            Samples::pooled(ceiling.iter().map(|r| &r.ttl_samples)),
        ));
    }

    if options.runs(Run::Reminders) {
        let mut runs = Vec::new();
        for run in 1..=options.repeat {
            for with in [false, true] {
                eprintln!(
                    "run {run}/{}: reminders {}",
                    options.repeat,
                    if with { "on" } else { "off" }
                );
                runs.push(reminders::run(&options, &daemon, with).await?);
            }
        }
        reminders::report(&runs, options.rate);
    }

    if options.runs(Run::Storm) {
        eprintln!("storm: {} orders", options.storm);
        let storm = storm::run(&options, &daemon).await?;
        stats::report_storm(&storm);
        plots::storm(
            &options.plots.join("storm.png"),
            &storm.decided,
            &storm.announced,
        )?;
    }

    if options.runs(Run::Million) {
        eprintln!("million: {} pending orders", options.million);
        let million = million::run(&options, &daemon).await?;
        stats::report_million(&million);
    }

    if options.runs(Run::Scanner) {
        let mut scans = Vec::new();
        for rows in &options.scan_rows {
            for indexed in [false, true] {
                eprintln!("scanner: {rows} rows, index: {indexed}");
                scans.push(scanner::run(&options, *rows, indexed).await?);
            }
        }
        stats::report_scanner(&scans, options.scan_every);
        if let Some(scan) = scans.iter().rfind(|scan| scan.indexed) {
            lateness_series.push((
                format!(
                    "table scan every {:?}, {} rows, indexed",
                    options.scan_every, scan.rows
                ),
                scan.samples.clone(),
            ));
        }
    }
    if options.runs(Run::Cluster) {
        drills::run(&options, &daemon).await?;
    }
    if !lateness_series.is_empty() {
        let series: Vec<(String, &Samples)> = lateness_series
            .iter()
            .map(|(label, samples)| (label.clone(), samples))
            .collect();
        plots::lateness(&options.plots.join("lateness.png"), &series)?;
    }
    Ok(())
}
