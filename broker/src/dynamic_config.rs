//! Broker configs that AlterConfigs changes at runtime: the log defaults that
//! every topic without its own value inherits. As in Kafka, each is set for one
//! broker (resource name = its id) or for all of them (the empty resource name);
//! a broker's own value wins over the cluster-wide one, which wins over the
//! broker's config file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::LogDefaults;
use crate::topic_config::{self, Source, Synonym};

/// Resource name of the cluster-wide default.
pub const CLUSTER_DEFAULT: &str = "";

/// Each dynamic broker config and the topic config it is the default of.
const DYNAMIC: &[(&str, &str)] = &[
    (
        "log.cleaner.delete.retention.ms",
        topic_config::DELETE_RETENTION_MS,
    ),
    ("log.flush.interval.messages", topic_config::FLUSH_MESSAGES),
    ("log.flush.interval.ms", topic_config::FLUSH_MS),
    (
        "log.index.interval.bytes",
        topic_config::INDEX_INTERVAL_BYTES,
    ),
    (
        "log.index.size.max.bytes",
        topic_config::SEGMENT_INDEX_BYTES,
    ),
    ("log.retention.bytes", topic_config::RETENTION_BYTES),
    ("log.retention.ms", topic_config::RETENTION_MS),
    ("log.roll.ms", topic_config::SEGMENT_MS),
    ("log.segment.bytes", topic_config::SEGMENT_BYTES),
    ("message.max.bytes", topic_config::MAX_MESSAGE_BYTES),
];

/// The dynamic broker config `name`, with its topic config.
pub(crate) fn dynamic_key(name: &str) -> Option<&'static topic_config::Key> {
    DYNAMIC
        .iter()
        .find(|(b, _)| *b == name)
        .and_then(|(_, t)| topic_config::known(t))
}

/// Names of the dynamic broker configs, in name order.
pub(crate) fn dynamic_names() -> impl Iterator<Item = &'static str> {
    DYNAMIC.iter().map(|(b, _)| *b)
}

/// The value of a dynamic broker config in `d`.
fn read(d: &LogDefaults, name: &str) -> Option<i64> {
    let v = match name {
        "log.cleaner.delete.retention.ms" => d.delete_retention_ms,
        "log.flush.interval.messages" => d.flush_messages,
        "log.flush.interval.ms" => d.flush_ms,
        "log.index.interval.bytes" => d.index_interval_bytes as i64,
        "log.index.size.max.bytes" => d.index_max_bytes as i64,
        "log.retention.bytes" => d.retention_bytes,
        "log.retention.ms" => d.retention_ms,
        "log.roll.ms" => d.segment_ms,
        "log.segment.bytes" => d.segment_bytes as i64,
        "message.max.bytes" => d.max_message_bytes as i64,
        _ => return None,
    };
    Some(v)
}

/// Sets a dynamic broker config in `d` (the value was validated: non-negative
/// where the field is unsigned).
fn write(d: &mut LogDefaults, name: &str, v: i64) {
    let unsigned = u64::try_from(v).unwrap_or(0);
    match name {
        "log.cleaner.delete.retention.ms" => d.delete_retention_ms = v,
        "log.flush.interval.messages" => d.flush_messages = v,
        "log.flush.interval.ms" => d.flush_ms = v,
        "log.index.interval.bytes" => d.index_interval_bytes = unsigned,
        "log.index.size.max.bytes" => d.index_max_bytes = unsigned,
        "log.retention.bytes" => d.retention_bytes = v,
        "log.retention.ms" => d.retention_ms = v,
        "log.roll.ms" => d.segment_ms = v,
        "log.segment.bytes" => d.segment_bytes = unsigned,
        "message.max.bytes" => d.max_message_bytes = usize::try_from(v).unwrap_or(0),
        _ => {}
    }
}

/// Checks a broker resource's dynamic configs: every name is a dynamic broker
/// config and every value fits its type.
pub fn validate(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in configs {
        let Some(key) = dynamic_key(name) else {
            return Err(format!(
                "broker config {name} (given the value {value:?}) cannot be changed at runtime; dynamic broker configs are: {}",
                dynamic_names().collect::<Vec<_>>().join(", ")
            ));
        };
        topic_config::check(name, key.kind, value)?;
    }
    Ok(())
}

/// The dynamic broker configs of the cluster, by resource name
/// ([`CLUSTER_DEFAULT`] or a broker id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrokerOverrides(BTreeMap<String, BTreeMap<String, String>>);

impl BrokerOverrides {
    /// The configs set on one resource.
    pub fn get(&self, resource: &str) -> Option<&BTreeMap<String, String>> {
        self.0.get(resource)
    }

