//! One replica of one partition: its log, high watermark and commit notifications.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::{Bytes, BytesMut};
use openraft::async_runtime::watch::WatchReceiver;
use parking_lot::{Mutex, MutexGuard};
use sluice_protocol::batch::BatchView;
use sluice_storage::{
    last_seq, CompactionConfig, CompactionStats, LeaderEpoch, Log, LogConfig, Offset,
    RetentionOutcome, SequenceCheck, StorageError, SyncTarget,
};
use tokio::sync::{watch, Semaphore};
use tracing::error;

use crate::append_queue::{AppendQueue, AppendTicket};
use crate::flusher::{FlushRequest, Flusher};
use crate::partition::Partition;
use crate::proposal::Proposals;
use crate::quiet::Quiet;
use crate::raft::{RaftNode, SharedLog, SnapshotRequests};
use crate::ReplicaError;

mod deletion;

/// Bumped whenever some partition's high watermark advances; fetches that wait for
/// data (`max_wait_ms`) watch it.
pub type CommitSignal = watch::Receiver<u64>;

/// The broker-wide "a high watermark moved" signal.
#[derive(Debug)]
pub struct Commits(watch::Sender<u64>);

impl Commits {
    pub fn new() -> Arc<Self> {
        Arc::new(Commits(watch::channel(0).0))
    }
    pub fn subscribe(&self) -> CommitSignal {
        self.0.subscribe()
    }
    fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Bytes of a group up to which its append may run on an async thread: a `pwrite`
/// of this much into the page cache costs less than the hand-off to an I/O thread
/// (measured with the Java producer: the hand-off per request cost about 20% at
/// acks=1).
const INLINE_APPEND_BYTES_MAX: usize = 64 << 10;

/// Who moves a replica's high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighWatermarkSource {
    /// A single node: what this replica has flushed is committed.
    LocalFlush,
    /// The partition's owner (the Raft state machine's apply, with the commit
    /// index) calls [`Replica::advance_high_watermark`].
    Owner,
}

/// What a replica needs from the broker around it.
#[derive(Debug, Clone)]
pub struct ReplicaContext {
    pub flusher: Arc<Flusher>,
    pub commits: Arc<Commits>,
    /// Permits for blocking disk work (the broker's I/O pool bound), taken by the
    /// append task of each partition.
    pub io: Arc<Semaphore>,
    pub high_watermark: HighWatermarkSource,
}

/// Whether a leader has gone an election timeout without a majority's answer
/// (while its group is quiet, without a majority of its brokers heard).
fn quorum_lost(raft: &RaftNode, quiet: Option<&Arc<Quiet>>) -> bool {
    let lease = std::time::Duration::from_millis(raft.config().election_timeout_min);
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    // A group of one is its own quorum (nothing acknowledges it).
    if m.membership_config
        .membership()
        .voter_ids()
        .nth(1)
        .is_none()
    {
        return false;
    }
    let answers_stale = m
        .last_quorum_acked
        .is_some_and(|at| openraft::Instant::elapsed(&at.into_inner()) > lease);
    if !answers_stale {
        return false;
    }
    let voters: std::collections::BTreeSet<u64> =
        m.membership_config.membership().voter_ids().collect();
    drop(m);
    !quiet.is_some_and(|q| q.holds_lease(&voters, lease))
}

/// The entry whose last offset is `last`: its index and epoch (terms and offsets
/// only grow along the log, so a binary search over entry indexes finds it).
fn entry_ending_at(
    log: &mut sluice_storage::PartitionLog,
    last: Offset,
) -> Result<Option<(u64, LeaderEpoch)>, StorageError> {
    let (mut lo, mut hi) = (log.first_entry_index(), log.next_entry_index());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match log.entry_at(mid)? {
            Some((_, l, _)) if l < last => lo = mid + 1,
            Some((_, l, epoch)) if l == last => return Ok(Some((mid, epoch))),
            _ => hi = mid,
        }
    }
    Ok(None)
}

