//! Cluster state on this broker: topics, their partitions (replicas) and configs,
//! persisted under `<data_dir>/meta/`. With replication this moves into the
//! controller Raft group; the surface stays the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sluice_replication::{HighWatermarkSource, Replica, ReplicaContext, ReplicaError};
use sluice_storage::LogConfig;
use thiserror::Error;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::config::{BrokerConfig, LogDefaults};
use crate::controller::LeaderRecord;
use crate::dynamic_config::BrokerOverrides;
use crate::topic_config::{self, TopicConfigs};

mod cleaning;
mod configs;
mod files;

use files::{
    claim_partition_dir, read_toml, remove_deleted_dirs, remove_partition_logs, write_toml,
    ProducerIdFile,
};

/// Longest legal topic name.
pub const TOPIC_NAME_MAX_CHARS: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 10_000;
/// Producer ids handed out per persisted block.
const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<ReplicaError> for TopicError {
    fn from(e: ReplicaError) -> Self {
        TopicError::Storage(e.to_string())
    }
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Partition>,
    /// Each partition's replicas (broker ids), preferred leader first.
    pub replicas: Vec<Vec<i32>>,
    pub configs: TopicConfigs,
}

/// A partition of a topic as this broker holds it.
#[derive(Debug, Clone)]
pub enum Partition {
    /// Its log is on this broker.
    Hosted(Arc<Replica>),
    /// Only other brokers hold it (a replication factor below the broker count):
    /// clients are sent to its leader, as its leader published it.
    Elsewhere(Arc<RemotePartition>),
}

/// What this broker knows of a partition it does not host: the leadership its
/// leader last published through the controller.
#[derive(Debug, Default)]
pub struct RemotePartition {
    published: RwLock<Option<LeaderRecord>>,
}

impl RemotePartition {
    pub fn published(&self) -> Option<LeaderRecord> {
        self.published.read().clone()
    }

    pub fn set_published(&self, record: Option<LeaderRecord>) {
        *self.published.write() = record;
    }
}

/// Why a partition cannot be served from this broker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHere {
    /// The topic has no such partition.
    Unknown,
    /// Other brokers host it.
    Elsewhere,
}

impl Topic {
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// This broker's replica of partition `index`.
    pub fn replica(&self, index: i32) -> Result<&Arc<Replica>, NotHere> {
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
        {
            Some(Partition::Hosted(r)) => Ok(r),
            Some(Partition::Elsewhere(_)) => Err(NotHere::Elsewhere),
            None => Err(NotHere::Unknown),
        }
    }

