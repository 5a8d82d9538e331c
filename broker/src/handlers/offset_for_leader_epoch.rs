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

use super::{code, leader_check, partition_of};
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
                    let replica = match partition_of(topic.as_ref(), p.partition) {
                        Ok(replica) => replica,
                        Err(error) => return base.with_error_code(code(error)),
                    };
                    if let Some(error) = leader_check(replica, p.current_leader_epoch) {
                        return base.with_error_code(code(error));
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
