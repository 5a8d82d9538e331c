//! ListOffsets (key 2): earliest, latest, max timestamp, or the first offset whose
//! batch max timestamp is at least the target.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use sluice_replication::{Replica, ReplicaError};

use super::{code, leader_check, partition_of};
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;
const LATEST_TIERED: i64 = -6;

pub fn handle(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // The leader epoch field exists from v4.
    let epoch_field = |epoch: i32| if version >= 4 { epoch } else { -1 };
    let topics = request
        .topics
        .into_iter()
        .map(|lt| {
            let topic = broker.cluster.topic(lt.name.0.as_str());
            let partitions = lt
                .partitions
                .into_iter()
                .map(|lp| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(lp.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let replica = match partition_of(topic.as_ref(), lp.partition_index) {
                        Ok(replica) => replica,
                        Err(error) => return base.with_error_code(code(error)),
                    };
                    if let Some(error) = leader_check(replica, lp.current_leader_epoch) {
                        return base.with_error_code(code(error));
                    }
                    let epoch = replica.leader_epoch().0;
                    match lookup(replica, lp.timestamp) {
                        Ok(Some((timestamp, offset))) => base
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            .with_leader_epoch(epoch_field(epoch)),
                        Ok(None) => base.with_leader_epoch(epoch_field(epoch)),
                        Err(_) => base.with_error_code(code(ResponseError::KafkaStorageError)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(lt.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) for one query, `None` when no offset matches.
fn lookup(replica: &Replica, timestamp: i64) -> Result<Option<(i64, i64)>, ReplicaError> {
    Ok(match timestamp {
        // Without transactions the last stable offset is the high watermark.
        LATEST | LATEST_TIERED => Some((-1, replica.high_watermark().0)),
        EARLIEST | EARLIEST_LOCAL => Some((-1, replica.log_start_offset().0)),
        EARLIEST_PENDING_UPLOAD => None,
        MAX_TIMESTAMP => replica.max_timestamp()?.map(|(ts, offset)| (ts, offset.0)),
        ts if ts >= 0 => replica
            .offset_for_timestamp(ts)?
            .map(|(offset, batch_ts)| (batch_ts, offset.0)),
        _ => None,
    })
}
