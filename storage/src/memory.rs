//! A partition log held in memory: the reference model for the randomized tests
//! and the simplest implementation of [`Log`].

use std::collections::HashMap;

use bytes::Bytes;
use sluice_protocol::batch::{self, BatchView};
use sluice_protocol::records::{empty_batch, parse_records, rebuild_batch, records_data};
use sluice_protocol::types::{LeaderEpoch, Offset};

use crate::{Log, LogStart, ReadResult, RetentionOutcome, StorageError, VoteRecord};

#[derive(Debug, Clone)]
struct Stored {
    base: Offset,
    last: Offset,
    max_timestamp_ms: i64,
    bytes: Bytes,
}

/// An in-memory [`Log`].
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    batches: Vec<Stored>,
    log_start: Offset,
    log_end: Offset,
    /// Entry index (batch sequence number) of `batches[0]`.
    first_entry: u64,
    /// Term of entry `first_entry - 1`, once it was purged.
    prev_term: Option<LeaderEpoch>,
    vote: Option<VoteRecord>,
    committed: Option<(u64, LeaderEpoch)>,
}

impl MemoryLog {
    pub fn new() -> Self {
        MemoryLog::default()
    }

    /// Compacts the batches below `sealed_below` by the rules of
    /// [`crate::CompactionPlan::run`]: the latest record of each key stays,
    /// tombstones older than `delete_retention_ms` go, offsets never change.
    pub fn compact(&mut self, sealed_below: Offset, now_ms: i64, delete_retention_ms: i64) {
        let sealed = |b: &Stored| b.last < sealed_below;
        let parsed: Vec<(usize, Vec<u8>)> = self
            .batches
            .iter()
            .enumerate()
            .filter(|(_, b)| sealed(b))
            .filter_map(|(i, b)| {
                let view = BatchView::parse(&b.bytes).ok()?;
                (!view.is_control())
                    .then(|| (i, records_data(&view, usize::MAX).unwrap_or_default()))
            })
            .collect();
        let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
        for (i, data) in &parsed {
            let view = BatchView::parse(&self.batches[*i].bytes).expect("stored batches parse");
            for r in parse_records(data, view.record_count()).expect("stored records parse") {
                if let Some(key) = r.key {
                    latest.insert(
                        key.to_vec(),
                        view.base_offset().0 + i64::from(r.offset_delta),
                    );
                }
            }
        }
        let horizon = now_ms.saturating_sub(delete_retention_ms);
        let mut replaced: HashMap<usize, Option<Stored>> = HashMap::new();
        for (i, data) in &parsed {
            let original = &self.batches[*i];
            let view = BatchView::parse(&original.bytes).expect("stored batches parse");
            let all = parse_records(data, view.record_count()).expect("stored records parse");
            let kept: Vec<_> = all
                .iter()
                .copied()
                .filter(|r| {
                    let Some(key) = r.key else { return true };
                    let offset = view.base_offset().0 + i64::from(r.offset_delta);
                    let expired =
                        r.value.is_none() && view.base_timestamp() + r.timestamp_delta < horizon;
                    latest.get(key) == Some(&offset) && !expired
                })
                .collect();
            if kept.len() == all.len() {
                continue;
            }
            let rebuilt = Some({
                let bytes = if kept.is_empty() {
                    empty_batch(&view)
                } else {
                    rebuild_batch(&view, &kept)
                };
                let max_timestamp_ms = BatchView::parse(&bytes).expect("rebuilt").max_timestamp();
                Stored {
                    base: original.base,
                    last: original.last,
                    max_timestamp_ms,
                    bytes: Bytes::from(bytes),
                }
            });
            replaced.insert(*i, rebuilt);
        }
        let old = std::mem::take(&mut self.batches);
        self.batches = old
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| match replaced.remove(&i) {
                None => Some(b),
                Some(new) => new,
            })
            .collect();
    }

    /// The batch that is entry `index`: (base offset, last offset, leader epoch).
    pub fn entry(&self, index: u64) -> Option<(Offset, Offset, LeaderEpoch)> {
        let b = self
            .batches
            .get(usize::try_from(index.checked_sub(self.first_entry)?).ok()?)?;
        let view = BatchView::parse(&b.bytes).ok()?;
        Some((b.base, b.last, view.leader_epoch()))
    }

    /// Truncation points where the log is dense: batch starts right after the
    /// previous batch, and the log end. (Raft truncates only above its commit point,
    /// where compaction never runs, so its truncation points are all of this kind.)
    pub fn truncation_points(&self) -> Vec<Offset> {
        let mut v: Vec<Offset> = self
            .batches
            .windows(2)
            .filter(|w| w[0].last.next() == w[1].base && w[1].base >= self.log_start)
            .map(|w| w[1].base)
            .collect();
        if let Some(first) = self.batches.first() {
            if first.base == self.log_start {
                v.insert(0, first.base);
            }
        }
        v.push(self.log_end);
        v
    }

    /// Sizes and offsets of the stored batches: (base, last, bytes).
    pub fn batches(&self) -> impl Iterator<Item = (Offset, Offset, usize)> + '_ {
        self.batches.iter().map(|b| (b.base, b.last, b.bytes.len()))
    }
}

