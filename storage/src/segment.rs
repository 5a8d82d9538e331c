//! One segment: a `.log` file of v2 record batches with its `.index` and `.timeindex`.
//!
//! The newest segment of a log is active: its file is open for appends and its
//! indexes are writable maps. Older segments are sealed: their file and index maps
//! are opened on demand and may be closed again to bound open handles.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_protocol::batch::{self, BatchHeader, BatchView, HEADER_BYTES};
use sluice_protocol::types::Offset;
use tracing::info;

use crate::entries::{entries_path, read_base_entry, write_base_entry};
use crate::index::{index_paths, SegmentIndex};
use crate::StorageError;

pub(crate) const LOG_SUFFIX: &str = "log";

pub(crate) fn segment_file_name(base: Offset) -> String {
    format!("{:020}.{LOG_SUFFIX}", base.0)
}

/// Sizes that shape a segment's indexes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexConfig {
    pub interval_bytes: u64,
    pub max_bytes: u64,
}

/// What is known of a segment's content without reading it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// One past the last offset stored (the base offset when empty).
    pub next_offset: Offset,
    /// Largest batch max timestamp (-1 when empty).
    pub max_timestamp_ms: i64,
    /// Base offset of the batch that holds `max_timestamp_ms`.
    pub offset_of_max_timestamp: Offset,
    /// Batches counted by the scan or appends (partial for a sealed segment opened
    /// from its index: see [`Segment::batch_count`]).
    pub batches: u64,
}

/// Open handles of a segment: its file and index maps.
#[derive(Debug)]
pub(crate) struct Handles {
    pub base_offset: Offset,
    pub file: Arc<File>,
    pub index: SegmentIndex,
}

#[derive(Debug)]
enum State {
    Active {
        handles: Handles,
        bytes_since_index_entry: u64,
    },
    Sealed(Option<Arc<Handles>>),
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: Offset,
    pub path: PathBuf,
    pub summary: Summary,
    /// Entry index of the first batch (from the `.entries` sidecar).
    pub base_entry: u64,
    /// Wall-clock time of the first append, for `segment.ms`.
    pub first_append_ms: Option<i64>,
    /// Marks of every batch, once known: built by a full scan and kept by appends;
    /// a sealed segment opened from its index reads only the batches after its last
    /// index entry, so its marks (and batch count) wait for the first lookup.
    entry_marks: Option<EntryMarks>,
    config: IndexConfig,
    state: State,
}

/// How a scan of a segment file ended.
#[derive(Debug)]
pub(crate) enum ScanEnd {
    /// The file ends on a batch boundary.
    Clean,
    /// An incomplete or corrupt batch starts at `position`.
    TornTail { position: u64, reason: String },
}

/// Batches between two entry marks: a lookup of Raft entry N reads at most this
/// many headers after the mark at or below it.
const ENTRY_MARK_INTERVAL: u64 = 128;

/// Every [`ENTRY_MARK_INTERVAL`]-th batch of a segment: (its number in the
/// segment, its file position). The sparse index of Raft entries, kept in memory.
type EntryMarks = Vec<(u64, u64)>;

/// Walks batches, keeping a summary and (optionally) writing index entries.
struct Tracker<'a> {
    base: Offset,
    summary: Summary,
    index: Option<&'a mut SegmentIndex>,
    marks: Option<&'a mut EntryMarks>,
    bytes_since_index_entry: u64,
    interval_bytes: u64,
}

