//! paywait: order-payment timeouts with RabbitMQ timers.
//!
//! [`domain`] is the pure core: order states, inbound messages, the check
//! schedule, and every rule. [`amqp`], [`db`], [`http`] and the command line
//! are thin shells, one per outside system, and [`worker`] carries the
//! core's decisions out through them. ARCHITECTURE.md is the map.

pub mod amqp;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod http;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod progress;
pub mod service;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod telemetry;
pub mod worker;

pub use error::{Error, Result};
