//! Raft entry numbering. A Raft entry is one batch; its entry index is the batch's
//! sequence number in the partition (dense: compaction keeps emptied batches, so
//! batches are never removed except by truncation at the tail and retention at the
//! head). Each segment records the entry index of its first batch in a sidecar,
//! `<base offset>.entries`, written when the segment is created. The entry's term is
//! the batch's partitionLeaderEpoch.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StorageError;

const MAGIC: &[u8; 4] = b"SLEI";
const BYTES: usize = 16;

pub(crate) fn entries_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("entries")
}

/// Writes the base entry index of the segment whose log is `log_path`, durably.
pub(crate) fn write_base_entry(log_path: &Path, base_entry: u64) -> Result<(), StorageError> {
    let path = entries_path(log_path);
    let tmp = path.with_extension("entries.tmp");
    let mut bytes = Vec::with_capacity(BYTES);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&base_entry.to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    let mut f = File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    f.sync_all()
        .map_err(|e| StorageError::io("sync", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &path, e))
}

/// The recorded base entry index, or `None` when the sidecar is missing or damaged.
pub(crate) fn read_base_entry(log_path: &Path) -> Option<u64> {
    let bytes = fs::read(entries_path(log_path)).ok()?;
    if bytes.len() != BYTES || &bytes[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc32c::crc32c(&bytes[..12]) != crc {
        return None;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[4..12]);
    Some(u64::from_be_bytes(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("00000000000000000042.log");
        assert_eq!(read_base_entry(&log), None);
        write_base_entry(&log, 1234).expect("write");
        assert_eq!(read_base_entry(&log), Some(1234));
        let path = entries_path(&log);
        let mut bytes = fs::read(&path).expect("read");
        bytes[6] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert_eq!(read_base_entry(&log), None);
    }
}
