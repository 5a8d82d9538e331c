//! Errors of the protocol layer. Kafka error codes are chosen by the broker's handlers.

use thiserror::Error;

/// A frame could not be cut from the byte stream. The connection must be closed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes (socket.request.max.bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("frame has a negative length {size}")]
    NegativeLength { size: i32 },
}

/// A request could not be decoded. The connection must be closed, except where the
/// codec says an error response can be sent.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("frame of {size} bytes is too short for a request header")]
    ShortHeader { size: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("{api} v{version} is not supported (supported: v{min}-v{max})")]
    UnsupportedVersion {
        api: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("could not encode {api} v{version} response: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
}

/// A record batch failed validation. Each variant maps to one Kafka error code.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record set is empty")]
    Empty,
    #[error("record batch is truncated: {available} bytes, header says {declared}")]
    Truncated { available: usize, declared: usize },
    #[error("record batch length {length} is invalid")]
    BadLength { length: i32 },
    #[error("record batch magic {magic} is not supported (only magic 2)")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch is inconsistent: {reason}")]
    Inconsistent { reason: &'static str },
    #[error("produce request carries {count} record batches; exactly one is required")]
    NotOneBatch { count: usize },
    #[error("record batch declares {declared} records but holds {found}")]
    RecordCountMismatch { declared: i32, found: usize },
    #[error("compressed record batch declares {declared} records, more than its at most {bound} decompressed bytes can hold")]
    TooManyRecords { declared: i32, bound: usize },
    #[error("the baseOffset of a produced record batch must be 0, got {base_offset}")]
    NonZeroBaseOffset { base_offset: i64 },
}
