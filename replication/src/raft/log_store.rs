//! openraft's log store over the partition log.
//!
//! ### To ensure correctness
//! - `append` makes the entries readable before it returns (the log publishes a
//!   batch to readers as it writes it) and completes `IOFlushed` only once the
//!   flusher has synced the files that hold them.
//! - A replica computes each batch's offsets from its own log prefix; a normal
//!   entry that arrives with offsets (replicated from a leader) must get the same
//!   ones, or the logs have diverged and the append fails.
//! - `save_vote` returns after the vote is synced.
//! - File work runs on blocking threads, never on the async reactor.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use parking_lot::Mutex;
use sluice_protocol::batch::BatchView;
use sluice_protocol::types::Offset;
use sluice_storage::{Log, LogStart, StorageError, VoteRecord};

use super::codec::{decode, encode, epoch_of, term_of};
use super::notices::AppendNotices;
use super::{log_id, Entry, PartitionRaft, RaftLogId};
use crate::flusher::{FlushRequest, Flusher};
use crate::partition::Partition;

/// The partition, shared by the log store, its readers and the state machine.
pub type SharedLog = Arc<Mutex<Partition>>;
type Vote = openraft::alias::VoteOf<PartitionRaft>;

/// Reads at most this many bytes of entries per lock hold.
const READ_CHUNK_BYTES: usize = 4 << 20;

fn io_error(e: StorageError) -> io::Error {
    let kind = match &e {
        StorageError::Io { source, .. } => source.kind(),
        StorageError::Corrupt { .. } => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `[start, end)` of a range of entry indexes.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// The log id of the last stored entry, or of the last purged one when none is.
fn last_log_id(log: &mut Partition) -> io::Result<Option<RaftLogId>> {
    let purged = purged_log_id(log)?;
    let next = log.next_entry_index();
    if next == log.first_entry_index() {
        return Ok(purged);
    }
    match log.log_mut().entry_at(next - 1).map_err(io_error)? {
        Some((_, _, epoch)) => Ok(Some(log_id(term_of(epoch)?, next - 1))),
        None => Ok(purged),
    }
}

fn purged_log_id(log: &Partition) -> io::Result<Option<RaftLogId>> {
    log.log_start()
        .last_purged()
        .map(|(index, epoch)| Ok(log_id(term_of(epoch)?, index)))
        .transpose()
}

/// Runs `work` on the partition on a blocking thread: file work (writes, syncs,
/// file and directory changes, reads) never runs on the async reactor.
async fn on_log<T, F>(log: &SharedLog, work: F) -> io::Result<T>
where
    F: FnOnce(&mut Partition) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let log = Arc::clone(log);
    blocking(move || work(&mut log.lock())).await
}

/// Runs `work` on a blocking thread.
pub(crate) async fn blocking<T, F>(work: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// Reads the entries of `[start, end)` that the log holds, off the reactor.
async fn read_entries_blocking(log: &SharedLog, start: u64, end: u64) -> io::Result<Vec<Entry>> {
    let log = Arc::clone(log);
    blocking(move || read_entries(&log, start, end)).await
}

/// Reads the entries of `[start, end)` that the log holds.
fn read_entries(log: &SharedLog, start: u64, end: u64) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut next = start;
    while next < end {
        let chunk = log
            .lock()
            .log_mut()
            .read_entries(next, end, READ_CHUNK_BYTES)
            .map_err(io_error)?;
        let Some(last) = chunk.last() else {
            break;
        };
        if chunk[0].index != next && !out.is_empty() {
            return Err(io::Error::other(format!(
                "entry {next} is missing: the log continues at {}",
                chunk[0].index
            )));
        }
        next = last.index + 1;
        for stored in chunk {
            out.push(decode(stored)?);
        }
    }
    Ok(out)
}

/// openraft's view of a partition log.
#[derive(Debug, Clone)]
pub struct PartitionLogStore {
    log: SharedLog,
    flusher: Arc<Flusher>,
    notices: Option<Arc<AppendNotices>>,
}

impl PartitionLogStore {
    pub fn new(log: SharedLog, flusher: Arc<Flusher>) -> Self {
        PartitionLogStore {
            log,
            flusher,
            notices: None,
        }
    }

    /// Tells proposers waiting in `notices` where their batches were appended.
    pub fn with_append_notices(mut self, notices: Arc<AppendNotices>) -> Self {
        self.notices = Some(notices);
        self
    }

    pub fn log(&self) -> &SharedLog {
        &self.log
    }

    /// Appends one entry at the log end. An empty log takes its first entry at any
    /// index at or after its next one (a log that starts where a snapshot ended).
    fn append_one(
        log: &mut Partition,
        entry: &Entry,
        now_ms: i64,
        notices: Option<&AppendNotices>,
    ) -> io::Result<()> {
        let id = entry.log_id();
        let next = log.next_entry_index();
        if id.index != next {
            if id.index > next && log.first_entry_index() == next {
                let start = LogStart {
                    offset: log.log_end_offset(),
                    entry: id.index,
                    prev_term: None,
                };
                let producers = log.producers().clone();
                log.reset_to(start, producers).map_err(io_error)?;
            } else {
                return Err(io::Error::other(format!(
                    "entry {} does not follow the log, whose next entry is {next}",
                    id.index
                )));
            }
        }
        let epoch = epoch_of(id.leader_id.term)?;
        let batch = encode(entry);
        let claimed = match &entry.payload {
            EntryPayload::Normal(_) => BatchView::parse(&batch).ok().map(|v| v.base_offset()),
            _ => None,
        };
        let (base, last) = log.append(&batch, epoch, now_ms).map_err(io_error)?;
        if let Some(claimed) = claimed.filter(|c| *c != Offset(0)) {
            if claimed != base {
                // The entry is stored; refusing it stops this group, which is what a
                // diverged log calls for.
                return Err(io::Error::other(format!(
                    "entry {} was at offset {claimed} on the leader and lands at {base} here",
                    id.index
                )));
            }
        }
        if let (Some(notices), EntryPayload::Normal(b)) = (notices, &entry.payload) {
            notices.appended(&b.0, base, last);
        }
        Ok(())
    }
}

/// A reader of the partition log for openraft's replication and apply tasks.
#[derive(Debug, Clone)]
pub struct PartitionLogReader {
    log: SharedLog,
}

impl RaftLogReader<PartitionRaft> for PartitionLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        read_entries_blocking(&self.log, start, end).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        read_vote(&self.log)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        on_log(&self.log, move |log| {
            let chunk = log
                .log_mut()
                .read_entries(start, end, READ_CHUNK_BYTES)
                .map_err(io_error)?;
            chunk.into_iter().map(decode).collect()
        })
        .await
    }
}

