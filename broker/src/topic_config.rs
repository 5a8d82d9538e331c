//! Topic-level configs under Kafka's names: which keys exist, how their values are
//! checked, and their defaults.

use std::collections::BTreeMap;

use sluice_protocol::batch::Compression;

use crate::dynamic_config::BrokerView;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A 64-bit integer of at least this value.
    Long(i64),
    /// A 32-bit integer of at least this value.
    Int(i32),
    Bool,
    OneOf(&'static [&'static str]),
    /// A comma-separated list drawn from these values.
    ListOf(&'static [&'static str]),
    Ratio,
    /// A free-form comma-separated list.
    List,
}

impl Kind {
    /// Kafka's `ConfigType` code (DescribeConfigs v3+).
    pub(crate) fn type_code(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::OneOf(_) => 2,
            Kind::Int(_) => 3,
            Kind::Long(_) => 5,
            Kind::Ratio => 6,
            Kind::ListOf(_) | Kind::List => 7,
        }
    }

    /// Whether IncrementalAlterConfigs may APPEND to or SUBTRACT from it.
    pub(crate) fn is_list(self) -> bool {
        matches!(self, Kind::ListOf(_) | Kind::List)
    }
}

/// Where a config's value comes from (Kafka's `ConfigSource` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Topic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// One topic config Sluice accepts.
#[derive(Debug)]
pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// The default when neither the topic nor the broker sets it.
    pub default: &'static str,
    /// The broker config that is this config's default, if any.
    pub broker: Option<&'static str>,
    pub doc: &'static str,
}

const fn key(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    broker: Option<&'static str>,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        broker,
        doc,
    }
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Sluice accepts, in name order.
pub(crate) const KNOWN: &[Key] = &[
    key(CLEANUP_POLICY, Kind::ListOf(&["delete", "compact"]), "delete", Some("log.cleanup.policy"),
        "delete: old segments are removed by retention.ms and retention.bytes; compact: only the latest record of each key is kept. Both may be given."),
    key(COMPRESSION_TYPE, Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]), "producer", Some("compression.type"),
        "Codec of stored batches: producer keeps what the producer sent, the others recompress batches on append."),
    key(DELETE_RETENTION_MS, Kind::Long(0), "86400000", Some("log.cleaner.delete.retention.ms"),
        "How long a compacted topic keeps a key's delete marker (tombstone) after compaction reached it."),
    key("file.delete.delay.ms", Kind::Long(0), "60000", Some("log.segment.delete.delay.ms"),
        "Wait before a deleted segment's file is removed. Accepted for compatibility; Sluice does not act on it."),
    key(FLUSH_MESSAGES, Kind::Long(1), LONG_MAX, Some("log.flush.interval.messages"),
        "Sync the log once this many records are not yet on disk (acks=all always waits for the sync)."),
    key(FLUSH_MS, Kind::Long(0), LONG_MAX, Some("log.flush.interval.ms"),
        "Sync the log once its oldest unsynced record is this old."),
    key("follower.replication.throttled.replicas", Kind::List, "", None,
        "Replicas throttled on the follower side. Accepted for compatibility; Sluice does not act on it."),
    key(INDEX_INTERVAL_BYTES, Kind::Int(0), "4096", Some("log.index.interval.bytes"),
        "Bytes of log between two offset index entries (segments created after a change)."),
    key("leader.replication.throttled.replicas", Kind::List, "", None,
        "Replicas throttled on the leader side. Accepted for compatibility; Sluice does not act on it."),
    key("local.retention.bytes", Kind::Long(-2), "-2", Some("log.local.retention.bytes"),
        "Local retention with tiered storage. Accepted for compatibility; Sluice does not act on it."),
    key("local.retention.ms", Kind::Long(-2), "-2", Some("log.local.retention.ms"),
        "Local retention with tiered storage. Accepted for compatibility; Sluice does not act on it."),
    key("max.compaction.lag.ms", Kind::Long(1), LONG_MAX, Some("log.cleaner.max.compaction.lag.ms"),
        "Longest a record may stay uncompacted. Accepted for compatibility; Sluice does not act on it."),
    key(MAX_MESSAGE_BYTES, Kind::Int(0), "1048588", Some("message.max.bytes"),
        "Largest record batch (after compression) the topic accepts; larger ones get MESSAGE_TOO_LARGE."),
    key("message.downconversion.enable", Kind::Bool, "true", Some("log.message.downconversion.enable"),
        "Down-conversion for old consumers. Accepted for compatibility; Sluice does not act on it."),
    key("message.timestamp.after.max.ms", Kind::Long(0), "3600000", Some("log.message.timestamp.after.max.ms"),
        "Largest allowed lead of a record timestamp over the broker clock. Accepted for compatibility; Sluice does not act on it."),
    key("message.timestamp.before.max.ms", Kind::Long(0), LONG_MAX, Some("log.message.timestamp.before.max.ms"),
        "Largest allowed lag of a record timestamp behind the broker clock. Accepted for compatibility; Sluice does not act on it."),
    key("message.timestamp.difference.max.ms", Kind::Long(0), LONG_MAX, Some("log.message.timestamp.difference.max.ms"),
        "Largest allowed difference between a record timestamp and the broker clock. Accepted for compatibility; Sluice does not act on it."),
    key(MESSAGE_TIMESTAMP_TYPE, Kind::OneOf(&["CreateTime", "LogAppendTime"]), "CreateTime", Some("log.message.timestamp.type"),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch with the broker's clock on append."),
    key("min.cleanable.dirty.ratio", Kind::Ratio, "0.5", Some("log.cleaner.min.cleanable.ratio"),
        "Share of uncompacted log that makes compaction run. Accepted for compatibility; Sluice does not act on it."),
    key("min.compaction.lag.ms", Kind::Long(0), "0", Some("log.cleaner.min.compaction.lag.ms"),
        "Shortest time a record stays uncompacted. Accepted for compatibility; Sluice does not act on it."),
    key(MIN_INSYNC_REPLICAS, Kind::Int(1), "1", Some("min.insync.replicas"),
        "Fewest in-sync replicas for an acks=all produce; with fewer it gets NOT_ENOUGH_REPLICAS."),
    key("preallocate", Kind::Bool, "false", Some("log.preallocate"),
        "Preallocate segment files. Accepted for compatibility; Sluice does not act on it."),
    key("remote.storage.enable", Kind::OneOf(&["false"]), "false", None,
        "Tiered storage; Sluice has none, so only false is accepted."),
    key(RETENTION_BYTES, Kind::Long(-1), "-1", Some("log.retention.bytes"),
        "Largest size of each partition's log before its oldest segments are deleted; -1: no limit."),
    key(RETENTION_MS, Kind::Long(-1), "604800000", Some("log.retention.ms"),
        "How long a segment is kept after its newest record; -1: forever."),
    key(SEGMENT_BYTES, Kind::Int(14), "1073741824", Some("log.segment.bytes"),
        "Size at which the active segment rolls."),
    key(SEGMENT_INDEX_BYTES, Kind::Int(12), "10485760", Some("log.index.size.max.bytes"),
        "Size of each segment's offset index; a full index rolls the segment (segments created after a change)."),
    key("segment.jitter.ms", Kind::Long(0), "0", Some("log.roll.jitter.ms"),
        "Random jitter of segment rolls. Accepted for compatibility; Sluice does not act on it."),
    key(SEGMENT_MS, Kind::Long(1), "604800000", Some("log.roll.ms"),
        "Age of the active segment's first record at which the segment rolls."),
    key("unclean.leader.election.enable", Kind::OneOf(&["false"]), "false", Some("unclean.leader.election.enable"),
        "Electing an out-of-sync replica loses acknowledged data; Sluice never does, so only false is accepted."),
];