impl Tracker<'_> {
    fn track(&mut self, base_offset: Offset, last_offset: Offset, size: usize, max_ts: i64) {
        let s = &mut self.summary;
        if max_ts > s.max_timestamp_ms {
            s.max_timestamp_ms = max_ts;
            s.offset_of_max_timestamp = base_offset;
        }
        if let Some(index) = self.index.as_deref_mut() {
            // A full index stops taking entries (lookups then scan a little further);
            // rebuilding a compacted segment can ask for more entries than it first had.
            let due = s.size == 0 || self.bytes_since_index_entry >= self.interval_bytes;
            let expressible = base_offset.0 - self.base.0 <= RELATIVE_OFFSET_MAX;
            if due && expressible && !index.is_full() {
                let rel = relative(self.base, base_offset);
                let ts_rel = relative(self.base, s.offset_of_max_timestamp);
                index.push(rel, s.size as u32, s.max_timestamp_ms, ts_rel);
                self.bytes_since_index_entry = 0;
            }
        }
        if let Some(marks) = self.marks.as_deref_mut() {
            if s.batches.is_multiple_of(ENTRY_MARK_INTERVAL) {
                marks.push((s.batches, s.size));
            }
        }
        self.bytes_since_index_entry += size as u64;
        s.size += size as u64;
        s.next_offset = last_offset.next();
        s.batches += 1;
    }
}

/// Largest offset relative to a segment's base that a segment holds (Kafka's
/// index stores it as an int); the log rolls before a batch would pass it.
pub(crate) const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;

/// `offset` relative to the segment base, clamped to what an index entry can
/// express. Appends keep offsets within range; a segment written otherwise (by an
/// older broker) loses index precision, never correctness: lookups take the floor
/// entry and walk forward.
fn relative(base: Offset, offset: Offset) -> u32 {
    (offset.0 - base.0).clamp(0, RELATIVE_OFFSET_MAX) as u32
}

fn open_rw(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io("open segment", path, e))
}

fn file_len(file: &File, path: &Path) -> Result<u64, StorageError> {
    Ok(file
        .metadata()
        .map_err(|e| StorageError::io("stat segment", path, e))?
        .len())
}

fn read_exact_at(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    position: u64,
) -> Result<(), StorageError> {
    file.read_exact_at(buf, position)
        .map_err(|e| StorageError::io("read segment", path, e))
}

/// Scans `file` from `start` (a batch boundary whose summary is in `tracker`) to
/// `end`, in large chunks. With `verify_crc`, every batch's CRC32C is checked.
fn scan(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    verify_crc: bool,
    tracker: &mut Tracker<'_>,
) -> Result<ScanEnd, StorageError> {
    const CHUNK_BYTES: usize = 8 << 20;
    let mut position = start;
    let mut buf = Vec::new();
    while position < end {
        let want = (end - position).min(CHUNK_BYTES as u64) as usize;
        buf.resize(want, 0);
        read_exact_at(file, path, &mut buf, position)?;
        let mut used = 0usize;
        loop {
            let rest = &buf[used..];
            let at = position + used as u64;
            let size = match batch::batch_size(rest) {
                None => break,
                Some(Err(e)) => {
                    return Ok(ScanEnd::TornTail {
                        position: at,
                        reason: e.to_string(),
                    })
                }
                Some(Ok(size)) => size,
            };
            if rest.len() < size {
                if used == 0 {
                    if at + size as u64 > end {
                        return Ok(ScanEnd::TornTail {
                            position: at,
                            reason: format!("batch of {size} bytes runs past the end of the file"),
                        });
                    }
                    buf.resize(size, 0);
                    read_exact_at(file, path, &mut buf, at)?;
                    continue;
                }
                break;
            }
            let view = match BatchView::parse(rest) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(ScanEnd::TornTail {
                        position: at,
                        reason: e.to_string(),
                    })
                }
            };
            if verify_crc {
                if let Err(e) = view.verify_crc() {
                    return Ok(ScanEnd::TornTail {
                        position: at,
                        reason: e.to_string(),
                    });
                }
            }
            // Offsets only move forward; compaction may leave gaps where it
            // removed whole batches.
            if view.base_offset() < tracker.summary.next_offset {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    position: at,
                    reason: format!(
                        "batch base offset {} overlaps the previous batch (next offset {})",
                        view.base_offset(),
                        tracker.summary.next_offset
                    ),
                });
            }
            tracker.track(
                view.base_offset(),
                view.last_offset(),
                size,
                view.max_timestamp(),
            );
            used += size;
        }
        if used == 0 {
            return Ok(ScanEnd::TornTail {
                position,
                reason: "incomplete batch header".to_string(),
            });
        }
        position += used as u64;
    }
    Ok(ScanEnd::Clean)
}

