//! OffsetCommit (key 8): committed offsets with their metadata and leader epoch,
//! answered once durable in `__consumer_offsets`.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::group_code;
use crate::group::{Committer, OffsetCommit};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let committer = Committer {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        generation: request.generation_id_or_member_epoch,
    };
    let commits: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let results = broker
        .groups
        .commit(
            request.group_id.0.as_str(),
            &committer,
            &commits,
            broker.now_ms(),
        )
        .await;
    let mut codes = commits.iter().enumerate().map(|(i, _)| match &results {
        Ok(r) => group_code(r[i].err()),
        Err(e) => group_code(Some(*e)),
    });
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or_default())
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
