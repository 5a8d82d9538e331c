//! # sluice-replication
//!
//! A partition replica and the path from append to commit. Today a partition has one
//! replica, which is its leader. The flusher knows files and completions only; the
//! high watermark is an input of the replica, set by its owner: on one node from
//! what was flushed ([`HighWatermarkSource::LocalFlush`]), with Raft from the
//! commit index ([`HighWatermarkSource::Owner`]). The Raft group of each partition takes this place when the cluster
//! lands: the same `Replica` surface (append with acks, read below the high
//! watermark, commit notifications), with the log as the Raft log.
//!
//! ```text
//!  append_now(batch) ─► lock ─► producer check ─► PartitionLog::append_shared
//!        ─► sync_target() ─► unlock ─► flusher.submit(files, done)   acks=1 ◄─ here
//!  flusher thread: every request of the cycle ─► fdatasync each file once
//!                  ─► done(end) ─► flushed_end = end ─► (one node) high watermark
//!  advance_high_watermark(hw) ─► wake commit waiters and fetchers
//!  wait_committed(last + 1)         acks=-1 ◄─ answered when the high watermark passes
//! ```

mod error;
mod flusher;
mod partition;
pub mod raft;
mod replica;

pub use error::ReplicaError;
pub use flusher::{Completion, FlushRequest, Flusher};
pub use partition::Partition;
pub use replica::{
    Acks, AppendInfo, CommitSignal, Commits, FetchData, HighWatermarkSource, Replica,
    ReplicaContext,
};
