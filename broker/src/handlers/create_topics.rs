//! CreateTopics (key 19): name rules, partitions, replication factor <= brokers,
//! topic configs, `validate_only`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{code, str_bytes};
use uuid::Uuid;

use crate::cluster::TopicError;
use crate::controller::{Command, ControllerError};
use crate::topic_config::TopicConfigs;
use crate::Broker;

pub(crate) fn topic_error_code(e: &TopicError) -> ResponseError {
    match e {
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::Storage(_) => ResponseError::KafkaStorageError,
        TopicError::Unavailable(_) => ResponseError::RequestTimedOut,
    }
}

/// How long a created topic's answer waits for its partitions to elect leaders.
const LEADERS_WAIT: Duration = Duration::from_secs(5);

fn controller_error(e: ControllerError) -> TopicError {
    match e {
        ControllerError::Refused(reason) if reason.contains("already exists") => {
            TopicError::AlreadyExists(reason)
        }
        ControllerError::Refused(reason) => TopicError::InvalidName(reason),
        e @ ControllerError::Unavailable(_) => TopicError::Unavailable(e.to_string()),
    }
}

/// Creates a topic: on one broker directly, in a cluster through the controller
/// (answered once every live broker serves it and its partitions have leaders).
/// Returns (partitions, configs, topic id).
pub async fn create(
    broker: &Arc<Broker>,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &BTreeMap<String, String>,
) -> Result<(i32, TopicConfigs, Uuid), TopicError> {
    let created = create_unled(broker, name, partitions, rf, configs).await?;
    wait_for_leaders(broker, &[name], tokio::time::Instant::now() + LEADERS_WAIT).await;
    Ok(created)
}

/// In a cluster, waits (until `deadline`) for every partition of `names` to
/// have a leader (a single broker leads its partitions from the start).
pub(crate) async fn wait_for_leaders(
    broker: &Broker,
    names: &[&str],
    deadline: tokio::time::Instant,
) {
    if broker.controller().is_none() {
        return;
    }
    let led = |name: &&str| {
        broker
            .cluster
            .topic(name)
            .is_some_and(|t| (0..t.partition_count()).all(|i| t.leader_of(i).is_some()))
    };
    while tokio::time::Instant::now() < deadline && !names.iter().all(led) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`create`] without the wait for leaders (a request creating several topics
/// waits for all of them at once).
pub(crate) async fn create_unled(
    broker: &Arc<Broker>,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &BTreeMap<String, String>,
) -> Result<(i32, TopicConfigs, Uuid), TopicError> {
    let Some(controller) = broker.controller() else {
        let (cluster, name, configs) = (
            Arc::clone(&broker.cluster),
            name.to_string(),
            configs.clone(),
        );
        return broker
            .budgets
            .io(move || cluster.create_topic(&name, partitions, rf, &configs))
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(format!("create task failed: {e}"))))
            .map(|t| (t.partition_count() as i32, t.configs.clone(), t.id));
    };
    let (partitions, rf, checked) = broker
        .cluster
        .check_new_topic(name, partitions, rf, configs)?;
    let replicas = controller
        .with_image(|image| image.place(controller.peers(), partitions as usize, rf as usize));
    let id = Uuid::new_v4();
    let command = Command::CreateTopic {
        name: name.to_string(),
        id,
        replicas,
        configs: checked.overrides().clone(),
    };
    controller
        .submit(&command)
        .await
        .map_err(controller_error)?;
    Ok((partitions, checked, id))
}

/// Deletes a topic, in a cluster through the controller.
pub async fn delete(broker: &Arc<Broker>, name: &str) -> Result<(), TopicError> {
    let Some(controller) = broker.controller() else {
        let (cluster, name) = (Arc::clone(&broker.cluster), name.to_string());
        return broker
            .budgets
            .io(move || cluster.delete_topic(&name))
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(format!("delete task failed: {e}"))));
    };
    if crate::cluster::is_internal_topic(name) {
        return Err(TopicError::InvalidName(format!(
            "topic '{name}' is internal and cannot be deleted"
        )));
    }
    let command = Command::DeleteTopic {
        name: name.to_string(),
    };
    match controller.submit(&command).await {
        Ok(_) => Ok(()),
        Err(ControllerError::Refused(_)) => Err(TopicError::Unknown(name.to_string())),
        Err(e) => Err(controller_error(e)),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    let mut created = Vec::new();
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let fail = |error: ResponseError, message: String| {
            result
                .clone()
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        };
        if seen.get(&name).copied().unwrap_or(0) > 1 {
            results.push(fail(
                ResponseError::InvalidRequest,
                format!("topic '{name}' appears more than once in the request"),
            ));
            continue;
        }
        let (mut partitions, mut rf) = (t.num_partitions, t.replication_factor);
        if !t.assignments.is_empty() {
            if partitions != -1 || rf != -1 {
                results.push(fail(
                    ResponseError::InvalidRequest,
                    "replica assignments and numPartitions/replicationFactor are exclusive".into(),
                ));
                continue;
            }
            let node = broker.node_id();
            let valid = t.assignments.iter().enumerate().all(|(i, a)| {
                a.partition_index == i as i32
                    && a.broker_ids.len() == 1
                    && a.broker_ids[0].0 == node
            });
            if !valid {
                results.push(fail(
                    ResponseError::InvalidReplicaAssignment,
                    format!("assignments must name partitions 0..n on broker {node} only"),
                ));
                continue;
            }
            partitions = t.assignments.len() as i32;
            rf = 1;
        }
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let outcome = if request.validate_only {
            broker
                .cluster
                .check_new_topic(&name, partitions, rf, &configs)
                .map(|(p, _, c)| (p, c, None))
        } else {
            let outcome = create_unled(broker, &name, partitions, rf, &configs).await;
            if outcome.is_ok() {
                created.push(name.clone());
            }
            outcome.map(|(p, c, id)| (p, c, Some(id)))
        };
        let replication_factor = broker
            .cluster
            .topic(&name)
            .map_or(1, |t| t.replicas.first().map_or(1, |r| r.len() as i16));
        match outcome {
            Ok((partitions, configs, id)) => {
                let mut r = result
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor);
                // Per-topic configs are part of the answer from v5.
                if version >= 5 {
                    r = r.with_configs(Some(describe(broker, &configs)));
                }
                if let Some(id) = id {
                    r = r.with_topic_id(id);
                }
                results.push(r);
            }
            Err(e) => results.push(fail(topic_error_code(&e), e.to_string())),
        }
    }
    let names: Vec<&str> = created.iter().map(String::as_str).collect();
    wait_for_leaders(broker, &names, tokio::time::Instant::now() + LEADERS_WAIT).await;
    CreateTopicsResponse::default().with_topics(results)
}

fn describe(broker: &Broker, configs: &TopicConfigs) -> Vec<CreatableTopicConfigs> {
    broker
        .cluster
        .with_broker_view(|view| configs.describe(view))
        .into_iter()
        .map(|d| {
            let (value, source) = d.value();
            CreatableTopicConfigs::default()
                .with_name(str_bytes(d.name()))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source as i8)
        })
        .collect()
}