/// Whether `records` holds batches and every one of them is an empty data batch.
fn only_empty_batches(records: &[u8]) -> bool {
    !records.is_empty()
        && sluice_protocol::batch::Batches::new(records)
            .all(|b| b.is_ok_and(|b| b.record_count() == 0 && !b.is_control()))
}

/// When a produce is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: never answered.
    None,
    /// acks=1: once the leader appended.
    Leader,
    /// acks=-1 (all): once committed, that is durable on a majority.
    All,
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_start_offset: Offset,
}

/// Whole batches below the high watermark, with the partition's offsets.
#[derive(Debug, Clone)]
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CommitState {
    high_watermark: Offset,
    failed: bool,
}

/// A partition replica (today: the only one, and so the leader).
#[derive(Debug)]
pub struct Replica {
    name: String,
    dir: PathBuf,
    /// `None` for a partition whose log could not be opened: it stays offline
    /// (every call answers [`ReplicaError::Offline`]) while the rest serve.
    /// Shared with the partition's Raft log store and state machine.
    log: Option<SharedLog>,
    epoch: LeaderEpoch,
    log_start: AtomicI64,
    log_end: AtomicI64,
    commit: watch::Sender<CommitState>,
    /// One past the last offset known durable on this replica's disk.
    flushed_end: AtomicI64,
    /// When the oldest append not yet durable was made (`i64::MAX`: none), for
    /// `flush.ms`; `flush.messages` counts from `flushed_end`.
    unflushed_since_ms: AtomicI64,
    failure: Mutex<Option<String>>,
    context: ReplicaContext,
    /// (end of the compacted range, when) of the last compaction.
    last_compaction: Mutex<Option<(Offset, i64)>>,
    /// The append queue and its task, started on first use.
    queue: OnceLock<AppendQueue>,
    /// The partition's Raft group, when the partition is replicated: it owns the
    /// write path and the high watermark.
    raft: OnceLock<RaftNode>,
    /// The group's quiet state (its timers stop while it has nothing to do).
    quiet: OnceLock<Arc<Quiet>>,
    snapshots: OnceLock<SnapshotRequests>,
    proposals: Proposals,
    notices: Arc<crate::raft::AppendNotices>,
}

impl Replica {
    /// Opens (and recovers) the log in `dir`. Everything recovered is committed: on a
    /// single node, what survived on disk is what a majority holds. A log that cannot
    /// be opened or recovered gives an offline replica that names the reason (the
    /// file and byte position), so one damaged partition never stops start-up.
    pub fn open(
        name: String,
        dir: PathBuf,
        config: LogConfig,
        context: ReplicaContext,
    ) -> Arc<Self> {
        let opened = Partition::open(dir.clone(), config);
        let (partition, failure) = match opened {
            Ok(p) => (Some(p), None),
            Err(e) => {
                error!(partition = %name, error = %e, "partition cannot be opened; it stays offline");
                (None, Some(e.to_string()))
            }
        };
        let (start, end) = partition.as_ref().map_or((Offset(0), Offset(0)), |p| {
            (p.log_start_offset(), p.log_end_offset())
        });
        // On one node everything recovered is committed; under an owner (Raft)
        // the owner's commits move the high watermark from the log start.
        let committed = match context.high_watermark {
            HighWatermarkSource::LocalFlush => end,
            HighWatermarkSource::Owner => start,
        };
        let (commit, _) = watch::channel(CommitState {
            high_watermark: committed,
            failed: failure.is_some(),
        });
        Arc::new(Replica {
            name,
            dir,
            log_start: AtomicI64::new(start.0),
            log_end: AtomicI64::new(end.0),
            log: partition.map(|p| Arc::new(Mutex::new(p))),
            epoch: LeaderEpoch(0),
            commit,
            flushed_end: AtomicI64::new(end.0),
            unflushed_since_ms: AtomicI64::new(i64::MAX),
            failure: Mutex::new(failure),
            context,
            last_compaction: Mutex::new(None),
            queue: OnceLock::new(),
            raft: OnceLock::new(),
            quiet: OnceLock::new(),
            snapshots: OnceLock::new(),
            proposals: Proposals::default(),
            notices: Arc::default(),
        })
    }

