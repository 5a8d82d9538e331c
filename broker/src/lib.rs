//! # sluice-broker
//!
//! The broker process: accepts client connections, turns frames into requests, runs
//! one handler per Kafka API and writes responses back in request order.
//!
//! ```text
//!  server::run ── accept ──► connection::serve (one task per client)
//!     reader: bytes ─► frame ─► decode ─► spawn handler ─┐ (bounded in-flight queue)
//!     writer: ◄─ encoded response, in request order ◄────┘
//!  handlers/<api>.rs ─► Cluster (topics, configs) ─► Replica (sluice-replication)
//! ```
//!
//! A malformed frame closes its own connection and nothing else. Kafka error codes are
//! chosen in the handlers, one place per API.

pub mod bootstrap;
pub mod broker;
pub mod budget;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod controller;
pub mod dev;
pub mod dynamic_config;
pub mod group;
pub mod handlers;
pub mod server;
pub mod topic_config;

pub use broker::Broker;
pub use config::BrokerConfig;
