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
}
