//! The files of the cluster state on one broker: atomic TOML writes, partition
//! directories claimed by topic id, and the removal of deleted topics' logs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use super::{Topic, TopicError};

/// Removes a deleted topic's partition logs: each directory is renamed out of
/// the way first (one atomic step), so a topic created with the same name never
/// meets the old data, then removed.
pub(super) fn remove_partition_logs(topic: &Topic) {
    for replica in topic.hosted_replicas() {
        let dir = replica.dir();
        let doomed = deleted_dir_name(&dir, topic.id);
        if let Err(e) = std::fs::rename(&dir, &doomed) {
            warn!(dir = %dir.display(), error = %e, "could not set a deleted partition's log aside");
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            warn!(dir = %doomed.display(), error = %e, "could not remove a deleted partition's log; it is removed at the next start");
        }
    }
}

/// File in a replicated partition's directory naming the topic id it belongs to.
const TOPIC_ID_FILE: &str = "topic.id";

/// Makes `dir` the directory of a partition of topic `id`: a directory written
/// for another topic id (a topic deleted and created again while this broker was
/// away) is removed first.
pub(super) fn claim_partition_dir(dir: &Path, id: Uuid) {
    let marker = dir.join(TOPIC_ID_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(text) if text.trim() == id.to_string() => return,
        Ok(other) => {
            let old = Uuid::parse_str(other.trim()).unwrap_or_default();
            let doomed = deleted_dir_name(dir, old);
            warn!(dir = %dir.display(), old = %other.trim(), new = %id, "partition directory belongs to an earlier topic of this name; removing it");
            if std::fs::rename(dir, &doomed).is_ok() {
                let _ = std::fs::remove_dir_all(&doomed);
            }
        }
        Err(_) => {}
    }
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::write(&marker, id.to_string())?;
        std::fs::File::open(dir)?.sync_all()
    }) {
        warn!(dir = %dir.display(), error = %e, "cannot record the topic id of a partition");
    }
}

/// Suffix of partition directories of deleted topics awaiting removal.
const DELETED_SUFFIX: &str = "-delete";

/// Where a deleted topic's partition directory waits for removal (Kafka's
/// `<topic>-<partition>.<id>-delete`).
fn deleted_dir_name(dir: &Path, topic_id: Uuid) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}{DELETED_SUFFIX}", topic_id.simple()));
    dir.with_file_name(name)
}

/// Removes what deletions left behind (a crash between rename and removal).
pub(super) fn remove_deleted_dirs(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(DELETED_SUFFIX))
        {
            info!(dir = %path.display(), "removing the log of a deleted topic");
            if let Err(e) = std::fs::remove_dir_all(&path) {
                warn!(dir = %path.display(), error = %e, "could not remove a deleted topic's log");
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ProducerIdFile {
    pub(super) next_block_start: i64,
}

pub(super) fn read_toml<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Option<T>, TopicError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| TopicError::Storage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TopicError::Storage(format!("read {}: {e}", path.display()))),
    }
}

/// Writes a file atomically and durably: temp file, fsync, rename, fsync dir.
pub(super) fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), TopicError> {
    use std::io::Write;
    let storage = |what: &str, e: &dyn std::fmt::Display| {
        TopicError::Storage(format!("{what} {}: {e}", path.display()))
    };
    let text = toml::to_string(value).map_err(|e| storage("serialize", &e))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| storage("create", &e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| storage("write", &e))?;
    f.sync_all().map_err(|e| storage("sync", &e))?;
    std::fs::rename(&tmp, path).map_err(|e| storage("rename", &e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| storage("sync dir of", &e))?;
    }
    Ok(())
}
