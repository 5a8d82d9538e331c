//! Produce (key 0): validate each partition's batch by header and CRC, queue it for
//! the partition's append task, answer as `acks` asks.
//!
//! ```text
//!  prepare (validation, topic policies; on the I/O pool when heavy)
//!    ─► enqueue (the ordered phase: per-partition queues, in request order)
//!    ─► finish (concurrent: appended = acks=1, then the high watermark for acks=all)
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::ResponseError;
use sluice_protocol::batch::{set_log_append_time, validate_produce_records, BatchView};
use sluice_protocol::records::{keyless_records, reencode_batch, RecordsError};
use sluice_protocol::types::Offset;
use sluice_protocol::BatchError;
use sluice_replication::{Acks, AppendTicket, Replica, ReplicaError};
use sluice_storage::{ProducerError, StorageError};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tracing::debug;

use super::{code, str_bytes};
use crate::cluster::{is_internal_topic, Topic};
use crate::topic_config::{MAX_MESSAGE_BYTES, MIN_INSYNC_REPLICAS};
use crate::Broker;

fn batch_error_code(e: &BatchError) -> ResponseError {
    match e {
        BatchError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        BatchError::Inconsistent { .. }
        | BatchError::NotOneBatch { .. }
        | BatchError::RecordCountMismatch { .. }
        | BatchError::TooManyRecords { .. }
        | BatchError::NonZeroBaseOffset { .. } => ResponseError::InvalidRecord,
        BatchError::Empty
        | BatchError::Truncated { .. }
        | BatchError::BadLength { .. }
        | BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage,
    }
}

/// The Kafka error code of a replica's error.
pub(crate) fn replica_error_code(e: &ReplicaError) -> ResponseError {
    match e {
        ReplicaError::Storage(StorageError::BatchTooLarge { .. }) => {
            ResponseError::RecordListTooLarge
        }
        ReplicaError::Storage(StorageError::Batch(b)) => batch_error_code(b),
        ReplicaError::Producer(ProducerError::InvalidEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        ReplicaError::Producer(ProducerError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
        ReplicaError::Producer(ProducerError::UnknownProducer { .. }) => {
            ResponseError::UnknownProducerId
        }
        ReplicaError::Storage(_) | ReplicaError::Offline { .. } => ResponseError::KafkaStorageError,
        ReplicaError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        ReplicaError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // Retriable: once the earlier copy commits, the retry finds it.
        ReplicaError::InFlightRetry { .. } => ResponseError::RequestTimedOut,
        // The write may or may not have committed: never report success.
        ReplicaError::ShuttingDown { .. } | ReplicaError::Raft { .. } => {
            ResponseError::RequestTimedOut
        }
    }
}

/// Why a partition's batch was refused, as Produce answers it.
#[derive(Debug)]
struct Rejection {
    error: ResponseError,
    message: String,
    /// (index of the record in the batch, why), for INVALID_RECORD on v8+: the
    /// client fails exactly these records.
    record_errors: Vec<(i32, String)>,
}

impl Rejection {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Rejection {
            error,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }

    fn batch(e: &BatchError) -> Self {
        Rejection::new(batch_error_code(e), e.to_string())
    }
}

/// Record errors shown in the partition's error message, as Kafka does.
const RECORD_ERRORS_IN_MESSAGE: usize = 3;

/// The most a compressed batch may inflate to: well past max.message.bytes (a
/// compressed batch may), bounded all the same.
fn inflate_limit(max_message_bytes: i64) -> usize {
    (max_message_bytes.max(0) as usize)
        .saturating_mul(32)
        .max(64 << 20)
}

/// The topic's settings that look inside a batch, applied to a validated batch:
/// re-encoding to `compression.type`, keys on compacted topics, LogAppendTime.
/// Returns the batch to store and the log append time (-1 with CreateTime).
/// Topics with `compression.type=producer` and CreateTime keep the request's bytes:
/// no copy is made.
fn apply_topic_policies(
    topic: &Topic,
    partition: i32,
    records: Bytes,
    max_message_bytes: i64,
    now_ms: i64,
) -> Result<(Bytes, i64), Rejection> {
    let corrupt = |e: RecordsError| Rejection::new(ResponseError::CorruptMessage, e.to_string());
    let inflate_limit = inflate_limit(max_message_bytes);
    let view = BatchView::parse(&records).map_err(|e| Rejection::batch(&e))?;
    let mut stored: Option<Vec<u8>> = None;
    if let Some(target) = topic.configs.compression_target() {
        if view.compression().ok() != Some(target) {
            stored = Some(reencode_batch(&view, target, inflate_limit).map_err(corrupt)?);
        }
    }
    if topic.configs.compacts() && !view.is_control() {
        let keyless = keyless_records(&view, inflate_limit).map_err(corrupt)?;
        if !keyless.is_empty() {
            let why = format!(
                "Compacted topic cannot accept message without key in topic partition {}-{partition}.",
                topic.name
            );
            let record_errors: Vec<(i32, String)> =
                keyless.iter().map(|i| (*i as i32, why.clone())).collect();
            let shown: Vec<String> = record_errors
                .iter()
                .take(RECORD_ERRORS_IN_MESSAGE)
                .map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')"))
                .collect();
            return Err(Rejection {
                error: ResponseError::InvalidRecord,
                message: format!(
                    "One or more records have been rejected due to {} record errors in total, \
                     and only showing the first {RECORD_ERRORS_IN_MESSAGE} errors at most: [{}]",
                    record_errors.len(),
                    shown.join(", ")
                ),
                record_errors,
            });
        }
    }
    if topic.configs.log_append_time() {
        let mut batch = BytesMut::from(stored.as_deref().unwrap_or(&records));
        set_log_append_time(&mut batch, now_ms);
        return Ok((batch.freeze(), now_ms));
    }
    Ok((stored.map_or(records, Bytes::from), -1))
}

/// One partition's answer while the request is being processed.
struct Outcome {
    response: PartitionProduceResponse,
    /// The queued batch, until it is appended.
    ticket: Option<(Arc<Replica>, AppendTicket)>,
    /// Replica and offset to wait for (acks=all), once appended.
    commit_wait: Option<(Arc<Replica>, Offset)>,
}

/// One partition's batch, validated and ready to queue, or its answer already.
enum Prepared {
    Ready {
        index: i32,
        replica: Arc<Replica>,
        batch: Bytes,
        log_append_time_ms: i64,
    },
    Answered(Outcome),
}

/// A produce whose batches are validated, not yet queued.
pub struct PreparedProduce {
    topics: Vec<(TopicName, Vec<Prepared>)>,
    acks: Option<Acks>,
    timeout_ms: i32,
    now_ms: i64,
}

impl std::fmt::Debug for PreparedProduce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedProduce")
            .field("topics", &self.topics.len())
            .field("acks", &self.acks)
            .finish()
    }
}

