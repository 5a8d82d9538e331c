//! Idempotent producer state of one partition: for every producer id its epoch and
//! its last five batches (sequence range and offsets), as Kafka keeps them. It is
//! derived from the batch headers of the log, snapshotted beside the segments
//! (`<offset>.snapshot`) and rebuilt on open from the latest snapshot plus the
//! batches after it.
//!
//! ```text
//!  check(pid, epoch, seqs) ─► Append | Duplicate { original offsets } | error
//!  record(...) after the append; replay(log) on open; write_snapshot at roll/close
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_protocol::batch::{BatchView, Batches};
use sluice_protocol::types::Offset;
use thiserror::Error;

use crate::{Log, PartitionLog, StorageError};

/// Batches remembered per producer for duplicate detection (Kafka's five in flight).
pub const BATCHES_KEPT: usize = 5;
/// Snapshots kept on disk; older ones are deleted.
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_SUFFIX: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
const SNAPSHOT_VERSION: u16 = 1;

/// Why a batch from an idempotent producer is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProducerError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} sent sequence {first_seq} where {expected} was expected")]
    OutOfOrder {
        producer_id: i64,
        first_seq: i32,
        expected: i32,
    },
    #[error("producer {producer_id} is unknown here and its batch does not start at sequence 0 (it starts at {first_seq})")]
    UnknownProducer { producer_id: i64, first_seq: i32 },
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Next in sequence (or not idempotent): append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets.
    Duplicate {
        base_offset: Offset,
        last_offset: Offset,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    pub last_timestamp_ms: i64,
}

/// The producer ids and their recent batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The last sequence number of a batch (sequences wrap at i32::MAX).
pub fn last_seq(base_seq: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(base_seq) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }
    /// Every producer id with its state, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// Checks a batch of an idempotent producer (`producer_id >= 0`) against the
    /// state, by Kafka's rules.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, ProducerError> {
        if producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::UnknownProducer {
                    producer_id,
                    first_seq,
                })
            };
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::OutOfOrder {
                    producer_id,
                    first_seq,
                    expected: 0,
                })
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        let Some(last) = entry.batches.back() else {
            return Ok(SequenceCheck::Append);
        };
        let expected = next_seq(last.last_seq);
        if first_seq == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(ProducerError::OutOfOrder {
                producer_id,
                first_seq,
                expected,
            })
        }
    }

    /// Records an appended batch.
    pub fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        if producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(producer_id).or_insert(ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp_ms: meta.timestamp_ms,
        });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(meta.timestamp_ms);
    }

    /// Records a stored batch, read from the log.
    pub fn record_batch(&mut self, batch: &BatchView<'_>) {
        self.record_stored(batch, batch.base_offset(), batch.last_offset());
    }

    /// Records `batch` as stored at `base..=last` (the offsets the log assigned;
    /// the header may still carry the producer's own). Control batches and batches
    /// of non-idempotent producers change nothing.
    pub fn record_stored(&mut self, batch: &BatchView<'_>, base: Offset, last: Offset) {
        if batch.producer_id() < 0 || batch.is_control() {
            return;
        }
        self.record(
            batch.producer_id(),
            batch.producer_epoch(),
            BatchMeta {
                first_seq: batch.base_sequence(),
                last_seq: last_seq(batch.base_sequence(), batch.last_offset_delta()),
                base_offset: base,
                last_offset: last,
                timestamp_ms: batch.max_timestamp(),
            },
        );
    }

    /// Forgets producers idle for longer than `expiration_ms`
    /// (`producer.id.expiration.ms`). Returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp_ms) <= expiration_ms);
        before - self.producers.len()
    }

    /// The state as of `offset`, in the snapshot format (checksummed).
    pub fn encode(&self, offset: Offset) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&offset.0.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.0.to_be_bytes());
                out.extend_from_slice(&b.last_offset.0.to_be_bytes());
                out.extend_from_slice(&b.timestamp_ms.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads [`ProducerStates::encode`]'s output; `None` when damaged.
    pub fn decode(bytes: &[u8]) -> Option<(Offset, Self)> {
        let (body, crc) = bytes.split_at(bytes.len().checked_sub(4)?);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader { b: body, at: 0 };
        if r.take(4)? != SNAPSHOT_MAGIC || r.u16()? != SNAPSHOT_VERSION {
            return None;
        }
        r.u16()?;
        let offset = Offset(r.i64()?);
        let count = r.u32()?;
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = r.u16()? as i16;
            let last_timestamp_ms = r.i64()?;
            let n = *r.take(1)?.first()?;
            let mut batches = VecDeque::new();
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    base_offset: Offset(r.i64()?),
                    last_offset: Offset(r.i64()?),
                    timestamp_ms: r.i64()?,
                });
            }
            states.producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp_ms,
                },
            );
        }
        (r.at == body.len()).then_some((offset, states))
    }

    /// Writes the state as of `offset` (the log end it covers) durably, and keeps
    /// only the newest snapshots.
    pub fn write_snapshot(&self, dir: &Path, offset: Offset) -> Result<(), StorageError> {
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        let mut f = File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
        f.write_all(&self.encode(offset))
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| StorageError::io("sync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &path, e))?;
        let mut all = snapshots(dir)?;
        while all.len() > SNAPSHOTS_KEPT {
            let (_, old) = all.remove(0);
            fs::remove_file(&old).map_err(|e| StorageError::io("delete", &old, e))?;
        }
        Ok(())
    }

    /// Rebuilds the state of `log`: the newest snapshot at or below the log end,
    /// then every batch after it. Newer or unreadable snapshots are deleted.
    pub fn rebuild(log: &mut PartitionLog) -> Result<Self, StorageError> {
        let end = log.log_end_offset();
        Self::replay(log, end, true)
    }

    /// The state as of `end` (a batch boundary at or below the log end): the newest
    /// snapshot at or below it, then the batches up to it. Files are left alone.
    pub fn state_at(log: &mut PartitionLog, end: Offset) -> Result<Self, StorageError> {
        Self::replay(log, end.min(log.log_end_offset()), false)
    }

    fn replay(log: &mut PartitionLog, end: Offset, prune: bool) -> Result<Self, StorageError> {
        let dir = log.dir().to_path_buf();
        let mut base = (log.log_start_offset(), ProducerStates::default());
        for (offset, path) in snapshots(&dir)?.into_iter().rev() {
            let loaded = (offset <= end)
                .then(|| fs::read(&path).ok())
                .flatten()
                .and_then(|bytes| ProducerStates::decode(&bytes))
                .filter(|(o, _)| *o == offset);
            match loaded {
                Some(found) => {
                    base = found;
                    break;
                }
                None if prune => {
                    fs::remove_file(&path).map_err(|e| StorageError::io("delete", &path, e))?;
                }
                None => {}
            }
        }
        let (mut next, mut states) = base;
        next = next.max(log.log_start_offset());
        while next < end {
            let r = log.read(next, 1 << 20, end, true)?;
            if r.records.is_empty() {
                break;
            }
            for b in Batches::new(&r.records) {
                let b = b?;
                if b.last_offset() >= next {
                    states.record_batch(&b);
                }
            }
            next = r.next_offset;
        }
        Ok(states)
    }

    /// Deletes every producer snapshot in `dir` (a log restarted elsewhere).
    pub fn remove_snapshots(dir: &Path) -> Result<(), StorageError> {
        for (_, path) in snapshots(dir)? {
            fs::remove_file(&path).map_err(|e| StorageError::io("delete", &path, e))?;
        }
        Ok(())
    }
}

