//! Opening a log: listing its segments, recovering the active one, restoring lost
//! entry sidecars and finishing an interrupted reset.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sluice_protocol::batch::{self, BatchView, HEADER_BYTES};
use sluice_protocol::types::Offset;
use tracing::warn;

use super::{LogConfig, PartitionLog};
use crate::compaction::CLEANED_SUFFIX;
use crate::entries::{read_base_entry, write_base_entry};
use crate::segment::{remove_segment_files, ScanEnd, Segment, LOG_SUFFIX};
use crate::state_files::{read_committed, read_log_start, read_vote, write_log_start, LogStart};
use crate::{Log, StorageError};

impl PartitionLog {
    /// Opens the log in `dir`, creating it if needed, and recovers it: sealed segments
    /// are indexed from their headers, the active segment's CRCs are checked and a torn
    /// tail is cut. Corruption anywhere else is an error.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("create log dir", &dir, e))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StorageError::io("list log dir", &dir, e))? {
            let entry = entry.map_err(|e| StorageError::io("list log dir", &dir, e))?;
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.ends_with(&format!(".{CLEANED_SUFFIX}")))
            {
                // A compaction that did not finish: the original is still in place.
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| StorageError::io("delete", &path, e))?;
                continue;
            }
            let Some(stem) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{LOG_SUFFIX}")))
            else {
                continue;
            };
            let base: i64 = stem.parse().map_err(|_| StorageError::Corrupt {
                path: entry.path(),
                position: 0,
                reason: "segment file name is not a base offset".to_string(),
            })?;
            bases.push(Offset(base));
        }
        bases.sort();
        let stored_start = read_log_start(&dir)?;
        if stored_start.is_some_and(|s| s.reset) {
            // A reset that did not finish: the old segments go, as it asked.
            for base in bases.drain(..) {
                remove_segment_files(&dir.join(crate::segment::segment_file_name(base)))?;
            }
        }
        let vote = read_vote(&dir)?;
        let committed = read_committed(&dir);

        let mut segments = BTreeMap::new();
        let mut expected_next: Option<Offset> = None;
        for (i, base) in bases.iter().copied().enumerate() {
            let path = dir.join(crate::segment::segment_file_name(base));
            let seg = if i + 1 == bases.len() {
                let (mut seg, end) = Segment::open_active(path, base, config.index())?;
                if let ScanEnd::TornTail { position, reason } = end {
                    if has_valid_batch_after(&seg.path, position)? {
                        return Err(StorageError::Corrupt {
                            path: seg.path.clone(),
                            position,
                            reason,
                        });
                    }
                    warn!(path = %seg.path.display(), position, %reason, "truncating torn tail");
                    let next = seg.summary.next_offset;
                    seg.truncate_to(position, next)?;
                }
                seg
            } else {
                Segment::open_sealed(path, base, config.index())?
            };
            if let Some(next) = expected_next {
                if base < next {
                    return Err(StorageError::Corrupt {
                        path: seg.path.clone(),
                        position: 0,
                        reason: format!(
                            "segment starts at {base}, inside the previous one (ends at {next})"
                        ),
                    });
                }
            }
            expected_next = Some(seg.summary.next_offset);
            segments.insert(base, seg);
        }
        let mut log = PartitionLog {
            dir,
            config,
            segments,
            start: LogStart {
                offset: Offset(0),
                entry: 0,
                prev_term: None,
            },
            vote,
            committed,
            sealed_unsynced: Vec::new(),
            sync_requested: Offset(0),
            open_sealed: VecDeque::new(),
            unsynced_records: 0,
            unsynced_since_ms: None,
        };
        if log.segments.is_empty() {
            let (base, entry) =
                stored_start.map_or((Offset(0), 0), |s| (s.offset, s.entry.unwrap_or(0)));
            log.create_segment(base, entry)?;
        }
        log.check_entry_indexes()?;
        let (first_base, first_entry) = log
            .segments
            .values()
            .next()
            .map(|s| (s.base_offset, s.base_entry))
            .expect("a log has a segment");
        // The persisted start is written before any segment below it is deleted, so
        // it is authoritative; it may lie in a gap compaction left before the
        // first segment, or inside the first segment after a purge.
        log.start = match stored_start {
            Some(s) => LogStart {
                offset: s.offset,
                entry: s.entry.unwrap_or(first_entry).max(first_entry),
                prev_term: s
                    .prev_term
                    .filter(|_| s.entry.is_some_and(|e| e >= first_entry)),
            },
            None => LogStart {
                offset: first_base,
                entry: first_entry,
                prev_term: None,
            },
        };
        if stored_start.is_some_and(|s| s.reset) {
            // Finish the reset: the record loses its mark.
            write_log_start(&log.dir, &log.start, false)?;
        }
        if log.start.offset > log.log_end_offset() || log.start.entry > log.next_entry_index() {
            // Only possible if data below the persisted start was lost: those offsets
            // were deleted anyway, so the log restarts empty at its start.
            warn!(dir = %log.dir.display(), log_start = %log.start.offset, log_end = %log.log_end_offset(),
                "log ends below its start; restarting it empty at the start");
            let next_entry = log.next_entry_index().max(log.start.entry);
            log.start.entry = next_entry;
            let bases: Vec<Offset> = log.segments.keys().copied().collect();
            for base in bases {
                let seg = log.segments.remove(&base).expect("listed above");
                seg.remove()?;
            }
            let start = log.start.offset;
            log.create_segment(start, next_entry)?;
        }
        log.sync_requested = log.log_end_offset();
        Ok(log)
    }

    /// Fills in entry indexes whose sidecar is missing or damaged (from the
    /// neighbouring segments) and checks that neighbours agree.
    fn check_entry_indexes(&mut self) -> Result<(), StorageError> {
        let mut segs: Vec<Segment> = std::mem::take(&mut self.segments).into_values().collect();
        let n = segs.len();
        for i in 0..n {
            if read_base_entry(&segs[i].path).is_some() {
                continue;
            }
            let derived = if i > 0 {
                let prev = &mut segs[i - 1];
                let count = match prev.batch_count() {
                    Some(c) => c,
                    None => prev.count_batches()?,
                };
                Some(prev.base_entry + count)
            } else if n > 1 && read_base_entry(&segs[1].path).is_some() {
                let next_entry = segs[1].base_entry;
                let count = match segs[0].batch_count() {
                    Some(c) => c,
                    None => segs[0].count_batches()?,
                };
                next_entry.checked_sub(count)
            } else if segs[i].base_offset == Offset(0) {
                Some(0)
            } else {
                None
            };
            let Some(entry) = derived else {
                return Err(StorageError::Corrupt {
                    path: crate::entries::entries_path(&segs[i].path),
                    position: 0,
                    reason: "the segment's entry index is lost and cannot be derived".into(),
                });
            };
            warn!(segment = %segs[i].path.display(), entry, "restoring the entry index sidecar");
            write_base_entry(&segs[i].path, entry)?;
            segs[i].base_entry = entry;
        }
        for i in 1..n {
            if let Some(count) = segs[i - 1].batch_count() {
                let expected = segs[i - 1].base_entry + count;
                if segs[i].base_entry != expected {
                    return Err(StorageError::Corrupt {
                        path: crate::entries::entries_path(&segs[i].path),
                        position: 0,
                        reason: format!(
                            "entry index {} where the previous segment ends at {expected}",
                            segs[i].base_entry
                        ),
                    });
                }
            }
        }
        self.segments = segs.into_iter().map(|s| (s.base_offset, s)).collect();
        Ok(())
    }
}

/// Whether a whole, CRC-valid batch follows the damaged one at `position`: then the
/// damage is in the middle of the log, not a torn tail.
fn has_valid_batch_after(path: &Path, position: u64) -> Result<bool, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io("open segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("stat segment", path, e))?
        .len();
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(|e| StorageError::io("read segment", path, e))
    };
    let mut head = [0u8; 12];
    if position + 12 > len {
        return Ok(false);
    }
    read(&mut head, position)?;
    let Some(Ok(size)) = batch::batch_size(&head) else {
        return Ok(false);
    };
    let next = position + size as u64;
    if next + HEADER_BYTES as u64 > len {
        return Ok(false);
    }
    read(&mut head, next)?;
    let Some(Ok(next_size)) = batch::batch_size(&head) else {
        return Ok(false);
    };
    if next + next_size as u64 > len {
        return Ok(false);
    }
    let mut buf = vec![0u8; next_size];
    read(&mut buf, next)?;
    Ok(BatchView::parse(&buf).is_ok_and(|b| b.verify_crc().is_ok()))
}
