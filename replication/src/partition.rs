//! A partition's log and the idempotent producer state derived from it, changed
//! together: whoever appends (the leader's produce path, a Raft follower's
//! replicated append) goes through [`Partition::append`], which records the
//! batch's producer; a truncation rewinds the producer state to the new end; a
//! reset to a snapshot takes the snapshot's producer state.
//!
//! Producer snapshots (`<offset>.snapshot`) are written when an append starts a
//! new segment and at shutdown, so that a rebuild replays at most about a segment.

use std::path::PathBuf;

use sluice_protocol::batch::BatchView;
use sluice_storage::{
    LeaderEpoch, Log, LogConfig, LogStart, Offset, PartitionLog, ProducerStates, StorageError,
};
use tracing::warn;

/// A partition log with its producer state.
#[derive(Debug)]
pub struct Partition {
    log: PartitionLog,
    producers: ProducerStates,
}

impl std::ops::Deref for Partition {
    type Target = PartitionLog;
    fn deref(&self) -> &PartitionLog {
        &self.log
    }
}

impl Partition {
    /// Opens (and recovers) the log in `dir` and rebuilds its producer state.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Self, StorageError> {
        let mut log = PartitionLog::open(dir, config)?;
        let producers = ProducerStates::rebuild(&mut log)?;
        Ok(Partition { log, producers })
    }

    /// The log, for what leaves producer state alone (reads, syncs, retention at
    /// the head, compaction: none of them changes the batches a producer sent).
    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    pub fn producers_mut(&mut self) -> &mut ProducerStates {
        &mut self.producers
    }

    /// Appends one validated batch at the log end (see
    /// [`PartitionLog::append_shared`]) and records it in the producer state.
    /// Returns its (base, last) offsets.
    pub fn append(
        &mut self,
        batch: &[u8],
        epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<(Offset, Offset), StorageError> {
        let view = BatchView::parse(batch)?;
        let active_before = self.log.active_segment_base();
        let (base, last) = self.log.append_shared(batch, epoch, now_ms)?;
        if self.log.active_segment_base() != active_before {
            // A new segment: snapshot the producers as of its base.
            let dir = self.log.dir().to_path_buf();
            if let Err(e) = self.producers.write_snapshot(&dir, base) {
                warn!(dir = %dir.display(), error = %e, "producer snapshot failed");
            }
        }
        self.producers.record_stored(&view, base, last);
        Ok((base, last))
    }

    /// Raft's truncate_after: removes the entries after `last_kept` and rewinds
    /// the producer state to the new end.
    pub fn truncate_after_entry(&mut self, last_kept: Option<u64>) -> Result<(), StorageError> {
        let end = self.log.log_end_offset();
        self.log.truncate_after_entry(last_kept)?;
        if self.log.log_end_offset() != end {
            self.producers = ProducerStates::rebuild(&mut self.log)?;
        }
        Ok(())
    }

    /// Restarts the log empty at `start` with `producers` as its producer state
    /// (a replica installing a snapshot). The state is snapshotted at the start so
    /// that a restart rebuilds it.
    pub fn reset_to(
        &mut self,
        start: LogStart,
        producers: ProducerStates,
    ) -> Result<(), StorageError> {
        self.log.reset_to(start)?;
        let dir = self.log.dir().to_path_buf();
        ProducerStates::remove_snapshots(&dir)?;
        producers.write_snapshot(&dir, start.offset)?;
        self.producers = producers;
        Ok(())
    }

    /// The producer state as of `end` (a batch boundary at or below the log end).
    pub fn producers_at(&mut self, end: Offset) -> Result<ProducerStates, StorageError> {
        if end >= self.log.log_end_offset() {
            return Ok(self.producers.clone());
        }
        ProducerStates::state_at(&mut self.log, end)
    }

    /// Syncs the log and snapshots the producer state at its end (shutdown).
    pub fn close(&mut self) -> Result<(), StorageError> {
        self.log.sync_all()?;
        let (dir, end) = (self.log.dir().to_path_buf(), self.log.log_end_offset());
        self.producers.write_snapshot(&dir, end)
    }
}
