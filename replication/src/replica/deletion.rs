//! DeleteRecords on a replica: the log start moves up to a requested offset.
//! On a single node the log moves it exactly. A replicated partition's head goes
//! through its Raft group like retention's: a snapshot at the entry just below the
//! new start, after which openraft purges the log up to it, on every replica. The
//! new start is then the first offset of the batch holding the requested offset:
//! never a record at or above it is removed, and the batch's earlier records stay
//! until the next deletion or retention reaches past it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_storage::{Log, Offset};

use super::Replica;
use crate::ReplicaError;

/// How long a replicated deletion waits for its purge.
const PURGE_WAIT: Duration = Duration::from_secs(10);

impl Replica {
    /// Deletes the records below `offset` (-1: the high watermark). Returns the
    /// new log start. An offset above the high watermark is refused.
    pub async fn delete_records(self: &Arc<Self>, offset: i64) -> Result<Offset, ReplicaError> {
        self.check_online()?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { Offset(offset) };
        if target.0 < 0 || target > hw {
            return Err(ReplicaError::OffsetOutOfRange {
                partition: self.name.clone(),
                offset,
                high_watermark: hw.0,
            });
        }
        let me = Arc::clone(self);
        let blocking = tokio::task::spawn_blocking(move || me.plan_deletion(target));
        let planned = blocking.await.map_err(|e| ReplicaError::Raft {
            partition: self.name.clone(),
            reason: e.to_string(),
        })??;
        let Some((index, epoch, start)) = planned else {
            return Ok(self.log_start_offset());
        };
        let (Some(raft), Some(snapshots)) = (self.raft.get(), self.snapshots.get()) else {
            return Ok(self.log_start_offset());
        };
        self.snapshot_at(raft, snapshots, index, epoch, start)
            .await?;
        let deadline = tokio::time::Instant::now() + PURGE_WAIT;
        while self.log_start_offset() < start && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(self.log_start_offset())
    }

    /// On one node: moves the log start and returns `None`. Replicated: the
    /// snapshot point (the entry below the batch holding `target`, its epoch) and
    /// the new start, or `None` when the log already starts there.
    fn plan_deletion(
        &self,
        target: Offset,
    ) -> Result<Option<(u64, sluice_storage::LeaderEpoch, Offset)>, ReplicaError> {
        let mut p = self.partition()?;
        let log = p.log_mut();
        if self.raft.get().is_none() {
            log.delete_records(target)?;
            self.log_start
                .store(log.log_start_offset().0, Ordering::Release);
            return Ok(None);
        }
        // The first entry that ends at or after the target holds it.
        let (mut lo, mut hi) = (log.first_entry_index(), log.next_entry_index());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match log.entry_at(mid)? {
                Some((_, last, _)) if last < target => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let start = match log.entry_at(lo)? {
            Some((base, _, _)) => base.min(target),
            None => target,
        };
        if start <= log.log_start_offset() || lo == 0 {
            return Ok(None);
        }
        let below = lo - 1;
        Ok(log
            .entry_at(below)?
            .map(|(_, _, epoch)| (below, epoch, start)))
    }
}
