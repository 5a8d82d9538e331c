//! The `sluice` command's client side: topics, groups and cluster commands that
//! speak the Kafka protocol to `--bootstrap-server`, print tables or JSON, and
//! exit non-zero with a one-line message on every error.

pub mod client;
pub mod cluster;
pub mod consumer;
pub mod dlq;
pub mod groups;
pub mod messages;
pub mod offsets;
pub mod output;
pub mod producer;
pub mod topics;

use std::time::Duration;

use clap::{Args, Subcommand};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use thiserror::Error;

pub use client::Client;
pub use output::Format;

/// Why a command failed; printed as one line.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Protocol(String),
    /// A Kafka error code the broker answered with.
    #[error("{what}: {name}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        what: String,
        name: String,
        message: Option<String>,
    },
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// The error for a non-zero Kafka error code (`Ok` for 0).
    pub fn check(
        code: i16,
        message: Option<&StrBytes>,
        what: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        if code == 0 {
            return Ok(());
        }
        let name = ResponseError::try_from_code(code)
            .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
        Err(CliError::Kafka {
            what: what(),
            name,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        })
    }
}

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Brokers to bootstrap from, comma-separated.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT,...",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_server: String,
    /// How long to wait for a broker (connection and each answer).
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Output: human-readable tables or JSON.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `10s`, `500ms`, `2m`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    }
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List, describe, create, delete and configure topics.
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
        #[command(flatten)]
        common: Common,
    },
    /// List, describe and delete consumer groups.
    Groups {
        #[command(subcommand)]
        command: groups::GroupsCommand,
        #[command(flatten)]
        common: Common,
    },
    /// The cluster: brokers, controller, partitions and leaders.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Dead-letter topics: list, inspect, replay.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Produces records from stdin (idempotent, acks=all).
    Produce {
        #[command(flatten)]
        args: messages::ProduceArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Prints a topic's records.
    Consume {
        #[command(flatten)]
        args: messages::ConsumeArgs,
        #[command(flatten)]
        common: Common,
    },
}

/// Runs a client command.
pub async fn run(command: ClientCommand) -> Result<(), CliError> {
    let common = match &command {
        ClientCommand::Topics { common, .. }
        | ClientCommand::Groups { common, .. }
        | ClientCommand::Cluster { common, .. }
        | ClientCommand::Dlq { common, .. }
        | ClientCommand::Produce { common, .. }
        | ClientCommand::Consume { common, .. } => common.clone(),
    };
    let mut client = Client::connect(&common.bootstrap_server, common.timeout).await?;
    match command {
        ClientCommand::Topics { command, .. } => {
            topics::run(&mut client, command, common.output).await
        }
        ClientCommand::Groups { command, .. } => {
            groups::run(&mut client, command, common.output).await
        }
        ClientCommand::Cluster { command, .. } => {
            cluster::run(&mut client, command, common.output).await
        }
        ClientCommand::Dlq { command, .. } => dlq::run(&mut client, command, common.output).await,
        ClientCommand::Produce { args, .. } => {
            messages::produce(&mut client, args, common.output).await
        }
        ClientCommand::Consume { args, .. } => {
            messages::consume(&mut client, args, common.output).await
        }
    }
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn kafka_errors_name_the_code() {
        let e = CliError::check(3, Some(&str_bytes("topic 'x' does not exist")), || {
            "describe x".into()
        })
        .expect_err("error");
        assert_eq!(
            e.to_string(),
            "describe x: UnknownTopicOrPartition: topic 'x' does not exist"
        );
        assert!(CliError::check(0, None, || unreachable!()).is_ok());
    }
}