fn snapshot_path(dir: &Path, offset: Offset) -> PathBuf {
    dir.join(format!("{:020}.{SNAPSHOT_SUFFIX}", offset.0))
}

/// Snapshot files, oldest first.
fn snapshots(dir: &Path) -> Result<Vec<(Offset, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))? {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(offset) = name
            .to_str()
            .and_then(|n| n.strip_suffix(&format!(".{SNAPSHOT_SUFFIX}")))
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        out.push((Offset(offset), entry.path()));
    }
    out.sort();
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(i64::from_be_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: i32, last: i32, base: i64) -> BatchMeta {
        BatchMeta {
            first_seq: first,
            last_seq: last,
            base_offset: Offset(base),
            last_offset: Offset(base + i64::from(last - first)),
            timestamp_ms: 1,
        }
    }

    #[test]
    fn sequences_duplicates_epochs_and_unknown_producers() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 4), Ok(SequenceCheck::Append));
        assert!(matches!(
            s.check(7, 0, 5, 9),
            Err(ProducerError::UnknownProducer { .. })
        ));
        s.record(7, 0, meta(0, 4, 100));
        assert_eq!(s.check(7, 0, 5, 9), Ok(SequenceCheck::Append));
        s.record(7, 0, meta(5, 9, 105));
        // A retry of either batch gets its original offsets.
        assert_eq!(
            s.check(7, 0, 0, 4),
            Ok(SequenceCheck::Duplicate {
                base_offset: Offset(100),
                last_offset: Offset(104)
            })
        );
        // A gap is out of order; a stale epoch is fenced.
        assert!(matches!(
            s.check(7, 0, 11, 12),
            Err(ProducerError::OutOfOrder { expected: 10, .. })
        ));
        assert_eq!(s.check(7, 0, 10, 12), Ok(SequenceCheck::Append));
        s.record(7, 1, meta(0, 0, 110));
        assert!(matches!(
            s.check(7, 0, 1, 1),
            Err(ProducerError::InvalidEpoch { current: 1, .. })
        ));
        // A new epoch must start at sequence 0.
        assert!(matches!(
            s.check(7, 2, 3, 3),
            Err(ProducerError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(s.check(7, 2, 0, 0), Ok(SequenceCheck::Append));
        // Only the last five batches are remembered.
        for i in 1..=6 {
            s.record(7, 1, meta(i, i, 110 + i64::from(i)));
        }
        assert!(matches!(
            s.check(7, 1, 1, 1),
            Err(ProducerError::OutOfOrder { .. })
        ));
        assert!(matches!(
            s.check(7, 1, 2, 2),
            Ok(SequenceCheck::Duplicate { .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_seq(i32::MAX - 1, 3), 1);
        let mut s = ProducerStates::default();
        s.record(1, 0, meta(0, 0, 0));
        s.producers.get_mut(&1).expect("entry").batches[0].last_seq = i32::MAX;
        assert_eq!(s.check(1, 0, 0, 2), Ok(SequenceCheck::Append));
    }

    #[test]
    fn snapshots_round_trip_and_reject_corruption() {
        let mut s = ProducerStates::default();
        s.record(3, 2, meta(0, 9, 40));
        s.record(9, 0, meta(0, 0, 50));
        let bytes = s.encode(Offset(51));
        assert_eq!(
            ProducerStates::decode(&bytes),
            Some((Offset(51), s.clone()))
        );
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert_eq!(ProducerStates::decode(&bad), None);
        assert_eq!(ProducerStates::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(
            1,
            0,
            BatchMeta {
                timestamp_ms: 1_000,
                ..meta(0, 0, 0)
            },
        );
        s.record(
            2,
            0,
            BatchMeta {
                timestamp_ms: 9_000,
                ..meta(0, 0, 1)
            },
        );
        assert_eq!(s.expire(10_000, 5_000), 1);
        assert!(s.get(1).is_none() && s.get(2).is_some());
    }
}
