//! Raft entries read from the files: one entry is one stored batch.

use bytes::Bytes;
use sluice_protocol::batch::{BatchHeader, HEADER_BYTES};
use sluice_protocol::types::{LeaderEpoch, Offset};

use super::{EntryLocation, PartitionLog};
use crate::read::read_fully;
use crate::{Log, StorageError};

/// A stored Raft entry: its batch exactly as stored, with what its header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    /// The batch's partitionLeaderEpoch, which is the Raft term.
    pub term: LeaderEpoch,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub batch: Bytes,
}

impl PartitionLog {
    /// Where entry `index` is stored: its batch's offsets, term and file position.
    /// `None` outside `[first_entry_index, next_entry_index)`.
    pub fn locate_entry(&mut self, index: u64) -> Result<Option<EntryLocation>, StorageError> {
        if index >= self.next_entry_index() || index < self.first_entry_index() {
            return Ok(None);
        }
        let Some(base) = self
            .segments
            .iter()
            .rev()
            .find(|(_, s)| s.base_entry <= index)
            .map(|(b, _)| *b)
        else {
            return Ok(None);
        };
        let seg = self.segments.get_mut(&base).expect("found above");
        let sealed = !seg.is_active();
        let found = seg.nth_batch(index - seg.base_entry)?;
        if sealed {
            self.note_open_sealed(base);
        }
        Ok(found.map(|(position, h, term)| EntryLocation {
            index,
            segment_base: base,
            position,
            size: h.size,
            base_offset: h.base_offset,
            last_offset: h.last_offset,
            term: LeaderEpoch(term),
        }))
    }

    /// The stored entries in `[start, end)` (clamped to the entries the log holds),
    /// in order, stopping once `max_bytes` are read but with at least one entry
    /// when there is one. One `pread` per segment crossed.
    pub fn read_entries(
        &mut self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredEntry>, StorageError> {
        let end = end.min(self.next_entry_index());
        let mut index = start.max(self.first_entry_index());
        let mut out = Vec::new();
        let mut total = 0usize;
        while index < end && (out.is_empty() || total < max_bytes) {
            let Some(at) = self.locate_entry(index)? else {
                break;
            };
            let seg = self.segments.get_mut(&at.segment_base).expect("located");
            let available = (seg.summary.size - at.position) as usize;
            let want = max_bytes
                .saturating_sub(total)
                .clamp(at.size, available.max(at.size));
            let path = seg.path.clone();
            let data = read_fully(seg.handles()?.file(), &path, at.position, want)?;
            let mut pos = 0usize;
            while index < end && pos + HEADER_BYTES <= data.len() {
                let corrupt = |reason: String| StorageError::Corrupt {
                    path: path.clone(),
                    position: at.position + pos as u64,
                    reason,
                };
                let h = BatchHeader::parse(&data[pos..]).map_err(|e| corrupt(e.to_string()))?;
                if pos + h.size > data.len() {
                    break;
                }
                let epoch = &data[pos + 12..pos + 16];
                out.push(StoredEntry {
                    index,
                    term: LeaderEpoch(i32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]])),
                    base_offset: h.base_offset,
                    last_offset: h.last_offset,
                    batch: data.slice(pos..pos + h.size),
                });
                index += 1;
                pos += h.size;
                total += h.size;
            }
            if pos == 0 {
                return Err(StorageError::Corrupt {
                    path,
                    position: at.position,
                    reason: format!("entry {} does not fit the bytes its header names", at.index),
                });
            }
            if !seg.is_active() {
                self.note_open_sealed(at.segment_base);
            }
        }
        Ok(out)
    }
}
