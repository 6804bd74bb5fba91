//! What paywait's integration tests, fault test and benchmark share: a
//! sandbox (vhost and database) per test on the real broker and database,
//! the daemon in-process ([`TestApp`]) or as a child process ([`Daemon`]),
//! clients that publish with paywait's own publisher, a PostgreSQL server
//! of the test's own, the management API calls the tests make, a TCP proxy
//! that makes network faults ([`FaultProxy`]), and [`model`], the contract
//! as a reference model.

mod app;
pub mod bodies;
mod client;
mod cluster;
pub mod contract;
mod daemon;
pub mod model;
mod postgres;
mod proxy;
mod sandbox;
mod services;
mod tls_broker;

pub use app::{ReceivedEvent, TestApp};
pub use client::{Client, Message, ORDERS_EXCHANGE, ResilientClient};
pub use cluster::{Cluster, DrillReport, Recovery, node_loss_drill};
pub use daemon::{Daemon, Log};
pub use postgres::{Stop, ThrowawayPostgres};
pub use proxy::FaultProxy;
pub use sandbox::{DropDatabase, Sandbox};
pub use services::{
    BROKER, MANAGEMENT, POSTGRES, change_password, close_connections_named, delete_user, free_port,
    http_get, import_definitions, management_json, metric_value, set_guest_permissions, urlencode,
};
pub use tls_broker::TlsBroker;