fn empty_summary(base: Offset) -> Summary {
    Summary {
        size: 0,
        next_offset: base,
        max_timestamp_ms: -1,
        offset_of_max_timestamp: base,
        batches: 0,
    }
}

/// Scans a whole segment file into fresh index files.
fn index_from_scratch(
    file: &File,
    path: &Path,
    base_offset: Offset,
    config: IndexConfig,
    verify_crc: bool,
) -> Result<(SegmentIndex, Summary, u64, ScanEnd, EntryMarks), StorageError> {
    let len = file_len(file, path)?;
    let mut index = SegmentIndex::create(path, config.max_bytes)?;
    let mut marks = EntryMarks::new();
    let mut tracker = Tracker {
        base: base_offset,
        summary: empty_summary(base_offset),
        index: Some(&mut index),
        marks: Some(&mut marks),
        bytes_since_index_entry: 0,
        interval_bytes: config.interval_bytes,
    };
    let end = scan(file, path, 0, len, verify_crc, &mut tracker)?;
    let (summary, bytes_since_index_entry) = (tracker.summary, tracker.bytes_since_index_entry);
    Ok((index, summary, bytes_since_index_entry, end, marks))
}

impl Segment {
    /// Creates an empty active segment whose first batch will be entry `base_entry`.
    pub fn create(
        dir: &Path,
        base_offset: Offset,
        base_entry: u64,
        config: IndexConfig,
    ) -> Result<Self, StorageError> {
        let path = dir.join(segment_file_name(base_offset));
        write_base_entry(&path, base_entry)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("create segment", &path, e))?;
        let index = SegmentIndex::create(&path, config.max_bytes)?;
        let summary = empty_summary(base_offset);
        Ok(Segment::active(
            path,
            base_offset,
            base_entry,
            summary,
            config,
            file,
            index,
            0,
        ))
    }

    /// An active segment from its open file and writable index.
    #[allow(clippy::too_many_arguments)]
    fn active(
        path: PathBuf,
        base_offset: Offset,
        base_entry: u64,
        summary: Summary,
        config: IndexConfig,
        file: File,
        index: SegmentIndex,
        bytes_since_index_entry: u64,
    ) -> Self {
        Segment {
            base_offset,
            base_entry,
            summary,
            first_append_ms: None,
            entry_marks: Some(EntryMarks::new()),
            config,
            state: State::Active {
                handles: Handles {
                    base_offset,
                    file: Arc::new(file),
                    index,
                },
                bytes_since_index_entry,
            },
            path,
        }
    }

    /// Opens the active segment: checks every batch's CRC32C and rebuilds its indexes.
    pub fn open_active(
        path: PathBuf,
        base_offset: Offset,
        config: IndexConfig,
    ) -> Result<(Self, ScanEnd), StorageError> {
        let file = open_rw(&path)?;
        let (index, summary, bytes_since_index_entry, end, marks) =
            index_from_scratch(&file, &path, base_offset, config, true)?;
        let base_entry = read_base_entry(&path).unwrap_or(0);
        let mut seg = Segment::active(
            path,
            base_offset,
            base_entry,
            summary,
            config,
            file,
            index,
            bytes_since_index_entry,
        );
        seg.entry_marks = Some(marks);
        Ok((seg, end))
    }

    /// Opens a sealed segment: its indexes are used if consistent and rebuilt from
    /// the batch headers otherwise; the batches after the last index entry are read
    /// to learn the segment's end. Handles are closed again afterwards.
    pub fn open_sealed(
        path: PathBuf,
        base_offset: Offset,
        config: IndexConfig,
    ) -> Result<Self, StorageError> {
        let file = open_rw(&path)?;
        let len = file_len(&file, &path)?;
        let corrupt = |position: u64, reason: String| StorageError::Corrupt {
            path: path.clone(),
            position,
            reason,
        };
        let mut entry_marks = None;
        let summary = match SegmentIndex::open_sealed(&path, len)? {
            Some(index) => {
                let (rel, position) = index.last_entry().unwrap_or((0, 0));
                let (ts, ts_rel) = index.last_timestamp().unwrap_or((-1, 0));
                let mut tracker = Tracker {
                    base: base_offset,
                    summary: Summary {
                        size: u64::from(position),
                        next_offset: Offset(base_offset.0 + i64::from(rel)),
                        max_timestamp_ms: ts,
                        offset_of_max_timestamp: Offset(base_offset.0 + i64::from(ts_rel)),
                        batches: 0,
                    },
                    index: None,
                    marks: None,
                    bytes_since_index_entry: 0,
                    interval_bytes: config.interval_bytes,
                };
                match scan(&file, &path, u64::from(position), len, false, &mut tracker)? {
                    ScanEnd::Clean => tracker.summary,
                    ScanEnd::TornTail { position, reason } => {
                        return Err(corrupt(position, reason))
                    }
                }
            }
            None => {
                info!(segment = %path.display(), "rebuilding missing or inconsistent indexes");
                let (mut index, summary, _, end, marks) =
                    index_from_scratch(&file, &path, base_offset, config, false)?;
                if let ScanEnd::TornTail { position, reason } = end {
                    return Err(corrupt(position, reason));
                }
                index.seal()?;
                entry_marks = Some(marks);
                summary
            }
        };
        let seg = Segment {
            base_offset,
            base_entry: read_base_entry(&path).unwrap_or(0),
            summary,
            first_append_ms: None,
            entry_marks,
            config,
            state: State::Sealed(None),
            path,
        };
        Ok(seg)
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    pub fn has_open_handles(&self) -> bool {
        matches!(self.state, State::Active { .. } | State::Sealed(Some(_)))
    }

    /// The segment's handles, opening a sealed segment's on demand.
    pub fn handles(&mut self) -> Result<HandlesRef<'_>, StorageError> {
        match &mut self.state {
            State::Active { handles, .. } => Ok(HandlesRef::Active(handles)),
            State::Sealed(slot) => {
                if slot.is_none() {
                    let file = open_rw(&self.path)?;
                    let Some(index) = SegmentIndex::open_sealed(&self.path, self.summary.size)?
                    else {
                        return Err(StorageError::Corrupt {
                            path: index_paths(&self.path).0,
                            position: 0,
                            reason: "index changed since it was checked".to_string(),
                        });
                    };
                    *slot = Some(Arc::new(Handles {
                        base_offset: self.base_offset,
                        file: Arc::new(file),
                        index,
                    }));
                }
                let handles = slot.as_ref().expect("opened above");
                Ok(HandlesRef::Sealed(Arc::clone(handles)))
            }
        }
    }

    /// Closes a sealed segment's handles (they reopen on demand).
    pub fn close_handles(&mut self) {
        if let State::Sealed(slot) = &mut self.state {
            *slot = None;
        }
    }

    /// Seals the active segment: trims and syncs its indexes. Returns its file so
    /// the flusher can sync what was appended last.
    pub fn seal(&mut self) -> Result<Arc<File>, StorageError> {
        let state = std::mem::replace(&mut self.state, State::Sealed(None));
        let State::Active { mut handles, .. } = state else {
            panic!("sealing segment {} twice", self.path.display());
        };
        handles.index.seal()?;
        let file = Arc::clone(&handles.file);
        self.state = State::Sealed(Some(Arc::new(handles)));
        Ok(file)
    }

    pub fn index_is_full(&self) -> bool {
        match &self.state {
            State::Active { handles, .. } => handles.index.is_full(),
            State::Sealed(_) => true,
        }
    }

    /// Appends one batch: `prefix` (its first bytes with offsets assigned, see
    /// [`batch::patched_prefix`]) followed by the rest of `bytes` as they are.
    pub fn append(
        &mut self,
        prefix: &[u8; batch::PATCHED_PREFIX_BYTES],
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let view = BatchView::parse(bytes)?;
        assert_eq!(view.size(), bytes.len(), "append of a partial batch");
        let mut base = [0u8; 8];
        base.copy_from_slice(&prefix[..8]);
        let base_offset = Offset(i64::from_be_bytes(base));
        assert_eq!(
            base_offset,
            self.summary.next_offset,
            "append out of order in {}",
            self.path.display()
        );
        let marks = self.entry_marks.as_mut();
        let State::Active {
            handles,
            bytes_since_index_entry,
        } = &mut self.state
        else {
            panic!("append to sealed segment {}", self.path.display());
        };
        let at = self.summary.size;
        let write = |buf: &[u8], position: u64| {
            handles
                .file
                .write_all_at(buf, position)
                .map_err(|e| StorageError::io("write segment", &self.path, e))
        };
        write(prefix, at)?;
        write(&bytes[prefix.len()..], at + prefix.len() as u64)?;
        let mut tracker = Tracker {
            base: self.base_offset,
            summary: self.summary,
            index: Some(&mut handles.index),
            marks,
            bytes_since_index_entry: *bytes_since_index_entry,
            interval_bytes: self.config.interval_bytes,
        };
        let last_offset = Offset(base_offset.0 + i64::from(view.last_offset_delta()));
        tracker.track(base_offset, last_offset, view.size(), view.max_timestamp());
        self.summary = tracker.summary;
        *bytes_since_index_entry = tracker.bytes_since_index_entry;
        self.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Finds the file position of the batch that starts at `offset` (`None` if no
    /// batch starts there).
    pub fn find_batch_start(&mut self, offset: Offset) -> Result<Option<u64>, StorageError> {
        let size = self.summary.size;
        let path = self.path.clone();
        let h = self.handles()?;
        let mut position = h.position_for(offset);
        let mut header = [0u8; HEADER_BYTES];
        while position < size {
            read_exact_at(h.file(), &path, &mut header, position)?;
            let view = BatchHeader::parse(&header).map_err(|e| StorageError::Corrupt {
                path: path.clone(),
                position,
                reason: e.to_string(),
            })?;
            if view.base_offset == offset {
                return Ok(Some(position));
            }
            if view.base_offset > offset {
                return Ok(None);
            }
            position += view.size as u64;
        }
        Ok(None)
    }

    /// Cuts the segment at `position`, a batch boundary whose offset is `next`; the
    /// segment becomes the active one again (indexes rebuilt).
    pub fn truncate_to(&mut self, position: u64, next: Offset) -> Result<(), StorageError> {
        self.state = State::Sealed(None); // unmap and close before cutting
        let file = open_rw(&self.path)?;
        file.set_len(position)
            .map_err(|e| StorageError::io("truncate segment", &self.path, e))?;
        drop(file);
        let (seg, end) = Segment::open_active(self.path.clone(), self.base_offset, self.config)?;
        if let ScanEnd::TornTail { position, reason } = end {
            return Err(StorageError::Corrupt {
                path: self.path.clone(),
                position,
                reason,
            });
        }
        assert!(
            seg.summary.next_offset <= next,
            "truncation left offsets at or past {next}"
        );
        let (first_append_ms, base_entry) = (self.first_append_ms, self.base_entry);
        *self = seg;
        self.base_entry = base_entry;
        // After a compaction gap the next offset is the cut, not the last batch + 1.
        self.summary.next_offset = next;
        self.first_append_ms = first_append_ms;
        Ok(())
    }

    /// Batches in the segment, if known without reading it.
    pub fn batch_count(&self) -> Option<u64> {
        self.entry_marks.as_ref().map(|_| self.summary.batches)
    }

    /// Counts the segment's batches (walking their headers once if not known).
    pub fn count_batches(&mut self) -> Result<u64, StorageError> {
        self.build_entry_marks()?;
        Ok(self.summary.batches)
    }

    /// Walks every header once to mark every [`ENTRY_MARK_INTERVAL`]-th batch and
    /// count them all (a sealed segment opened from its index).
    fn build_entry_marks(&mut self) -> Result<(), StorageError> {
        if self.entry_marks.is_some() {
            return Ok(());
        }
        let mut marks = EntryMarks::new();
        let mut n = 0u64;
        self.walk_from(0, |position, _| {
            if n.is_multiple_of(ENTRY_MARK_INTERVAL) {
                marks.push((n, position));
            }
            n += 1;
            Ok(true)
        })?;
        self.summary.batches = n;
        self.entry_marks = Some(marks);
        Ok(())
    }

    /// The `n`-th batch of the segment (0-based): its position and header, and its
    /// leader epoch (the Raft term). Reads at most [`ENTRY_MARK_INTERVAL`] headers
    /// from the mark at or below `n`.
    pub fn nth_batch(&mut self, n: u64) -> Result<Option<(u64, BatchHeader, i32)>, StorageError> {
        self.build_entry_marks()?;
        let Some((mut seen, start)) = self
            .entry_marks
            .as_ref()
            .and_then(|marks| marks.iter().rev().find(|(i, _)| *i <= n).copied())
        else {
            return Ok(None);
        };
        let mut found = None;
        self.walk_from(start, |position, header| {
            if seen == n {
                let epoch = i32::from_be_bytes([header[12], header[13], header[14], header[15]]);
                found = BatchHeader::parse(header)
                    .ok()
                    .map(|h| (position, h, epoch));
                return Ok(false);
            }
            seen += 1;
            Ok(true)
        })?;
        Ok(found)
    }

    /// Calls `f(position, header bytes)` for each batch from the batch boundary
    /// `start` until it returns false.
    fn walk_from(
        &mut self,
        start: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        let size = self.summary.size;
        let path = self.path.clone();
        let h = self.handles()?;
        let mut position = start;
        let mut header = [0u8; HEADER_BYTES];
        while position + HEADER_BYTES as u64 <= size {
            read_exact_at(h.file(), &path, &mut header, position)?;
            let parsed = BatchHeader::parse(&header).map_err(|e| StorageError::Corrupt {
                path: path.clone(),
                position,
                reason: e.to_string(),
            })?;
            if !f(position, &header)? {
                return Ok(());
            }
            position += parsed.size as u64;
        }
        Ok(())
    }

    /// Deletes the segment's index files (before its log is replaced).
    pub fn remove_indexes(&self) -> Result<(), StorageError> {
        let (index, timeindex) = index_paths(&self.path);
        for p in [&index, &timeindex] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io("delete index", p, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes the segment's files.
    pub fn remove(self) -> Result<(), StorageError> {
        let path = self.path.clone();
        drop(self);
        remove_segment_files(&path)
    }
}

/// Deletes the files of the segment whose log is `path` (those that exist).
pub(crate) fn remove_segment_files(path: &Path) -> Result<(), StorageError> {
    let (index, timeindex) = index_paths(path);
    let entries = entries_path(path);
    for p in [path, &index, &timeindex, &entries] {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StorageError::io("delete segment", p, e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Borrowed or shared handles of a segment.
#[derive(Debug)]
pub(crate) enum HandlesRef<'a> {
    Active(&'a Handles),
    Sealed(Arc<Handles>),
}

impl HandlesRef<'_> {
    fn get(&self) -> &Handles {
        match self {
            HandlesRef::Active(h) => h,
            HandlesRef::Sealed(h) => h,
        }
    }
    pub fn file(&self) -> &File {
        &self.get().file
    }
    pub fn file_arc(&self) -> Arc<File> {
        Arc::clone(&self.get().file)
    }
    pub fn index(&self) -> &SegmentIndex {
        &self.get().index
    }
    /// File position of an indexed batch at or before `offset`; `offset` must not
    /// be below the segment's base.
    pub fn position_for(&self, offset: Offset) -> u64 {
        let base = self.get().base_offset;
        u64::from(self.index().position_for(relative(base, offset.max(base))))
    }

    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u64 {
        u64::from(self.index().position_for_timestamp(timestamp_ms))
    }
}
