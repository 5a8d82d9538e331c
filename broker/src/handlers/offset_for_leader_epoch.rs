//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in the leader's log,
//! which consumers (the Java client's truncation detection) and followers of other
//! systems use to find where their copy diverged. The leader epoch is the Raft
//! term: batches carry it as their partitionLeaderEpoch.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::code;
use crate::Broker;

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: i32 = -1;

pub fn handle(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.cluster.topic(t.topic.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED)
                        .with_end_offset(i64::from(UNDEFINED));
                    let Some(replica) = topic.as_ref().and_then(|t| {
                        usize::try_from(p.partition)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                    }) else {
                        return base.with_error_code(code(ResponseError::UnknownTopicOrPartition));
                    };
                    let current = replica.leader_epoch().0;
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch != current {
                        let error = if p.current_leader_epoch > current {
                            ResponseError::UnknownLeaderEpoch
                        } else {
                            ResponseError::FencedLeaderEpoch
                        };
                        return base.with_error_code(code(error));
                    }
                    if !replica.is_leader() {
                        return base.with_error_code(code(ResponseError::NotLeaderOrFollower));
                    }
                    match replica.end_offset_for_epoch(p.leader_epoch) {
                        Ok(Some((epoch, end))) => {
                            base.with_leader_epoch(epoch).with_end_offset(end.0)
                        }
                        Ok(None) => base,
                        Err(_) => base.with_error_code(code(ResponseError::KafkaStorageError)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
