use std::path::PathBuf;

use sluice_protocol::types::Offset;
use sluice_protocol::BatchError;
use thiserror::Error;

/// Errors of the partition log.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("offset {requested} is out of range: log start {log_start}, log end {log_end}")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error("corrupt log {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("batch of {size} bytes does not fit a segment of {segment_bytes} bytes")]
    BatchTooLarge { size: usize, segment_bytes: u64 },
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    #[error("log {path} is offline after an earlier I/O failure")]
    Offline { path: PathBuf },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
