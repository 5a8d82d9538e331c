//! Sparse indexes of one segment: offset -> file position and timestamp -> offset.
//! An entry is added every `index_interval_bytes` of log, so a lookup lands at most
//! that many bytes (plus one batch) before the wanted batch.

/// Offset index entry: offset relative to the segment base, and file position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Time index entry: the largest timestamp so far and the offset of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Default)]
pub(crate) struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
}

impl SegmentIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32, max_timestamp_ms: i64) {
        debug_assert!(self
            .offsets
            .last()
            .is_none_or(|e| e.relative_offset < relative_offset && e.position < position));
        self.offsets.push(OffsetEntry {
            relative_offset,
            position,
        });
        if self
            .times
            .last()
            .is_none_or(|e| e.timestamp_ms < max_timestamp_ms)
        {
            self.times.push(TimeEntry {
                timestamp_ms: max_timestamp_ms,
                relative_offset,
            });
        }
    }

    /// Position of the last indexed batch whose base offset is <= `relative_offset`.
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// Position of an indexed batch before the first batch whose max timestamp may be
    /// >= `timestamp_ms`.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u32 {
        let i = self
            .times
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        if i == 0 {
            return 0;
        }
        self.position_for(self.times[i - 1].relative_offset)
    }

    /// Drops entries at or after `position` (truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.offsets.partition_point(|e| e.position < position);
        self.offsets.truncate(keep);
        let last_offset = self.offsets.last().map(|e| e.relative_offset);
        self.times
            .retain(|t| last_offset.is_some_and(|o| t.relative_offset <= o));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_floor_to_indexed_batches() {
        let mut idx = SegmentIndex::default();
        idx.push(0, 0, 10);
        idx.push(10, 4100, 30);
        idx.push(20, 8200, 20);
        idx.push(30, 12300, 50);
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(15), 4100);
        assert_eq!(idx.position_for(99), 12300);
        assert_eq!(idx.position_for_timestamp(5), 0);
        assert_eq!(idx.position_for_timestamp(40), 4100);
        idx.truncate_to_position(8200);
        assert_eq!(idx.position_for(99), 4100);
    }
}
