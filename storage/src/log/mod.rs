//! The partition log: ordered segments, the log start offset, reads and truncation.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::batch::{self, BatchHeader, BatchView, HEADER_BYTES};
use sluice_protocol::types::{LeaderEpoch, Offset};
use tracing::warn;

use crate::compaction::{CompactedSegments, CompactionPlan, CompactionStats, PlannedSegment};
use crate::read::ReadPlan;
use crate::segment::{IndexConfig, Segment, RELATIVE_OFFSET_MAX};
use crate::state_files::{
    sync_dir, write_committed, write_log_start, write_vote, LogStart, VoteRecord,
};
use crate::{Log, StorageError};

mod entry_reads;
mod open;

pub use entry_reads::StoredEntry;

/// The batch's lastOffsetDelta, once its header is known to be well formed.
fn batch_last_offset_delta(batch: &[u8]) -> Result<i32, StorageError> {
    let view = BatchView::parse(batch)?;
    Ok(view.last_offset_delta())
}

/// The most a stored batch may inflate to when a lookup decodes it.
const DECODE_BYTES_MAX: usize = 256 << 20;

/// Per-log settings (Kafka's topic-level names in comments).
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between two index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: size of each index file while its segment is active;
    /// a full index rolls the segment.
    pub index_max_bytes: u64,
    /// Sealed segments of this log whose file and index maps may be open at once.
    pub open_sealed_segments_max: usize,
    /// `flush.messages`: sync once this many records are unsynced.
    pub flush_messages: i64,
    /// `flush.ms`: sync once the oldest unsynced append is this old.
    pub flush_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            index_max_bytes: 10 << 20,
            open_sealed_segments_max: 8,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    fn index(&self) -> IndexConfig {
        IndexConfig {
            interval_bytes: self.index_interval_bytes,
            max_bytes: self.index_max_bytes,
        }
    }
}

/// Where a Raft entry (one batch) is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLocation {
    pub index: u64,
    pub segment_base: Offset,
    pub position: u64,
    pub size: usize,
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The batch's partitionLeaderEpoch, which is the Raft term.
    pub term: LeaderEpoch,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// Files the flusher must sync so that everything below `end` is durable.
#[derive(Debug)]
pub struct SyncTarget {
    pub files: Vec<Arc<File>>,
    pub end: Offset,
}

/// Whole batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches exactly as stored; empty when nothing is available.
    pub records: Bytes,
    /// One past the last offset of the returned batches (the fetch offset if empty).
    pub next_offset: Offset,
}

/// A segmented partition log.
///
/// ### Contract
/// - `append` stores the batch after the current log end; offsets are dense from
///   `log_start_offset` to `log_end_offset`, with no hole, across restarts.
/// - Data is durable only after the files of a [`SyncTarget`] taken after the append
///   have been synced; until then a crash may lose a suffix, never a middle.
/// - `read` returns whole batches that contain offsets >= the fetch offset, stopping
///   before the first batch whose last offset is >= `upper`.
/// - `truncate_to(next)` drops every batch at or after `next`; `advance_log_start`
///   drops whole segments below the new log start and persists it.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<Offset, Segment>,
    /// The persisted start; `start.entry` is at least the first segment's entry.
    start: LogStart,
    vote: Option<VoteRecord>,
    committed: Option<(u64, LeaderEpoch)>,
    /// Files of segments sealed since the last sync target was taken.
    sealed_unsynced: Vec<Arc<File>>,
    /// Log end covered by the last sync target taken.
    sync_requested: Offset,
    /// Sealed segments with open handles, least recently used first.
    open_sealed: VecDeque<Offset>,
    /// Records appended since the last sync target, and when the first of them was.
    unsynced_records: i64,
    unsynced_since_ms: Option<i64>,
}

