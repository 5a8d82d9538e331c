//! Fetch (key 1): whole stored batches from each partition, never past the high
//! watermark; waits up to `max_wait_ms` for `min_bytes` of data.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use sluice_protocol::types::Offset;
use sluice_replication::ReplicaError;
use sluice_storage::StorageError;

use super::{code, leader_check, partition_of};
use crate::budget::{shrink, ConnectionBudget, HandlerFailed, Held};
use crate::Broker;

/// Answers a fetch, holding for its response no more than the connection's and
/// the broker's budgets allow: the request's `max_bytes` is capped by the
/// connection's budget, the reads run on the I/O pool, and a fetch waiting for data
/// holds nothing. Returns the response and the bytes it holds until written.
pub async fn handle(
    broker: &Arc<Broker>,
    request: FetchRequest,
    _version: i16,
    budget: &ConnectionBudget,
) -> Result<(FetchResponse, Held), HandlerFailed> {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut signal = broker.commit_signal();
    let want = (request.max_bytes.max(0) as usize).min(budget.bytes_max());
    let request = Arc::new(request);
    loop {
        // Mark the signal seen before reading, so a commit after the read wakes us.
        signal.borrow_and_update();
        let held = vec![
            budget.response_bytes(want).await,
            broker.budgets.response_bytes(want).await,
        ];
        let (b, r) = (Arc::clone(broker), Arc::clone(&request));
        let (response, bytes, has_error) =
            broker.budgets.io(move || read_all(&b, &r, want)).await?;
        let min_bytes = request.min_bytes.max(0) as usize;
        let expired = tokio::time::Instant::now() >= deadline;
        if bytes >= min_bytes.max(1) || has_error || expired {
            return Ok((response, shrink(held, bytes)));
        }
        drop(held);
        if !matches!(
            tokio::time::timeout_at(deadline, signal.changed()).await,
            Ok(Ok(()))
        ) {
            // The wait is over: one last read answers whatever is there.
            signal.borrow_and_update();
            tokio::time::sleep_until(deadline).await;
        }
    }
}

fn read_all(
    broker: &Broker,
    request: &FetchRequest,
    max_bytes: usize,
) -> (FetchResponse, usize, bool) {
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut has_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for ft in &request.topics {
        let topic = broker.cluster.topic(ft.topic.0.as_str());
        let mut partitions = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            let base = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_records(Some(Bytes::new()));
            let replica = match partition_of(topic.as_ref(), fp.partition) {
                Ok(replica) => replica,
                Err(error) => {
                    has_error = true;
                    partitions.push(base.with_error_code(code(error)).with_high_watermark(-1));
                    continue;
                }
            };
            if let Some(error) = leader_check(replica, fp.current_leader_epoch) {
                has_error = true;
                partitions.push(base.with_error_code(code(error)).with_high_watermark(-1));
                continue;
            }
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            // KIP-74: the first batch of the first non-empty partition is returned
            // whole even if it is larger than the limits, so consumers make progress.
            let min_one = total == 0;
            match replica.read(Offset(fp.fetch_offset), limit, min_one) {
                Ok(data) => {
                    let n = data.records.len();
                    total += n;
                    remaining = remaining.saturating_sub(n);
                    partitions.push(
                        base.with_high_watermark(data.high_watermark.0)
                            .with_last_stable_offset(data.high_watermark.0)
                            .with_log_start_offset(data.log_start_offset.0)
                            .with_records(Some(data.records)),
                    );
                }
                Err(e) => {
                    has_error = true;
                    let error = match e {
                        ReplicaError::Storage(StorageError::OffsetOutOfRange { .. }) => {
                            ResponseError::OffsetOutOfRange
                        }
                        ReplicaError::ShuttingDown { .. } | ReplicaError::NotLeader { .. } => {
                            ResponseError::NotLeaderOrFollower
                        }
                        _ => ResponseError::KafkaStorageError,
                    };
                    partitions.push(
                        base.with_error_code(code(error))
                            .with_high_watermark(replica.high_watermark().0)
                            .with_last_stable_offset(replica.high_watermark().0)
                            .with_log_start_offset(replica.log_start_offset().0),
                    );
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(ft.topic.clone())
                .with_topic_id(ft.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(topics),
        total,
        has_error,
    )
}
