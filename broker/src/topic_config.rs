//! Topic-level configs under Kafka's names: which keys exist, how their values are
//! checked, and their defaults.

use std::collections::BTreeMap;

use sluice_protocol::batch::Compression;

use crate::config::LogDefaults;

pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const COMPRESSION_TYPE: &str = "compression.type";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const SEGMENT_INDEX_BYTES: &str = "segment.index.bytes";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An integer of at least this value.
    Long(i64),
    Bool,
    OneOf(&'static [&'static str]),
    /// A comma-separated list drawn from these values.
    ListOf(&'static [&'static str]),
    Ratio,
    Text,
}

/// Every topic config Sluice accepts, with its type and static default.
const KNOWN: &[(&str, Kind, &str)] = &[
    (
        CLEANUP_POLICY,
        Kind::ListOf(&["delete", "compact"]),
        "delete",
    ),
    (
        COMPRESSION_TYPE,
        Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        "producer",
    ),
    (DELETE_RETENTION_MS, Kind::Long(0), "86400000"),
    ("file.delete.delay.ms", Kind::Long(0), "60000"),
    (FLUSH_MESSAGES, Kind::Long(1), "9223372036854775807"),
    (FLUSH_MS, Kind::Long(0), "9223372036854775807"),
    ("follower.replication.throttled.replicas", Kind::Text, ""),
    (INDEX_INTERVAL_BYTES, Kind::Long(0), "4096"),
    ("leader.replication.throttled.replicas", Kind::Text, ""),
    ("local.retention.bytes", Kind::Long(-2), "-2"),
    ("local.retention.ms", Kind::Long(-2), "-2"),
    (
        "max.compaction.lag.ms",
        Kind::Long(1),
        "9223372036854775807",
    ),
    (MAX_MESSAGE_BYTES, Kind::Long(0), "1048588"),
    ("message.downconversion.enable", Kind::Bool, "true"),
    ("message.timestamp.after.max.ms", Kind::Long(0), "3600000"),
    (
        "message.timestamp.before.max.ms",
        Kind::Long(0),
        "9223372036854775807",
    ),
    (
        "message.timestamp.difference.max.ms",
        Kind::Long(0),
        "9223372036854775807",
    ),
    (
        MESSAGE_TIMESTAMP_TYPE,
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
    ),
    ("min.cleanable.dirty.ratio", Kind::Ratio, "0.5"),
    ("min.compaction.lag.ms", Kind::Long(0), "0"),
    (MIN_INSYNC_REPLICAS, Kind::Long(1), "1"),
    ("preallocate", Kind::Bool, "false"),
    ("remote.storage.enable", Kind::Bool, "false"),
    (RETENTION_BYTES, Kind::Long(-1), "-1"),
    (RETENTION_MS, Kind::Long(-1), "604800000"),
    (SEGMENT_BYTES, Kind::Long(14), "1073741824"),
    (SEGMENT_INDEX_BYTES, Kind::Long(12), "10485760"),
    ("segment.jitter.ms", Kind::Long(0), "0"),
    (SEGMENT_MS, Kind::Long(1), "604800000"),
    ("unclean.leader.election.enable", Kind::Bool, "false"),
];

fn check(name: &str, kind: Kind, value: &str) -> Result<(), String> {
    let ok = match kind {
        Kind::Long(min) => value.parse::<i64>().is_ok_and(|v| v >= min),
        Kind::Bool => matches!(value, "true" | "false"),
        Kind::OneOf(allowed) => allowed.contains(&value),
        Kind::ListOf(allowed) => value
            .split(',')
            .map(str::trim)
            .all(|v| allowed.contains(&v)),
        Kind::Ratio => value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v)),
        Kind::Text => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::Long(min) => format!("an integer >= {min}"),
        Kind::Bool => "true or false".to_string(),
        Kind::OneOf(a) | Kind::ListOf(a) => format!("one of {}", a.join(", ")),
        Kind::Ratio => "a number between 0 and 1".to_string(),
        Kind::Text => String::new(),
    };
    Err(format!(
        "invalid value {value:?} for configuration {name}: expected {expected}"
    ))
}

/// A topic's config overrides (the keys set on the topic itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    overrides: BTreeMap<String, String>,
}