/// The topic config named `name`.
pub(crate) fn known(name: &str) -> Option<&'static Key> {
    KNOWN.iter().find(|k| k.name == name)
}

/// Longest config value accepted (every value is kept in the metadata).
pub const VALUE_BYTES_MAX: usize = 16 << 10;

/// Checks one value against its key's type: the error names both.
pub(crate) fn check(name: &str, kind: Kind, value: &str) -> Result<(), String> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(format!(
            "value of configuration {name} is {} bytes long; at most {VALUE_BYTES_MAX} are accepted",
            value.len()
        ));
    }
    let ok = match kind {
        Kind::Long(min) => value.parse::<i64>().is_ok_and(|v| v >= min),
        Kind::Int(min) => value.parse::<i32>().is_ok_and(|v| v >= min),
        Kind::Bool => matches!(value, "true" | "false"),
        Kind::OneOf(allowed) => allowed.contains(&value),
        Kind::ListOf(allowed) => value
            .split(',')
            .map(str::trim)
            .all(|v| allowed.contains(&v)),
        Kind::Ratio => value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v)),
        Kind::List => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::Long(min) => format!("an integer >= {min}"),
        Kind::Int(min) => format!("a 32-bit integer >= {min}"),
        Kind::Bool => "true or false".to_string(),
        Kind::OneOf(a) | Kind::ListOf(a) => format!("one of {}", a.join(", ")),
        Kind::Ratio => "a number between 0 and 1".to_string(),
        Kind::List => String::new(),
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
            let Some(key) = known(name) else {
                return Err(format!(
                    "unknown topic config name: {name} (given the value {value:?})"
                ));
            };
            check(name, key.kind, value)?;
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

    /// Every config of the topic, each with its synonyms (the topic's own value,
    /// then the broker's layers), the value in force first.
    pub fn describe(&self, broker: &BrokerView<'_>) -> Vec<Described> {
        KNOWN
            .iter()
            .map(|key| {
                let mut synonyms = Vec::new();
                if let Some(v) = self.overrides.get(key.name) {
                    synonyms.push(Synonym {
                        name: key.name,
                        value: v.clone(),
                        source: Source::Topic,
                    });
                }
                match key.broker {
                    Some(broker_key) => synonyms.extend(broker.layers(broker_key, key.default)),
                    None => synonyms.push(Synonym {
                        name: key.name,
                        value: key.default.to_string(),
                        source: Source::Default,
                    }),
                }
                Described { key, synonyms }
            })
            .collect()
    }
}

/// One config as DescribeConfigs shows it.
#[derive(Debug)]
pub struct Described {
    pub(crate) key: &'static Key,
    /// Every layer that sets it, most specific first: the first is in force.
    pub synonyms: Vec<Synonym>,
}

impl Described {
    pub fn name(&self) -> &'static str {
        self.key.name
    }

    /// The value in force and where it comes from.
    pub fn value(&self) -> (&str, Source) {
        self.synonyms
            .first()
            .map_or((self.key.default, Source::Default), |s| {
                (s.value.as_str(), s.source)
            })
    }
}

/// A value a config takes from one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: &'static str,
    pub value: String,
    pub source: Source,
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
