//! The bootstrap topics: a declarative file (`config/topics.toml`, compiled in
//! as the default) naming the topics that must exist, their partition counts,
//! replication factors and configs, and a dead-letter topic `{topic}.dlq` beside
//! each. [`TopicsFile::parse`] checks everything before the broker starts; a
//! mistake stops start-up naming the file, the topic and the key.
//! [`reconcile`] makes the broker or cluster match the file.

pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::cluster::{validate_topic_name, PARTITIONS_MAX};
use crate::topic_config::{self, TopicConfigs, RETENTION_MS};

/// The shipped bootstrap file.
pub const DEFAULT_TOPICS_TOML: &str = include_str!("../../../config/topics.toml");
/// How the shipped file is named in messages.
pub const DEFAULT_TOPICS_PATH: &str = "config/topics.toml (built in)";
/// Suffix of dead-letter topics.
pub const DLQ_SUFFIX: &str = ".dlq";

/// A mistake in a bootstrap file.
#[derive(Debug, Error)]
#[error("{file}: {}{key}: {message}", topic.as_ref().map(|t| format!("topic {t}: ")).unwrap_or_default())]
pub struct BootstrapError {
    pub file: String,
    pub topic: Option<String>,
    pub key: String,
    pub message: String,
}

/// One topic the file asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// For a dead-letter topic: the topic whose failed messages it holds.
    pub dlq_of: Option<String>,
}

/// A checked bootstrap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicsFile {
    /// Where it came from, for messages.
    pub source: String,
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    topics: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDefaults {
    replication_factor: i16,
    partitions: i32,
    dlq: bool,
    dlq_partitions: i32,
    configs: BTreeMap<String, toml::Value>,
    dlq_configs: BTreeMap<String, toml::Value>,
}

impl Default for RawDefaults {
    fn default() -> Self {
        RawDefaults {
            replication_factor: 3,
            partitions: 1,
            dlq: true,
            dlq_partitions: 1,
            configs: BTreeMap::new(),
            dlq_configs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    names: Vec<String>,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    dlq: Option<bool>,
    dlq_partitions: Option<i32>,
    #[serde(default)]
    configs: BTreeMap<String, toml::Value>,
    #[serde(default)]
    dlq_configs: BTreeMap<String, toml::Value>,
}

impl TopicsFile {
    /// The shipped file.
    pub fn built_in() -> Result<Self, BootstrapError> {
        Self::parse(DEFAULT_TOPICS_TOML, DEFAULT_TOPICS_PATH)
    }

    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, BootstrapError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| BootstrapError {
            file: source.clone(),
            topic: None,
            key: "(file)".into(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, &source)
    }

    /// Parses and checks a bootstrap file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, BootstrapError> {
        let fail = |topic: Option<&str>, key: &str, message: String| BootstrapError {
            file: source.to_string(),
            topic: topic.map(str::to_string),
            key: key.to_string(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            fail(
                None,
                &format!("line {line}"),
                e.message().trim().to_string(),
            )
        })?;
        let d = &raw.defaults;
        let defaults = strings(&d.configs)
            .map_err(|(k, m)| fail(None, &format!("defaults.configs.{k}"), m))?;
        let dlq_defaults = strings(&d.dlq_configs)
            .map_err(|(k, m)| fail(None, &format!("defaults.dlq_configs.{k}"), m))?;
        let mut topics = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, entry) in raw.topics.iter().enumerate() {
            if entry.names.is_empty() {
                return Err(fail(
                    None,
                    &format!("topics[{i}].names"),
                    "names no topic".into(),
                ));
            }
            let mut configs = defaults.clone();
            configs.extend(strings(&entry.configs).map_err(|(k, m)| {
                fail(
                    entry.names.first().map(String::as_str),
                    &format!("configs.{k}"),
                    m,
                )
            })?);
            let mut dlq_own = dlq_defaults.clone();
            dlq_own.extend(strings(&entry.dlq_configs).map_err(|(k, m)| {
                fail(
                    entry.names.first().map(String::as_str),
                    &format!("dlq_configs.{k}"),
                    m,
                )
            })?);
            // Unless the file says, a dead-letter topic keeps twice as long.
            if !dlq_own.contains_key(RETENTION_MS) {
                let kept = retention(&configs);
                let doubled = if kept < 0 { -1 } else { kept.saturating_mul(2) };
                dlq_own.insert(RETENTION_MS.to_string(), doubled.to_string());
            }
            let mut dlq_configs = configs.clone();
            dlq_configs.extend(dlq_own);
            let partitions = entry.partitions.unwrap_or(d.partitions);
            let dlq_partitions = entry.dlq_partitions.unwrap_or(d.dlq_partitions);
            let rf = entry.replication_factor.unwrap_or(d.replication_factor);
            for name in &entry.names {
                let topic = Some(name.as_str());
                let spec = TopicSpec {
                    name: name.clone(),
                    partitions,
                    replication_factor: rf,
                    configs: configs.clone(),
                    dlq_of: None,
                };
                check(&spec, &fail, "")?;
                let mut specs = vec![spec];
                if entry.dlq.unwrap_or(d.dlq) {
                    let dlq = TopicSpec {
                        name: format!("{name}{DLQ_SUFFIX}"),
                        partitions: dlq_partitions,
                        replication_factor: rf,
                        configs: dlq_configs.clone(),
                        dlq_of: Some(name.clone()),
                    };
                    check(&dlq, &fail, "dlq_")?;
                    let (kept, dlq_kept) = (retention(&configs), retention(&dlq_configs));
                    if !outlives(dlq_kept, kept) {
                        return Err(fail(
                            topic,
                            &format!("dlq_configs.{RETENTION_MS}"),
                            format!(
                                "the dead-letter topic must keep messages longer than the topic: {dlq_kept} ms is not longer than {kept} ms (-1 is forever)"
                            ),
                        ));
                    }
                    specs.push(dlq);
                }
                for spec in specs {
                    if !seen.insert(collision_key(&spec.name)) {
                        return Err(fail(
                            Some(&spec.name),
                            "names",
                            "named twice (a listed topic, or the dead-letter topic of another; '.' and '_' count alike)".into(),
                        ));
                    }
                    topics.push(spec);
                }
            }
        }
        Ok(TopicsFile {
            source: source.to_string(),
            topics,
        })
    }
}