impl TopicConfigs {
    /// Checks names and values as CreateTopics does.
    pub fn validate(configs: &BTreeMap<String, String>) -> Result<Self, String> {
        for (name, value) in configs {
            let Some((_, kind, _)) = KNOWN.iter().find(|(n, _, _)| n == name) else {
                return Err(format!("unknown topic config name: {name}"));
            };
            check(name, *kind, value)?;
        }
        Ok(TopicConfigs {
            overrides: configs.clone(),
        })
    }

    /// Configs read back from our own metadata (already validated when set).
    pub fn from_stored(overrides: BTreeMap<String, String>) -> Self {
        TopicConfigs { overrides }
    }

    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The codec `compression.type` asks stored batches to have; `None` for
    /// `producer` (store as sent).
    pub fn compression_target(&self) -> Option<Compression> {
        match self.overrides.get(COMPRESSION_TYPE).map(String::as_str) {
            None | Some("producer") => None,
            Some("gzip") => Some(Compression::Gzip),
            Some("snappy") => Some(Compression::Snappy),
            Some("lz4") => Some(Compression::Lz4),
            Some("zstd") => Some(Compression::Zstd),
            Some(_) => Some(Compression::None), // "uncompressed"
        }
    }

    /// `message.timestamp.type=LogAppendTime`.
    pub fn log_append_time(&self) -> bool {
        self.overrides
            .get(MESSAGE_TIMESTAMP_TYPE)
            .is_some_and(|v| v == "LogAppendTime")
    }

    /// `cleanup.policy` includes `compact`.
    pub fn compacts(&self) -> bool {
        self.policy().any(|p| p == "compact")
    }

    /// `cleanup.policy` includes `delete` (the default).
    pub fn deletes(&self) -> bool {
        self.policy().any(|p| p == "delete")
    }

    fn policy(&self) -> impl Iterator<Item = &str> {
        self.overrides
            .get(CLEANUP_POLICY)
            .map_or("delete", String::as_str)
            .split(',')
            .map(str::trim)
    }

    pub fn i64_or(&self, name: &str, default: i64) -> i64 {
        self.overrides
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Every config of the topic: (name, value, is it set on the topic).
    pub fn describe(&self, defaults: &LogDefaults) -> Vec<(&'static str, String, bool)> {
        KNOWN
            .iter()
            .map(
                |(name, _, static_default)| match self.overrides.get(*name) {
                    Some(v) => (*name, v.clone(), true),
                    None => (*name, broker_default(name, defaults, static_default), false),
                },
            )
            .collect()
    }
}

fn broker_default(name: &str, d: &LogDefaults, static_default: &str) -> String {
    match name {
        SEGMENT_BYTES => d.segment_bytes.to_string(),
        SEGMENT_MS => d.segment_ms.to_string(),
        INDEX_INTERVAL_BYTES => d.index_interval_bytes.to_string(),
        RETENTION_MS => d.retention_ms.to_string(),
        RETENTION_BYTES => d.retention_bytes.to_string(),
        MAX_MESSAGE_BYTES => d.max_message_bytes.to_string(),
        SEGMENT_INDEX_BYTES => d.index_max_bytes.to_string(),
        FLUSH_MESSAGES => d.flush_messages.to_string(),
        FLUSH_MS => d.flush_ms.to_string(),
        DELETE_RETENTION_MS => d.delete_retention_ms.to_string(),
        _ => static_default.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_ecommerce_topic_configs() {
        let c = TopicConfigs::validate(&map(&[
            ("compression.type", "lz4"),
            ("min.insync.replicas", "2"),
            ("retention.ms", "2592000000"),
            ("cleanup.policy", "compact,delete"),
        ]))
        .expect("valid");
        assert_eq!(c.i64_or(RETENTION_MS, 0), 2_592_000_000);
    }

    #[test]
    fn rejects_unknown_names_and_bad_values() {
        let err = TopicConfigs::validate(&map(&[("retention.mss", "1")])).expect_err("unknown");
        assert!(err.contains("retention.mss"), "{err}");
        assert!(TopicConfigs::validate(&map(&[("retention.ms", "soon")])).is_err());
        assert!(TopicConfigs::validate(&map(&[("compression.type", "brotli")])).is_err());
        assert!(TopicConfigs::validate(&map(&[("min.insync.replicas", "0")])).is_err());
    }
}
