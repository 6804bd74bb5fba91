//! paywait-bench: how fast and how precise paywait is, beside the broker's
//! own ceiling for the same message hops and the table-scanning cron job it
//! replaces. It prints figures; it asserts only that every order was
//! resolved exactly once.
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/paywait-bench
//! ```

mod ceiling;
mod client;
mod paywait_runs;
mod scanner;
mod stats;

use std::{path::PathBuf, time::Duration};

use clap::Parser;

/// Benchmarks paywait against RabbitMQ and PostgreSQL on this machine.
#[derive(Debug, Parser)]
#[command(name = "paywait-bench")]
struct Options {
    /// Orders in the burst run
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Orders per second in the timer-precision runs
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// How long the timer-precision runs publish
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    precision_for: Duration,
    /// Table sizes for the scanner runs, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    scan_rows: Vec<usize>,
    /// Skip the scanner runs
    #[arg(long)]
    skip_scanner: bool,
    /// How often the scanner runs its query
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    scan_every: Duration,
    /// How many times to repeat the paywait and ceiling runs (medians are reported)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The broker, with its vhost
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// The PostgreSQL server; the bench creates and drops its own databases
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// The paywait binary (default: the one next to this one)
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Extra settings for the daemon, e.g. PAYWAIT_AMQP__PREFETCH=128 (repeatable)
    #[arg(long = "daemon-env", value_name = "KEY=VALUE", value_parser = parse_setting)]
    daemon_env: Vec<(String, String)>,
}

impl Options {
    /// How many orders a timer-precision run places.
    fn precision_orders(&self) -> usize {
        (f64::from(self.rate) * self.precision_for.as_secs_f64()) as usize
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
    let daemon_binary = match &options.daemon {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("paywait"),
    };
    anyhow::ensure!(
        daemon_binary.exists(),
        "{} not found: build it with `cargo build --release --workspace`",
        daemon_binary.display()
    );
    println!("# paywait-bench\n");
    println!(
        "machine: {} cores, {}; burst {} orders (half paid, wait 1s); precision {} orders/s for {:?}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        stats::memory_total(),
        options.orders,
        options.rate,
        options.precision_for
    );

    let mut paywait = Vec::new();
    let mut ceiling = Vec::new();
    for run in 1..=options.repeat {
        eprintln!("run {run}/{}: paywait", options.repeat);
        paywait.push(paywait_runs::run(&options, &daemon_binary).await?);
        eprintln!("run {run}/{}: broker ceiling", options.repeat);
        ceiling.push(ceiling::run(&options).await?);
    }
    stats::report_paywait(&paywait, &ceiling);

    if !options.skip_scanner {
        let mut scans = Vec::new();
        for rows in &options.scan_rows {
            for indexed in [false, true] {
                eprintln!("scanner: {rows} rows, index: {indexed}");
                scans.push(scanner::run(&options, *rows, indexed).await?);
            }
        }
        stats::report_scanner(&scans, options.scan_every);
    }
    Ok(())
}
