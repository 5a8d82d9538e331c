//! Log compaction (`cleanup.policy=compact`): keeps the latest record of every key,
//! drops tombstones once they are older than `delete.retention.ms`, and never
//! changes the offset of a record it keeps.
//!
//! ```text
//!  PartitionLog::compaction_plan()   (under the log lock: the sealed segments)
//!  CompactionPlan::run()             (no lock: key map, then `.cleaned` files, throttled)
//!  PartitionLog::install_compaction() (under the lock: drop index, rename, reindex)
//! ```
//! The active segment is never compacted. Keyless records and control batches are
//! kept as they are. A batch that loses some records is rebuilt with the same base
//! offset, lastOffsetDelta and producer fields; a batch that loses all of them stays
//! as an empty batch, so batches (Raft entries) keep their sequence numbers.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_protocol::batch::{self, BatchView};
use sluice_protocol::records::{
    empty_batch, parse_records, rebuild_batch, records_data, RecordView,
};
use sluice_protocol::types::Offset;

use crate::StorageError;

/// Suffix of a compacted segment before it replaces the original.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";

/// Settings of one compaction run.
#[derive(Debug, Clone, Copy)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long a tombstone outlives the records it deletes.
    pub delete_retention_ms: i64,
    /// Most distinct keys one run maps; later segments wait for the next run.
    pub max_keys: usize,
    /// Bytes read and written per second at most (`None`: unthrottled).
    pub io_bytes_per_second: Option<u64>,
    /// Largest decompressed batch accepted.
    pub max_batch_bytes: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 24 * 3600 * 1000,
            max_keys: 4_000_000,
            io_bytes_per_second: None,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// What a compaction run changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The sealed segments a run may rewrite, taken under the log lock.
#[derive(Debug)]
pub struct CompactionPlan {
    pub(crate) segments: Vec<PlannedSegment>,
    /// First offset after the planned segments.
    pub(crate) covers_below: Offset,
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedSegment {
    pub base: Offset,
    pub path: PathBuf,
    pub size: u64,
}

/// Rewritten segments waiting to be installed.
#[derive(Debug)]
pub struct CompactedSegments {
    pub(crate) rewritten: Vec<(PlannedSegment, PathBuf)>,
    pub(crate) stats: CompactionStats,
}

/// A 128-bit key digest: the map holds digests, not keys, to bound its memory.
fn key_digest(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0xa5u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x5au8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

struct Throttle {
    limit: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn account(&mut self, n: usize) {
        self.bytes += n as u64;
        if let Some(limit) = self.limit {
            let due = Duration::from_secs_f64(self.bytes as f64 / limit.max(1) as f64);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Calls `f` with every whole batch of a segment file, read one batch at a time.
fn for_each_batch(
    path: &Path,
    size: u64,
    throttle: &mut Throttle,
    mut f: impl FnMut(BatchView<'_>) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io("open segment", path, e))?;
    let mut position = 0u64;
    let mut buf = Vec::new();
    while position < size {
        let mut head = [0u8; batch::LOG_OVERHEAD_BYTES];
        file.read_exact_at(&mut head, position)
            .map_err(|e| StorageError::io("read segment", path, e))?;
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason,
        };
        let len = match batch::batch_size(&head) {
            Some(Ok(len)) => len,
            Some(Err(e)) => return Err(corrupt(e.to_string())),
            None => return Err(corrupt("truncated batch header".into())),
        };
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, position)
            .map_err(|e| StorageError::io("read segment", path, e))?;
        throttle.account(len);
        let view = BatchView::parse(&buf).map_err(|e| corrupt(e.to_string()))?;
        f(view)?;
        position += len as u64;
    }
    Ok(())
}

fn records<'a>(
    view: &BatchView<'_>,
    data: &'a [u8],
    path: &Path,
) -> Result<Vec<RecordView<'a>>, StorageError> {
    parse_records(data, view.record_count()).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason: format!("batch at offset {}: {e}", view.base_offset()),
    })
}

fn data_of(view: &BatchView<'_>, limit: usize, path: &Path) -> Result<Vec<u8>, StorageError> {
    records_data(view, limit).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason: format!("batch at offset {}: {e}", view.base_offset()),
    })
}

