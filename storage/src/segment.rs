//! One segment: a `.log` file of v2 record batches and its in-memory sparse index.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_protocol::batch::{self, BatchHeader, BatchView, HEADER_BYTES};
use sluice_protocol::types::Offset;

use crate::index::SegmentIndex;
use crate::StorageError;

pub(crate) const LOG_SUFFIX: &str = "log";

pub(crate) fn segment_file_name(base: Offset) -> String {
    format!("{:020}.{LOG_SUFFIX}", base.0)
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: Offset,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// One past the last offset stored here (`base_offset` when empty).
    pub next_offset: Offset,
    /// Largest batch max timestamp stored here.
    pub max_timestamp_ms: i64,
    /// Last offset of the batch that holds `max_timestamp_ms`.
    pub offset_of_max_timestamp: Offset,
    /// Wall-clock time of the first append, for `segment.ms`.
    pub first_append_ms: Option<i64>,
    index: SegmentIndex,
    bytes_since_index_entry: u64,
    index_interval_bytes: u64,
}

/// What a scan of a segment file found.
#[derive(Debug)]
pub(crate) enum ScanEnd {
    /// The file ends on a batch boundary.
    Clean,
    /// The file holds an incomplete or corrupt final batch starting at `position`.
    TornTail { position: u64, reason: String },
}