impl Log for MemoryLog {
    fn log_start_offset(&self) -> Offset {
        self.log_start
    }
    fn log_end_offset(&self) -> Offset {
        self.log_end
    }

    fn append(
        &mut self,
        batch: &mut [u8],
        epoch: LeaderEpoch,
        _now_ms: i64,
    ) -> Result<(Offset, Offset), StorageError> {
        BatchView::parse(batch)?;
        let base = self.log_end;
        let last = batch::assign_offsets(batch, base, epoch);
        let view = BatchView::parse(batch)?;
        self.batches.push(Stored {
            base,
            last,
            max_timestamp_ms: view.max_timestamp(),
            bytes: Bytes::copy_from_slice(batch),
        });
        self.log_end = last.next();
        Ok((base, last))
    }

    fn read(
        &mut self,
        offset: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        if offset < self.log_start || offset > self.log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start,
                log_end: self.log_end,
            });
        }
        let mut out = Vec::new();
        let mut next = offset;
        for b in self.batches.iter().filter(|b| b.last >= offset) {
            if b.last >= upper {
                break;
            }
            let fits = out.len() + b.bytes.len() <= max_bytes;
            if !(fits || (out.is_empty() && min_one_batch)) {
                break;
            }
            out.extend_from_slice(&b.bytes);
            next = b.last.next();
        }
        Ok(ReadResult {
            records: Bytes::from(out),
            next_offset: next,
        })
    }

    fn offset_for_timestamp(
        &mut self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        for b in &self.batches {
            if b.max_timestamp_ms < timestamp_ms || b.last < self.log_start {
                continue;
            }
            match crate::log::record_at_or_after(&b.bytes, timestamp_ms, self.log_start) {
                Some(None) => continue,
                Some(found) => return Ok(found),
                None => return Ok(Some((b.base.max(self.log_start), b.max_timestamp_ms))),
            }
        }
        Ok(None)
    }

    fn truncate_to(&mut self, next: Offset) -> Result<(), StorageError> {
        if next >= self.log_end {
            return Ok(());
        }
        assert!(
            next >= self.log_start,
            "truncate_to({next}) below the log start"
        );
        assert!(
            self.batches.iter().any(|b| b.base == next),
            "truncate_to({next}) is not a batch boundary"
        );
        self.batches.retain(|b| b.base < next);
        self.log_end = next;
        Ok(())
    }

    fn first_entry_index(&self) -> u64 {
        self.first_entry
    }

    fn next_entry_index(&self) -> u64 {
        self.first_entry + self.batches.len() as u64
    }

    fn entry_at(
        &mut self,
        index: u64,
    ) -> Result<Option<(Offset, Offset, LeaderEpoch)>, StorageError> {
        Ok(self.entry(index))
    }

    fn advance_log_start(&mut self, offset: Offset) -> Result<RetentionOutcome, StorageError> {
        let start = LogStart {
            offset: offset.min(self.log_end),
            entry: self.first_entry,
            prev_term: self.prev_term,
        };
        self.move_log_start(start)
    }

    fn log_start(&self) -> LogStart {
        LogStart {
            offset: self.log_start,
            entry: self.first_entry,
            prev_term: self.prev_term,
        }
    }

    fn move_log_start(&mut self, start: LogStart) -> Result<RetentionOutcome, StorageError> {
        let offset = start.offset.max(self.log_start);
        let entry = start.entry.max(self.first_entry);
        assert!(
            offset <= self.log_end && entry <= self.next_entry_index(),
            "log start {start:?} past the log end"
        );
        self.batches
            .drain(..usize::try_from(entry - self.first_entry).expect("fits memory"));
        self.first_entry = entry;
        self.prev_term = start.prev_term;
        // Batches wholly below the offset go too (DeleteRecords, retention).
        while self.batches.first().is_some_and(|b| b.last < offset) {
            self.batches.remove(0);
            self.first_entry += 1;
            self.prev_term = None;
        }
        self.log_start = offset;
        Ok(RetentionOutcome::default())
    }

    fn reset_to(&mut self, start: LogStart) -> Result<(), StorageError> {
        self.batches.clear();
        self.log_start = start.offset;
        self.log_end = start.offset;
        self.first_entry = start.entry;
        self.prev_term = start.prev_term;
        Ok(())
    }

    fn vote(&self) -> Option<VoteRecord> {
        self.vote
    }

    fn save_vote(&mut self, vote: &VoteRecord) -> Result<(), StorageError> {
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
        self.committed = committed;
        Ok(())
    }
}
