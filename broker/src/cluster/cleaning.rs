//! Retention and compaction over the topics this broker hosts.

use sluice_storage::CompactionConfig;
use tracing::{info, warn};

use super::{Cluster, Topic};
use crate::topic_config;

impl Cluster {
    /// Runs time and size retention over every partition (`retention.ms`,
    /// `retention.bytes`, topic overrides first), and forgets idle producers.
    pub fn apply_retention(&self, now_ms: i64) {
        for topic in self.topics() {
            for replica in topic.hosted_replicas() {
                replica.expire_producers(now_ms, self.config.producer_id_expiration_ms);
            }
        }
        for topic in self.topics().into_iter().filter(|t| t.configs.deletes()) {
            let (retention_ms, retention_bytes) = self.retention_of(&topic);
            // A replicated partition's head goes through its Raft group (a
            // snapshot at the new log start, then a purge), not a local delete.
            for replica in topic.hosted_replicas().filter(|r| r.raft().is_none()) {
                match replica.apply_retention(now_ms, retention_ms, retention_bytes) {
                    Ok(o) if o.segments_deleted > 0 => info!(
                        partition = replica.name(),
                        segments = o.segments_deleted,
                        bytes = o.bytes_deleted,
                        log_start = %replica.log_start_offset(),
                        "retention deleted segments"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(partition = replica.name(), error = %e, "retention failed"),
                }
            }
        }
    }

    /// (`retention.ms`, `retention.bytes`) of a topic: its overrides, else the defaults.
    fn retention_of(&self, topic: &Topic) -> (i64, i64) {
        let d = &self.log_defaults();
        (
            topic
                .configs
                .i64_or(topic_config::RETENTION_MS, d.retention_ms),
            topic
                .configs
                .i64_or(topic_config::RETENTION_BYTES, d.retention_bytes),
        )
    }

    /// Retention of replicated partitions: each replica snapshots at its new log
    /// start and its Raft group purges the log up to it.
    pub async fn apply_replicated_retention(&self, now_ms: i64) {
        for topic in self.topics().into_iter().filter(|t| t.configs.deletes()) {
            let (retention_ms, retention_bytes) = self.retention_of(&topic);
            for replica in topic.hosted_replicas().filter(|r| r.raft().is_some()) {
                match replica
                    .apply_replicated_retention(now_ms, retention_ms, retention_bytes)
                    .await
                {
                    Ok(Some(start)) => {
                        info!(partition = replica.name(), log_start = %start, "retention: snapshot requested at the new log start")
                    }
                    Ok(None) => {}
                    Err(e) => warn!(partition = replica.name(), error = %e, "retention failed"),
                }
            }
        }
    }

    /// One compaction pass over the partitions of topics whose `cleanup.policy`
    /// includes `compact`.
    pub fn compact(&self, now_ms: i64) {
        let d = &self.log_defaults();
        for topic in self.topics().into_iter().filter(|t| t.configs.compacts()) {
            let config = CompactionConfig {
                delete_retention_ms: topic
                    .configs
                    .i64_or(topic_config::DELETE_RETENTION_MS, d.delete_retention_ms),
                io_bytes_per_second: u64::try_from(d.cleaner_io_max_bytes_per_second).ok(),
                ..CompactionConfig::default()
            };
            for replica in topic.hosted_replicas() {
                match replica.compact(now_ms, &config) {
                    Ok(Some(s)) if s.segments_rewritten > 0 => info!(
                        partition = replica.name(),
                        segments = s.segments_rewritten,
                        records_removed = s.records_removed,
                        bytes_before = s.bytes_before,
                        bytes_after = s.bytes_after,
                        "compacted"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(partition = replica.name(), error = %e, "compaction failed"),
                }
            }
        }
    }
}