impl PartitionLog {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    /// Takes new settings (a topic config changed): rolling and syncing follow
    /// them from the next append; index settings apply to segments created from
    /// now on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.summary.size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// Segments whose file is open now (the active one and cached sealed ones).
    pub fn open_segment_count(&self) -> usize {
        self.segments
            .values()
            .filter(|s| s.has_open_handles())
            .count()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn create_segment(&mut self, base: Offset, base_entry: u64) -> Result<(), StorageError> {
        let seg = Segment::create(&self.dir, base, base_entry, self.config.index())?;
        sync_dir(&self.dir)?;
        self.segments.insert(base, seg);
        Ok(())
    }

    fn roll(&mut self) -> Result<(), StorageError> {
        let base = self.log_end_offset();
        let next_entry = self.next_entry_index();
        let sealed_base = self.active().base_offset;
        let file = self.active_mut().seal()?;
        self.sealed_unsynced.push(file);
        self.note_open_sealed(sealed_base);
        self.create_segment(base, next_entry)
    }

    /// Seals the active segment and starts the next one (nothing when it is empty).
    pub fn roll_segment(&mut self) -> Result<(), StorageError> {
        if self.active().summary.size == 0 {
            return Ok(());
        }
        self.roll()
    }

    /// Seals the active segment when a new log start `offset` consumes all of it,
    /// so that it can be deleted and the next entry starts a segment of its own.
    fn roll_if_consumed(&mut self, offset: Offset) -> Result<(), StorageError> {
        if offset == self.log_end_offset() && self.active().summary.size > 0 {
            self.roll()?;
        }
        Ok(())
    }

    /// Records that a sealed segment's handles are open, closing the least recently
    /// used ones beyond `open_sealed_segments_max`.
    fn note_open_sealed(&mut self, base: Offset) {
        self.open_sealed.retain(|b| *b != base);
        self.open_sealed.push_back(base);
        while self.open_sealed.len() > self.config.open_sealed_segments_max {
            let Some(victim) = self.open_sealed.pop_front() else {
                break;
            };
            if let Some(seg) = self.segments.get_mut(&victim) {
                seg.close_handles();
            }
        }
    }

    /// Appends one validated batch without changing the caller's bytes: the batch's
    /// first 16 bytes are written with `baseOffset` (the log end) and the leader
    /// epoch assigned, the rest as it is (the CRC does not cover those fields).
    /// Returns (base, last) offsets.
    pub fn append_shared(
        &mut self,
        batch: &[u8],
        epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<(Offset, Offset), StorageError> {
        let size = batch.len() as u64;
        if size > self.config.segment_bytes {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                segment_bytes: self.config.segment_bytes,
            });
        }
        let last_delta = i64::from(batch_last_offset_delta(batch)?);
        if self.needs_roll(size, last_delta, now_ms) {
            self.roll()?;
        }
        let base = self.log_end_offset();
        let (prefix, last) = batch::patched_prefix(batch, base, epoch);
        self.active_mut().append(&prefix, batch, now_ms)?;
        assert_eq!(self.log_end_offset(), last.next(), "log end after append");
        self.unsynced_records += last.0 - base.0 + 1;
        self.unsynced_since_ms.get_or_insert(now_ms);
        Ok((base, last))
    }

    /// Whether appending `size` bytes whose last offset is `last_delta` past the log
    /// end rolls the active segment first: it would outgrow `segment.bytes`, it is
    /// older than `segment.ms`, its index is full, or its relative offsets (an int,
    /// as Kafka's) could not express the batch. An empty segment never rolls.
    fn needs_roll(&self, size: u64, last_delta: i64, now_ms: i64) -> bool {
        let active = self.active();
        let too_big = active.summary.size + size > self.config.segment_bytes;
        let too_old = active
            .first_append_ms
            .is_some_and(|t| now_ms - t >= self.config.segment_ms);
        let last = self.log_end_offset().0 + last_delta;
        let too_far = last - active.base_offset.0 > RELATIVE_OFFSET_MAX;
        active.summary.size > 0 && (too_big || too_old || too_far || active.index_is_full())
    }

    /// Whether `bytes` of batches fit the active segment as it is: appending them
    /// writes into open files only (no roll, so no file or directory is created).
    pub fn fits_active_segment(&self, bytes: u64, now_ms: i64) -> bool {
        // A batch holds fewer records than bytes, so its offsets end within `bytes`.
        bytes <= self.config.segment_bytes && !self.needs_roll(bytes, bytes as i64, now_ms)
    }

