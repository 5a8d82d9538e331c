//! AlterConfigs (key 33) and IncrementalAlterConfigs (key 44): change a topic's
//! configs or the dynamic broker configs, live. AlterConfigs replaces the whole
//! set of a resource; IncrementalAlterConfigs sets, deletes, appends to or
//! subtracts from single keys. Each resource succeeds or fails on its own; a
//! refused one names the key and the value. On one broker the change is
//! persisted here; in a cluster it goes through the controller, and the answer
//! waits until every live broker applied it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::create_topics::topic_error_code;
use super::describe_configs::{broker_resource, RESOURCES_MAX, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{code, str_bytes};
use crate::cluster::TopicError;
use crate::controller::{Command, ControllerError};
use crate::dynamic_config::{self, CLUSTER_DEFAULT};
use crate::topic_config::{self, TopicConfigs};
use crate::Broker;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Refusal = (ResponseError, String);

fn invalid_request(message: String) -> Refusal {
    (ResponseError::InvalidRequest, message)
}

fn invalid_config(message: String) -> Refusal {
    (ResponseError::InvalidConfig, message)
}

/// The resource a change is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Topic(String),
    /// A broker id, or [`CLUSTER_DEFAULT`].
    Broker(String),
}

fn target(broker: &Broker, resource_type: i8, name: &StrBytes) -> Result<Target, Refusal> {
    let name = name.to_string();
    match resource_type {
        RESOURCE_TOPIC => Ok(Target::Topic(name)),
        RESOURCE_BROKER => {
            match broker.controller() {
                // Any broker of the cluster: the change goes through the controller.
                Some(controller) => {
                    let known = name == CLUSTER_DEFAULT
                        || name.parse::<i32>().is_ok_and(|id| {
                            controller.with_image(|image| image.brokers.contains_key(&id))
                        });
                    if !known {
                        return Err(invalid_request(format!(
                            "broker {name:?} is not in the cluster"
                        )));
                    }
                }
                None => {
                    broker_resource(broker, &name)?;
                }
            }
            Ok(Target::Broker(name))
        }
        other => Err(invalid_request(format!(
            "resource type {other} cannot be altered"
        ))),
    }
}

/// The configs a target has set now.
fn current(broker: &Broker, target: &Target) -> Result<BTreeMap<String, String>, Refusal> {
    match target {
        Target::Topic(name) => broker
            .cluster
            .topic(name)
            .map(|t| t.configs.overrides().clone())
            .ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            }),
        Target::Broker(name) => Ok(broker
            .cluster
            .broker_overrides()
            .get(name)
            .cloned()
            .unwrap_or_default()),
    }
}

/// The type of a key on a target (unknown keys are refused).
fn kind_of(
    target: &Target,
    name: &str,
    value: Option<&str>,
) -> Result<&'static topic_config::Key, Refusal> {
    let key = match target {
        Target::Topic(_) => topic_config::known(name),
        Target::Broker(_) => dynamic_config::dynamic_key(name),
    };
    key.ok_or_else(|| {
        let what = match target {
            Target::Topic(_) => "unknown topic config name",
            Target::Broker(_) => "unknown or read-only broker config",
        };
        let given = value.map_or(String::new(), |v| format!(" (given the value {v:?})"));
        invalid_config(format!("{what}: {name}{given}"))
    })
}