impl CompactionPlan {
    /// The offset the planned segments end before (a segment boundary).
    pub fn covers_below(&self) -> Offset {
        self.covers_below
    }

    /// Builds the key map over the planned segments and writes compacted copies of
    /// those that change. Runs without the log lock; the originals are not touched.
    pub fn run(
        self,
        now_ms: i64,
        config: &CompactionConfig,
    ) -> Result<CompactedSegments, StorageError> {
        let mut throttle = Throttle {
            limit: config.io_bytes_per_second,
            start: Instant::now(),
            bytes: 0,
        };
        // Pass 1: the latest offset of every key, segment by segment while the map
        // has room; segments past that wait for the next run.
        let mut latest: HashMap<u128, i64> = HashMap::new();
        let mut covered = 0;
        for seg in &self.segments {
            if latest.len() >= config.max_keys {
                break;
            }
            for_each_batch(&seg.path, seg.size, &mut throttle, |view| {
                if view.is_control() {
                    return Ok(());
                }
                let data = data_of(&view, config.max_batch_bytes, &seg.path)?;
                for r in records(&view, &data, &seg.path)? {
                    if let Some(key) = r.key {
                        let offset = view.base_offset().0 + i64::from(r.offset_delta);
                        latest.insert(key_digest(key), offset);
                    }
                }
                Ok(())
            })?;
            covered += 1;
        }
        // Pass 2: rewrite each covered segment that loses something.
        let horizon = now_ms.saturating_sub(config.delete_retention_ms);
        let mut out = CompactedSegments {
            rewritten: Vec::new(),
            stats: CompactionStats::default(),
        };
        for seg in self.segments.into_iter().take(covered) {
            let cleaned = seg.path.with_extension(format!("log.{CLEANED_SUFFIX}"));
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&cleaned)
                .map_err(|e| StorageError::io("create", &cleaned, e))?;
            let (mut removed, mut written) = (0u64, 0u64);
            for_each_batch(&seg.path, seg.size, &mut throttle, |view| {
                let keep_whole = |file: &mut File, written: &mut u64| {
                    file.write_all(view.bytes())
                        .map_err(|e| StorageError::io("write", &cleaned, e))?;
                    *written += view.size() as u64;
                    Ok::<(), StorageError>(())
                };
                if view.is_control() {
                    return keep_whole(&mut file, &mut written);
                }
                let data = data_of(&view, config.max_batch_bytes, &seg.path)?;
                let all = records(&view, &data, &seg.path)?;
                let kept: Vec<RecordView<'_>> = all
                    .iter()
                    .copied()
                    .filter(|r| {
                        let Some(key) = r.key else { return true };
                        let offset = view.base_offset().0 + i64::from(r.offset_delta);
                        let is_latest = latest.get(&key_digest(key)) == Some(&offset);
                        let expired_tombstone = r.value.is_none()
                            && view.base_timestamp() + r.timestamp_delta < horizon;
                        is_latest && !expired_tombstone
                    })
                    .collect();
                removed += (all.len() - kept.len()) as u64;
                if kept.len() == all.len() {
                    keep_whole(&mut file, &mut written)
                } else {
                    // An emptied batch stays as a header: batches are Raft entries,
                    // and their sequence must not change.
                    let rebuilt = if kept.is_empty() {
                        empty_batch(&view)
                    } else {
                        rebuild_batch(&view, &kept)
                    };
                    file.write_all(&rebuilt)
                        .map_err(|e| StorageError::io("write", &cleaned, e))?;
                    written += rebuilt.len() as u64;
                    Ok(())
                }
            })?;
            throttle.account(written as usize);
            if removed == 0 {
                drop(file);
                std::fs::remove_file(&cleaned)
                    .map_err(|e| StorageError::io("delete", &cleaned, e))?;
                continue;
            }
            file.sync_all()
                .map_err(|e| StorageError::io("sync", &cleaned, e))?;
            out.stats.segments_rewritten += 1;
            out.stats.records_removed += removed;
            out.stats.bytes_before += seg.size;
            out.stats.bytes_after += written;
            out.rewritten.push((seg, cleaned));
        }
        Ok(out)
    }
}

impl CompactedSegments {
    pub fn stats(&self) -> CompactionStats {
        self.stats
    }
}
