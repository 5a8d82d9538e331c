//! A read planned under the log's lock and executed without it: a few `pread`s of
//! whole batches, their offsets checked to go forward.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sluice_protocol::batch::{BatchHeader, HEADER_BYTES};
use sluice_protocol::types::Offset;

use crate::{ReadResult, StorageError};

/// Bytes read at once while walking batch headers toward a fetch offset.
const WALK_CHUNK_BYTES: usize = 64 << 10;

/// A read planned under the log's lock and executed without it.
#[derive(Debug)]
pub struct ReadPlan {
    pub(crate) file: Option<Arc<File>>,
    pub(crate) segment_base: Offset,
    pub(crate) path: PathBuf,
    pub(crate) position: u64,
    pub(crate) end_position: u64,
    pub(crate) offset: Offset,
    pub(crate) max_bytes: usize,
    pub(crate) upper: Offset,
    pub(crate) min_one_batch: bool,
}

impl ReadPlan {
    pub(crate) fn empty(offset: Offset) -> Self {
        ReadPlan {
            file: None,
            segment_base: offset,
            path: PathBuf::new(),
            position: 0,
            end_position: 0,
            offset,
            max_bytes: 0,
            upper: offset,
            min_one_batch: false,
        }
    }

    /// Reads the planned batches with at most a few `pread`s.
    pub fn execute(self) -> Result<ReadResult, StorageError> {
        let empty = ReadResult {
            records: Bytes::new(),
            next_offset: self.offset,
        };
        let Some(file) = self.file.as_deref() else {
            return Ok(empty);
        };
        // Walk headers from the index floor to the first batch that holds `offset`.
        // baseOffset is not covered by the CRC: offsets that do not go forward are
        // damage, never served.
        let mut prev_last = Offset(self.segment_base.0 - 1);
        let mut position = self.position;
        let first = loop {
            if position >= self.end_position {
                return Ok(empty);
            }
            let want = (self.end_position - position).min(WALK_CHUNK_BYTES as u64) as usize;
            let chunk = self.read_at(file, position, want)?;
            // `at` may step past the chunk: a batch larger than what is left of it
            // is skipped by its header's size, and the next chunk starts after it.
            let mut at = 0usize;
            let mut found = None;
            while at + HEADER_BYTES <= chunk.len() {
                let h = self.header(&chunk[at..], position + at as u64, &mut prev_last)?;
                if h.last_offset >= self.offset {
                    found = Some(h);
                    break;
                }
                at += h.size;
            }
            if let Some(h) = found {
                break (position + at as u64, h);
            }
            if at == 0 {
                return Ok(empty); // a torn header beyond the plan's end
            }
            position += at as u64;
        };
        let (start, first_header) = first;
        if first_header.base_offset >= self.upper || first_header.last_offset >= self.upper {
            return Ok(empty);
        }
        let available = (self.end_position - start) as usize;
        let mut want = self.max_bytes.min(available);
        if self.min_one_batch && want < first_header.size {
            want = first_header.size.min(available);
        }
        let data = self.read_at(file, start, want)?;
        let mut at = 0usize;
        let mut next = self.offset;
        let mut prev_last = Offset(first_header.base_offset.0 - 1);
        while at + HEADER_BYTES <= data.len() {
            let h = self.header(&data[at..], start + at as u64, &mut prev_last)?;
            if h.last_offset >= self.upper || at + h.size > data.len() {
                break;
            }
            at += h.size;
            next = h.last_offset.next();
        }
        Ok(ReadResult {
            records: data.slice(..at),
            next_offset: next,
        })
    }

    /// The header at `position`, checked to follow the batch that ended at
    /// `prev_last` (which it then becomes).
    fn header(
        &self,
        bytes: &[u8],
        position: u64,
        prev_last: &mut Offset,
    ) -> Result<BatchHeader, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        };
        let h = BatchHeader::parse(bytes).map_err(|e| corrupt(e.to_string()))?;
        if h.base_offset <= *prev_last || h.last_offset < h.base_offset {
            return Err(corrupt(format!(
                "batch offsets {}..={} do not follow offset {prev_last}",
                h.base_offset, h.last_offset
            )));
        }
        *prev_last = h.last_offset;
        Ok(h)
    }

    fn read_at(&self, file: &File, position: u64, len: usize) -> Result<Bytes, StorageError> {
        read_fully(file, &self.path, position, len)
    }
}

/// Up to `len` bytes at `position` (fewer only at the end of the file).
pub(crate) fn read_fully(
    file: &File,
    path: &Path,
    position: u64,
    len: usize,
) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], position + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StorageError::io("read segment", path, e)),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}
