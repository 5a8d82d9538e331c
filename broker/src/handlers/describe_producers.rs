//! DescribeProducers (key 61): the idempotent producers a partition's leader
//! tracks, with each one's epoch, last sequence and last write time. Sluice has
//! no transactions: no producer has an open transaction. A partition asked for
//! twice is answered once.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{code, partition_of};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    // Each partition is answered once, however often it is asked for (its
    // producer list can be long).
    let mut seen = HashSet::new();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.cluster.topic(t.name.as_str());
            let partitions = t
                .partition_indexes
                .into_iter()
                .filter(|index| seen.insert((t.name.0.clone(), *index)))
                .map(|index| {
                    let result = PartitionResponse::default().with_partition_index(index);
                    let replica = match partition_of(topic.as_ref(), index) {
                        Ok(r) if r.is_leader() => r,
                        Ok(_) => {
                            return result.with_error_code(code(ResponseError::NotLeaderOrFollower))
                        }
                        Err(e) => return result.with_error_code(code(e)),
                    };
                    let producers = replica
                        .producers()
                        .into_iter()
                        .map(|(id, entry)| {
                            let last_sequence = entry.batches.back().map_or(-1, |b| b.last_seq);
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(i32::from(entry.epoch))
                                .with_last_sequence(last_sequence)
                                .with_last_timestamp(entry.last_timestamp_ms)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(-1)
                        })
                        .collect();
                    result.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