/// Checks a target's new full set of configs and makes it take effect (unless
/// only validating).
async fn apply(
    broker: &Arc<Broker>,
    target: &Target,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Refusal> {
    match target {
        Target::Topic(_) => TopicConfigs::validate(&configs).map(|_| ()),
        Target::Broker(_) => dynamic_config::validate(&configs),
    }
    .map_err(invalid_config)?;
    if validate_only {
        return Ok(());
    }
    let Some(controller) = broker.controller() else {
        let (cluster, target) = (Arc::clone(&broker.cluster), target.clone());
        return broker
            .budgets
            .io(move || match &target {
                Target::Topic(name) => {
                    cluster.alter_topic_configs(name, TopicConfigs::from_stored(configs))
                }
                Target::Broker(resource) => cluster.alter_broker_configs(resource, configs),
            })
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(format!("task failed: {e}"))))
            .map_err(|e| (topic_error_code(&e), e.to_string()));
    };
    let command = match target {
        Target::Topic(name) => Command::AlterTopicConfigs {
            name: name.clone(),
            id: broker.cluster.topic(name).map(|t| t.id).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            })?,
            configs,
        },
        Target::Broker(resource) => Command::AlterBrokerConfigs {
            resource: resource.clone(),
            configs,
        },
    };
    match controller.submit(&command).await {
        Ok(_) => Ok(()),
        // The topic went away (or was created again) meanwhile.
        Err(ControllerError::Refused(reason)) => {
            Err((ResponseError::UnknownTopicOrPartition, reason))
        }
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

/// Replaces a topic's config overrides (the bootstrap file's reconciliation).
pub(crate) async fn set_topic_configs(
    broker: &Arc<Broker>,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<(), (ResponseError, String)> {
    apply(broker, &Target::Topic(name.to_string()), configs, false).await
}

/// Resources named twice in one request are refused (each of them).
fn duplicates<'a>(resources: impl Iterator<Item = (i8, &'a StrBytes)>) -> HashSet<(i8, String)> {
    let mut seen = HashSet::new();
    let mut twice = HashSet::new();
    for (t, name) in resources {
        let k = (t, name.to_string());
        if !seen.insert(k.clone()) {
            twice.insert(k);
        }
    }
    twice
}

fn refused_keys_twice<'a>(names: impl Iterator<Item = &'a StrBytes>) -> Result<(), Refusal> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(invalid_request(format!(
                "config {} appears more than once for this resource",
                name.as_str()
            )));
        }
    }
    Ok(())
}

