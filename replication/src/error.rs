use sluice_storage::{ProducerError, StorageError};
use thiserror::Error;

/// Errors of a partition replica.
#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("partition {partition} is offline: {reason}")]
    Offline { partition: String, reason: String },
    #[error("partition {partition} is shutting down")]
    ShuttingDown { partition: String },
    #[error("this broker does not lead partition {partition} (leader: {leader:?})")]
    NotLeader {
        partition: String,
        leader: Option<u64>,
    },
    #[error("partition {partition}: a batch of producer {producer_id} with this sequence is still being replicated")]
    InFlightRetry { partition: String, producer_id: i64 },
    #[error("partition {partition}: offset {offset} is above the high watermark {high_watermark}")]
    OffsetOutOfRange {
        partition: String,
        offset: i64,
        high_watermark: i64,
    },
    #[error("partition {partition}: replication failed: {reason}")]
    Raft { partition: String, reason: String },
}
