//! Small records kept beside the segments of a log: where it starts, the Raft vote
//! and the last known commit point. Each is replaced whole (written to a temporary
//! file, then renamed), so a reader sees the old record or the new one.
//!
//! - `log-start-offset`: `offset entry prev_term [reset]` as text, `prev_term` being
//!   the term of entry `entry - 1` (`-` when unknown). Brokers before entry
//!   numbering wrote the offset alone, which still reads. `reset` marks a
//!   [`crate::Log::reset_to`] that had not finished removing the old segments.
//! - `raft-vote`: the vote, synced before `save_vote` returns.
//! - `raft-committed`: the commit point, advisory (not synced, and overwritten in
//!   place: losing it, or a torn copy, only means re-applying from an older point).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sluice_protocol::types::{LeaderEpoch, Offset};

use crate::StorageError;

const LOG_START_FILE: &str = "log-start-offset";
const VOTE_FILE: &str = "raft-vote";
const COMMITTED_FILE: &str = "raft-committed";
const VOTE_MAGIC: &[u8; 4] = b"SLVT";
const COMMITTED_MAGIC: &[u8; 4] = b"SLCM";

/// Where a log starts: its first readable offset, the entry index of the first
/// entry it still holds (or would hold next, when empty) and the term of the entry
/// just below, once entries below were purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStart {
    pub offset: Offset,
    pub entry: u64,
    pub prev_term: Option<LeaderEpoch>,
}

impl LogStart {
    /// The (index, term) of the last purged entry, when known.
    pub fn last_purged(&self) -> Option<(u64, LeaderEpoch)> {
        let term = self.prev_term?;
        Some((self.entry.checked_sub(1)?, term))
    }
}

/// A Raft vote as stored: the term, the candidate voted for, and whether that
/// candidate's leadership was granted by a quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteRecord {
    pub term: u64,
    pub voted_for: Option<u64>,
    pub committed: bool,
}

/// The stored log start as read from disk: entry and term are absent in files
/// written before entry numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredStart {
    pub offset: Offset,
    pub entry: Option<u64>,
    pub prev_term: Option<LeaderEpoch>,
    pub reset: bool,
}

pub(crate) fn read_log_start(dir: &Path) -> Result<Option<StoredStart>, StorageError> {
    let path = dir.join(LOG_START_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", path, e)),
    };
    let corrupt = |what: &str| StorageError::Corrupt {
        path: path.clone(),
        position: 0,
        reason: format!("log start record {:?}: {what}", text.trim()),
    };
    let mut fields = text.split_whitespace();
    let offset = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| corrupt("the offset is not a number"))?;
    let entry = match fields.next() {
        None => None,
        Some(f) => Some(
            f.parse()
                .map_err(|_| corrupt("the entry index is not a number"))?,
        ),
    };
    let prev_term = match fields.next() {
        None | Some("-") => None,
        Some(f) => Some(LeaderEpoch(
            f.parse().map_err(|_| corrupt("the term is not a number"))?,
        )),
    };
    let reset = match fields.next() {
        None => false,
        Some("reset") => true,
        Some(_) => return Err(corrupt("unknown trailing field")),
    };
    Ok(Some(StoredStart {
        offset: Offset(offset),
        entry,
        prev_term,
        reset,
    }))
}

/// Persists the log start durably (file and directory synced).
pub(crate) fn write_log_start(
    dir: &Path,
    start: &LogStart,
    reset: bool,
) -> Result<(), StorageError> {
    let term = start
        .prev_term
        .map_or_else(|| "-".to_string(), |t| t.0.to_string());
    let mut line = format!("{} {} {term}", start.offset.0, start.entry);
    if reset {
        line.push_str(" reset");
    }
    line.push('\n');
    replace(dir, LOG_START_FILE, line.as_bytes(), true)
}

pub(crate) fn read_vote(dir: &Path) -> Result<Option<VoteRecord>, StorageError> {
    let Some(body) = read_checked(dir, VOTE_FILE, VOTE_MAGIC, 17)? else {
        return Ok(None);
    };
    let term = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
    let node = u64::from_be_bytes(body[8..16].try_into().expect("8 bytes"));
    let flags = body[16];
    Ok(Some(VoteRecord {
        term,
        voted_for: (flags & 1 != 0).then_some(node),
        committed: flags & 2 != 0,
    }))
}

/// Persists the vote durably before returning.
pub(crate) fn write_vote(dir: &Path, vote: &VoteRecord) -> Result<(), StorageError> {
    let mut body = Vec::with_capacity(17);
    body.extend_from_slice(&vote.term.to_be_bytes());
    body.extend_from_slice(&vote.voted_for.unwrap_or(0).to_be_bytes());
    body.push(u8::from(vote.voted_for.is_some()) | (u8::from(vote.committed) << 1));
    replace(dir, VOTE_FILE, &checked(VOTE_MAGIC, &body), true)
}