    /// Whether `flush.messages` or `flush.ms` ask for a sync now.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.unsynced_records >= self.config.flush_messages
            || self
                .unsynced_since_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_ms)
    }

    /// The segment holding `offset`, or the first after it that holds data past it
    /// (an offset can fall in a gap compaction left at the end of a segment, or in
    /// a segment compaction emptied).
    fn segment_base_for(&self, offset: Offset) -> Option<Offset> {
        let floor = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(Offset(i64::MIN), |(b, _)| *b);
        self.segments
            .range(floor..)
            .find(|(_, s)| s.summary.size > 0 && offset < s.summary.next_offset)
            .map(|(b, _)| *b)
    }

    /// Plans a read of whole batches from `offset`; the returned plan reads the files
    /// without borrowing the log, so callers can release their lock before the I/O.
    pub fn plan_read(
        &mut self,
        offset: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadPlan, StorageError> {
        let end = self.log_end_offset();
        if offset < self.start.offset || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.start.offset,
                log_end: end,
            });
        }
        let Some(base) = self.segment_base_for(offset) else {
            return Ok(ReadPlan::empty(offset));
        };
        let seg = self.segments.get_mut(&base).expect("found above");
        if offset >= seg.summary.next_offset || offset >= upper {
            return Ok(ReadPlan::empty(offset));
        }
        let (path, end_position, sealed) = (seg.path.clone(), seg.summary.size, !seg.is_active());
        let handles = seg.handles()?;
        let plan = ReadPlan {
            file: Some(handles.file_arc()),
            segment_base: base,
            path,
            position: handles.position_for(offset),
            end_position,
            offset,
            max_bytes,
            upper,
            min_one_batch,
        };
        if sealed {
            self.note_open_sealed(base);
        }
        Ok(plan)
    }

    /// The largest batch max timestamp and the base offset of its batch.
    pub fn max_timestamp(&self) -> Option<(i64, Offset)> {
        self.segments
            .values()
            .filter(|s| s.summary.size > 0 && s.summary.next_offset > self.start.offset)
            .map(|s| {
                (
                    s.summary.max_timestamp_ms,
                    s.summary.offset_of_max_timestamp,
                )
            })
            .reduce(|a, b| if b.0 > a.0 { b } else { a })
    }

    /// Kafka's time and size retention: deletes the oldest whole segments whose
    /// newest batch is older than `retention_ms`, then while the log is larger than
    /// `retention_bytes`. -1 disables either. The active segment's data goes only
    /// when all of it expired (it is rolled first).
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<RetentionOutcome, StorageError> {
        let new_start = self.retention_point(now_ms, retention_ms, retention_bytes);
        if new_start <= self.start.offset {
            return Ok(RetentionOutcome::default());
        }
        self.advance_log_start(new_start)
    }

    /// DeleteRecords: the log starts at `offset` from now on (never lower than it
    /// was, never past the log end); segments wholly below it are deleted.
    pub fn delete_records(&mut self, offset: Offset) -> Result<RetentionOutcome, StorageError> {
        self.advance_log_start(offset)
    }

    /// Where time and size retention (-1 disables either) would move the log
    /// start: the base of the first segment kept. Nothing is changed.
    pub fn retention_point(&self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> Offset {
        let mut new_start = self.start.offset;
        let mut remaining = self.size_bytes();
        for seg in self.segments.values() {
            if seg.summary.size == 0 {
                if seg.is_active() {
                    break;
                }
                new_start = new_start.max(seg.summary.next_offset);
                continue;
            }
            let expired = retention_ms >= 0
                && seg.summary.max_timestamp_ms >= 0
                && now_ms - seg.summary.max_timestamp_ms > retention_ms;
            let oversized = retention_bytes >= 0
                && !seg.is_active()
                && remaining - seg.summary.size >= retention_bytes as u64;
            if !(expired || oversized) {
                break;
            }
            remaining -= seg.summary.size;
            new_start = seg.summary.next_offset;
        }
        new_start
    }

    /// (base offset, next offset, bytes) of every segment, oldest first.
    pub fn segment_summaries(&self) -> Vec<(Offset, Offset, u64)> {
        self.segments
            .values()
            .map(|s| (s.base_offset, s.summary.next_offset, s.summary.size))
            .collect()
    }

    /// Base offset of the active segment: everything below it is sealed.
    pub fn active_segment_base(&self) -> Offset {
        self.active().base_offset
    }

    /// The sealed segments a compaction may rewrite: those wholly below `upper`
    /// (the commit point: a sealed segment may still hold entries that Raft could
    /// truncate). `None` when there are none.
    pub fn compaction_plan(&self, upper: Offset) -> Option<CompactionPlan> {
        let mut segments = Vec::new();
        let mut covers_below = None;
        for s in self.segments.values() {
            if s.is_active() || s.summary.next_offset > upper {
                covers_below = Some(s.base_offset);
                break;
            }
            if s.summary.size > 0 {
                segments.push(PlannedSegment {
                    base: s.base_offset,
                    path: s.path.clone(),
                    size: s.summary.size,
                });
            }
        }
        let covers_below = covers_below.unwrap_or_else(|| self.active().base_offset);
        (!segments.is_empty()).then_some(CompactionPlan {
            segments,
            covers_below,
        })
    }

    /// Replaces segments with their compacted copies. A segment that changed since
    /// the plan (truncated, deleted) keeps its original. The old index goes first,
    /// then the copy is renamed over the original and indexed again, so a crash at
    /// any point leaves either the original or the copy, each with a valid index.
    pub fn install_compaction(
        &mut self,
        done: CompactedSegments,
    ) -> Result<CompactionStats, StorageError> {
        let stats = done.stats();
        for (planned, cleaned) in done.rewritten {
            let unchanged = self.segments.get(&planned.base).is_some_and(|s| {
                !s.is_active() && s.summary.size == planned.size && s.path == planned.path
            });
            if !unchanged {
                std::fs::remove_file(&cleaned)
                    .map_err(|e| StorageError::io("delete", &cleaned, e))?;
                continue;
            }
            let old = self.segments.remove(&planned.base).expect("checked above");
            self.open_sealed.retain(|b| *b != planned.base);
            old.remove_indexes()?;
            drop(old);
            std::fs::rename(&cleaned, &planned.path)
                .map_err(|e| StorageError::io("replace segment", &planned.path, e))?;
            let seg = Segment::open_sealed(planned.path, planned.base, self.config.index())?;
            self.segments.insert(planned.base, seg);
        }
        sync_dir(&self.dir)?;
        Ok(stats)
    }

    /// What must be synced to make the current log end durable; `None` when nothing
    /// was appended since the last target.
    pub fn sync_target(&mut self) -> Option<SyncTarget> {
        let end = self.log_end_offset();
        if end == self.sync_requested && self.sealed_unsynced.is_empty() {
            return None;
        }
        let mut files = std::mem::take(&mut self.sealed_unsynced);
        let active = self
            .active_mut()
            .handles()
            .expect("the active segment's handles are always open")
            .file_arc();
        files.push(active);
        self.sync_requested = end;
        self.unsynced_records = 0;
        self.unsynced_since_ms = None;
        Some(SyncTarget { files, end })
    }

    /// Syncs every file written since the last sync target without taking one, so
    /// the flusher still commits what it has not synced itself.
    fn sync_files(&mut self) -> Result<(), StorageError> {
        let active = self.active_mut().handles()?.file_arc();
        for f in self.sealed_unsynced.iter().chain(std::iter::once(&active)) {
            f.sync_data()
                .map_err(|e| StorageError::io("sync segment", &self.dir, e))?;
        }
        Ok(())
    }

    /// Syncs everything appended so far (used at shutdown and in tests).
    pub fn sync_all(&mut self) -> Result<(), StorageError> {
        if let Some(target) = self.sync_target() {
            for f in &target.files {
                f.sync_data()
                    .map_err(|e| StorageError::io("sync segment", &self.dir, e))?;
            }
        }
        Ok(())
    }
}

