//! The produce path of a replicated partition: the append task hands each group
//! of queued batches to the partition's Raft group as one proposal
//! (`client_write_many`), and each batch's ticket resolves once it is committed.
//!
//! Idempotent producers are checked before proposing, on the leader: against the
//! producer state of the log (which every replica derives from the same entries)
//! and against the batches of that producer proposed but not yet committed, so a
//! producer with several requests in flight keeps its sequence. A retry of a batch
//! still in flight is refused with a retriable error; once that batch is committed
//! the retry finds it in the log and gets its offsets.
//!
//! ```text
//!  group ─► leader? ─► per batch: sequence check (log state, then in flight)
//!        ─► client_write_many ─► (task) each commit ─► ticket resolves
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use openraft::error::ClientWriteError;
use parking_lot::Mutex;
use sluice_protocol::batch::BatchView;
use sluice_storage::{last_seq, Log, ProducerError, SequenceCheck, StorageError};
use tokio::sync::oneshot;

use crate::raft::{ProducerBatch, RaftNode};
use crate::replica::{AppendInfo, Replica};
use crate::ReplicaError;

type Done = oneshot::Sender<Result<AppendInfo, ReplicaError>>;

/// A batch's answer, taken by whichever comes first: the leader's append (for
/// acks=1) or the end of its proposal.
type Reply = Arc<Mutex<Option<Done>>>;

fn answer(reply: &Reply, result: Result<AppendInfo, ReplicaError>) {
    if let Some(done) = reply.lock().take() {
        let _ = done.send(result);
    }
}

/// A proposed batch waiting for its outcome.
struct Waiting {
    reply: Reply,
    /// An idempotent producer's batch: settled in the in-flight bookkeeping.
    producer: Option<i64>,
    /// The batch, while an acks=1 notice waits for its append.
    noticed: Option<Bytes>,
}

/// A producer's batches proposed and not yet committed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    epoch: i16,
    last_seq: i32,
    batches: usize,
}

/// Per-partition bookkeeping of proposals in flight (leader only).
#[derive(Debug, Default)]
pub(crate) struct Proposals {
    producers: Mutex<HashMap<i64, InFlight>>,
}

