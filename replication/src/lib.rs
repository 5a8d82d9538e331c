//! # sluice-replication
//!
//! A partition replica and the path from append to commit. Today a partition has one
//! replica, which is its leader; its commit point is what the group-commit flusher has
//! made durable. The Raft group of each partition takes this place when the cluster
//! lands: the same `Replica` surface (append with acks, read below the high
//! watermark, commit notifications), with the log as the Raft log.
//!
//! ```text
//!  append_now(batch) ─► lock ─► producer check ─► PartitionLog::append_shared ─► unlock
//!        ─► flusher.mark_dirty      acks=1 ◄─ answered here
//!  wait_committed(last + 1)         acks=-1 ◄─ answered when commit >= last offset
//!  flusher thread: take dirty replicas ─► sync_target() ─► fdatasync (no lock held)
//!                  ─► commit(end): high watermark = end, wake waiters and fetchers
//! ```

mod error;
mod flusher;
mod replica;

pub use error::ReplicaError;
pub use flusher::{CommitSignal, Flusher};
pub use replica::{Acks, AppendInfo, FetchData, Replica};
