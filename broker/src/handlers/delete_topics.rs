//! DeleteTopics (key 20): by name (v1+) or by topic id (v6).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::create_topics::topic_error_code;
use super::{code, str_bytes, topic_name};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let topic = match &name {
            Some(n) => broker.cluster.topic(n.0.as_str()),
            None => broker.cluster.topic_by_id(id),
        };
        let Some(topic) = topic else {
            let error = if name.is_none() {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            responses.push(
                DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_error_code(code(error)),
            );
            continue;
        };
        let outcome = super::create_topics::delete(broker, &topic.name).await;
        let result = DeletableTopicResult::default()
            .with_name(Some(topic_name(&topic.name)))
            .with_topic_id(topic.id);
        responses.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(code(topic_error_code(&e)))
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
