//! CreatePartitions (key 37): grows a topic's partition count, on one broker
//! directly, in a cluster through the controller (the answer waits until every
//! live broker serves the new partitions). Manual replica assignments are refused:
//! every partition is replicated on every broker.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::create_topics::topic_error_code;
use super::{code, str_bytes};
use crate::cluster::TopicError;
use crate::controller::{Command, ControllerError};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let outcome = if seen.get(&name).copied().unwrap_or(0) > 1 {
            Err((
                ResponseError::InvalidRequest,
                format!("topic '{name}' appears more than once in the request"),
            ))
        } else if t.assignments.is_some() {
            Err((
                ResponseError::InvalidReplicaAssignment,
                "manual assignments are not supported: every partition is replicated on every broker".to_string(),
            ))
        } else if request.validate_only {
            broker
                .cluster
                .check_new_partitions(&name, t.count)
                .map(|_| ())
                .map_err(|e| (topic_error_code(&e), e.to_string()))
        } else {
            add(broker, &name, t.count)
                .await
                .map_err(|e| (topic_error_code(&e), e.to_string()))
        };
        results.push(match outcome {
            Ok(()) => result,
            Err((error, message)) => result
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Grows a topic to `count` partitions, on one broker or through the controller.
pub(crate) async fn add(broker: &Arc<Broker>, name: &str, count: i32) -> Result<(), TopicError> {
    let Some(controller) = broker.controller() else {
        let (cluster, name) = (Arc::clone(&broker.cluster), name.to_string());
        return broker
            .budgets
            .io(move || cluster.add_partitions(&name, count))
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(format!("task failed: {e}"))))
            .map(|_| ());
    };
    let current = broker.cluster.check_new_partitions(name, count)?;
    let rf = broker
        .cluster
        .topic(name)
        .and_then(|t| t.replicas.first().map(Vec::len))
        .unwrap_or_else(|| broker.cluster.broker_count());
    let replicas = controller
        .with_image(|image| image.place(controller.peers(), (count - current) as usize, rf));
    let command = Command::CreatePartitions {
        name: name.to_string(),
        replicas,
        from: Some(current as usize),
    };
    match controller.submit(&command).await {
        Ok(_) => Ok(()),
        Err(ControllerError::Refused(reason)) => Err(TopicError::InvalidPartitions(reason)),
        Err(e) => Err(TopicError::Unavailable(e.to_string())),
    }
}
