//! Broker configuration: compiled-in defaults (`config/sluice.toml`), a TOML file
//! that overrides them key by key, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The default configuration, shipped as `config/sluice.toml`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/sluice.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listen: String,
    pub advertised_listener: String,
    pub data_dir: PathBuf,
    pub cluster_id: String,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub socket_request_max_bytes: usize,
    pub max_inflight_requests_per_connection: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_max_idle_ms: u64,
    pub queued_max_request_bytes: usize,
    pub queued_max_response_bytes: usize,
    pub connection_response_bytes_max: usize,
    pub num_io_threads: usize,
    pub shutdown_timeout_s: u64,
    pub producer_id_expiration_ms: i64,
    pub log: LogDefaults,
    pub group_coordinator: GroupCoordinatorConfig,
    pub cluster: ClusterConfig,
}

/// Membership of a cluster of brokers; no peers is the single-node broker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Address the inter-broker (Raft) listener binds to.
    pub raft_listen: String,
    /// Every broker of the cluster, this one included: `ID@HOST:PORT` with the
    /// inter-broker address, comma-separated.
    pub peers: String,
    pub raft_heartbeat_interval_ms: u64,
    pub raft_election_timeout_ms: u64,
    /// replica.lag.time.max.ms: a follower that has not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// How long CreateTopics and DeleteTopics wait for every live broker to apply
    /// the change.
    pub metadata_propagation_timeout_ms: u64,
    /// auto.leader.rebalance.enable: move leadership back to each partition's
    /// preferred replica when it is alive and caught up.
    pub auto_leader_rebalance_enable: bool,
    /// leader.imbalance.check.interval.seconds, in milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            raft_listen: String::new(),
            peers: String::new(),
            raft_heartbeat_interval_ms: 250,
            raft_election_timeout_ms: 1500,
            replica_lag_time_max_ms: 30_000,
            metadata_propagation_timeout_ms: 10_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 10_000,
        }
    }
}

impl ClusterConfig {
    /// The peers as (node id, inter-broker address); empty for a single node.
    pub fn peer_list(&self) -> Result<Vec<(i32, String)>, String> {
        let mut out: Vec<(i32, String)> = Vec::new();
        for item in self
            .peers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (id, addr) = item
                .split_once('@')
                .ok_or_else(|| format!("{item:?} is not ID@HOST:PORT"))?;
            let id: i32 = id
                .parse()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| format!("{item:?}: {id:?} is not a node id"))?;
            parse_host_port(addr)?;
            if out.iter().any(|(other, _)| *other == id) {
                return Err(format!("node id {id} appears twice"));
            }
            out.push((id, addr.to_string()));
        }
        out.sort();
        Ok(out)
    }
}

/// The group coordinator's settings (Kafka's `offsets.*` and `group.*`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupCoordinatorConfig {
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub offsets_topic_segment_bytes: u64,
    pub offsets_retention_minutes: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offset_metadata_max_bytes: usize,
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: usize,
}

impl Default for GroupCoordinatorConfig {
    fn default() -> Self {
        GroupCoordinatorConfig {
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 100 << 20,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as usize,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub index_max_bytes: u64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub retention_check_interval_ms: u64,
    pub open_sealed_segments_max: usize,
    pub delete_retention_ms: i64,
    pub cleaner_backoff_ms: u64,
    pub cleaner_io_max_bytes_per_second: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            listen: "127.0.0.1:9092".into(),
            advertised_listener: String::new(),
            data_dir: PathBuf::from("./data"),
            cluster_id: "sluice-cluster".into(),
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 3,
            socket_request_max_bytes: 100 << 20,
            max_inflight_requests_per_connection: 64,
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            connections_max_idle_ms: 600_000,
            queued_max_request_bytes: 512 << 20,
            queued_max_response_bytes: 512 << 20,
            connection_response_bytes_max: 64 << 20,
            num_io_threads: 8,
            shutdown_timeout_s: 10,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            log: LogDefaults::default(),
            group_coordinator: GroupCoordinatorConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            index_max_bytes: 10 << 20,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            retention_check_interval_ms: 300_000,
            open_sealed_segments_max: 8,
            delete_retention_ms: 24 * 3600 * 1000,
            cleaner_backoff_ms: 15_000,
            cleaner_io_max_bytes_per_second: -1,
        }
    }
}