/// Checks one topic of the file; `prefix` is `dlq_` for a dead-letter topic's keys.
fn check(
    spec: &TopicSpec,
    fail: &impl Fn(Option<&str>, &str, String) -> BootstrapError,
    prefix: &str,
) -> Result<(), BootstrapError> {
    let topic = Some(spec.name.as_str());
    validate_topic_name(&spec.name).map_err(|e| fail(topic, "names", e.to_string()))?;
    if !(1..=PARTITIONS_MAX).contains(&spec.partitions) {
        return Err(fail(
            topic,
            &format!("{prefix}partitions"),
            format!("{} is not between 1 and {PARTITIONS_MAX}", spec.partitions),
        ));
    }
    if spec.replication_factor < 1 {
        return Err(fail(
            topic,
            "replication_factor",
            format!("{} is below 1", spec.replication_factor),
        ));
    }
    if let Err(message) = TopicConfigs::validate(&spec.configs) {
        let key = spec
            .configs
            .keys()
            .find(|k| message.contains(k.as_str()))
            .map_or_else(
                || format!("{prefix}configs"),
                |k| format!("{prefix}configs.{k}"),
            );
        return Err(fail(topic, &key, message));
    }
    Ok(())
}

/// Config values as Kafka writes them: strings, numbers, booleans, and lists
/// joined with commas.
fn strings(
    raw: &BTreeMap<String, toml::Value>,
) -> Result<BTreeMap<String, String>, (String, String)> {
    raw.iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or(()))
                    .collect::<Result<Vec<_>, ()>>()
                    .map_err(|()| (k.clone(), "a list holds strings only".to_string()))?
                    .join(","),
                other => {
                    return Err((
                        k.clone(),
                        format!("a {} is not a config value", other.type_str()),
                    ))
                }
            };
            Ok((k.clone(), text))
        })
        .collect()
}

/// `retention.ms` of a topic's configs (the built-in default when unset).
fn retention(configs: &BTreeMap<String, String>) -> i64 {
    let default = topic_config::known(RETENTION_MS).map_or("604800000", |k| k.default);
    configs
        .get(RETENTION_MS)
        .map_or(default, String::as_str)
        .parse()
        .unwrap_or(-1)
}

/// Whether retention `a` keeps messages longer than retention `b` (-1: forever).
fn outlives(a: i64, b: i64) -> bool {
    match (a, b) {
        (-1, _) => true,
        (_, -1) => false,
        (a, b) => a > b,
    }
}

fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Where `sluice serve` takes its bootstrap topics from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    BuiltIn,
    File(PathBuf),
    Off,
}

