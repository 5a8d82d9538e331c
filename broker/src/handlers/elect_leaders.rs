//! ElectLeaders (key 43): preferred leader election, by partition or for every
//! partition. The leader of each partition hands leadership to its preferred
//! replica (the first listed) once that one holds the whole log. Unclean
//! election is refused: Raft only elects a replica that holds every committed
//! record, and Sluice never trades acknowledged data for availability.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{code, str_bytes, topic_name};
use crate::cluster::Partition;
use crate::controller::election::{self, ElectError};
use crate::controller::ELECT_PREFERRED;
use crate::Broker;

const PREFERRED: i8 = 0;
/// Longest wait a request may ask for.
const TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// Partitions one request may name.
const PARTITIONS_MAX: usize = 100_000;

type Outcome = Result<(), (ResponseError, String)>;

pub async fn handle(
    broker: &Arc<Broker>,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    // v0 has no election type: preferred.
    let election = if version == 0 {
        PREFERRED
    } else {
        request.election_type
    };
    let timeout =
        Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0)).min(TIMEOUT_MAX);
    let every = request.topic_partitions.is_none();
    let wanted: Vec<(TopicName, i32)> = match request.topic_partitions {
        Some(topics) => {
            let mut pairs: Vec<(TopicName, i32)> = topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.topic;
                    t.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect();
            pairs.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
            pairs.dedup();
            pairs
        }
        None => broker
            .cluster
            .topics()
            .iter()
            .flat_map(|t| (0..t.partition_count() as i32).map(|p| (topic_name(&t.name), p)))
            .collect(),
    };
    if wanted.len() > PARTITIONS_MAX {
        return ElectLeadersResponse::default()
            .with_error_code(code(ResponseError::InvalidRequest));
    }
    let outcomes = futures_util::future::join_all(
        wanted
            .iter()
            .map(|(name, p)| elect(broker, name.as_str(), *p, election, timeout)),
    )
    .await;
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((name, partition), outcome) in wanted.into_iter().zip(outcomes) {
        let result = PartitionResult::default().with_partition_id(partition);
        let result = match outcome {
            Ok(()) => result,
            // Asked for every partition: only those that needed an election.
            Err((ResponseError::ElectionNotNeeded, _)) if every => continue,
            Err((error, message)) => result
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(message))),
        };
        match results.last_mut() {
            Some(last) if last.topic == name => last.partition_result.push(result),
            _ => results.push(
                ReplicaElectionResult::default()
                    .with_topic(name)
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

async fn elect(
    broker: &Arc<Broker>,
    name: &str,
    partition: i32,
    election: i8,
    timeout: Duration,
) -> Outcome {
    let topic = broker.cluster.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    let index = usize::try_from(partition)
        .ok()
        .filter(|i| *i < topic.partition_count())
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' has no partition {partition}"),
            )
        })?;
    if election != PREFERRED {
        return Err((
            ResponseError::PolicyViolation,
            "unclean leader election is refused: a partition's leader is always a replica that holds every acknowledged record".to_string(),
        ));
    }
    let preferred = topic.replicas[index].first().copied().unwrap_or(-1);
    let leader = topic.leader_of(index);
    if leader == Some(preferred) {
        return Err((
            ResponseError::ElectionNotNeeded,
            format!("the preferred replica {preferred} already leads"),
        ));
    }
    let (Some(leader), Some(controller)) = (leader, broker.controller()) else {
        return Err((
            ResponseError::EligibleLeadersNotAvailable,
            format!("partition {name}-{partition} has no leader now"),
        ));
    };
    let target = preferred as u64;
    let outcome = if leader == broker.node_id() {
        let Ok(replica) = topic.replica(partition) else {
            return Err((ResponseError::NotLeaderOrFollower, "not hosted here".into()));
        };
        let transport = Arc::clone(controller.transport());
        election::elect_preferred(replica, target, |n| transport.is_connected(n), timeout).await
    } else {
        let group = match &topic.partitions[index] {
            Partition::Hosted(r) => broker.raft_groups.group_of(r.name()),
            Partition::Elsewhere(_) => controller.with_image(|image| {
                image
                    .topics
                    .get(name)
                    .and_then(|t| t.partitions.get(index))
                    .map(|p| p.group)
            }),
        };
        let Some(group) = group else {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("partition {name}-{partition} has no Raft group"),
            ));
        };
        match controller
            .transport()
            .call(
                leader as u64,
                ELECT_PREFERRED,
                group,
                election::encode_request(target, timeout),
                timeout + Duration::from_secs(1),
            )
            .await
        {
            Ok(answer) => election::decode_outcome(answer),
            Err(_) => Err(ElectError::TimedOut),
        }
    };
    outcome.map_err(|e| match e {
        ElectError::PreferredNotAvailable(reason) => {
            (ResponseError::PreferredLeaderNotAvailable, reason)
        }
        ElectError::NotLeader => (
            ResponseError::NotLeaderOrFollower,
            "leadership moved during the election; retry".to_string(),
        ),
        ElectError::TimedOut => (
            ResponseError::RequestTimedOut,
            format!("the preferred replica {preferred} did not take over in time"),
        ),
    })
}