/// The checks every resource of either request passes first: within the
/// request's bounds, named once, a known resource, each key once.
fn admit<'a>(
    broker: &Broker,
    index: usize,
    twice: &HashSet<(i8, String)>,
    resource_type: i8,
    name: &StrBytes,
    keys: impl Iterator<Item = &'a StrBytes>,
) -> Result<Target, Refusal> {
    if index >= RESOURCES_MAX {
        return Err(invalid_request(format!(
            "more than {RESOURCES_MAX} resources in one request"
        )));
    }
    if twice.contains(&(resource_type, name.to_string())) {
        return Err(invalid_request(format!(
            "resource {} appears more than once in the request",
            name.as_str()
        )));
    }
    let target = target(broker, resource_type, name)?;
    refused_keys_twice(keys)?;
    Ok(target)
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let twice = duplicates(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    let mut responses = Vec::with_capacity(request.resources.len());
    for (index, res) in request.resources.into_iter().enumerate() {
        let outcome = async {
            let names = res.configs.iter().map(|c| &c.name);
            let target = admit(
                broker,
                index,
                &twice,
                res.resource_type,
                &res.resource_name,
                names,
            )?;
            current(broker, &target)?;
            let mut configs = BTreeMap::new();
            for c in &res.configs {
                let value = c.value.as_ref().ok_or_else(|| {
                    invalid_request(format!("config {} has no value", c.name.as_str()))
                })?;
                kind_of(&target, c.name.as_str(), Some(value.as_str()))?;
                configs.insert(c.name.to_string(), value.to_string());
            }
            apply(broker, &target, configs, request.validate_only).await
        }
        .await;
        let (error, message) = split(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn handle_incremental(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let twice = duplicates(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    let mut responses = Vec::with_capacity(request.resources.len());
    for (index, res) in request.resources.into_iter().enumerate() {
        let outcome = async {
            let names = res.configs.iter().map(|c| &c.name);
            let target = admit(
                broker,
                index,
                &twice,
                res.resource_type,
                &res.resource_name,
                names,
            )?;
            let mut configs = current(broker, &target)?;
            for c in &res.configs {
                let value = c.value.as_ref().map(StrBytes::as_str);
                let name = c.name.as_str();
                let key = kind_of(&target, name, value)?;
                apply_op(&mut configs, name, key, c.config_operation, value)?;
            }
            apply(broker, &target, configs, request.validate_only).await
        }
        .await;
        let (error, message) = split(outcome);
        responses.push(
            IncrementalResult::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// One IncrementalAlterConfigs operation on a resource's set configs.
fn apply_op(
    configs: &mut BTreeMap<String, String>,
    name: &str,
    key: &topic_config::Key,
    op: i8,
    value: Option<&str>,
) -> Result<(), Refusal> {
    if op == OP_DELETE {
        configs.remove(name);
        return Ok(());
    }
    let value = value.ok_or_else(|| invalid_request(format!("config {name} has no value")))?;
    match op {
        OP_SET => {
            configs.insert(name.to_string(), value.to_string());
        }
        OP_APPEND | OP_SUBTRACT => {
            if !key.kind.is_list() {
                let verb = if op == OP_APPEND {
                    "appended to"
                } else {
                    "subtracted from"
                };
                return Err(invalid_config(format!(
                    "config {name} is not a list and cannot be {verb} (given the value {value:?})"
                )));
            }
            let list = |s: &str| -> Vec<String> {
                s.split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let mut items = list(configs.get(name).map_or(key.default, String::as_str));
            let given = list(value);
            if op == OP_APPEND {
                for v in given {
                    if !items.contains(&v) {
                        items.push(v);
                    }
                }
            } else {
                items.retain(|v| !given.contains(v));
            }
            configs.insert(name.to_string(), items.join(","));
        }
        other => {
            return Err(invalid_request(format!(
                "unknown config operation {other} for config {name}"
            )))
        }
    }
    Ok(())
}

fn split(outcome: Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((error, message)) => (code(error), Some(str_bytes(message))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(configs: &mut BTreeMap<String, String>, name: &str, op: i8, value: Option<&str>) {
        let key = topic_config::known(name).expect("known key");
        apply_op(configs, name, key, op, value).expect("applied");
    }

    #[test]
    fn list_operations_start_from_the_value_in_force() {
        let mut c = BTreeMap::new();
        run(&mut c, "cleanup.policy", OP_APPEND, Some("compact"));
        assert_eq!(c["cleanup.policy"], "delete,compact");
        run(&mut c, "cleanup.policy", OP_APPEND, Some("compact"));
        assert_eq!(c["cleanup.policy"], "delete,compact");
        run(&mut c, "cleanup.policy", OP_SUBTRACT, Some("delete"));
        assert_eq!(c["cleanup.policy"], "compact");
        run(&mut c, "cleanup.policy", OP_DELETE, None);
        assert!(c.is_empty());
    }

    #[test]
    fn scalar_appends_unknown_operations_and_missing_values_are_refused() {
        let mut c = BTreeMap::new();
        let retention = topic_config::known("retention.ms").expect("known");
        let (code, msg) = apply_op(&mut c, "retention.ms", retention, OP_APPEND, Some("5"))
            .expect_err("not a list");
        assert_eq!(code, ResponseError::InvalidConfig);
        assert!(
            msg.contains("retention.ms") && msg.contains("\"5\""),
            "{msg}"
        );
        let (code, _) =
            apply_op(&mut c, "retention.ms", retention, 9, Some("5")).expect_err("unknown op");
        assert_eq!(code, ResponseError::InvalidRequest);
        let (code, _) =
            apply_op(&mut c, "retention.ms", retention, OP_SET, None).expect_err("no value");
        assert_eq!(code, ResponseError::InvalidRequest);
        assert!(c.is_empty());
    }

    #[test]
    fn oversized_values_are_refused() {
        let long = "x".repeat(topic_config::VALUE_BYTES_MAX + 1);
        let configs = BTreeMap::from([("leader.replication.throttled.replicas".to_string(), long)]);
        let e = TopicConfigs::validate(&configs).expect_err("too long");
        assert!(e.contains("leader.replication.throttled.replicas"), "{e}");
    }
}