    /// Replaces the configs of one resource (none: forgets it).
    pub fn set(&mut self, resource: &str, configs: BTreeMap<String, String>) {
        if configs.is_empty() {
            self.0.remove(resource);
        } else {
            self.0.insert(resource.to_string(), configs);
        }
    }

    /// What broker `node` sees: its config file's log defaults under the
    /// cluster-wide and its own dynamic values.
    pub fn view<'a>(&'a self, statics: &'a LogDefaults, node: i32) -> BrokerView<'a> {
        BrokerView {
            statics,
            cluster: self.get(CLUSTER_DEFAULT),
            own: self.get(&node.to_string()),
        }
    }
}

/// The layers of broker-level values one broker sees.
#[derive(Debug, Clone, Copy)]
pub struct BrokerView<'a> {
    statics: &'a LogDefaults,
    cluster: Option<&'a BTreeMap<String, String>>,
    own: Option<&'a BTreeMap<String, String>>,
}

impl BrokerView<'_> {
    /// The log defaults in force: each dynamic value replaces its field.
    pub fn log_defaults(&self) -> LogDefaults {
        let mut d = *self.statics;
        for layer in [self.cluster, self.own].into_iter().flatten() {
            for (name, value) in layer {
                if let Ok(v) = value.parse::<i64>() {
                    write(&mut d, name, v);
                }
            }
        }
        d
    }

    /// Every layer that sets broker config `name`, most specific first, ending
    /// with the built-in default (`default` when the config file has no field
    /// for it).
    pub fn layers(&self, name: &'static str, default: &str) -> Vec<Synonym> {
        let synonym = |value: String, source| Synonym {
            name,
            value,
            source,
        };
        let mut out = Vec::new();
        if let Some(v) = self.own.and_then(|m| m.get(name)) {
            out.push(synonym(v.clone(), Source::DynamicBroker));
        }
        if let Some(v) = self.cluster.and_then(|m| m.get(name)) {
            out.push(synonym(v.clone(), Source::DynamicDefaultBroker));
        }
        let built_in = read(&LogDefaults::default(), name);
        match (read(self.statics, name), built_in) {
            (Some(set), Some(built_in)) if set != built_in => {
                out.push(synonym(set.to_string(), Source::StaticBroker));
                out.push(synonym(built_in.to_string(), Source::Default));
            }
            (Some(set), _) => out.push(synonym(set.to_string(), Source::Default)),
            (None, _) => out.push(synonym(default.to_string(), Source::Default)),
        }
        out
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
    fn own_value_wins_over_cluster_default_over_file() {
        let statics = LogDefaults {
            retention_ms: 1000,
            ..LogDefaults::default()
        };
        let mut o = BrokerOverrides::default();
        o.set(
            CLUSTER_DEFAULT,
            map(&[("log.retention.ms", "2000"), ("log.segment.bytes", "4096")]),
        );
        o.set("2", map(&[("log.retention.ms", "3000")]));
        let mine = o.view(&statics, 2);
        assert_eq!(mine.log_defaults().retention_ms, 3000);
        assert_eq!(mine.log_defaults().segment_bytes, 4096);
        let sources: Vec<Source> = mine
            .layers("log.retention.ms", "")
            .iter()
            .map(|s| s.source)
            .collect();
        assert_eq!(
            sources,
            [
                Source::DynamicBroker,
                Source::DynamicDefaultBroker,
                Source::StaticBroker,
                Source::Default
            ]
        );
        assert_eq!(o.view(&statics, 1).log_defaults().retention_ms, 2000);
        o.set(CLUSTER_DEFAULT, BTreeMap::new());
        assert_eq!(o.view(&statics, 1).log_defaults().retention_ms, 1000);
    }

    #[test]
    fn only_dynamic_names_with_valid_values() {
        assert!(validate(&map(&[("log.retention.ms", "60000")])).is_ok());
        let e = validate(&map(&[("num.io.threads", "4")])).expect_err("static");
        assert!(e.contains("num.io.threads") && e.contains("\"4\""), "{e}");
        let e = validate(&map(&[("log.segment.bytes", "-5")])).expect_err("negative");
        assert!(e.contains("log.segment.bytes") && e.contains("-5"), "{e}");
    }

    #[test]
    fn every_dynamic_broker_config_is_the_default_of_a_topic_config() {
        for name in dynamic_names() {
            let key = dynamic_key(name).expect("topic config");
            assert_eq!(key.broker, Some(name), "{name}");
            assert!(read(&LogDefaults::default(), name).is_some(), "{name}");
        }
    }
}