fn read_vote(log: &SharedLog) -> io::Result<Option<Vote>> {
    let Some(v) = log.lock().vote() else {
        return Ok(None);
    };
    let node = v.voted_for.ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "stored vote names no candidate")
    })?;
    Ok(Some(if v.committed {
        Vote::new_committed(v.term, node)
    } else {
        Vote::new(v.term, node)
    }))
}

impl RaftLogReader<PartitionRaft> for PartitionLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        read_entries_blocking(&self.log, start, end).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        read_vote(&self.log)
    }
}

impl RaftLogStorage<PartitionRaft> for PartitionLogStore {
    type LogReader = PartitionLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<PartitionRaft>, io::Error> {
        on_log(&self.log, |log| {
            Ok(LogState {
                last_purged_log_id: purged_log_id(log)?,
                last_log_id: last_log_id(log)?,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        PartitionLogReader {
            log: Arc::clone(&self.log),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let record = VoteRecord {
            term: vote.leader_id.term,
            voted_for: Some(vote.leader_id.voted_for),
            committed: vote.committed,
        };
        on_log(&self.log, move |log| {
            log.log_mut().save_vote(&record).map_err(io_error)
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> Result<(), io::Error> {
        let committed = committed
            .map(|id| Ok::<_, io::Error>((id.index, epoch_of(id.leader_id.term)?)))
            .transpose()?;
        on_log(&self.log, move |log| {
            log.log_mut().save_committed(committed).map_err(io_error)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, io::Error> {
        let committed = self.log.lock().committed();
        committed
            .map(|(index, epoch)| Ok(log_id(term_of(epoch)?, index)))
            .transpose()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<PartitionRaft>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let now = now_ms();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let notices = self.notices.clone();
        let target = on_log(&self.log, move |log| {
            for entry in &entries {
                Self::append_one(log, entry, now, notices.as_deref())?;
            }
            Ok(log.log_mut().sync_target())
        })
        .await?;
        match target {
            None => callback.io_completed(Ok(())),
            Some(target) => self.flusher.submit(FlushRequest {
                files: target.files,
                done: Box::new(move |result| {
                    callback
                        .io_completed(result.map_err(|e| io::Error::new(e.kind(), e.to_string())))
                }),
            }),
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> Result<(), io::Error> {
        let last_kept = last_log_id.map(|id| id.index);
        on_log(&self.log, move |log| {
            log.truncate_after_entry(last_kept).map_err(io_error)
        })
        .await
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), io::Error> {
        let epoch = epoch_of(log_id.leader_id.term)?;
        let last = log_id.index;
        on_log(&self.log, move |log| {
            log.log_mut()
                .purge_entries(last, epoch)
                .map(|_| ())
                .map_err(io_error)
        })
        .await
    }
}