impl Log for PartitionLog {
    fn log_start_offset(&self) -> Offset {
        self.start.offset
    }

    /// The next offset to be assigned.
    fn log_end_offset(&self) -> Offset {
        self.active().summary.next_offset
    }

    /// Appends one validated batch: assigns its offsets from the log end by patching
    /// `baseOffset` and the leader epoch in place, writes it, returns (base, last).
    fn append(
        &mut self,
        batch: &mut [u8],
        epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<(Offset, Offset), StorageError> {
        let (base, last) = self.append_shared(batch, epoch, now_ms)?;
        batch::assign_offsets(batch, base, epoch);
        Ok((base, last))
    }

    /// Reads whole batches (see [`PartitionLog::plan_read`]).
    fn read(
        &mut self,
        offset: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        self.plan_read(offset, max_bytes, upper, min_one_batch)?
            .execute()
    }

    /// The offset and timestamp of the first record whose timestamp is >=
    /// `timestamp_ms`, or `None` if there is none. Only the batch that holds it is
    /// decoded.
    fn offset_for_timestamp(
        &mut self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let candidates: Vec<Offset> = self
            .segments
            .iter()
            .filter(|(_, s)| s.summary.max_timestamp_ms >= timestamp_ms && s.summary.size > 0)
            .map(|(b, _)| *b)
            .collect();
        for base in candidates {
            let log_start = self.start.offset;
            let seg = self.segments.get_mut(&base).expect("listed above");
            let (path, size, sealed) = (seg.path.clone(), seg.summary.size, !seg.is_active());
            let handles = seg.handles()?;
            let mut position = handles.position_for_timestamp(timestamp_ms);
            let mut header = [0u8; HEADER_BYTES];
            let mut found = None;
            while position < size {
                handles
                    .file()
                    .read_exact_at(&mut header, position)
                    .map_err(|e| StorageError::io("read segment", &path, e))?;
                let h = BatchHeader::parse(&header).map_err(|e| StorageError::Corrupt {
                    path: path.clone(),
                    position,
                    reason: e.to_string(),
                })?;
                if h.max_timestamp >= timestamp_ms && h.last_offset >= log_start {
                    // The one batch that straddles the target: find the record.
                    let mut bytes = vec![0u8; h.size];
                    handles
                        .file()
                        .read_exact_at(&mut bytes, position)
                        .map_err(|e| StorageError::io("read segment", &path, e))?;
                    match record_at_or_after(&bytes, timestamp_ms, log_start) {
                        Some(Some(hit)) => {
                            found = Some(hit);
                            break;
                        }
                        Some(None) => {}
                        None => {
                            warn!(path = %path.display(), position, "cannot decode a batch for a timestamp lookup; answering its base offset");
                            found = Some((h.base_offset.max(log_start), h.max_timestamp));
                            break;
                        }
                    }
                }
                position += h.size as u64;
            }
            drop(handles);
            if sealed {
                self.note_open_sealed(base);
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Drops every batch at or after `next`, which must be a batch boundary.
    fn truncate_to(&mut self, next: Offset) -> Result<(), StorageError> {
        if next >= self.log_end_offset() {
            return Ok(());
        }
        assert!(
            next >= self.start.offset,
            "truncate_to({next}) below log start {}",
            self.start.offset
        );
        // Whole segments at or after the cut go, except one that starts exactly at
        // it when it is the first: that one is emptied instead.
        let doomed: Vec<Offset> = self
            .segments
            .range(next..)
            .map(|(b, _)| *b)
            .filter(|b| *b > next || self.segments.len() > 1)
            .collect();
        // Highest first: the segment that starts at the cut is the one kept
        // (emptied) when it would be the last, with its own entry index.
        for base in doomed.into_iter().rev() {
            if self.segments.len() == 1 {
                break;
            }
            let seg = self.segments.remove(&base).expect("listed above");
            self.open_sealed.retain(|b| *b != base);
            seg.remove()?;
        }
        let last_base = *self.segments.keys().next_back().expect("a segment remains");
        self.open_sealed.retain(|b| *b != last_base);
        let seg = self.active_mut();
        if next < seg.summary.next_offset {
            let position = if next <= seg.base_offset {
                Some(0)
            } else {
                seg.find_batch_start(next)?
            };
            let Some(position) = position else {
                return Err(StorageError::Corrupt {
                    path: seg.path.clone(),
                    position: 0,
                    reason: format!("no batch starts at truncation point {next}"),
                });
            };
            seg.truncate_to(position, next.max(seg.base_offset))?;
            if seg.summary.size == 0 && seg.base_offset != next {
                let (base, entry) = (seg.base_offset, seg.base_entry);
                let seg = self.segments.remove(&base).expect("the active segment");
                seg.remove()?;
                self.create_segment(next, entry)?;
            }
        } else if !seg.is_active() {
            // The cut fell on this segment's end: it becomes the active one again.
            let end = seg.summary.size;
            seg.truncate_to(end, next)?;
        }
        self.sync_requested = self.sync_requested.min(next);
        sync_dir(&self.dir)?;
        Ok(())
    }

    fn first_entry_index(&self) -> u64 {
        self.start.entry
    }

    fn next_entry_index(&self) -> u64 {
        let active = self.active();
        active.base_entry + active.summary.batches
    }

    fn entry_at(
        &mut self,
        index: u64,
    ) -> Result<Option<(Offset, Offset, LeaderEpoch)>, StorageError> {
        Ok(self
            .locate_entry(index)?
            .map(|e| (e.base_offset, e.last_offset, e.term)))
    }

    /// Advances the log start to `offset` (retention, DeleteRecords) and deletes the
    /// segments that lie wholly below it. The new start is persisted first.
    fn advance_log_start(&mut self, offset: Offset) -> Result<RetentionOutcome, StorageError> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.start.offset {
            return Ok(RetentionOutcome::default());
        }
        self.roll_if_consumed(offset)?;
        // The first entry is the first of the first segment that stays.
        let entry = self
            .segments
            .values()
            .find(|s| s.is_active() || s.summary.next_offset > offset)
            .map_or(self.start.entry, |s| s.base_entry)
            .max(self.start.entry);
        let prev_term = self.start.prev_term.filter(|_| entry == self.start.entry);
        self.move_log_start(LogStart {
            offset,
            entry,
            prev_term,
        })
    }

    fn log_start(&self) -> LogStart {
        self.start
    }

    fn move_log_start(&mut self, start: LogStart) -> Result<RetentionOutcome, StorageError> {
        let start = LogStart {
            offset: start.offset.max(self.start.offset),
            entry: start.entry.max(self.start.entry),
            prev_term: start.prev_term,
        };
        assert!(
            start.offset <= self.log_end_offset() && start.entry <= self.next_entry_index(),
            "log start {start:?} past the log end {} (entry {})",
            self.log_end_offset(),
            self.next_entry_index()
        );
        self.roll_if_consumed(start.offset)?;
        // The start never passes durable data: a crash must not leave a log whose
        // recovered end is below its persisted start.
        self.sync_files()?;
        write_log_start(&self.dir, &start, false)?;
        self.start = start;
        let mut outcome = RetentionOutcome::default();
        let doomed: Vec<Offset> = self
            .segments
            .iter()
            .filter(|(_, s)| s.summary.next_offset <= start.offset && !s.is_active())
            .map(|(b, _)| *b)
            .collect();
        for base in doomed {
            let seg = self.segments.remove(&base).expect("listed above");
            self.open_sealed.retain(|b| *b != base);
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += seg.summary.size;
            seg.remove()?;
        }
        Ok(outcome)
    }

    /// Removes every entry and restarts the log empty at `start`. The new start is
    /// persisted, marked as a reset, before any segment goes, so a crash part way
    /// finishes the reset on the next open.
    fn reset_to(&mut self, start: LogStart) -> Result<(), StorageError> {
        write_log_start(&self.dir, &start, true)?;
        let bases: Vec<Offset> = self.segments.keys().copied().collect();
        for base in bases {
            let seg = self.segments.remove(&base).expect("listed above");
            seg.remove()?;
        }
        self.open_sealed.clear();
        self.sealed_unsynced.clear();
        self.unsynced_records = 0;
        self.unsynced_since_ms = None;
        self.start = start;
        self.create_segment(start.offset, start.entry)?;
        self.sync_requested = start.offset;
        write_log_start(&self.dir, &start, false)
    }

    fn vote(&self) -> Option<VoteRecord> {
        self.vote
    }

    fn save_vote(&mut self, vote: &VoteRecord) -> Result<(), StorageError> {
        write_vote(&self.dir, vote)?;
        self.vote = Some(*vote);
        Ok(())
    }

    fn committed(&self) -> Option<(u64, LeaderEpoch)> {
        self.committed
    }

    fn save_committed(
        &mut self,
        committed: Option<(u64, LeaderEpoch)>,
    ) -> Result<(), StorageError> {
        write_committed(&self.dir, committed)?;
        self.committed = committed;
        Ok(())
    }
}

/// The first record of a stored batch at or after `timestamp_ms` and `log_start`;
/// `None` when the batch cannot be decoded.
pub(crate) fn record_at_or_after(
    bytes: &[u8],
    timestamp_ms: i64,
    log_start: Offset,
) -> Option<Option<(Offset, i64)>> {
    let view = BatchView::parse(bytes).ok()?;
    sluice_protocol::records::first_record_at_or_after(
        &view,
        timestamp_ms,
        log_start,
        DECODE_BYTES_MAX,
    )
    .ok()
}