fn failed(index: i32, error: ResponseError, message: Option<String>) -> Outcome {
    rejected(
        index,
        Rejection {
            error,
            message: message.unwrap_or_default(),
            record_errors: Vec::new(),
        },
    )
}

fn rejected(index: i32, rejection: Rejection) -> Outcome {
    let record_errors = rejection
        .record_errors
        .into_iter()
        .map(|(batch_index, message)| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(batch_index)
                .with_batch_index_error_message(Some(str_bytes(message)))
        })
        .collect();
    let message = (!rejection.message.is_empty()).then(|| str_bytes(rejection.message));
    Outcome {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code(rejection.error))
            .with_base_offset(-1)
            .with_error_message(message)
            .with_record_errors(record_errors),
        ticket: None,
        commit_wait: None,
    }
}

/// A produce whose batches are queued and whose answer waits for their appends
/// (and, for acks=all, their commit).
pub struct PendingProduce {
    topics: Vec<(TopicName, Vec<Outcome>)>,
    acks: Option<Acks>,
    timeout_ms: i32,
}

impl std::fmt::Debug for PendingProduce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingProduce")
            .field("topics", &self.topics.len())
            .field("acks", &self.acks)
            .finish()
    }
}

/// Record bytes up to which a produce is validated on the network thread: the CRC
/// and the record-length walk of this much cost less than a hand-off to the I/O
/// pool (the append itself is on the pool in any case). Larger requests, and any
/// that re-encode or decode records, are validated on the pool.
const INLINE_PREPARE_BYTES_MAX: usize = 1 << 20;

/// Whether validating `request` is cheap enough for a network thread: small, and
/// on topics that neither re-encode nor decode records.
pub fn prepares_inline(broker: &Broker, request: &ProduceRequest) -> bool {
    let mut bytes = 0usize;
    for topic_data in &request.topic_data {
        for pd in &topic_data.partition_data {
            bytes += pd.records.as_ref().map_or(0, |r| r.len());
        }
        if bytes > INLINE_PREPARE_BYTES_MAX {
            return false;
        }
        let Some(topic) = broker.cluster.topic(topic_data.name.0.as_str()) else {
            continue;
        };
        if topic.configs.compression_target().is_some() || topic.configs.compacts() {
            return false;
        }
    }
    true
}

