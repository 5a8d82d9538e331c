//! Sparse indexes of one segment, memory-mapped, in Kafka's on-disk formats:
//!
//! - `.index`: (offset relative to the segment base u32, file position u32), 8 bytes;
//! - `.timeindex`: (largest timestamp so far i64, relative offset u32), 12 bytes.
//!
//! An entry is added every `index_interval_bytes` of log, so a lookup lands at most
//! that many bytes (plus one batch) before the wanted batch. The active segment's
//! files are preallocated to `index_max_bytes` and written through a writable map;
//! sealing trims them to their entries and maps them read-only.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::mmap::{map_read, map_write};
use crate::StorageError;

const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug)]
enum Map {
    Writable(MmapMut),
    ReadOnly(Mmap),
    Empty,
}

/// A file of fixed-size entries behind a map.
#[derive(Debug)]
struct EntryFile {
    path: PathBuf,
    entry_bytes: usize,
    map: Map,
    entries: usize,
}

impl EntryFile {
    /// Creates (or empties) a writable file with room for `max_bytes`.
    fn create(path: PathBuf, entry_bytes: usize, max_bytes: u64) -> Result<Self, StorageError> {
        let capacity = (max_bytes as usize / entry_bytes).max(1) * entry_bytes;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io("create index", &path, e))?;
        file.set_len(capacity as u64)
            .map_err(|e| StorageError::io("size index", &path, e))?;
        let map = map_write(&file).map_err(|e| StorageError::io("map index", &path, e))?;
        Ok(EntryFile {
            path,
            entry_bytes,
            map: Map::Writable(map),
            entries: 0,
        })
    }

    /// Maps a sealed file read-only; `None` if it is missing or not a whole number
    /// of entries.
    fn open_sealed(path: PathBuf, entry_bytes: usize) -> Result<Option<Self>, StorageError> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open index", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("stat index", &path, e))?
            .len() as usize;
        if !len.is_multiple_of(entry_bytes) {
            return Ok(None);
        }
        let map = if len == 0 {
            Map::Empty
        } else {
            Map::ReadOnly(map_read(&file).map_err(|e| StorageError::io("map index", &path, e))?)
        };
        Ok(Some(EntryFile {
            path,
            entry_bytes,
            map,
            entries: len / entry_bytes,
        }))
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Writable(m) => &m[..],
            Map::ReadOnly(m) => &m[..],
            Map::Empty => &[],
        }
    }

    fn entry(&self, i: usize) -> &[u8] {
        &self.bytes()[i * self.entry_bytes..(i + 1) * self.entry_bytes]
    }

    fn is_full(&self) -> bool {
        match &self.map {
            Map::Writable(m) => (self.entries + 1) * self.entry_bytes > m.len(),
            _ => true,
        }
    }

    fn push(&mut self, entry: &[u8]) {
        debug_assert_eq!(entry.len(), self.entry_bytes);
        let at = self.entries * self.entry_bytes;
        let Map::Writable(m) = &mut self.map else {
            panic!("push to a sealed index {}", self.path.display());
        };
        assert!(
            at + entry.len() <= m.len(),
            "index {} is full",
            self.path.display()
        );
        m[at..at + entry.len()].copy_from_slice(entry);
        self.entries += 1;
    }

    /// Trims the file to its entries, syncs it and maps it read-only.
    fn seal(&mut self) -> Result<(), StorageError> {
        if let Map::Writable(m) = &self.map {
            m.flush()
                .map_err(|e| StorageError::io("sync index", &self.path, e))?;
        }
        self.map = Map::Empty; // unmap before resizing the file
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| StorageError::io("open index", &self.path, e))?;
        let len = (self.entries * self.entry_bytes) as u64;
        file.set_len(len)
            .map_err(|e| StorageError::io("trim index", &self.path, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("sync index", &self.path, e))?;
        if len > 0 {
            self.map = Map::ReadOnly(
                map_read(&file).map_err(|e| StorageError::io("map index", &self.path, e))?,
            );
        }
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Offset and time index of one segment.
#[derive(Debug)]
pub(crate) struct SegmentIndex {
    offsets: EntryFile,
    times: EntryFile,
}

pub(crate) fn index_paths(log_path: &Path) -> (PathBuf, PathBuf) {
    (
        log_path.with_extension("index"),
        log_path.with_extension("timeindex"),
    )
}

impl SegmentIndex {
    /// New, empty, writable indexes for the segment whose log is `log_path`.
    pub fn create(log_path: &Path, max_bytes: u64) -> Result<Self, StorageError> {
        let (offsets, times) = index_paths(log_path);
        Ok(SegmentIndex {
            offsets: EntryFile::create(offsets, OFFSET_ENTRY_BYTES, max_bytes)?,
            times: EntryFile::create(times, TIME_ENTRY_BYTES, max_bytes)?,
        })
    }

    /// Maps a sealed segment's indexes if both are present and consistent with a log
    /// of `segment_size` bytes; `None` means they must be rebuilt.
    pub fn open_sealed(log_path: &Path, segment_size: u64) -> Result<Option<Self>, StorageError> {
        let (offsets, times) = index_paths(log_path);
        let (Some(offsets), Some(times)) = (
            EntryFile::open_sealed(offsets, OFFSET_ENTRY_BYTES)?,
            EntryFile::open_sealed(times, TIME_ENTRY_BYTES)?,
        ) else {
            return Ok(None);
        };
        let index = SegmentIndex { offsets, times };
        Ok(index.is_consistent(segment_size).then_some(index))
    }

    fn is_consistent(&self, segment_size: u64) -> bool {
        let n = self.offsets.entries;
        if segment_size > 0 && (n == 0 || self.offset_entry(0).1 != 0) {
            return false;
        }
        let offsets_ok = (1..n).all(|i| {
            let (a, b) = (self.offset_entry(i - 1), self.offset_entry(i));
            a.0 < b.0 && a.1 < b.1
        }) && (n == 0 || u64::from(self.offset_entry(n - 1).1) < segment_size);
        let last_offset = if n == 0 {
            0
        } else {
            self.offset_entry(n - 1).0
        };
        let m = self.times.entries;
        let times_ok = (1..m).all(|i| {
            let (a, b) = (self.time_entry(i - 1), self.time_entry(i));
            a.0 < b.0 && a.1 <= b.1
        }) && (m == 0 || self.time_entry(m - 1).1 <= last_offset);
        offsets_ok && times_ok
    }

    fn offset_entry(&self, i: usize) -> (u32, u32) {
        let e = self.offsets.entry(i);
        (u32_at(e, 0), u32_at(e, 4))
    }

    fn time_entry(&self, i: usize) -> (i64, u32) {
        let e = self.times.entry(i);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        (i64::from_be_bytes(ts), u32_at(e, 8))
    }

    pub fn is_full(&self) -> bool {
        self.offsets.is_full() || self.times.is_full()
    }

    /// Indexes a batch at `position` whose base offset is `relative_offset`; a time
    /// entry (pointing at `max_timestamp_offset`, the batch that holds the maximum) is
    /// added when `max_timestamp_so_far` grew since the last one.
    pub fn push(
        &mut self,
        relative_offset: u32,
        position: u32,
        max_timestamp_so_far: i64,
        max_timestamp_offset: u32,
    ) {
        let mut e = [0u8; OFFSET_ENTRY_BYTES];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.offsets.push(&e);
        let grew = self.times.entries == 0
            || self.time_entry(self.times.entries - 1).0 < max_timestamp_so_far;
        if grew {
            let mut t = [0u8; TIME_ENTRY_BYTES];
            t[..8].copy_from_slice(&max_timestamp_so_far.to_be_bytes());
            t[8..].copy_from_slice(&max_timestamp_offset.to_be_bytes());
            self.times.push(&t);
        }
    }

    /// Position of the last indexed batch whose base offset is <= `relative_offset`.
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        let (mut lo, mut hi) = (0usize, self.offsets.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.offset_entry(mid).0 <= relative_offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            0
        } else {
            self.offset_entry(lo - 1).1
        }
    }

    /// A position at or before the first batch whose max timestamp may be >= `ts`.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u32 {
        let (mut lo, mut hi) = (0usize, self.times.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.time_entry(mid).0 < timestamp_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return 0;
        }
        // Every batch up to the entry before is below the target.
        self.position_for(self.time_entry(lo - 1).1)
    }

    /// The last indexed (relative offset, position).
    pub fn last_entry(&self) -> Option<(u32, u32)> {
        (self.offsets.entries > 0).then(|| self.offset_entry(self.offsets.entries - 1))
    }

    /// The largest timestamp recorded in the time index.
    pub fn last_timestamp(&self) -> Option<(i64, u32)> {
        (self.times.entries > 0).then(|| self.time_entry(self.times.entries - 1))
    }

    pub fn seal(&mut self) -> Result<(), StorageError> {
        self.offsets.seal()?;
        self.times.seal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_floor_to_indexed_batches_and_survive_sealing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("00000000000000000000.log");
        let mut idx = SegmentIndex::create(&log, 1 << 20).expect("create");
        idx.push(0, 0, 10, 0);
        idx.push(10, 4100, 30, 10);
        idx.push(20, 8200, 30, 10);
        idx.push(30, 12300, 50, 30);
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(15), 4100);
        assert_eq!(idx.position_for(99), 12300);
        assert_eq!(idx.position_for_timestamp(5), 0);
        assert_eq!(idx.position_for_timestamp(40), 4100);
        idx.seal().expect("seal");
        assert_eq!(
            std::fs::metadata(log.with_extension("index"))
                .expect("stat")
                .len(),
            32
        );
        let idx = SegmentIndex::open_sealed(&log, 16000)
            .expect("open")
            .expect("valid");
        assert_eq!(idx.position_for(25), 8200);
        assert_eq!(idx.last_timestamp(), Some((50, 30)));
        // Inconsistent with a shorter log: rebuilt by the caller.
        assert!(SegmentIndex::open_sealed(&log, 12000)
            .expect("open")
            .is_none());
    }
}
