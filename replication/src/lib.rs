//! # sluice-replication
//!
//! A partition replica and the path from append to commit. The flusher knows files
//! and completions only; the high watermark is an input of the replica, set by its
//! owner: on one node from what was flushed ([`HighWatermarkSource::LocalFlush`]),
//! with Raft from the commit index ([`HighWatermarkSource::Owner`]). [`raft`] holds
//! the partition's openraft log store and state machine over the same log;
//! [`start_group`] starts a partition's Raft group, after which queued batches are
//! proposals to it (`proposal.rs`) answered at commit. [`transport`] carries every
//! group's messages between brokers; [`quiet`] stops the timers of groups with
//! nothing to replicate.
//!
//! ```text
//!  enqueue(batch) ─► bounded per-partition queue ─► ticket
//!  append task: every queued batch ─► spawn_blocking(append_group): lock
//!        ─► per batch: producer check ─► Partition::append ─► one sync_target()
//!        ─► unlock ─► flusher.submit(files, done) ─► tickets resolve   acks=1 ◄─ here
//!  flusher thread: every request of the cycle ─► fdatasync each file once
//!                  ─► done(end) ─► flushed_end = end ─► (one node) high watermark
//!  advance_high_watermark(hw) ─► wake commit waiters and fetchers
//!  wait_committed(last + 1)         acks=-1 ◄─ answered when the high watermark passes
//! ```

mod append_queue;
mod error;
mod flusher;
mod group;
mod partition;
mod proposal;
pub mod quiet;
pub mod raft;
mod replica;
pub mod transport;

pub use append_queue::{AppendTicket, QUEUED_BATCHES_MAX};
pub use error::ReplicaError;
pub use flusher::{Completion, FlushRequest, Flusher};
pub use group::{initialize_if_pristine, start_group};
pub use partition::Partition;
pub use replica::{
    Acks, AppendInfo, CommitSignal, Commits, FetchData, HighWatermarkSource, Replica,
    ReplicaContext,
};