    /// Hands the write path to the partition's Raft group (once): appends become
    /// proposals and the group's commits move the high watermark.
    pub fn attach_raft(&self, raft: RaftNode, snapshots: SnapshotRequests, quiet: Arc<Quiet>) {
        let _ = self.raft.set(raft);
        let _ = self.snapshots.set(snapshots);
        let _ = self.quiet.set(quiet);
    }

    /// The group's quiet state, once the partition is replicated.
    pub fn quiet(&self) -> Option<&Arc<Quiet>> {
        self.quiet.get()
    }

    /// Starts the group's timers if it was quiet (before a write or a transfer).
    pub fn wake(&self) {
        if let Some(q) = self.quiet.get() {
            q.wake();
        }
    }

    /// Retention of a replicated partition: the head goes through the Raft group.
    /// The new log start is the first segment retention keeps, but never past the
    /// active segment or the high watermark (the point must be applied, and far
    /// behind what is being applied); the state machine is asked for a snapshot at
    /// the entry just below it, after which openraft purges the log up to it
    /// (whole segments). A replica that falls behind the new log start installs
    /// that snapshot. Returns the requested log start.
    pub async fn apply_replicated_retention(
        self: &Arc<Self>,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<Option<Offset>, ReplicaError> {
        let (Some(raft), Some(snapshots)) = (self.raft.get(), self.snapshots.get()) else {
            return Ok(None);
        };
        self.check_online()?;
        let me = Arc::clone(self);
        let hw = self.high_watermark();
        let point = tokio::task::spawn_blocking(move || {
            let mut p = me.partition()?;
            let log = p.log_mut();
            let target = log
                .retention_point(now_ms, retention_ms, retention_bytes)
                .min(log.active_segment_base())
                .min(hw);
            if target <= log.log_start_offset() {
                return Ok::<_, ReplicaError>(None);
            }
            Ok(entry_ending_at(log, Offset(target.0 - 1))?
                .map(|(index, epoch)| (index, epoch, target)))
        })
        .await
        .map_err(|e| ReplicaError::Raft {
            partition: self.name.clone(),
            reason: e.to_string(),
        })??;
        let Some((index, epoch, target)) = point else {
            return Ok(None);
        };
        self.snapshot_at(raft, snapshots, index, epoch, target)
            .await?;
        Ok(Some(target))
    }

    /// Asks the state machine for a snapshot at entry `index` (of `epoch`),
    /// after which the log starts at `start`, and has the group take it (then
    /// openraft purges the log up to it).
    async fn snapshot_at(
        &self,
        raft: &RaftNode,
        snapshots: &SnapshotRequests,
        index: u64,
        epoch: LeaderEpoch,
        start: Offset,
    ) -> Result<(), ReplicaError> {
        let term = u64::try_from(epoch.0).unwrap_or_default();
        snapshots.request(crate::raft::log_id(term, index), start);
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| ReplicaError::Raft {
                partition: self.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// The partition's Raft group, when it is replicated.
    pub fn raft(&self) -> Option<&RaftNode> {
        self.raft.get()
    }

    /// Whether this replica leads its partition (a partition that is not
    /// replicated always does).
    pub fn is_leader(&self) -> bool {
        match self.raft.get() {
            None => true,
            Some(raft) => raft.as_leader().is_ok() && !quorum_lost(raft, self.quiet.get()),
        }
    }

    /// The node that leads the partition, as far as this replica knows. A leader
    /// that has not heard from a majority for an election timeout does not count
    /// itself (it cannot commit; the others may have elected a new leader).
    pub fn leader(&self) -> Option<u64> {
        let raft = self.raft.get()?;
        let metrics = raft.metrics();
        let (leader, id) = {
            let m = metrics.borrow_watched();
            (m.current_leader, m.id)
        };
        if leader == Some(id) && quorum_lost(raft, self.quiet.get()) {
            return None;
        }
        leader
    }

    /// The flusher this replica's files are synced by.
    pub fn flusher(&self) -> Arc<Flusher> {
        Arc::clone(&self.context.flusher)
    }

    /// On the leader of a replicated partition: itself and the followers that
    /// acknowledged its log within `lag_max` (Kafka's ISR); while the group is
    /// quiet, the followers that hold the whole log and whose brokers were heard
    /// within `lag_max`. `None` elsewhere.
    pub fn in_sync_replicas(&self, lag_max: std::time::Duration) -> Option<Vec<u64>> {
        let raft = self.raft.get()?;
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        if m.current_leader != Some(m.id) {
            return None;
        }
        let mut isr = vec![m.id];
        let acked = m.heartbeat.as_ref();
        // A group of one replicates to nobody.
        for (node, matched) in m.replication.iter().flatten() {
            if *node == m.id || matched.is_none() {
                continue;
            }
            let recent = acked
                .and_then(|h| h.get(node))
                .and_then(|t| t.as_ref())
                .is_some_and(|t| openraft::Instant::elapsed(&(*t).into_inner()) <= lag_max);
            let holds_all = matched.as_ref().map(|id| id.index) == m.last_log_index;
            let quiet_in_sync = holds_all
                && self
                    .quiet
                    .get()
                    .is_some_and(|q| q.follower_heard(*node, lag_max));
            if recent || quiet_in_sync {
                isr.push(*node);
            }
        }
        isr.sort_unstable();
        Some(isr)
    }

    /// On the leader: whether follower `node` holds everything the leader's log
    /// holds (a leadership transfer to it loses no time catching up).
    pub fn follower_caught_up(&self, node: u64) -> bool {
        let Some(raft) = self.raft.get() else {
            return false;
        };
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&node))
            .and_then(|id| id.as_ref())
            .map(|id| id.index);
        matched.is_some() && matched == m.last_log_index
    }

    /// Proposers of acks=1 batches waiting for this replica's log store.
    pub(crate) fn append_notices(&self) -> &Arc<crate::raft::AppendNotices> {
        &self.notices
    }

    pub(crate) fn proposals(&self) -> &Proposals {
        &self.proposals
    }

    pub(crate) fn partition_for_proposal(&self) -> Result<MutexGuard<'_, Partition>, ReplicaError> {
        self.partition()
    }

