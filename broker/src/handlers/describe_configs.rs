//! DescribeConfigs (key 32): topic and broker configs with their sources, and
//! from v3 their types, synonyms (every layer that sets them) and documentation.
//! A broker resource names this broker (its settings, read-only ones included)
//! or is empty (the cluster-wide dynamic defaults).

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::{code, str_bytes};
use crate::dynamic_config::{self, CLUSTER_DEFAULT};
use crate::topic_config::{Source, Synonym, KNOWN};
use crate::Broker;

/// Resources one request may ask about; later ones get INVALID_REQUEST (each
/// described resource costs some 40 entries of response).
pub(crate) const RESOURCES_MAX: usize = 10_000;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigType` codes of the read-only broker settings listed.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_INT: i8 = 3;
const TYPE_SHORT: i8 = 4;
const TYPE_LONG: i8 = 5;

/// What the request asks each entry to carry.
#[derive(Clone, Copy)]
struct Detail {
    synonyms: bool,
    documentation: bool,
}

/// One config entry before encoding.
struct Entry {
    name: &'static str,
    synonyms: Vec<Synonym>,
    read_only: bool,
    config_type: i8,
    doc: &'static str,
}

impl Entry {
    fn encode(self, detail: Detail) -> DescribeConfigsResourceResult {
        let (value, source) = self
            .synonyms
            .first()
            .map_or((String::new(), Source::Default), |s| {
                (s.value.clone(), s.source)
            });
        let mut out = DescribeConfigsResourceResult::default()
            .with_name(str_bytes(self.name))
            .with_value(Some(str_bytes(value)))
            .with_read_only(self.read_only)
            .with_config_source(source as i8)
            .with_config_type(self.config_type);
        if detail.synonyms {
            out = out.with_synonyms(
                self.synonyms
                    .into_iter()
                    .map(|s| {
                        DescribeConfigsSynonym::default()
                            .with_name(str_bytes(s.name))
                            .with_value(Some(str_bytes(s.value)))
                            .with_source(s.source as i8)
                    })
                    .collect(),
            );
        }
        if detail.documentation {
            out = out.with_documentation(Some(str_bytes(self.doc)));
        }
        out
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let detail = Detail {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let results = request
        .resources
        .into_iter()
        .enumerate()
        .map(|(index, res)| {
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let name = res.resource_name.as_str();
            let entries = match res.resource_type {
                _ if index >= RESOURCES_MAX => Err((
                    ResponseError::InvalidRequest,
                    format!("more than {RESOURCES_MAX} resources in one request"),
                )),
                RESOURCE_TOPIC => topic_entries(broker, name),
                RESOURCE_BROKER => broker_entries(broker, name),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| wanted(e.name))
                        .map(|e| e.encode(detail))
                        .collect(),
                ),
                Err((error, message)) => result
                    .with_error_code(code(error))
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Refusal = (ResponseError, String);

fn topic_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, Refusal> {
    let topic = broker.cluster.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    let described = broker
        .cluster
        .with_broker_view(|view| topic.configs.describe(view));
    Ok(described
        .into_iter()
        .map(|d| Entry {
            name: d.name(),
            read_only: false,
            config_type: d.key.kind.type_code(),
            doc: d.key.doc,
            synonyms: d.synonyms,
        })
        .collect())
}

/// Checks a broker resource name as Kafka does: this broker's id, or empty for
/// the cluster default. Returns whether it is the cluster default.
pub(crate) fn broker_resource(broker: &Broker, name: &str) -> Result<bool, Refusal> {
    if name == CLUSTER_DEFAULT {
        return Ok(true);
    }
    if name.parse::<i32>().ok() == Some(broker.node_id()) {
        return Ok(false);
    }
    Err((
        ResponseError::InvalidRequest,
        format!(
            "unexpected broker id {name:?}: expected {} (this broker) or an empty name (the cluster default)",
            broker.node_id()
        ),
    ))
}

fn broker_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, Refusal> {
    let cluster_default = broker_resource(broker, name)?;
    let overrides = broker.cluster.broker_overrides();
    if cluster_default {
        // The cluster-wide dynamic values, as Kafka lists them.
        let set = overrides.get(CLUSTER_DEFAULT).cloned().unwrap_or_default();
        return Ok(set
            .into_iter()
            .filter_map(|(key, value)| {
                let name = dynamic_config::dynamic_names().find(|n| *n == key)?;
                let topic_key = dynamic_config::dynamic_key(name)?;
                Some(Entry {
                    name,
                    synonyms: vec![Synonym {
                        name,
                        value,
                        source: Source::DynamicDefaultBroker,
                    }],
                    read_only: false,
                    config_type: topic_key.kind.type_code(),
                    doc: topic_key.doc,
                })
            })
            .collect());
    }
    let c = &broker.config;
    let fixed = |name: &'static str, value: String, config_type: i8, doc: &'static str| Entry {
        name,
        synonyms: vec![Synonym {
            name,
            value,
            source: Source::StaticBroker,
        }],
        read_only: true,
        config_type,
        doc,
    };
    let mut entries = vec![
        fixed("broker.id", c.node_id.to_string(), TYPE_INT, "This broker's id."),
        fixed(
            "auto.create.topics.enable",
            c.auto_create_topics_enable.to_string(),
            TYPE_BOOLEAN,
            "Whether Metadata and Produce create a topic they name that does not exist.",
        ),
        fixed(
            "num.partitions",
            c.num_partitions.to_string(),
            TYPE_INT,
            "Partitions of a topic created without a partition count.",
        ),
        fixed(
            "default.replication.factor",
            broker.cluster.default_replication_factor().to_string(),
            TYPE_SHORT,
            "Replicas of a topic created without a replication factor, capped to the brokers there are.",
        ),
        fixed(
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
            TYPE_INT,
            "Largest request frame accepted; a larger one closes its connection.",
        ),
        fixed(
            "log.retention.check.interval.ms",
            c.log.retention_check_interval_ms.to_string(),
            TYPE_LONG,
            "How often retention runs.",
        ),
    ];
    broker.cluster.with_broker_view(|view| {
        for key in KNOWN {
            let Some(name) = key.broker else { continue };
            let dynamic = dynamic_config::dynamic_key(name).is_some();
            entries.push(Entry {
                name,
                synonyms: view.layers(name, key.default),
                read_only: !dynamic,
                config_type: key.kind.type_code(),
                doc: key.doc,
            });
        }
    });
    entries.sort_by_key(|e| e.name);
    entries.dedup_by_key(|e| e.name);
    Ok(entries)
}
