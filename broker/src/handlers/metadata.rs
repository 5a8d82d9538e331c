//! Metadata (key 3): brokers, controller, topics and partition leaders; creates
//! unknown topics when `auto_create_topics_enable` allows.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{code, str_bytes, topic_name};
use crate::cluster::{validate_topic_name, Topic, TopicError};
use crate::Broker;

pub fn handle(broker: &Arc<Broker>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = broker.node_id();
    let (host, port) = broker.config.advertised();
    let cluster = &broker.cluster;
    // v0: an empty list means all topics; v1+: null means all topics.
    let requested = match request.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create = broker.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);
    let topics = match requested {
        None => cluster.topics().iter().map(|t| describe(t, node)).collect(),
        Some(requested) => requested
            .into_iter()
            .map(|rt| match rt.name {
                Some(name) => lookup(broker, name.0.as_str(), auto_create, node),
                None => match cluster.topic_by_id(rt.topic_id) {
                    Some(t) => describe(&t, node),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(rt.topic_id)
                        .with_error_code(code(ResponseError::UnknownTopicId)),
                },
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port)])
        .with_cluster_id(Some(str_bytes(broker.config.cluster_id.clone())))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
}

fn lookup(broker: &Arc<Broker>, name: &str, auto_create: bool, node: i32) -> MetadataResponseTopic {
    if let Some(t) = broker.cluster.topic(name) {
        return describe(&t, node);
    }
    let unknown = |error| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code(error))
    };
    if validate_topic_name(name).is_err() {
        return unknown(ResponseError::InvalidTopicException);
    }
    if !auto_create {
        return unknown(ResponseError::UnknownTopicOrPartition);
    }
    let defaults = Default::default();
    match broker.cluster.create_topic(name, -1, -1, &defaults) {
        Ok(t) => describe(&t, node),
        // Another request created it first.
        Err(TopicError::AlreadyExists(_)) => match broker.cluster.topic(name) {
            Some(t) => describe(&t, node),
            None => unknown(ResponseError::LeaderNotAvailable),
        },
        Err(e) => {
            warn!(topic = name, error = %e, "auto-creating a topic failed");
            unknown(ResponseError::LeaderNotAvailable)
        }
    }
}

fn describe(topic: &Topic, node: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, replica)| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_epoch(replica.leader_epoch().0)
                .with_replica_nodes(vec![BrokerId(node)]);
            if replica.offline_reason().is_some() {
                // Kafka's answer for a partition whose only replica is offline.
                return partition
                    .with_error_code(code(ResponseError::LeaderNotAvailable))
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(node)]);
            }
            partition
                .with_leader_id(BrokerId(node))
                .with_isr_nodes(vec![BrokerId(node)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(crate::cluster::is_internal_topic(&topic.name))
        .with_partitions(partitions)
}