    /// The open partition, or why it is offline.
    fn partition(&self) -> Result<MutexGuard<'_, Partition>, ReplicaError> {
        self.log
            .as_ref()
            .map(|l| l.lock())
            .ok_or_else(|| self.offline_error())
    }

    /// The log shared with this partition's Raft group; `None` when offline.
    pub fn shared_log(&self) -> Option<SharedLog> {
        self.log.clone()
    }

    fn offline_error(&self) -> ReplicaError {
        ReplicaError::Offline {
            partition: self.name.clone(),
            reason: self
                .failure
                .lock()
                .clone()
                .unwrap_or_else(|| "the log is not open".into()),
        }
    }

    /// Whether the partition is offline, and why.
    pub fn offline_reason(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// The leader epoch: the Raft term of a replicated partition.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        match self.raft.get() {
            Some(raft) => {
                let term = raft.metrics().borrow_watched().current_term;
                LeaderEpoch(i32::try_from(term).unwrap_or(i32::MAX))
            }
            None => self.epoch,
        }
    }
    pub fn high_watermark(&self) -> Offset {
        self.commit.borrow().high_watermark
    }
    pub fn log_start_offset(&self) -> Offset {
        if self.raft.get().is_some() {
            // The Raft group purges (and a snapshot install moves) the log start.
            if let Ok(p) = self.partition() {
                return p.log_start_offset();
            }
        }
        Offset(self.log_start.load(Ordering::Acquire))
    }
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log_end.load(Ordering::Acquire))
    }

    /// The offset after the last batch stored here, committed or not (a
    /// replicated partition's log store appends without the replica).
    pub fn stored_end_offset(&self) -> Offset {
        self.partition()
            .map_or(self.log_end_offset(), |p| p.log_end_offset())
    }

    fn check_online(&self) -> Result<(), ReplicaError> {
        match &*self.failure.lock() {
            None => Ok(()),
            Some(reason) => Err(ReplicaError::Offline {
                partition: self.name.clone(),
                reason: reason.clone(),
            }),
        }
    }

    fn fail(&self, reason: String) {
        error!(partition = %self.name, %reason, "partition taken offline");
        *self.failure.lock() = Some(reason);
        self.commit.send_modify(|c| c.failed = true);
    }

    fn queue(self: &Arc<Self>) -> &AppendQueue {
        self.queue
            .get_or_init(|| AppendQueue::start(Arc::downgrade(self), Arc::clone(&self.context.io)))
    }

    /// Queues a validated batch for the partition's append task, waiting while the
    /// queue is full; the ticket resolves once the batch is appended (acks=1) or,
    /// on a replicated partition with `acks` other than [`Acks::Leader`], once it
    /// is committed. Batches of one caller are appended in the order they were
    /// queued.
    pub async fn enqueue(
        self: &Arc<Self>,
        batch: Bytes,
        now_ms: i64,
        acks: Acks,
    ) -> Result<AppendTicket, ReplicaError> {
        self.check_online()?;
        self.queue().enqueue(&self.name, batch, now_ms, acks).await
    }

    /// Queues a batch without waiting; `None` when the queue is full.
    pub fn try_enqueue(
        self: &Arc<Self>,
        batch: Bytes,
        now_ms: i64,
    ) -> Result<Option<AppendTicket>, ReplicaError> {
        self.check_online()?;
        self.queue()
            .try_enqueue(&self.name, batch, now_ms, Acks::All)
    }

    /// Whether a group of `bytes` may be appended on the calling (async) thread:
    /// small, written into the open active segment only (no roll: no file or
    /// directory is created), and on a log that does not sync per append
    /// (`flush.messages`, `flush.ms`). Anything else goes to an I/O thread.
    pub fn appends_inline(&self, bytes: usize, now_ms: i64) -> bool {
        if bytes > INLINE_APPEND_BYTES_MAX {
            return false;
        }
        let Ok(p) = self.partition() else {
            return false;
        };
        let config = p.config();
        config.flush_messages == i64::MAX
            && config.flush_ms == i64::MAX
            && p.fits_active_segment(bytes as u64, now_ms)
    }

    /// Appends a validated batch now (acks=1 semantics); callers that need the
    /// commit wait for it with [`Replica::wait_committed`].
    pub fn append_now(
        self: &Arc<Self>,
        batch: Bytes,
        now_ms: i64,
    ) -> Result<AppendInfo, ReplicaError> {
        self.append_group(std::iter::once((batch, now_ms)))
            .pop()
            .expect("one result per batch")
    }

    /// Appends consecutive batches under one lock hold and hands what they wrote
    /// to the flusher once (a group commit); one result per batch, in order. A
    /// batch refused (sequence, size) does not stop the ones after it; an I/O
    /// error takes the partition offline and fails the rest.
    pub fn append_group(
        self: &Arc<Self>,
        batches: impl IntoIterator<Item = (Bytes, i64)>,
    ) -> Vec<Result<AppendInfo, ReplicaError>> {
        let mut results = Vec::new();
        let (target, flush_due) = {
            let mut p = match self.check_online().and_then(|()| self.partition()) {
                Ok(p) => p,
                Err(e) => {
                    let reason = e.to_string();
                    return batches
                        .into_iter()
                        .map(|_| {
                            Err(ReplicaError::Offline {
                                partition: self.name.clone(),
                                reason: reason.clone(),
                            })
                        })
                        .collect();
                }
            };
            let mut flush_due = false;
            let mut failed: Option<String> = None;
            for (batch, now_ms) in batches {
                if let Some(reason) = &failed {
                    results.push(Err(ReplicaError::Offline {
                        partition: self.name.clone(),
                        reason: reason.clone(),
                    }));
                    continue;
                }
                let result = self.append_locked(&mut p, &batch, now_ms);
                if let Ok(info) = &result {
                    flush_due |= self.flush_due(info.last_offset, now_ms, p.config());
                }
                if let Err(ReplicaError::Storage(e @ StorageError::Io { .. })) = &result {
                    failed = Some(e.to_string());
                }
                results.push(result);
            }
            let target = p.log_mut().sync_target();
            drop(p);
            if let Some(reason) = failed {
                self.fail(reason);
            }
            (target, flush_due)
        };
        if let Some(target) = target {
            if flush_due {
                // flush.messages / flush.ms: this append syncs before it returns
                // (appends run on the I/O pool, never on a network thread).
                let result = target.files.iter().try_for_each(|f| f.sync_data());
                self.flushed(target.end, result.map_err(Arc::new));
                if let Err(e) = self.check_online() {
                    let reason = e.to_string();
                    for r in results.iter_mut().filter(|r| r.is_ok()) {
                        *r = Err(ReplicaError::Offline {
                            partition: self.name.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
            } else {
                self.submit_flush(target);
            }
        }
        results
    }

    /// One batch of a group, the partition locked: the producer's sequence check,
    /// then the append.
    fn append_locked(
        &self,
        p: &mut Partition,
        batch: &Bytes,
        now_ms: i64,
    ) -> Result<AppendInfo, ReplicaError> {
        let view = BatchView::parse(batch).map_err(StorageError::from)?;
        let producer_id = view.producer_id();
        if producer_id >= 0 && !view.is_control() {
            let (epoch, first_seq) = (view.producer_epoch(), view.base_sequence());
            let seq_end = last_seq(first_seq, view.last_offset_delta());
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = p
                .producers()
                .check(producer_id, epoch, first_seq, seq_end)?
            {
                // A retry: answer with the original offsets, append nothing.
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_start_offset: p.log_start_offset(),
                });
            }
        }
        let (base, last) = p.append(batch, self.epoch, now_ms)?;
        self.log_end.store(last.0 + 1, Ordering::Release);
        Ok(AppendInfo {
            base_offset: base,
            last_offset: last,
            log_start_offset: p.log_start_offset(),
        })
    }

    /// Waits until the high watermark reaches `offset`.
    pub async fn wait_committed(&self, offset: Offset) -> Result<(), ReplicaError> {
        let mut rx = self.commit.subscribe();
        let result = rx
            .wait_for(|c| c.failed || c.high_watermark >= offset)
            .await
            .map(|c| *c);
        match result {
            Ok(c) if !c.failed => Ok(()),
            Ok(_) => self.check_online().and(Err(ReplicaError::Offline {
                partition: self.name.clone(),
                reason: "sync failed".into(),
            })),
            Err(_) => Err(ReplicaError::ShuttingDown {
                partition: self.name.clone(),
            }),
        }
    }

    /// Hands what the last append wrote to the flusher; [`Replica::flushed`] runs
    /// once it is durable.
    fn submit_flush(self: &Arc<Self>, target: SyncTarget) {
        let replica: Weak<Replica> = Arc::downgrade(self);
        let end = target.end;
        self.context.flusher.submit(FlushRequest {
            files: target.files,
            done: Box::new(move |result| {
                if let Some(replica) = replica.upgrade() {
                    replica.flushed(end, result);
                }
            }),
        });
    }

    /// Everything below `end` is durable (or the sync failed: the partition goes
    /// offline loudly, nothing is retried). On a single node that is the commit.
    fn flushed(&self, end: Offset, result: Result<(), Arc<std::io::Error>>) {
        if let Err(e) = result {
            self.fail(format!("fdatasync failed: {e}"));
            return;
        }
        self.flushed_end.fetch_max(end.0, Ordering::AcqRel);
        if end >= self.log_end_offset() {
            self.unflushed_since_ms.store(i64::MAX, Ordering::Release);
        }
        if self.context.high_watermark == HighWatermarkSource::LocalFlush {
            self.advance_high_watermark(end);
        }
    }

    /// `flush.messages` / `flush.ms` against what is not yet durable (a sync target
    /// is taken per append, so the log's own counters only see that append).
    fn flush_due(&self, last: Offset, now_ms: i64, config: &LogConfig) -> bool {
        let since = match self.unflushed_since_ms.compare_exchange(
            i64::MAX,
            now_ms,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => now_ms,
            Err(earlier) => earlier,
        };
        let unflushed = last.next().0 - self.flushed_end.load(Ordering::Acquire);
        unflushed >= config.flush_messages || now_ms.saturating_sub(since) >= config.flush_ms
    }

    /// One past the last offset durable on this replica's disk.
    pub fn flushed_end(&self) -> Offset {
        Offset(self.flushed_end.load(Ordering::Acquire))
    }

    /// Moves the high watermark up to `to` (never back, never past the log end:
    /// a truncation may have rewound the log meanwhile) and wakes waiters.
    pub fn advance_high_watermark(&self, to: Offset) {
        if self.failure.lock().is_some() {
            return;
        }
        let to = match self.context.high_watermark {
            // The owner's log store appends: the log end is read from the log.
            HighWatermarkSource::Owner => {
                let Ok(end) = self.partition().map(|p| p.log_end_offset()) else {
                    return;
                };
                self.log_end.store(end.0, Ordering::Release);
                to.min(end)
            }
            HighWatermarkSource::LocalFlush => to.min(self.log_end_offset()),
        };
        let advanced = self.commit.send_if_modified(|c| {
            let moved = to > c.high_watermark;
            if moved {
                c.high_watermark = to;
            }
            moved
        });
        if advanced {
            self.context.commits.notify();
        }
    }

    /// Reads whole batches from `offset`, never past the high watermark. The file
    /// read happens after the log lock is released.
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchData, ReplicaError> {
        self.check_online()?;
        let high_watermark = self.high_watermark();
        let (plan, log_start) = {
            let mut log = self.partition()?;
            (
                log.log_mut()
                    .plan_read(offset, max_bytes, high_watermark, min_one_batch)?,
                log.log_start_offset(),
            )
        };
        let read = plan.execute()?;
        let records = if only_empty_batches(&read.records) {
            self.read_past_empty_batches(read, max_bytes, high_watermark)?
        } else {
            read.records
        };
        Ok(FetchData {
            records,
            high_watermark,
            log_start_offset: log_start,
        })
    }

    /// Compaction leaves emptied batches in place. librdkafka takes a fetch answer
    /// holding only empty batches for a message too large to fetch, so such an
    /// answer is extended with the batches after them; if only empty batches remain
    /// below the high watermark, nothing is returned and the fetch waits for data.
    fn read_past_empty_batches(
        &self,
        first: sluice_storage::ReadResult,
        max_bytes: usize,
        high_watermark: Offset,
    ) -> Result<Bytes, ReplicaError> {
        const EXTENSIONS_MAX: usize = 64;
        let mut buf = BytesMut::from(&first.records[..]);
        let mut next = first.next_offset;
        for _ in 0..EXTENSIONS_MAX {
            if next >= high_watermark {
                break;
            }
            let budget = max_bytes.saturating_sub(buf.len()).max(1);
            let plan = self
                .partition()?
                .log_mut()
                .plan_read(next, budget, high_watermark, true)?;
            let more = plan.execute()?;
            if more.records.is_empty() {
                break;
            }
            buf.extend_from_slice(&more.records);
            next = more.next_offset;
            if !only_empty_batches(&more.records) {
                return Ok(buf.freeze());
            }
        }
        Ok(Bytes::new())
    }

    /// ListOffsets by timestamp: first offset of the first batch whose max timestamp
    /// is >= `timestamp_ms`, among committed batches.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, ReplicaError> {
        self.check_online()?;
        let hw = self.high_watermark();
        let found = self
            .partition()?
            .log_mut()
            .offset_for_timestamp(timestamp_ms)?;
        Ok(found.filter(|(o, _)| *o < hw))
    }

    /// The largest committed batch max timestamp and the offset that carries it.
    pub fn max_timestamp(&self) -> Result<Option<(i64, Offset)>, ReplicaError> {
        self.check_online()?;
        let hw = self.high_watermark();
        Ok(self.partition()?.max_timestamp().filter(|(_, o)| *o < hw))
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` that this log
    /// holds batches of, and the offset where the next higher epoch starts (the
    /// log end for the current epoch). `None` when the log holds no batch of
    /// `epoch` or an earlier one, or `epoch` is above the current one.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, Offset)>, ReplicaError> {
        self.check_online()?;
        let current = self.leader_epoch().0;
        if epoch > current {
            return Ok(None);
        }
        let mut p = self.partition()?;
        let end = p.log_end_offset();
        if epoch == current {
            return Ok(Some((epoch, end)));
        }
        let log = p.log_mut();
        let (first, next) = (log.first_entry_index(), log.next_entry_index());
        // Terms never go down along the log: the first entry of a later epoch.
        let (mut lo, mut hi) = (first, next);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match log.entry_at(mid)? {
                Some((_, _, e)) if e.0 > epoch => hi = mid,
                _ => lo = mid + 1,
            }
        }
        if lo == first {
            return Ok(None);
        }
        let Some((_, _, held)) = log.entry_at(lo - 1)? else {
            return Ok(None);
        };
        let end_offset = match log.entry_at(lo)? {
            Some((base, _, _)) => base,
            None => end,
        };
        Ok(Some((held.0, end_offset)))
    }

    /// Applies time and size retention (-1 disables either); returns what was removed.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<RetentionOutcome, ReplicaError> {
        self.check_online()?;
        let mut log = self.partition()?;
        let outcome = log
            .log_mut()
            .apply_retention(now_ms, retention_ms, retention_bytes)?;
        self.log_start
            .store(log.log_start_offset().0, Ordering::Release);
        Ok(outcome)
    }

    /// Compacts the sealed segments below the high watermark, without holding the
    /// log lock while segments are read and rewritten. Skipped when nothing new was
    /// sealed and committed since the last run, unless `delete_retention_ms` passed
    /// (tombstones may have expired).
    pub fn compact(
        &self,
        now_ms: i64,
        config: &CompactionConfig,
    ) -> Result<Option<CompactionStats>, ReplicaError> {
        self.check_online()?;
        let plan = {
            let log = self.partition()?;
            log.compaction_plan(self.high_watermark())
        };
        let Some(plan) = plan else {
            return Ok(None);
        };
        let covers_below = plan.covers_below();
        {
            let last = self.last_compaction.lock();
            if let Some((below, at_ms)) = *last {
                if below == covers_below && now_ms - at_ms < config.delete_retention_ms {
                    return Ok(None);
                }
            }
        }
        let done = plan.run(now_ms, config)?;
        let stats = self.partition()?.log_mut().install_compaction(done)?;
        *self.last_compaction.lock() = Some((covers_below, now_ms));
        Ok(Some(stats))
    }

    /// Forgets producers idle for longer than `expiration_ms`.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.partition()
            .map_or(0, |mut p| p.producers_mut().expire(now_ms, expiration_ms))
    }

    /// Syncs everything appended and snapshots the producers (shutdown).
    pub fn sync_all(&self) -> Result<(), ReplicaError> {
        self.check_online()?;
        self.partition()?.close()?;
        Ok(())
    }

    /// Bytes of log on disk (0 when offline).
    pub fn size_bytes(&self) -> u64 {
        self.partition().map_or(0, |p| p.size_bytes())
    }

    /// The idempotent producers this replica tracks (DescribeProducers).
    pub fn producers(&self) -> Vec<(i64, sluice_storage::ProducerEntry)> {
        self.partition().map_or_else(
            |_| Vec::new(),
            |p| {
                p.producers()
                    .iter()
                    .map(|(id, e)| (id, e.clone()))
                    .collect()
            },
        )
    }

    /// Applies changed log settings (a topic config altered at runtime); an
    /// offline replica has no log to change.
    pub fn set_log_config(&self, config: LogConfig) {
        if let Ok(mut p) = self.partition() {
            p.log_mut().set_config(config);
        }
    }

    /// Directory of the log.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone()
    }
}
