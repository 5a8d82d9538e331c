//! DescribeLogDirs (key 35): the one log directory of this broker (`data_dir`)
//! with the size of each partition replica it holds and how far its log end is
//! behind the high watermark. Disk totals are not measured (-1, Kafka's
//! "unknown").

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::Broker;

/// Kafka's value for disk totals a broker does not know.
const UNKNOWN_BYTES: i64 = -1;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    // None: every partition; otherwise only those asked for (asked twice: once).
    let wanted: Option<HashSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let mut topics = Vec::new();
    for topic in broker.cluster.topics() {
        let partitions: Vec<DescribeLogDirsPartition> = topic
            .hosted()
            .filter(|(i, _)| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(&(topic.name.clone(), *i as i32)))
            })
            .map(|(i, replica)| {
                let lag = (replica.high_watermark().0 - replica.log_end_offset().0).max(0);
                DescribeLogDirsPartition::default()
                    .with_partition_index(i as i32)
                    .with_partition_size(i64::try_from(replica.size_bytes()).unwrap_or(i64::MAX))
                    .with_offset_lag(lag)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = broker
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(UNKNOWN_BYTES)
        .with_usable_bytes(UNKNOWN_BYTES)])
}