    /// The replicas on this broker with their partition index.
    pub fn hosted(&self) -> impl Iterator<Item = (usize, &Arc<Replica>)> {
        self.partitions
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Partition::Hosted(r) => Some((i, r)),
                Partition::Elsewhere(_) => None,
            })
    }

    /// The leader of partition `index` as this broker knows it (on a single
    /// broker, its one replica).
    pub fn leader_of(&self, index: usize) -> Option<i32> {
        match self.partitions.get(index)? {
            Partition::Hosted(r) if r.raft().is_none() => {
                self.replicas.get(index)?.first().copied()
            }
            Partition::Hosted(r) => r.leader().map(|l| l as i32),
            Partition::Elsewhere(remote) => remote.published().map(|p| p.leader),
        }
    }

    /// The replicas on this broker.
    pub fn hosted_replicas(&self) -> impl Iterator<Item = &Arc<Replica>> {
        self.hosted().map(|(_, r)| r)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MetadataFile {
    #[serde(default)]
    topics: Vec<TopicRecord>,
    /// Dynamic broker configs (a single broker; a cluster keeps them in the
    /// controller's metadata).
    #[serde(default)]
    broker_configs: BrokerOverrides,
}

#[derive(Debug)]
struct ProducerIds {
    next: i64,
    block_end: i64,
}

/// The topics this broker serves.
#[derive(Debug)]
pub struct Cluster {
    config: BrokerConfig,
    replicas: ReplicaContext,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes changes to the topic set and their persistence.
    changes: Mutex<()>,
    producer_ids: Mutex<ProducerIds>,
    /// Brokers in the cluster (1 alone), for replication factor checks.
    brokers: std::sync::atomic::AtomicUsize,
    /// Dynamic broker configs, and the log defaults they leave in force.
    dynamic: RwLock<(BrokerOverrides, LogDefaults)>,
}

/// Kafka's rules for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidName("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidName(format!(
            "topic name cannot be '{name}'"
        )));
    }
    if name.chars().count() > TOPIC_NAME_MAX_CHARS {
        return Err(TopicError::InvalidName(format!(
            "topic name is longer than {TOPIC_NAME_MAX_CHARS} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicError::InvalidName(format!(
            "topic name '{name}' contains '{c}'; legal characters are ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Topics that belong to the broker: clients may read them but not write or
/// delete them (Kafka's `Topic.isInternal`).
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

impl Cluster {
    /// Loads the persisted topics and opens (recovers) every partition log.
    pub fn open(config: BrokerConfig, replicas: ReplicaContext) -> Result<Arc<Self>, TopicError> {
        let meta_dir = config.data_dir.join("meta");
        std::fs::create_dir_all(&meta_dir)
            .map_err(|e| TopicError::Storage(format!("create {}: {e}", meta_dir.display())))?;
        let file: MetadataFile = read_toml(&meta_dir.join("topics.toml"))?.unwrap_or_default();
        let next_pid = read_toml::<ProducerIdFile>(&meta_dir.join("producer-ids.toml"))?
            .map_or(0, |p| p.next_block_start);
        let config_log = config.log;
        let cluster = Arc::new(Cluster {
            config,
            replicas,
            topics: RwLock::new(BTreeMap::new()),
            changes: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIds {
                next: next_pid,
                block_end: next_pid,
            }),
            brokers: std::sync::atomic::AtomicUsize::new(1),
            dynamic: RwLock::new((BrokerOverrides::default(), config_log)),
        });
        remove_deleted_dirs(&cluster.config.data_dir);
        if cluster.is_replicated() {
            return Ok(cluster);
        }
        cluster.set_broker_overrides(file.broker_configs);
        for record in file.topics {
            let configs = TopicConfigs::from_stored(record.configs);
            let topic = cluster.open_topic(&record.name, record.id, record.partitions, configs)?;
            info!(topic = %record.name, partitions = record.partitions, "topic loaded");
            cluster.topics.write().insert(record.name, topic);
        }
        Ok(cluster)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    fn log_config(&self, configs: &TopicConfigs) -> LogConfig {
        let d = &self.log_defaults();
        LogConfig {
            segment_bytes: configs.i64_or(topic_config::SEGMENT_BYTES, d.segment_bytes as i64)
                as u64,
            segment_ms: configs.i64_or(topic_config::SEGMENT_MS, d.segment_ms),
            index_interval_bytes: configs.i64_or(
                topic_config::INDEX_INTERVAL_BYTES,
                d.index_interval_bytes as i64,
            ) as u64,
            index_max_bytes: configs
                .i64_or(topic_config::SEGMENT_INDEX_BYTES, d.index_max_bytes as i64)
                as u64,
            open_sealed_segments_max: d.open_sealed_segments_max,
            flush_messages: configs.i64_or(topic_config::FLUSH_MESSAGES, d.flush_messages),
            flush_ms: configs.i64_or(topic_config::FLUSH_MS, d.flush_ms),
        }
    }

    fn open_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: TopicConfigs,
    ) -> Result<Arc<Topic>, TopicError> {
        let log_config = self.log_config(&configs);
        let replicas = (0..partitions)
            .map(|p| {
                Partition::Hosted(Replica::open(
                    format!("{name}-{p}"),
                    self.partition_dir(name, p),
                    log_config,
                    self.replicas.clone(),
                ))
            })
            .collect();
        Ok(Arc::new(Topic {
            name: name.to_string(),
            id,
            partitions: replicas,
            replicas: vec![vec![self.config.node_id]; partitions as usize],
            configs,
        }))
    }

    /// Brokers in the cluster.
    pub fn broker_count(&self) -> usize {
        self.brokers.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set_broker_count(&self, n: usize) {
        self.brokers
            .store(n.max(1), std::sync::atomic::Ordering::Release);
    }

    /// Whether partitions are replicated by Raft (a cluster of brokers): topics
    /// then come from the controller's metadata, not from `meta/topics.toml`.
    pub fn is_replicated(&self) -> bool {
        self.replicas.high_watermark == HighWatermarkSource::Owner
    }

    /// Opens the logs of partitions `indices` of a replicated topic (their Raft
    /// groups are started by the caller). A directory left by an earlier topic
    /// of the same name is set aside first.
    pub fn open_replicated_partitions(
        &self,
        name: &str,
        id: Uuid,
        indices: &[usize],
        configs: &TopicConfigs,
    ) -> Vec<(usize, Arc<Replica>)> {
        let log_config = self.log_config(configs);
        indices
            .iter()
            .map(|&p| {
                let dir = self.partition_dir(name, p as i32);
                claim_partition_dir(&dir, id);
                let replica = Replica::open(
                    format!("{name}-{p}"),
                    dir,
                    log_config,
                    self.replicas.clone(),
                );
                (p, replica)
            })
            .collect()
    }

    /// Makes a replicated topic visible to clients (replacing an older version).
    pub fn install_topic(&self, topic: Arc<Topic>) {
        self.topics.write().insert(topic.name.clone(), topic);
    }

    /// Forgets a replicated topic and removes its logs; the caller stopped its
    /// groups.
    pub fn remove_replicated_topic(&self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.topics.write().remove(name)?;
        remove_partition_logs(&topic);
        info!(topic = name, "topic removed");
        Some(topic)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    /// All topics, in name order.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// `default.replication.factor` capped to the brokers there are (one
    /// broker: 1), as CreateTopics applies it.
    pub fn default_replication_factor(&self) -> i16 {
        let brokers = i16::try_from(self.broker_count()).unwrap_or(i16::MAX);
        self.config.default_replication_factor.min(brokers)
    }

    /// Resolves CreateTopics' -1 defaults and checks a topic request without creating.
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, i16, TopicConfigs), TopicError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}"
            )));
        }
        let brokers = self.broker_count() as i16;
        let rf = match replication_factor {
            -1 => self.default_replication_factor(),
            rf => rf,
        };
        if rf < 1 || rf > brokers {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {rf} is not between 1 and the number of brokers ({brokers})"
            )));
        }
        let configs = TopicConfigs::validate(configs).map_err(TopicError::InvalidConfig)?;
        let topics = self.topics.read();
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let key = collision_key(name);
        if let Some(other) = topics.keys().find(|t| collision_key(t) == key) {
            return Err(TopicError::InvalidName(format!(
                "topic '{name}' collides with existing topic '{other}' ('.' and '_' are treated alike)"
            )));
        }
        Ok((partitions, rf, configs))
    }

    /// Creates a topic and its partition logs, then persists it.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.changes.lock();
        let (partitions, _, configs) =
            self.check_new_topic(name, partitions, replication_factor, configs)?;
        for p in 0..partitions {
            // Data under a name no topic owns is never wiped: an operator decides.
            let dir = self.partition_dir(name, p);
            if dir.exists() {
                error!(dir = %dir.display(), topic = name, "refusing to create a topic over an existing partition directory");
                return Err(TopicError::Storage(format!(
                    "partition directory {} already exists but belongs to no topic; move it away to create '{name}'",
                    dir.display()
                )));
            }
        }
        let topic = self.open_topic(name, Uuid::new_v4(), partitions, configs)?;
        self.topics
            .write()
            .insert(name.to_string(), Arc::clone(&topic));
        if let Err(e) = self.persist() {
            self.topics.write().remove(name);
            return Err(e);
        }
        info!(topic = name, partitions, "topic created");
        Ok(topic)
    }

    /// Checks that `name` may grow to `count` partitions; returns its current count.
    pub fn check_new_partitions(&self, name: &str, count: i32) -> Result<i32, TopicError> {
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if is_internal_topic(name) {
            return Err(TopicError::InvalidName(format!(
                "topic '{name}' is internal: its partition count is the broker's"
            )));
        }
        let current = topic.partition_count() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count {count} must be higher"
            )));
        }
        if count > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at most {PARTITIONS_MAX}, got {count}"
            )));
        }
        Ok(current)
    }

    /// Grows a topic to `count` partitions (one broker): the new logs are opened,
    /// then the topic is persisted.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.changes.lock();
        let current = self.check_new_partitions(name, count)?;
        let old = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        for p in current..count {
            let dir = self.partition_dir(name, p);
            if dir.exists() {
                return Err(TopicError::Storage(format!(
                    "partition directory {} already exists but belongs to no partition; move it away to add partitions to '{name}'",
                    dir.display()
                )));
            }
        }
        let log_config = self.log_config(&old.configs);
        let mut partitions = old.partitions.clone();
        let mut replicas = old.replicas.clone();
        for p in current..count {
            partitions.push(Partition::Hosted(Replica::open(
                format!("{name}-{p}"),
                self.partition_dir(name, p),
                log_config,
                self.replicas.clone(),
            )));
            replicas.push(vec![self.config.node_id]);
        }
        let topic = Arc::new(Topic {
            name: old.name.clone(),
            id: old.id,
            partitions,
            replicas,
            configs: old.configs.clone(),
        });
        self.topics
            .write()
            .insert(name.to_string(), Arc::clone(&topic));
        if let Err(e) = self.persist() {
            self.topics.write().insert(name.to_string(), old);
            return Err(e);
        }
        info!(topic = name, from = current, to = count, "partitions added");
        Ok(topic)
    }

    /// Deletes a topic: forgotten and persisted first, then its logs are removed.
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _guard = self.changes.lock();
        if is_internal_topic(name) && self.topics.read().contains_key(name) {
            return Err(TopicError::InvalidName(format!(
                "topic '{name}' is internal and cannot be deleted"
            )));
        }
        let Some(topic) = self.topics.write().remove(name) else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        self.persist()?;
        remove_partition_logs(&topic);
        info!(topic = name, "topic deleted");
        Ok(())
    }

    pub(super) fn persist(&self) -> Result<(), TopicError> {
        let file = MetadataFile {
            topics: self
                .topics
                .read()
                .values()
                .map(|t| TopicRecord {
                    name: t.name.clone(),
                    id: t.id,
                    partitions: t.partition_count() as i32,
                    configs: t.configs.overrides().clone(),
                })
                .collect(),
            broker_configs: self.broker_overrides(),
        };
        write_toml(
            &self.config.data_dir.join("meta").join("topics.toml"),
            &file,
        )
    }

    /// Hands out a producer id that is unique across restarts: ids come from blocks
    /// whose end is persisted before any id of the block is used.
    pub fn next_producer_id(&self) -> Result<i64, TopicError> {
        let mut ids = self.producer_ids.lock();
        if ids.next >= ids.block_end {
            let block_end = ids.next + PRODUCER_ID_BLOCK;
            write_toml(
                &self.config.data_dir.join("meta").join("producer-ids.toml"),
                &ProducerIdFile {
                    next_block_start: block_end,
                },
            )?;
            ids.block_end = block_end;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Syncs every partition log (clean shutdown).
    pub fn sync_all(&self) {
        for topic in self.topics() {
            for replica in topic.hosted_replicas() {
                if let Err(e) = replica.sync_all() {
                    warn!(partition = replica.name(), error = %e, "final sync failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("business.orders.created").is_ok());
        assert!(validate_topic_name("orders.dlq").is_ok());
        assert!(validate_topic_name("a-b_c.1").is_ok());
        for bad in ["", ".", "..", "with space", "slash/x", "ünïcode"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
