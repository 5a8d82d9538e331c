//! OffsetFetch (key 9): committed offsets of one group (v1-7) or several (v8+);
//! partitions without a committed offset answer -1.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{group_code, str_bytes, topic_name};
use crate::group::records::OffsetValue;
use crate::group::{FetchedOffsets, GroupError};
use crate::Broker;

/// Offset, leader epoch, metadata of a partition's answer.
fn fields(v: Option<OffsetValue>) -> (i64, i32, Option<StrBytes>) {
    match v {
        Some(v) => (v.offset, v.leader_epoch, Some(str_bytes(v.metadata))),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted: Option<Vec<(String, Vec<i32>)>> = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match broker
                    .groups
                    .fetch_offsets(g.group_id.0.as_str(), wanted.as_deref())
                {
                    Ok(fetched) => group.with_topics(multi_topics(fetched)),
                    Err(e) => group.with_error_code(group_code(Some(e))),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    match broker
        .groups
        .fetch_offsets(request.group_id.0.as_str(), wanted.as_deref())
    {
        Ok(fetched) => OffsetFetchResponse::default().with_topics(single_topics(fetched, None)),
        // v1 has no group-level error code: each partition carries it.
        Err(e) if version < 2 => {
            let empty: FetchedOffsets = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect();
            OffsetFetchResponse::default().with_topics(single_topics(empty, Some(e)))
        }
        Err(e) => OffsetFetchResponse::default().with_error_code(group_code(Some(e))),
    }
}

fn single_topics(
    fetched: FetchedOffsets,
    error: Option<GroupError>,
) -> Vec<OffsetFetchResponseTopic> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(p, v)| {
                    let (offset, epoch, metadata) = fields(v);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(metadata)
                        .with_error_code(group_code(error))
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(partitions)
        })
        .collect()
}

fn multi_topics(fetched: FetchedOffsets) -> Vec<OffsetFetchResponseTopics> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(p, v)| {
                    let (offset, epoch, metadata) = fields(v);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(metadata)
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(partitions)
        })
        .collect()
}