/// Validates every partition's batch and applies its topic's policies; nothing is
/// queued yet.
pub fn prepare(broker: &Arc<Broker>, request: ProduceRequest, _version: i16) -> PreparedProduce {
    let acks = match request.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let now_ms = broker.now_ms();
    // The broker-wide default, read once per request.
    let default_max_bytes = broker.cluster.log_defaults().max_message_bytes as i64;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let name = topic_data.name.0.as_str().to_string();
        let topic = broker.cluster.topic(&name);
        let internal = is_internal_topic(&name);
        let mut outcomes = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let index = pd.index;
            if acks.is_none() {
                outcomes.push(Prepared::Answered(failed(
                    index,
                    ResponseError::InvalidRequiredAcks,
                    None,
                )));
                continue;
            }
            if internal {
                // Only the broker writes its internal topics: a client's records there
                // would rewrite other groups' offsets on the next load.
                let message = format!("Cannot append to internal topic {name}");
                outcomes.push(Prepared::Answered(failed(
                    index,
                    ResponseError::InvalidTopicException,
                    Some(message),
                )));
                continue;
            }
            let replica = match super::partition_of(topic.as_ref(), index) {
                Ok(replica) => replica,
                Err(error) => {
                    outcomes.push(Prepared::Answered(failed(index, error, None)));
                    continue;
                }
            };
            let topic = topic.as_ref().expect("partition found above");
            if acks == Some(Acks::All) {
                if let Some(refusal) = insync_refusal(broker, topic, replica) {
                    outcomes.push(Prepared::Answered(failed(
                        index,
                        ResponseError::NotEnoughReplicas,
                        Some(refusal),
                    )));
                    continue;
                }
            }
            let records = pd.records.unwrap_or_default();
            let max_bytes = topic.configs.i64_or(MAX_MESSAGE_BYTES, default_max_bytes);
            if records.len() as i64 > max_bytes {
                let message = format!(
                    "batch of {} bytes exceeds max.message.bytes {max_bytes}",
                    records.len()
                );
                outcomes.push(Prepared::Answered(failed(
                    index,
                    ResponseError::MessageTooLarge,
                    Some(message),
                )));
                continue;
            }
            if let Err(e) = validate_produce_records(&records, inflate_limit(max_bytes)) {
                debug!(topic = %name, partition = index, error = %e, "rejected batch");
                outcomes.push(Prepared::Answered(rejected(index, Rejection::batch(&e))));
                continue;
            }
            let (batch, log_append_time_ms) = match apply_topic_policies(
                topic, index, records, max_bytes, now_ms,
            ) {
                Ok(prepared) => prepared,
                Err(rejection) => {
                    debug!(topic = %name, partition = index, message = %rejection.message, "rejected batch");
                    outcomes.push(Prepared::Answered(rejected(index, rejection)));
                    continue;
                }
            };
            outcomes.push(Prepared::Ready {
                index,
                replica: Arc::clone(replica),
                batch,
                log_append_time_ms,
            });
        }
        topics.push((topic_data.name, outcomes));
    }
    PreparedProduce {
        topics,
        acks,
        timeout_ms: request.timeout_ms,
        now_ms,
    }
}

/// acks=all on a partition whose leader sees fewer in-sync replicas (itself
/// included) than `min.insync.replicas`: why it is refused. A single broker's
/// partition has one replica, itself.
fn insync_refusal(broker: &Broker, topic: &Topic, replica: &Replica) -> Option<String> {
    let min = topic.configs.i64_or(MIN_INSYNC_REPLICAS, 1);
    if min <= 1 {
        return None;
    }
    let isr = match replica.raft() {
        Some(_) => {
            let lag_max =
                std::time::Duration::from_millis(broker.config.cluster.replica_lag_time_max_ms);
            // Not the leader: the append answers NOT_LEADER_OR_FOLLOWER.
            replica.in_sync_replicas(lag_max)?
        }
        None => vec![broker.node_id() as u64],
    };
    ((isr.len() as i64) < min).then(|| {
        format!(
            "{} in-sync replicas {isr:?}, below min.insync.replicas {min}",
            isr.len()
        )
    })
}

