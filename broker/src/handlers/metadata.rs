//! Metadata (key 3): brokers, controller, topics and partition leaders; creates
//! unknown topics when `auto_create_topics_enable` allows.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{code, str_bytes, topic_name};
use sluice_replication::Replica;

use crate::cluster::{validate_topic_name, Partition, RemotePartition, Topic, TopicError};
use crate::Broker;

/// A broker clients are told about: id, host, port.
#[derive(Debug)]
pub struct Listed {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// The brokers clients are told about (Metadata, DescribeCluster), and the
/// controller's id (-1 while there is none).
pub fn listed_brokers(broker: &Broker) -> (Vec<Listed>, i32) {
    let node = broker.node_id();
    let Some(controller) = broker.controller() else {
        let (host, port) = broker.config.advertised();
        return (
            vec![Listed {
                id: node,
                host,
                port,
            }],
            node,
        );
    };
    // Like Kafka's fenced brokers, a broker the majority has lost touch with is
    // left out, so clients look for coordinators and leaders among the live ones.
    // A broker cut off from the majority cannot tell who is alive: it lists all.
    let transport = controller.transport();
    let peers = controller.peers();
    let reachable = peers
        .iter()
        .filter(|p| **p == node || transport.is_connected(**p as u64))
        .count();
    let in_majority = reachable * 2 > peers.len();
    let brokers = controller.with_image(|image| {
        image
            .brokers
            .iter()
            .filter(|(id, _)| !in_majority || **id == node || transport.is_connected(**id as u64))
            .map(|(id, b)| Listed {
                id: *id,
                host: b.host.clone(),
                port: b.port,
            })
            .collect()
    });
    (brokers, controller.leader().unwrap_or(-1))
}

fn brokers(broker: &Broker) -> (Vec<MetadataResponseBroker>, i32) {
    let (listed, controller) = listed_brokers(broker);
    let brokers = listed
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
        })
        .collect();
    (brokers, controller)
}

pub fn handle(broker: &Arc<Broker>, request: MetadataRequest, version: i16) -> MetadataResponse {
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
        None => cluster
            .topics()
            .iter()
            .map(|t| describe(broker, t))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|rt| match rt.name {
                Some(name) => lookup(broker, name.0.as_str(), auto_create),
                None => match cluster.topic_by_id(rt.topic_id) {
                    Some(t) => describe(broker, &t),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(rt.topic_id)
                        .with_error_code(code(ResponseError::UnknownTopicId)),
                },
            })
            .collect(),
    };
    let (brokers, controller) = self::brokers(broker);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.config.cluster_id.clone())))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

fn lookup(broker: &Arc<Broker>, name: &str, auto_create: bool) -> MetadataResponseTopic {
    if let Some(t) = broker.cluster.topic(name) {
        return describe(broker, &t);
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
    if broker.controller().is_some() {
        // Created through the controller in the background; the client asks again
        // (Kafka answers an auto-created topic this way too).
        let (b, name) = (Arc::clone(broker), name.to_string());
        tokio::spawn(async move {
            let defaults = Default::default();
            if let Err(e) =
                crate::handlers::create_topics::create(&b, &name, -1, -1, &defaults).await
            {
                if !matches!(e, TopicError::AlreadyExists(_)) {
                    warn!(topic = %name, error = %e, "auto-creating a topic failed");
                }
            }
        });
        return unknown(ResponseError::LeaderNotAvailable);
    }
    let defaults = Default::default();
    match broker.cluster.create_topic(name, -1, -1, &defaults) {
        Ok(t) => describe(broker, &t),
        // Another request created it first.
        Err(TopicError::AlreadyExists(_)) => match broker.cluster.topic(name) {
            Some(t) => describe(broker, &t),
            None => unknown(ResponseError::LeaderNotAvailable),
        },
        Err(e) => {
            warn!(topic = name, error = %e, "auto-creating a topic failed");
            unknown(ResponseError::LeaderNotAvailable)
        }
    }
}

fn describe(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = broker.node_id();
    let lag_max = Duration::from_millis(broker.config.cluster.replica_lag_time_max_ms);
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, partition)| {
            let replica = match partition {
                Partition::Hosted(replica) => replica,
                Partition::Elsewhere(remote) => {
                    return describe_remote(broker, i, remote, &topic.replicas[i])
                }
            };
            if replica.raft().is_some() {
                return describe_replicated(broker, i, replica, &topic.replicas[i], lag_max);
            }
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

/// Whether broker `id` is this one or connected to it.
fn reachable(broker: &Broker, id: i32) -> bool {
    id == broker.node_id()
        || broker
            .controller()
            .is_some_and(|c| c.transport().is_connected(id as u64))
}

fn ids(brokers: &[i32]) -> Vec<BrokerId> {
    brokers.iter().map(|r| BrokerId(*r)).collect()
}

/// The replicas of a partition this broker is not in touch with.
fn offline(broker: &Broker, replicas: &[i32]) -> Vec<BrokerId> {
    let out: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| !reachable(broker, *r))
        .collect();
    ids(&out)
}

/// A partition this broker does not host: the leadership its leader published,
/// while this broker is in touch with that leader.
fn describe_remote(
    broker: &Broker,
    index: usize,
    remote: &RemotePartition,
    replicas: &[i32],
) -> MetadataResponsePartition {
    let partition = MetadataResponsePartition::default()
        .with_partition_index(index as i32)
        .with_replica_nodes(ids(replicas))
        .with_offline_replicas(offline(broker, replicas));
    match remote.published().filter(|p| reachable(broker, p.leader)) {
        Some(p) => partition
            .with_leader_id(BrokerId(p.leader))
            .with_leader_epoch(p.epoch)
            .with_isr_nodes(ids(&p.isr)),
        None => partition
            .with_error_code(code(ResponseError::LeaderNotAvailable))
            .with_leader_id(BrokerId(-1))
            .with_leader_epoch(-1),
    }
}

/// A partition of a replicated topic: the Raft leader and term; the ISR as the
/// leader sees it, or elsewhere the replicas this broker is connected to.
fn describe_replicated(
    broker: &Broker,
    index: usize,
    replica: &Replica,
    replicas: &[i32],
    lag_max: Duration,
) -> MetadataResponsePartition {
    let partition = MetadataResponsePartition::default()
        .with_partition_index(index as i32)
        .with_leader_epoch(replica.leader_epoch().0)
        .with_replica_nodes(ids(replicas));
    let leader = replica.leader().map(|l| l as i32);
    let Some(leader) = leader.filter(|_| replica.offline_reason().is_none()) else {
        return partition
            .with_error_code(code(ResponseError::LeaderNotAvailable))
            .with_leader_id(BrokerId(-1))
            .with_isr_nodes(Vec::new());
    };
    let isr: Vec<i32> = match replica.in_sync_replicas(lag_max) {
        Some(isr) => isr.into_iter().map(|r| r as i32).collect(),
        None => replicas
            .iter()
            .copied()
            .filter(|r| reachable(broker, *r))
            .collect(),
    };
    partition
        .with_leader_id(BrokerId(leader))
        .with_isr_nodes(ids(&isr))
        .with_offline_replicas(offline(broker, replicas))
}
