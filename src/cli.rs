//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::domain::{Currency, OrderId, PaymentId};

/// Order-payment timeouts with RabbitMQ timers: closes unpaid orders at their
/// deadline and tells downstream about paid ones.
#[derive(Debug, Parser)]
#[command(name = "paywait", version)]
pub struct Cli {
    /// TOML configuration file (default: built-in settings for localhost)
    #[arg(long, global = true, env = "PAYWAIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: declare the topology, consume, serve HTTP
    Run,
    /// Create the database if needed and apply pending migrations
    Migrate,
    /// Declare the RabbitMQ topology
    Topology {
        /// Print it as RabbitMQ definitions JSON instead, without connecting
        #[arg(long)]
        print: bool,
    },
    /// Publish order.placed, as an order service would
    Place {
        order_id: OrderId,
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        amount_cents: Option<u32>,
        /// Three capital letters, e.g. CNY
        #[arg(long, value_name = "C")]
        currency: Option<Currency>,
    },
    /// Publish payment.succeeded, as a payment service would
    Pay {
        order_id: OrderId,
        #[arg(long, value_name = "P")]
        payment_id: PaymentId,
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        amount_cents: Option<u32>,
        /// Three capital letters, e.g. CNY (default: the order's)
        #[arg(long, value_name = "C")]
        currency: Option<Currency>,
    },
    /// Publish order.cancelled, as an order service would
    Cancel {
        order_id: OrderId,
        /// Why, e.g. customer
        #[arg(long, value_name = "R")]
        reason: Option<String>,
    },
    /// Publish order.deadline_changed, as an order service would: move a
    /// pending order's deadline, later or earlier
    Extend {
        order_id: OrderId,
        /// The new deadline, RFC 3339, e.g. 2026-12-08T18:00:00Z
        #[arg(long, value_name = "TIME")]
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// Move parked messages from the dead queue back to the queue they came
    /// from, once what made them fail is fixed
    Replay {
        /// Replay at most this many messages
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        /// Only list the parked messages, leaving them in place
        #[arg(long, conflicts_with = "discard")]
        dry_run: bool,
        /// Take the parked messages off the dead queue for good, for
        /// messages that are simply wrong (a sender's bug)
        #[arg(long)]
        discard: bool,
    },
    /// Show an order's row
    Show {
        order_id: OrderId,
        /// As one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Print every event as paywait publishes it, until interrupted
    Watch {
        /// Print each event's body, one JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Orders pending, due and overdue, events owed, parked messages, queues
    /// and readiness; exits 0 only when healthy
    Status {
        /// As one JSON object
        #[arg(long)]
        json: bool,
    },
}