/// The last saved commit point as (entry index, term); a missing or damaged record
/// is `None` (it is advisory).
pub(crate) fn read_committed(dir: &Path) -> Option<(u64, LeaderEpoch)> {
    let body = read_checked(dir, COMMITTED_FILE, COMMITTED_MAGIC, 13).ok()??;
    if body[12] == 0 {
        return None;
    }
    let index = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
    let term = i32::from_be_bytes(body[8..12].try_into().expect("4 bytes"));
    Some((index, LeaderEpoch(term)))
}

pub(crate) fn write_committed(
    dir: &Path,
    committed: Option<(u64, LeaderEpoch)>,
) -> Result<(), StorageError> {
    let (index, term) = committed.unwrap_or((0, LeaderEpoch(0)));
    let mut body = Vec::with_capacity(13);
    body.extend_from_slice(&index.to_be_bytes());
    body.extend_from_slice(&term.0.to_be_bytes());
    body.push(u8::from(committed.is_some()));
    // Written in place, not replaced: the record always has the same length and
    // is advisory, so a torn write (caught by its CRC) only loses the hint, while a
    // rename per commit made ext4 write back data on every commit.
    let path = dir.join(COMMITTED_FILE);
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .and_then(|f| f.write_all_at(&checked(COMMITTED_MAGIC, &body), 0))
        .map_err(|e| StorageError::io("write", &path, e))
}

/// `magic`, `body`, then the CRC32C of both.
fn checked(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + body.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(body);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

/// The body of a record written by [`checked`]; a damaged one is corruption.
fn read_checked(
    dir: &Path,
    name: &str,
    magic: &[u8; 4],
    body_len: usize,
) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", path, e)),
    };
    let intact = bytes.len() == body_len + 8 && &bytes[..4] == magic && {
        let (data, crc) = bytes.split_at(4 + body_len);
        crc32c::crc32c(data).to_be_bytes() == crc
    };
    if !intact {
        return Err(StorageError::Corrupt {
            path,
            position: 0,
            reason: format!("damaged {name} record"),
        });
    }
    Ok(Some(bytes[4..4 + body_len].to_vec()))
}

/// Replaces `dir/name` with `bytes` through a temporary file; `durable` syncs the
/// file and the directory before returning.
fn replace(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    if durable {
        f.sync_all()
            .map_err(|e| StorageError::io("sync", &tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &path, e))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_start_round_trips_and_reads_the_old_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_log_start(dir.path()).expect("read"), None);
        fs::write(dir.path().join(LOG_START_FILE), "42\n").expect("write");
        let old = read_log_start(dir.path()).expect("read").expect("some");
        assert_eq!(
            (old.offset, old.entry, old.prev_term),
            (Offset(42), None, None)
        );
        let start = LogStart {
            offset: Offset(7),
            entry: 3,
            prev_term: Some(LeaderEpoch(2)),
        };
        write_log_start(dir.path(), &start, true).expect("write");
        let got = read_log_start(dir.path()).expect("read").expect("some");
        assert_eq!(
            (got.offset, got.entry, got.prev_term, got.reset),
            (Offset(7), Some(3), Some(LeaderEpoch(2)), true)
        );
        fs::write(dir.path().join(LOG_START_FILE), "7 x -\n").expect("write");
        let err = read_log_start(dir.path()).expect_err("damaged");
        assert!(err.to_string().contains(LOG_START_FILE), "{err}");
    }

    #[test]
    fn vote_and_committed_round_trip_and_damage_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_vote(dir.path()).expect("read"), None);
        for vote in [
            VoteRecord {
                term: 9,
                voted_for: Some(0),
                committed: true,
            },
            VoteRecord {
                term: u64::MAX,
                voted_for: None,
                committed: false,
            },
        ] {
            write_vote(dir.path(), &vote).expect("write");
            assert_eq!(read_vote(dir.path()).expect("read"), Some(vote));
        }
        let path = dir.path().join(VOTE_FILE);
        let mut bytes = fs::read(&path).expect("read");
        bytes[5] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert!(read_vote(dir.path()).is_err());

        assert_eq!(read_committed(dir.path()), None);
        write_committed(dir.path(), Some((12, LeaderEpoch(3)))).expect("write");
        assert_eq!(read_committed(dir.path()), Some((12, LeaderEpoch(3))));
        write_committed(dir.path(), None).expect("write");
        assert_eq!(read_committed(dir.path()), None);
    }
}
