//! # sluice-storage
//!
//! The partition log: a directory of segments named by base offset, each a file of v2
//! RecordBatches exactly as Kafka stores them, with a sparse offset index and a time
//! index. Storage speaks offsets and byte slices, never protocol structs, and knows
//! nothing of sockets or the wall clock (time comes in as `now_ms`). Of Raft it
//! keeps what a log store must (entry numbering, the start as (offset, entry,
//! term), the vote) without knowing Raft's types.
//!
//! ```text
//!  append(batch) ──► active segment: pwrite at end ──► offset/time index every
//!                    index_interval_bytes ──► roll at segment_bytes / segment_ms
//!  read(offset)  ──► floor segment ──► index floor ──► one pread ──► whole batches
//!  sync_target() ──► (files written since the last sync, log end) for the flusher
//!  open(dir)     ──► headers of sealed segments, CRC32C of the active one, torn tail cut
//! ```
//!
//! [`Log`] states the contract; [`PartitionLog`] (files) and [`MemoryLog`] (the
//! reference model) implement it and run the same conformance suite.

mod api;
mod compaction;
mod entries;
mod error;
mod index;
mod log;
mod memory;
mod mmap;
mod producers;
mod read;
mod segment;
mod state_files;

pub use api::Log;
pub use compaction::{CompactedSegments, CompactionConfig, CompactionPlan, CompactionStats};
pub use error::StorageError;
pub use log::{
    EntryLocation, LogConfig, PartitionLog, ReadResult, RetentionOutcome, StoredEntry, SyncTarget,
};
pub use memory::MemoryLog;
pub use producers::{
    last_seq, BatchMeta, ProducerEntry, ProducerError, ProducerStates, SequenceCheck, BATCHES_KEPT,
};
pub use read::ReadPlan;
pub use sluice_protocol::types::{LeaderEpoch, Offset};
pub use state_files::{LogStart, VoteRecord};