impl Proposals {
    fn settle(&self, producer_id: i64, committed: bool) {
        let mut producers = self.producers.lock();
        if !committed {
            // Whatever followed this batch cannot commit in sequence either.
            producers.remove(&producer_id);
            return;
        }
        if let Some(f) = producers.get_mut(&producer_id) {
            f.batches = f.batches.saturating_sub(1);
            if f.batches == 0 {
                producers.remove(&producer_id);
            }
        }
    }
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// What the sequence check decided for one batch.
enum Admission {
    /// Propose it; `Some(producer)` when it is an idempotent producer's batch.
    Propose(Option<i64>),
    /// A retry of a committed batch: answer with its offsets.
    Answer(AppendInfo),
}

fn admit(
    replica: &Replica,
    partition: &crate::Partition,
    in_flight: &mut HashMap<i64, InFlight>,
    batch: &Bytes,
) -> Result<Admission, ReplicaError> {
    let view = BatchView::parse(batch).map_err(StorageError::from)?;
    let producer_id = view.producer_id();
    if producer_id < 0 || view.is_control() {
        return Ok(Admission::Propose(None));
    }
    let (epoch, first) = (view.producer_epoch(), view.base_sequence());
    let last = last_seq(first, view.last_offset_delta());
    if let Some(f) = in_flight.get_mut(&producer_id).filter(|f| f.epoch == epoch) {
        let expected = next_seq(f.last_seq);
        if first == expected {
            f.last_seq = last;
            f.batches += 1;
            return Ok(Admission::Propose(Some(producer_id)));
        }
        if first < expected {
            return Err(ReplicaError::InFlightRetry {
                partition: replica.name().to_string(),
                producer_id,
            });
        }
        return Err(ProducerError::OutOfOrder {
            producer_id,
            first_seq: first,
            expected,
        }
        .into());
    }
    match partition
        .producers()
        .check(producer_id, epoch, first, last)?
    {
        SequenceCheck::Duplicate {
            base_offset,
            last_offset,
        } => Ok(Admission::Answer(AppendInfo {
            base_offset,
            last_offset,
            log_start_offset: partition.log_start_offset(),
        })),
        _ => {
            in_flight.insert(
                producer_id,
                InFlight {
                    epoch,
                    last_seq: last,
                    batches: 1,
                },
            );
            Ok(Admission::Propose(Some(producer_id)))
        }
    }
}

fn not_leader(replica: &Replica, leader: Option<u64>) -> ReplicaError {
    ReplicaError::NotLeader {
        partition: replica.name().to_string(),
        leader,
    }
}

/// Proposes a group of queued batches; every `done` is answered, now, once the
/// leader appended it (`on_append`, acks=1) or from the task that waits for the
/// commits.
pub(crate) async fn propose(
    replica: &Arc<Replica>,
    raft: &RaftNode,
    group: Vec<(Bytes, Done, bool)>,
) {
    if !replica.is_leader() {
        let leader = replica.leader();
        for (_, done, _) in group {
            let _ = done.send(Err(not_leader(replica, leader)));
        }
        return;
    }
    let mut batches = Vec::with_capacity(group.len());
    let mut waiting = Vec::with_capacity(group.len());
    {
        let partition = match replica.partition_for_proposal() {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string();
                for (_, done, _) in group {
                    let _ = done.send(Err(ReplicaError::Offline {
                        partition: replica.name().to_string(),
                        reason: reason.clone(),
                    }));
                }
                return;
            }
        };
        let mut in_flight = replica.proposals().producers.lock();
        for (batch, done, on_append) in group {
            match admit(replica, &partition, &mut in_flight, &batch) {
                Ok(Admission::Propose(producer)) => {
                    let noticed = on_append.then(|| batch.clone());
                    batches.push(ProducerBatch(batch));
                    waiting.push(Waiting {
                        reply: Arc::new(Mutex::new(Some(done))),
                        producer,
                        noticed,
                    });
                }
                Ok(Admission::Answer(info)) => {
                    let _ = done.send(Ok(info));
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            }
        }
    }
    if batches.is_empty() {
        return;
    }
    let notices = Arc::clone(replica.append_notices());
    let on_append: Vec<_> = waiting
        .iter()
        .filter_map(|w| {
            let batch = w.noticed.as_ref()?;
            Some((notices.register(batch), Arc::clone(&w.reply)))
        })
        .collect();
    if !on_append.is_empty() {
        // Appends happen in proposal order: the notices are awaited in it. A
        // batch never appended has its notice dropped when its proposal ends.
        let replica = Arc::clone(replica);
        tokio::spawn(async move {
            for (appended, reply) in on_append {
                if let Ok((base_offset, last_offset)) = appended.await {
                    answer(
                        &reply,
                        Ok(AppendInfo {
                            base_offset,
                            last_offset,
                            log_start_offset: replica.log_start_offset(),
                        }),
                    );
                }
            }
        });
    }
    // A quiet group's leader starts its timers; the appends wake the followers.
    replica.wake();
    let results = match raft.client_write_many(batches).await {
        Ok(stream) => stream,
        Err(fatal) => {
            for w in waiting {
                if let Some(batch) = &w.noticed {
                    notices.forget(batch);
                }
                if let Some(p) = w.producer {
                    replica.proposals().settle(p, false);
                }
                answer(
                    &w.reply,
                    Err(ReplicaError::Raft {
                        partition: replica.name().to_string(),
                        reason: fatal.to_string(),
                    }),
                );
            }
            return;
        }
    };
    let replica = Arc::clone(replica);
    tokio::spawn(async move {
        let mut results = results;
        for w in waiting {
            let result = match results.next().await {
                Some(Ok(Ok(written))) => Ok(AppendInfo {
                    base_offset: written.response.base_offset,
                    last_offset: written.response.last_offset,
                    log_start_offset: replica.log_start_offset(),
                }),
                Some(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => {
                    Err(not_leader(&replica, f.leader_id))
                }
                Some(Ok(Err(e))) => Err(ReplicaError::Raft {
                    partition: replica.name().to_string(),
                    reason: e.to_string(),
                }),
                Some(Err(fatal)) => Err(ReplicaError::Raft {
                    partition: replica.name().to_string(),
                    reason: fatal.to_string(),
                }),
                None => Err(ReplicaError::Raft {
                    partition: replica.name().to_string(),
                    reason: "the write's outcome is unknown".into(),
                }),
            };
            if let Some(batch) = &w.noticed {
                notices.forget(batch);
            }
            if let Some(p) = w.producer {
                replica.proposals().settle(p, result.is_ok());
            }
            answer(&w.reply, result);
        }
    });
}