impl Bootstrap {
    /// The checked file, or none when bootstrap is off.
    pub fn load(&self) -> Result<Option<TopicsFile>, BootstrapError> {
        match self {
            Bootstrap::BuiltIn => TopicsFile::built_in().map(Some),
            Bootstrap::File(path) => TopicsFile::load(path).map(Some),
            Bootstrap::Off => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_holds_every_domain_with_its_dlq() {
        let file = TopicsFile::built_in().expect("shipped file is valid");
        let names: BTreeSet<&str> = file.topics.iter().map(|t| t.name.as_str()).collect();
        for domain in [
            "orders",
            "payments",
            "customers",
            "products",
            "inventory",
            "delivery",
            "notifications",
        ] {
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with(&format!("business.{domain}."))),
                "{domain}"
            );
        }
        assert!(names.iter().any(|n| n.starts_with("audit.")));
        for t in file.topics.iter().filter(|t| t.dlq_of.is_none()) {
            let dlq = format!("{}.dlq", t.name);
            let d = file
                .topics
                .iter()
                .find(|x| x.name == dlq)
                .unwrap_or_else(|| panic!("{dlq} missing"));
            assert!(
                outlives(retention(&d.configs), retention(&t.configs)),
                "{dlq}"
            );
            assert_eq!(t.replication_factor, 3);
            assert_eq!(t.configs["min.insync.replicas"], "2");
            assert_eq!(t.configs["compression.type"], "lz4");
        }
        let orders = file
            .topics
            .iter()
            .find(|t| t.name == "business.orders.created")
            .expect("orders");
        assert_eq!(orders.partitions, 20);
        let audit = file
            .topics
            .iter()
            .find(|t| t.name == "audit.orders.changed")
            .expect("audit");
        assert_eq!(audit.configs["retention.ms"], "2592000000");
    }

    fn error(text: &str) -> String {
        TopicsFile::parse(text, "t.toml")
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn mistakes_name_the_file_the_topic_and_the_key() {
        let e = error("[[topics]]\nnames = [\"a.b\"]\nconfigs = { \"retention.ms\" = \"soon\" }\n");
        assert!(
            e.starts_with("t.toml: topic a.b: configs.retention.ms:"),
            "{e}"
        );
        let e = error("[[topics]]\nnames = [\"a.b\"]\npartitions = 0\n");
        assert!(e.contains("topic a.b: partitions:"), "{e}");
        let e = error("[[topics]]\nnames = [\"a b\"]\n");
        assert!(e.contains("topic a b: names:"), "{e}");
        let e = error("[[topics]]\nnames = [\"a.b\"]\nretention = 5\n");
        assert!(
            e.contains("t.toml: line 3: unknown field `retention`"),
            "{e}"
        );
        let e = error(
            "[[topics]]\nnames = [\"a.b\"]\nconfigs = { \"retention.ms\" = 100 }\ndlq_configs = { \"retention.ms\" = 50 }\n",
        );
        assert!(e.contains("topic a.b: dlq_configs.retention.ms:"), "{e}");
        let e = error("[[topics]]\nnames = [\"a.b\", \"a_b\"]\n");
        assert!(e.contains("named twice"), "{e}");
        let e = error("[[topics]]\nnames = [\"a\", \"a.dlq\"]\n");
        assert!(e.contains("topic a.dlq: names: named twice"), "{e}");
    }

    #[test]
    fn a_dlq_keeps_twice_as_long_unless_the_file_says() {
        let file = TopicsFile::parse(
            "[[topics]]\nnames = [\"x\"]\nconfigs = { \"retention.ms\" = 1000 }\n",
            "t.toml",
        )
        .expect("valid");
        assert_eq!(file.topics[1].name, "x.dlq");
        assert_eq!(file.topics[1].configs["retention.ms"], "2000");
        assert_eq!(file.topics[1].dlq_of.as_deref(), Some("x"));
    }

    #[test]
    fn entries_override_defaults_and_lists_join() {
        let file = TopicsFile::parse(
            "[defaults]\npartitions = 4\n[defaults.configs]\n\"retention.ms\" = 1000\n[[topics]]\nnames = [\"x\"]\ndlq = false\nconfigs = { \"cleanup.policy\" = [\"compact\", \"delete\"] }\n",
            "t.toml",
        )
        .expect("valid");
        assert_eq!(file.topics.len(), 1);
        let x = &file.topics[0];
        assert_eq!(x.partitions, 4);
        assert_eq!(x.configs["retention.ms"], "1000");
        assert_eq!(x.configs["cleanup.policy"], "compact,delete");
    }
}