/// The ordered phase: queues every partition's batch for its append task, so that
/// requests of one connection reach each log in the order they were sent. Waits
/// while a partition's queue is full.
pub async fn enqueue(prepared: PreparedProduce) -> PendingProduce {
    let PreparedProduce {
        topics,
        acks,
        timeout_ms,
        now_ms,
    } = prepared;
    let mut queued = Vec::with_capacity(topics.len());
    for (name, partitions) in topics {
        let mut outcomes = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (index, replica, batch, log_append_time_ms) = match p {
                Prepared::Answered(outcome) => {
                    outcomes.push(outcome);
                    continue;
                }
                Prepared::Ready {
                    index,
                    replica,
                    batch,
                    log_append_time_ms,
                } => (index, replica, batch, log_append_time_ms),
            };
            match replica
                .enqueue(batch, now_ms, acks.unwrap_or(Acks::All))
                .await
            {
                Ok(ticket) => outcomes.push(Outcome {
                    response: PartitionProduceResponse::default()
                        .with_index(index)
                        .with_log_append_time_ms(log_append_time_ms),
                    ticket: Some((replica, ticket)),
                    commit_wait: None,
                }),
                Err(e) => outcomes.push(failed(index, replica_error_code(&e), Some(e.to_string()))),
            }
        }
        queued.push((name, outcomes));
    }
    PendingProduce {
        topics: queued,
        acks,
        timeout_ms,
    }
}

/// The concurrent phase: waits for the appends (then the request's frame budget
/// goes), for commits (acks=all), and builds the answer; `None` for acks=0.
/// `settled` fires once the produce took effect as its acks promise: appended
/// (acks 0 and 1) or committed (acks=all).
pub async fn finish(
    pending: PendingProduce,
    settled: oneshot::Sender<()>,
    frame_budget: Option<OwnedSemaphorePermit>,
) -> Option<ProduceResponse> {
    let PendingProduce {
        mut topics,
        acks,
        timeout_ms,
    } = pending;
    // A replicated append answers at commit: it too is bounded by the timeout
    // (an isolated leader never commits; the outcome is then unknown).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
    for (_, outcomes) in topics.iter_mut() {
        for outcome in outcomes.iter_mut() {
            let Some((replica, ticket)) = outcome.ticket.take() else {
                continue;
            };
            let appended = if replica.raft().is_some() {
                match wait_replicated(&replica, ticket, deadline).await {
                    Ok(r) => r,
                    Err(error) => {
                        let index = outcome.response.index;
                        *outcome = failed(index, error, None);
                        continue;
                    }
                }
            } else {
                ticket.appended().await
            };
            match appended {
                Ok(info) => {
                    outcome.response.base_offset = info.base_offset.0;
                    outcome.response.log_start_offset = info.log_start_offset.0;
                    if acks == Some(Acks::All) {
                        outcome.commit_wait = Some((replica, info.last_offset.next()));
                    }
                }
                Err(e) => {
                    let index = outcome.response.index;
                    *outcome = failed(index, replica_error_code(&e), Some(e.to_string()));
                }
            }
        }
    }
    drop(frame_budget);
    if acks == Some(Acks::None) {
        let _ = settled.send(());
        return None;
    }
    wait_for_commits(&mut topics, timeout_ms).await;
    let _ = settled.send(());
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(outcomes.into_iter().map(|o| o.response).collect())
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// How often a write waiting for its commit checks that this broker still leads.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(100);

/// Waits for a replicated write's answer until the deadline (REQUEST_TIMED_OUT)
/// or until this broker stops leading the partition (NOT_LEADER_OR_FOLLOWER: a
/// leader cut off from the majority answers at once instead of holding the
/// producer until its timeout). Either way the outcome is unknown.
async fn wait_replicated(
    replica: &Replica,
    ticket: AppendTicket,
    deadline: tokio::time::Instant,
) -> Result<Result<sluice_replication::AppendInfo, ReplicaError>, ResponseError> {
    let appended = ticket.appended();
    tokio::pin!(appended);
    let mut check = tokio::time::interval(LEADERSHIP_CHECK);
    loop {
        tokio::select! {
            r = &mut appended => return Ok(r),
            () = tokio::time::sleep_until(deadline) => return Err(ResponseError::RequestTimedOut),
            _ = check.tick() => {
                if !replica.is_leader() {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
            }
        }
    }
}

/// Waits, up to the request's timeout, until every acks=all write is committed.
/// A write still uncommitted at the deadline is REQUEST_TIMED_OUT (outcome unknown).
async fn wait_for_commits(topics: &mut [(TopicName, Vec<Outcome>)], timeout_ms: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
    for (_, outcomes) in topics.iter_mut() {
        for outcome in outcomes.iter_mut() {
            let Some((replica, offset)) = outcome.commit_wait.take() else {
                continue;
            };
            let error =
                match tokio::time::timeout_at(deadline, replica.wait_committed(offset)).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => replica_error_code(&e),
                    Err(_) => ResponseError::RequestTimedOut,
                };
            outcome.response.error_code = code(error);
            outcome.response.base_offset = -1;
        }
    }
}
