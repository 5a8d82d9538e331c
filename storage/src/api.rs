//! The contract every partition log keeps.

use sluice_protocol::types::{LeaderEpoch, Offset};

use crate::{LogStart, ReadResult, RetentionOutcome, StorageError, VoteRecord};

/// A partition log: v2 record batches at dense offsets.
///
/// ### To ensure correctness, an implementation guarantees:
/// - `append` places the batch at the log end, patches its `baseOffset` and leader
///   epoch (and nothing else), and returns its (base, last) offsets; offsets are
///   dense from `log_start_offset` to `log_end_offset`, with no hole, except where
///   compaction removed whole batches.
/// - `read(offset, ..)` returns whole batches exactly as appended, starting with
///   the batch that holds `offset`, stopping before the first batch whose last
///   offset is >= `upper` and before `max_bytes` (but with at least one batch when
///   `min_one_batch` and one is below `upper`). It may return fewer batches than
///   fit (a file log stops at the end of a segment), never none when a batch is
///   readable and `min_one_batch` is set. An offset outside `[log_start, log_end]`
///   is `OffsetOutOfRange`.
/// - `truncate_to(next)` removes every batch at or after `next` (a batch boundary
///   at or above the log start, right after the previous batch: Raft truncates only
///   above its commit point, where the log is dense); the next append gets `next`.
/// - `advance_log_start(offset)` makes offsets below `offset` unreadable; it never
///   moves the start backwards nor past the log end.
/// - Entries: every stored batch is one Raft entry, numbered densely from
///   `first_entry_index` (retention removes whole segments from the head, truncation
///   cuts the tail, compaction keeps emptied batches in place); `entry_at(i)` is
///   the i-th batch.
/// - The start: `log_start()` is persisted as (offset, first entry, term of the
///   entry before it); `purge_entries(last, term)` makes entries up to `last`
///   unreadable (past the log end it empties the log, whose next entry is then
///   `last + 1`), `reset_to(start)` empties the log at `start` (a replica that
///   installs a snapshot). Both persist the new start before deleting anything.
/// - `save_vote` is durable when it returns; `save_committed` need not be.
/// - `offset_for_timestamp(ts)` is the first record at or above the log start
///   whose timestamp is >= `ts`: its offset and timestamp (a batch that cannot be
///   decoded answers its base offset, clamped to the log start, and max timestamp).
pub trait Log {
    fn log_start_offset(&self) -> Offset;
    fn log_end_offset(&self) -> Offset;
    fn append(
        &mut self,
        batch: &mut [u8],
        epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<(Offset, Offset), StorageError>;
    fn read(
        &mut self,
        offset: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError>;
    fn offset_for_timestamp(
        &mut self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError>;
    fn truncate_to(&mut self, next: Offset) -> Result<(), StorageError>;
    fn advance_log_start(&mut self, offset: Offset) -> Result<RetentionOutcome, StorageError>;

    /// Entry index (the batch's sequence number) of the first stored batch: Raft's
    /// first log index.
    fn first_entry_index(&self) -> u64;
    /// Entry index the next appended batch gets: Raft's last log index + 1.
    fn next_entry_index(&self) -> u64;
    /// Entry `index`: its (base offset, last offset, term), the term being the
    /// batch's partitionLeaderEpoch; `None` outside `[first_entry_index, next_entry_index)`.
    fn entry_at(
        &mut self,
        index: u64,
    ) -> Result<Option<(Offset, Offset, LeaderEpoch)>, StorageError>;

    /// The persisted start of the log.
    fn log_start(&self) -> LogStart;
    /// Moves the start forward to `start` (neither its offset nor its entry ever go
    /// backwards; both stay within the log end), persisting it before the segments
    /// wholly below it are deleted.
    fn move_log_start(&mut self, start: LogStart) -> Result<RetentionOutcome, StorageError>;
    /// Removes every entry; the log restarts empty with `start` as its start and end.
    fn reset_to(&mut self, start: LogStart) -> Result<(), StorageError>;

    /// The last vote saved.
    fn vote(&self) -> Option<VoteRecord>;
    /// Saves the vote durably before returning.
    fn save_vote(&mut self, vote: &VoteRecord) -> Result<(), StorageError>;
    /// The last commit point saved: (entry index, term).
    fn committed(&self) -> Option<(u64, LeaderEpoch)>;
    /// Saves the commit point (a crash may lose the latest one).
    fn save_committed(&mut self, committed: Option<(u64, LeaderEpoch)>)
        -> Result<(), StorageError>;

    /// Purges every entry up to `last`, whose term is `term`, as Raft's `purge`
    /// asks: the log then starts at entry `last + 1`. Past the log end the log is
    /// emptied and its next entry is `last + 1`; entries already gone are no-ops.
    fn purge_entries(
        &mut self,
        last: u64,
        term: LeaderEpoch,
    ) -> Result<RetentionOutcome, StorageError> {
        let first_kept = last + 1;
        if first_kept < self.first_entry_index() {
            return Ok(RetentionOutcome::default());
        }
        let start = |offset| LogStart {
            offset,
            entry: first_kept,
            prev_term: Some(term),
        };
        let next = self.next_entry_index();
        if first_kept > next {
            self.reset_to(start(self.log_end_offset()))?;
            return Ok(RetentionOutcome::default());
        }
        let offset = if first_kept == next {
            self.log_end_offset()
        } else {
            match self.entry_at(first_kept)? {
                Some((base, _, _)) => base,
                None => self.log_end_offset(),
            }
        };
        self.move_log_start(start(offset))
    }

    /// Removes every entry after `last_kept` (every stored entry for `None`), as
    /// Raft's `truncate_after` asks; the next append is entry `last_kept + 1` at the
    /// offset that entry had.
    fn truncate_after_entry(&mut self, last_kept: Option<u64>) -> Result<(), StorageError> {
        let first_gone = last_kept
            .map_or(self.first_entry_index(), |k| k + 1)
            .max(self.first_entry_index());
        if first_gone >= self.next_entry_index() {
            return Ok(());
        }
        match self.entry_at(first_gone)? {
            // The log start inside the first entry (a DeleteRecords cut) cannot be
            // rewound below: that entry cannot be truncated.
            Some((base, _, _)) if base < self.log_start_offset() => {
                Err(StorageError::OffsetOutOfRange {
                    requested: base,
                    log_start: self.log_start_offset(),
                    log_end: self.log_end_offset(),
                })
            }
            Some((base, _, _)) => self.truncate_to(base),
            None => Ok(()),
        }
    }
}
