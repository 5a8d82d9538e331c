//! A partition's append queue: the produce path's ordered phase enqueues validated
//! batches here and does no disk I/O itself; one task per partition takes every
//! batch queued meanwhile and appends them together with
//! [`Replica::append_group`] (one lock hold, one flush request: the group commit,
//! and where a Raft proposal of many producer batches goes with replication): on
//! a blocking thread, or in the task itself when the group is small and fits the
//! open active segment ([`Replica::appends_inline`]). Each batch's ticket resolves once it is
//! appended (acks=1); acks=all then waits for the high watermark.
//!
//! ```text
//!  enqueue(batch) ─► bounded queue (waits when full) ─► ticket
//!  task: recv_many ─► small, no roll? append_group here
//!                   ─► else I/O permit ─► spawn_blocking(append_group) ─► tickets resolve
//! ```
//!
//! The queue holds at most [`QUEUED_BATCHES_MAX`] batches; a producer that outruns
//! the disk waits in `enqueue`, which holds its connection's ordered phase.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::error;

use crate::replica::{Acks, AppendInfo, Replica};
use crate::ReplicaError;

/// Batches a partition's queue holds before `enqueue` waits.
pub const QUEUED_BATCHES_MAX: usize = 256;
/// Batches appended together at most.
const GROUP_BATCHES_MAX: usize = 128;

type Done = oneshot::Sender<Result<AppendInfo, ReplicaError>>;

pub(crate) struct Queued {
    batch: Bytes,
    now_ms: i64,
    done: Done,
    acks: Acks,
}

/// Resolves once its batch is appended (or refused).
#[derive(Debug)]
pub struct AppendTicket {
    partition: String,
    rx: oneshot::Receiver<Result<AppendInfo, ReplicaError>>,
}

impl AppendTicket {
    /// Where the batch landed, once it is appended.
    pub async fn appended(self) -> Result<AppendInfo, ReplicaError> {
        self.rx.await.unwrap_or(Err(ReplicaError::ShuttingDown {
            partition: self.partition,
        }))
    }
}

/// The sending side of a partition's queue, started with its task.
#[derive(Debug)]
pub(crate) struct AppendQueue {
    tx: mpsc::Sender<Queued>,
}

impl AppendQueue {
    /// Starts the append task of `replica` on the current runtime; appends wait for
    /// a permit of `io` (the broker's disk-work bound).
    pub(crate) fn start(replica: Weak<Replica>, io: Arc<Semaphore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED_BATCHES_MAX);
        tokio::spawn(run(replica, rx, io));
        AppendQueue { tx }
    }

    /// Queues a batch, waiting while the queue is full.
    pub(crate) async fn enqueue(
        &self,
        partition: &str,
        batch: Bytes,
        now_ms: i64,
        acks: Acks,
    ) -> Result<AppendTicket, ReplicaError> {
        let (done, rx) = oneshot::channel();
        let closed = || ReplicaError::ShuttingDown {
            partition: partition.to_string(),
        };
        self.tx
            .send(Queued {
                batch,
                now_ms,
                done,
                acks,
            })
            .await
            .map_err(|_| closed())?;
        Ok(AppendTicket {
            partition: partition.to_string(),
            rx,
        })
    }

    /// Queues a batch now, or answers `None` when the queue is full.
    pub(crate) fn try_enqueue(
        &self,
        partition: &str,
        batch: Bytes,
        now_ms: i64,
        acks: Acks,
    ) -> Result<Option<AppendTicket>, ReplicaError> {
        let (done, rx) = oneshot::channel();
        match self.tx.try_send(Queued {
            batch,
            now_ms,
            done,
            acks,
        }) {
            Ok(()) => Ok(Some(AppendTicket {
                partition: partition.to_string(),
                rx,
            })),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ReplicaError::ShuttingDown {
                partition: partition.to_string(),
            }),
        }
    }
}

/// The append task: runs until the replica is dropped.
async fn run(replica: Weak<Replica>, mut rx: mpsc::Receiver<Queued>, io: Arc<Semaphore>) {
    let mut group = Vec::with_capacity(GROUP_BATCHES_MAX);
    while rx.recv_many(&mut group, GROUP_BATCHES_MAX).await > 0 {
        let Some(r) = replica.upgrade() else {
            return;
        };
        let queued = std::mem::take(&mut group);
        if let Some(raft) = r.raft() {
            // Replicated: the group is one Raft proposal.
            let group = queued
                .into_iter()
                .map(|q| (q.batch, q.done, q.acks == Acks::Leader))
                .collect();
            crate::proposal::propose(&r, raft, group).await;
            continue;
        }
        let bytes: usize = queued.iter().map(|q| q.batch.len()).sum();
        let now_ms = queued.last().map_or(0, |q| q.now_ms);
        if r.appends_inline(bytes, now_ms) {
            // Small, into open files: cheaper here than a hand-off.
            append(&r, queued);
            continue;
        }
        let Ok(permit) = Arc::clone(&io).acquire_owned().await else {
            return;
        };
        let appended = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            append(&r, queued);
        })
        .await;
        if let Err(e) = appended {
            // The waiters of that group see their tickets dropped: outcome unknown.
            error!(error = %e, "a partition append group failed");
        }
    }
}

/// Appends a group and resolves its tickets.
fn append(replica: &Arc<Replica>, queued: Vec<Queued>) {
    let (inputs, dones): (Vec<_>, Vec<_>) = queued
        .into_iter()
        .map(|q| ((q.batch, q.now_ms), q.done))
        .unzip();
    for (done, result) in dones.into_iter().zip(replica.append_group(inputs)) {
        let _ = done.send(result);
    }
}