impl BrokerConfig {
    /// Parses a config file's text; unknown keys and ill-typed values are errors that
    /// name the file and the key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: BrokerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Checks values that parse but make no sense. `origin` names where they came from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "listen",
                format!("{:?} is not a HOST:PORT socket address", self.listen),
            ));
        }
        if !self.advertised_listener.is_empty() {
            parse_host_port(&self.advertised_listener)
                .map_err(|m| bad("advertised_listener", m))?;
        }
        let (host, _) = self.advertised();
        if host == "0.0.0.0" || host == "::" {
            let key = if self.advertised_listener.is_empty() {
                "listen"
            } else {
                "advertised_listener"
            };
            return Err(bad(
                key,
                format!("clients cannot connect to the non-routable address {host}; set advertised_listener"),
            ));
        }
        if self.num_partitions < 1 {
            return Err(bad(
                "num_partitions",
                format!("{} must be at least 1", self.num_partitions),
            ));
        }
        if self.default_replication_factor < 1 {
            return Err(bad(
                "default_replication_factor",
                format!("{} must be at least 1", self.default_replication_factor),
            ));
        }
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize
        {
            return Err(bad(
                "socket_request_max_bytes",
                format!(
                    "{} must be between 1024 and {}",
                    self.socket_request_max_bytes,
                    i32::MAX
                ),
            ));
        }
        if self.max_inflight_requests_per_connection == 0 {
            return Err(bad(
                "max_inflight_requests_per_connection",
                "must be at least 1".into(),
            ));
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("num_io_threads", self.num_io_threads),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        if self.connections_max_idle_ms < 1 {
            return Err(bad("connections_max_idle_ms", "must be positive".into()));
        }
        for (key, value) in [
            ("queued_max_request_bytes", self.queued_max_request_bytes),
            ("queued_max_response_bytes", self.queued_max_response_bytes),
            (
                "connection_response_bytes_max",
                self.connection_response_bytes_max,
            ),
        ] {
            if !(1 << 20..=u32::MAX as usize).contains(&value) {
                return Err(bad(
                    key,
                    format!("{value} must be between 1048576 and {}", u32::MAX),
                ));
            }
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(bad("producer_id_expiration_ms", "must be positive".into()));
        }
        if self.cluster_id.is_empty() {
            return Err(bad("cluster_id", "must not be empty".into()));
        }
        let c = &self.cluster;
        let peers = c.peer_list().map_err(|m| bad("cluster.peers", m))?;
        if !peers.is_empty() {
            if !peers.iter().any(|(id, _)| *id == self.node_id) {
                return Err(bad(
                    "cluster.peers",
                    format!("node_id {} is not among the peers", self.node_id),
                ));
            }
            if c.raft_listen.parse::<SocketAddr>().is_err() {
                return Err(bad(
                    "cluster.raft_listen",
                    format!("{:?} is not a HOST:PORT socket address", c.raft_listen),
                ));
            }
        }
        if c.raft_heartbeat_interval_ms == 0
            || c.raft_election_timeout_ms < 3 * c.raft_heartbeat_interval_ms
        {
            // Heartbeats suppressed under writes resume within two intervals and a
            // tick: they must still arrive before a follower's election timeout.
            return Err(bad(
                "cluster.raft_election_timeout_ms",
                format!(
                    "{} must be at least three heartbeat intervals ({} ms each)",
                    c.raft_election_timeout_ms, c.raft_heartbeat_interval_ms
                ),
            ));
        }
        let g = &self.group_coordinator;
        if !(1..=crate::cluster::PARTITIONS_MAX).contains(&g.offsets_topic_num_partitions) {
            return Err(bad(
                "group_coordinator.offsets_topic_num_partitions",
                format!(
                    "{} must be between 1 and {}",
                    g.offsets_topic_num_partitions,
                    crate::cluster::PARTITIONS_MAX
                ),
            ));
        }
        if g.offsets_topic_replication_factor < 1 {
            return Err(bad(
                "group_coordinator.offsets_topic_replication_factor",
                format!("{} must be at least 1", g.offsets_topic_replication_factor),
            ));
        }
        if g.offsets_topic_segment_bytes < 1024 || g.offsets_topic_segment_bytes > i32::MAX as u64 {
            return Err(bad(
                "group_coordinator.offsets_topic_segment_bytes",
                format!(
                    "{} must be between 1024 and {}",
                    g.offsets_topic_segment_bytes,
                    i32::MAX
                ),
            ));
        }
        if g.offsets_retention_minutes < 1 {
            return Err(bad(
                "group_coordinator.offsets_retention_minutes",
                "must be positive".into(),
            ));
        }
        if g.offsets_retention_check_interval_ms == 0 {
            return Err(bad(
                "group_coordinator.offsets_retention_check_interval_ms",
                "must be positive".into(),
            ));
        }
        if g.offset_metadata_max_bytes > i16::MAX as usize {
            return Err(bad(
                "group_coordinator.offset_metadata_max_bytes",
                format!(
                    "{} must be at most {}",
                    g.offset_metadata_max_bytes,
                    i16::MAX
                ),
            ));
        }
        if g.group_initial_rebalance_delay_ms < 0 {
            return Err(bad(
                "group_coordinator.group_initial_rebalance_delay_ms",
                "must not be negative".into(),
            ));
        }
        if g.group_min_session_timeout_ms < 1
            || g.group_max_session_timeout_ms < g.group_min_session_timeout_ms
        {
            return Err(bad(
                "group_coordinator.group_max_session_timeout_ms",
                format!(
                    "the session timeout range {}..{} is empty",
                    g.group_min_session_timeout_ms, g.group_max_session_timeout_ms
                ),
            ));
        }
        if g.group_max_size == 0 {
            return Err(bad(
                "group_coordinator.group_max_size",
                "must be at least 1".into(),
            ));
        }
        let log = &self.log;
        if log.segment_bytes < 1024 || log.segment_bytes > i32::MAX as u64 {
            return Err(bad(
                "log.segment_bytes",
                format!(
                    "{} must be between 1024 and {}",
                    log.segment_bytes,
                    i32::MAX
                ),
            ));
        }
        if log.segment_ms < 1 {
            return Err(bad(
                "log.segment_ms",
                format!("{} must be positive", log.segment_ms),
            ));
        }
        if log.index_max_bytes < 12 {
            return Err(bad(
                "log.index_max_bytes",
                format!("{} must be at least 12", log.index_max_bytes),
            ));
        }
        if log.flush_messages < 1 || log.flush_ms < 0 {
            let key = if log.flush_messages < 1 {
                "log.flush_messages"
            } else {
                "log.flush_ms"
            };
            return Err(bad(key, "must be positive".into()));
        }
        if log.retention_check_interval_ms == 0 {
            return Err(bad(
                "log.retention_check_interval_ms",
                "must be positive".into(),
            ));
        }
        if log.cleaner_backoff_ms == 0 {
            return Err(bad("log.cleaner_backoff_ms", "must be positive".into()));
        }
        if log.delete_retention_ms < 0 {
            return Err(bad(
                "log.delete_retention_ms",
                "must not be negative".into(),
            ));
        }
        if log.open_sealed_segments_max == 0 {
            return Err(bad(
                "log.open_sealed_segments_max",
                "must be at least 1".into(),
            ));
        }
        if log.max_message_bytes < 64 {
            return Err(bad(
                "log.max_message_bytes",
                format!("{} is too small", log.max_message_bytes),
            ));
        }
        Ok(())
    }

    /// Whether this broker is one of a cluster (it has peers).
    pub fn is_clustered(&self) -> bool {
        self.cluster.peer_list().is_ok_and(|p| !p.is_empty())
    }

    /// The (host, port) clients are told to connect to.
    pub fn advertised(&self) -> (String, i32) {
        let addr = if self.advertised_listener.is_empty() {
            &self.listen
        } else {
            &self.advertised_listener
        };
        parse_host_port(addr).unwrap_or_else(|_| ("127.0.0.1".into(), 9092))
    }
}

