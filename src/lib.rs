//! paywait: order-payment timeouts with RabbitMQ timers.
//!
//! [`domain`] is the pure core (order states, inbound messages, the check
//! schedule, what a check decides); [`amqp`], [`db`], [`http`] and the
//! command line are thin shells around it, and [`worker`] ties them together.

pub mod amqp;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod service;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod topology;
pub mod worker;

pub use error::{Error, Result};
