//! Integration tests against the machine's real RabbitMQ and PostgreSQL.

mod access;
mod alerts;
mod bad_input;
mod batches;
mod changes;
mod cli;
mod cluster;
mod contract;
mod deadlines;
mod fuzz;
mod gateway;
mod lifecycle;
mod live_model;
mod money;
mod network;
mod on_time;
mod operations;
mod packaging;
mod poison;
mod proxy;
mod race;
mod reminders;
mod resilience;
mod status_page;
mod tls;
mod toolbox;