fn parse_host_port(s: &str) -> Result<(String, i32), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?} has an invalid port"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_file_matches_compiled_defaults() {
        let parsed = BrokerConfig::from_toml(DEFAULT_CONFIG_TOML, Path::new("config/sluice.toml"))
            .expect("default config parses");
        assert_eq!(parsed, BrokerConfig::default());
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = BrokerConfig::from_toml("num_partitons = 3\n", Path::new("/etc/s.toml"))
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("/etc/s.toml"), "{msg}");
        assert!(msg.contains("num_partitons"), "{msg}");
    }

    #[test]
    fn bad_value_names_file_and_key() {
        let err = BrokerConfig::from_toml("[log]\nsegment_bytes = \"big\"\n", Path::new("b.toml"))
            .expect_err("bad type");
        let msg = err.to_string();
        assert!(
            msg.contains("b.toml") && msg.contains("segment_bytes"),
            "{msg}"
        );
        let err = BrokerConfig::from_toml("num_partitions = 0\n", Path::new("c.toml"))
            .expect_err("bad value");
        assert_eq!(
            err.to_string(),
            "c.toml: key `num_partitions`: 0 must be at least 1"
        );
    }

    #[test]
    fn wildcard_listener_needs_an_advertised_address() {
        let err = BrokerConfig::from_toml("listen = \"0.0.0.0:9092\"\n", Path::new("w.toml"))
            .expect_err("0.0.0.0 is not routable");
        assert!(err.to_string().contains("advertised_listener"), "{err}");
        let ok = "listen = \"0.0.0.0:9092\"\nadvertised_listener = \"broker-1:9092\"\n";
        let c = BrokerConfig::from_toml(ok, Path::new("w.toml")).expect("valid");
        assert_eq!(c.advertised(), ("broker-1".to_string(), 9092));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = BrokerConfig::from_toml(
            "num_partitions = 6\n[log]\nretention_ms = 5\n",
            Path::new("p.toml"),
        )
        .expect("parses");
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.log.retention_ms, 5);
        assert_eq!(c.log.segment_bytes, 1 << 30);
        assert_eq!(c.listen, "127.0.0.1:9092");
    }
}
