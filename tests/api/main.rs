//! Integration tests against the machine's real RabbitMQ and PostgreSQL.

mod bad_input;
mod cli;
mod fuzz;
mod lifecycle;
mod operations;
mod packaging;
mod race;
mod resilience;
