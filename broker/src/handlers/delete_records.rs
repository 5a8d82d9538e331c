//! DeleteRecords (key 21): moves partitions' log start up to an offset (-1: the
//! high watermark), on their leader. Answers with the new low watermark; an
//! offset above the high watermark gets OFFSET_OUT_OF_RANGE. A replicated
//! partition may keep the earlier records of the batch holding the offset
//! (the low watermark then says where the log starts); its followers delete
//! through the controller's metadata, so a replica that was down deletes once
//! it caught up.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::produce::replica_error_code;
use super::{code, partition_of};
use sluice_replication::Replica;
use sluice_storage::Offset;

use crate::cluster::{is_internal_topic, Topic};
use crate::controller::Command;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    // A partition named twice is answered once.
    let mut seen = HashSet::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = broker.cluster.topic(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            if !seen.insert((t.name.0.clone(), p.partition_index)) {
                continue;
            }
            let result =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let outcome = match partition_of(topic.as_ref(), p.partition_index) {
                Err(e) => Err(e),
                Ok(_) if is_internal_topic(t.name.as_str()) => {
                    Err(ResponseError::InvalidTopicException)
                }
                Ok(r) if !r.is_leader() => Err(ResponseError::NotLeaderOrFollower),
                Ok(r) => delete(broker, topic.as_deref(), p.partition_index, r, p.offset).await,
            };
            partitions.push(match outcome {
                Ok(start) => result.with_low_watermark(start.0),
                Err(e) => result.with_low_watermark(-1).with_error_code(code(e)),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Deletes on the leader; in a cluster the offset then goes into the metadata,
/// which every replica follows (now, or once it caught up).
async fn delete(
    broker: &Arc<Broker>,
    topic: Option<&Topic>,
    partition: i32,
    replica: &Arc<Replica>,
    offset: i64,
) -> Result<Offset, ResponseError> {
    let offset = if offset == -1 {
        replica.high_watermark().0
    } else {
        offset
    };
    let start = replica
        .delete_records(offset)
        .await
        .map_err(|e| replica_error_code(&e))?;
    if let (Some(controller), Some(topic)) = (broker.controller(), topic) {
        let command = Command::DeleteRecords {
            name: topic.name.clone(),
            id: topic.id,
            partition: partition as usize,
            offset,
        };
        controller
            .submit(&command)
            .await
            .map_err(|_| ResponseError::RequestTimedOut)?;
    }
    Ok(start)
}