impl Segment {
    pub fn create(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u64,
    ) -> Result<Self, StorageError> {
        let path = dir.join(segment_file_name(base_offset));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("create segment", &path, e))?;
        Ok(Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
            index: SegmentIndex::default(),
            bytes_since_index_entry: 0,
            index_interval_bytes,
        })
    }

    /// Opens an existing segment and rebuilds its index from the batch headers.
    /// With `verify_crc`, every batch's CRC32C is checked too (the active segment).
    pub fn open(
        path: PathBuf,
        base_offset: Offset,
        index_interval_bytes: u64,
        verify_crc: bool,
    ) -> Result<(Self, ScanEnd), StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("open segment", &path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| StorageError::io("stat segment", &path, e))?
            .len();
        let mut seg = Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
            index: SegmentIndex::default(),
            bytes_since_index_entry: 0,
            index_interval_bytes,
        };
        let end = seg.scan(file_len, verify_crc)?;
        Ok((seg, end))
    }

    /// Reads the file in large chunks and indexes every whole batch.
    fn scan(&mut self, file_len: u64, verify_crc: bool) -> Result<ScanEnd, StorageError> {
        const CHUNK_BYTES: usize = 8 << 20;
        let mut position = 0u64;
        let mut buf = Vec::new();
        while position < file_len {
            let want = (file_len - position).min(CHUNK_BYTES as u64) as usize;
            buf.resize(want, 0);
            self.read_exact_at(&mut buf, position)?;
            let mut used = 0usize;
            loop {
                let rest = &buf[used..];
                let size = match batch::batch_size(rest) {
                    None => break,
                    Some(Err(e)) => {
                        return Ok(ScanEnd::TornTail {
                            position: position + used as u64,
                            reason: e.to_string(),
                        })
                    }
                    Some(Ok(size)) => size,
                };
                if rest.len() < size {
                    if used == 0 {
                        // A batch larger than the chunk: read it whole.
                        if position + size as u64 > file_len {
                            return Ok(ScanEnd::TornTail {
                                position,
                                reason: format!(
                                    "batch of {size} bytes runs past the end of the file"
                                ),
                            });
                        }
                        buf.resize(size, 0);
                        self.read_exact_at(&mut buf, position)?;
                        continue;
                    }
                    break;
                }
                let view = match BatchView::parse(rest) {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(ScanEnd::TornTail {
                            position: position + used as u64,
                            reason: e.to_string(),
                        })
                    }
                };
                if verify_crc {
                    if let Err(e) = view.verify_crc() {
                        return Ok(ScanEnd::TornTail {
                            position: position + used as u64,
                            reason: e.to_string(),
                        });
                    }
                }
                if view.base_offset() != self.next_offset {
                    return Err(StorageError::Corrupt {
                        path: self.path.clone(),
                        position: position + used as u64,
                        reason: format!(
                            "batch base offset {} where {} was expected",
                            view.base_offset(),
                            self.next_offset
                        ),
                    });
                }
                self.track(&view);
                used += size;
            }
            if used == 0 {
                // Fewer than 12 bytes left: a torn header.
                return Ok(ScanEnd::TornTail {
                    position,
                    reason: "incomplete batch header".to_string(),
                });
            }
            position += used as u64;
        }
        Ok(ScanEnd::Clean)
    }

    /// Records a batch that now sits at `self.size` in the file.
    fn track(&mut self, view: &BatchView<'_>) {
        let position = self.size;
        if view.max_timestamp() > self.max_timestamp_ms {
            self.offset_of_max_timestamp = view.last_offset();
        }
        if self.size == 0 || self.bytes_since_index_entry >= self.index_interval_bytes {
            self.max_timestamp_ms = self.max_timestamp_ms.max(view.max_timestamp());
            self.index.push(
                self.relative(view.base_offset()),
                position as u32,
                self.max_timestamp_ms,
            );
            self.bytes_since_index_entry = 0;
        } else {
            self.max_timestamp_ms = self.max_timestamp_ms.max(view.max_timestamp());
        }
        self.bytes_since_index_entry += view.size() as u64;
        self.size += view.size() as u64;
        self.next_offset = view.last_offset().next();
    }

    fn relative(&self, offset: Offset) -> u32 {
        let rel = offset.0 - self.base_offset.0;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&rel),
            "offset {offset} is outside segment {}",
            self.base_offset
        );
        rel as u32
    }

    /// Appends one batch whose offsets are already assigned.
    pub fn append(&mut self, bytes: &[u8], now_ms: i64) -> Result<(), StorageError> {
        let view = BatchView::parse(bytes)?;
        assert_eq!(
            view.base_offset(),
            self.next_offset,
            "append out of order in {}",
            self.path.display()
        );
        assert_eq!(view.size(), bytes.len(), "append of a partial batch");
        self.file
            .write_all_at(bytes, self.size)
            .map_err(|e| StorageError::io("write segment", &self.path, e))?;
        self.first_append_ms.get_or_insert(now_ms);
        self.track(&view);
        Ok(())
    }

    pub fn read_exact_at(&self, buf: &mut [u8], position: u64) -> Result<(), StorageError> {
        self.file
            .read_exact_at(buf, position)
            .map_err(|e| StorageError::io("read segment", &self.path, e))
    }

    /// File position of an indexed batch at or before `offset`.
    pub fn position_for(&self, offset: Offset) -> u64 {
        u64::from(
            self.index
                .position_for(self.relative(offset.max(self.base_offset))),
        )
    }

    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u64 {
        u64::from(self.index.position_for_timestamp(timestamp_ms))
    }

    /// Cuts the file at `position` (a batch boundary) whose first offset is `next`.
    pub fn truncate_to(&mut self, position: u64, next: Offset) -> Result<(), StorageError> {
        self.file
            .set_len(position)
            .map_err(|e| StorageError::io("truncate segment", &self.path, e))?;
        self.size = position;
        self.next_offset = next;
        self.index.truncate_to_position(position as u32);
        self.bytes_since_index_entry = self.index_interval_bytes;
        Ok(())
    }

    /// Finds the file position of the batch that starts at `offset`, by scanning
    /// headers from the index floor. `None` if no batch starts there.
    pub fn find_batch_start(&self, offset: Offset) -> Result<Option<u64>, StorageError> {
        let mut position = self.position_for(offset);
        let mut header = [0u8; HEADER_BYTES];
        while position < self.size {
            self.read_exact_at(&mut header, position)?;
            let view = BatchHeader::parse(&header).map_err(|e| StorageError::Corrupt {
                path: self.path.clone(),
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
}
