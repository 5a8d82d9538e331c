//! A partition's Raft group over its own log: openraft's log store and state
//! machine, with the partition log as the Raft log (one entry, one stored batch,
//! the term as the batch's partitionLeaderEpoch).
//!
//! ```text
//!  append(entries, IOFlushed) ─► lock ─► encode ─► PartitionLog::append_shared
//!        ─► sync_target() ─► unlock ─► flusher.submit(files, IOFlushed)
//!  truncate_after(id) ─► Log::truncate_after_entry     purge(id) ─► Log::purge_entries
//!  save_vote ─► raft-vote, synced before it returns     save_committed ─► raft-committed
//!  apply(entries) ─► applied, membership, next offset ─► on_commit(high watermark)
//!  snapshot = state at a point: next offset (and, later, producer state)
//! ```

pub(crate) mod codec;
mod log_store;
mod notices;
mod state_machine;

use std::fmt;

use bytes::Bytes;
use openraft::vote::leader_id_std;
use openraft::LogId;
use sluice_protocol::types::Offset;

pub use codec::{decode, encode, epoch_of, term_of, CONTROL_RAFT_BLANK, CONTROL_RAFT_MEMBERSHIP};
pub use log_store::{PartitionLogReader, PartitionLogStore, SharedLog};
pub use notices::AppendNotices;
pub use state_machine::{
    ApplyHook, CommitHook, PartitionSnapshotBuilder, PartitionStateMachine, SnapshotRequests,
};

/// The data of a normal entry: one producer batch, validated by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerBatch(pub Bytes);

impl fmt::Display for ProducerBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.0.len())
    }
}

/// What applying a normal entry answers: the offsets its batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
}

openraft::declare_raft_types!(
    /// Raft types of a partition group.
    pub PartitionRaft:
        D = ProducerBatch,
        R = AppliedBatch,
        NodeId = u64,
        Node = openraft::EmptyNode,
        Term = u64,
        LeaderId = leader_id_std::LeaderId<u64, u64>,
);

/// The Raft node of one partition group on this broker.
pub type RaftNode = openraft::Raft<PartitionRaft, PartitionStateMachine>;

/// A Raft entry of a partition group.
pub type Entry = openraft::alias::EntryOf<PartitionRaft>;
/// A Raft log id of a partition group: (term, index).
pub type RaftLogId = openraft::alias::LogIdOf<PartitionRaft>;

/// The log id of entry `index` written in `term`.
pub fn log_id(term: u64, index: u64) -> RaftLogId {
    LogId::new(leader_id_std::CommittedLeaderId::new(term), index)
}
