//! openraft's state machine for a partition. The records stay in the log; what the
//! state machine holds is where it stands: the last applied entry, the membership
//! and the offset after the last applied entry, which is the high watermark it
//! hands to its owner on every apply.
//!
//! A snapshot is that state at a point: a replica that installs one restarts its
//! log empty right after the point (unless it already holds the point's entry).
//! The point is never past the log start, so that installing a snapshot (and the
//! purge openraft makes after building one) never removes records consumers can
//! still read: it is the point retention asked for
//! ([`PartitionStateMachine::request_snapshot_at`]), else the entry just below the
//! log start. Only a state machine whose log does not hold its applied entries
//! (they were never stored here) snapshots at what it applied.
//! The current snapshot is kept in `raft-snapshot` beside the segments, synced,
//! so a restarted replica knows where its log starts.
//!
//! `raft-snapshot`: magic `SLSS`, version `0u8`, the last log id and the
//! membership's log id (each a flag byte, then term and index as `u64`), the
//! membership value ([`super::codec::encode_membership`]) and the snapshot data,
//! each behind a `u32` length, then the CRC32C of everything before it. Snapshot
//! data: version `0u8`, the next offset as `i64`, then the producer state as of
//! that offset in the producer snapshot format.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use parking_lot::Mutex;
use sluice_protocol::batch::BatchView;
use sluice_protocol::types::Offset;
use sluice_storage::{Log, LogStart, ProducerStates};

use super::codec::{decode_membership, encode_membership, epoch_of, term_of};
use super::log_store::{blocking, SharedLog};
use super::{log_id, AppliedBatch, PartitionRaft, RaftLogId};
use crate::partition::Partition;

/// Called with the high watermark (the offset after the last applied entry).
pub type CommitHook = Arc<dyn Fn(Offset) + Send + Sync>;
/// Called with each normal entry's index and batch as it is applied, in log order
/// (a state kept beside the log, such as the cluster metadata image, follows it).
pub type ApplyHook = Arc<dyn Fn(u64, &Bytes) + Send + Sync>;
type Membership = openraft::alias::StoredMembershipOf<PartitionRaft>;
type Meta = openraft::alias::SnapshotMetaOf<PartitionRaft>;
type PartitionSnapshot = Snapshot<
    openraft::vote::leader_id_std::CommittedLeaderId<u64>,
    u64,
    openraft::EmptyNode,
    Cursor<Vec<u8>>,
>;

const SNAPSHOT_FILE: &str = "raft-snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLSS";
const VERSION: u8 = 0;
/// Largest snapshot file read.
const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;
/// Memberships remembered for snapshots below the applied entry (changes are rare).
const MEMBERSHIPS_KEPT: usize = 8;

#[derive(Debug, Clone)]
struct Current {
    meta: Meta,
    data: Vec<u8>,
}

/// The state machine of one partition group.
pub struct PartitionStateMachine {
    log: SharedLog,
    applied: Option<RaftLogId>,
    membership: Membership,
    /// The newest memberships applied, oldest first (the last is `membership`).
    memberships: Vec<Membership>,
    next_offset: Offset,
    /// Where the next snapshot is taken, when retention asked for a point.
    target: Arc<Mutex<Option<(RaftLogId, Offset)>>>,
    current: Arc<Mutex<Option<Current>>>,
    on_commit: Option<CommitHook>,
    on_apply: Option<ApplyHook>,
    path: PathBuf,
}

impl fmt::Debug for PartitionStateMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionStateMachine")
            .field("applied", &self.applied)
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl PartitionStateMachine {
    /// The state machine of the partition whose log is `log`, starting from its
    /// stored snapshot if it has one.
    pub fn open(log: SharedLog, on_commit: Option<CommitHook>) -> io::Result<Self> {
        let path = log.lock().dir().join(SNAPSHOT_FILE);
        let current = read_snapshot(&path)?;
        let mut sm = PartitionStateMachine {
            log,
            applied: None,
            membership: Membership::default(),
            memberships: Vec::new(),
            next_offset: Offset(0),
            target: Arc::new(Mutex::new(None)),
            current: Arc::new(Mutex::new(None)),
            on_commit,
            on_apply: None,
            path,
        };
        if let Some(c) = current {
            sm.applied = c.meta.last_log_id;
            sm.membership = c.meta.last_membership.clone();
            sm.memberships = vec![sm.membership.clone()];
            sm.next_offset = decode_data(&c.data)?.0;
            *sm.current.lock() = Some(c);
        }
        Ok(sm)
    }

    /// Calls `hook` with every normal entry applied from now on.
    pub fn with_apply_hook(mut self, hook: ApplyHook) -> Self {
        self.on_apply = Some(hook);
        self
    }

    /// The offset after the last applied entry: the high watermark.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    /// Asks for the next snapshot at entry `point`, after which the log starts at
    /// `next_offset` (retention: the entry just below the new log start). Ignored
    /// unless `point` is applied when the snapshot is built.
    pub fn request_snapshot_at(&self, point: RaftLogId, next_offset: Offset) {
        *self.target.lock() = Some((point, next_offset));
    }

    /// A handle that asks for snapshot points once openraft owns the machine.
    pub fn snapshot_requests(&self) -> SnapshotRequests {
        SnapshotRequests(Arc::clone(&self.target))
    }

    fn remember(&mut self, membership: Membership) {
        self.membership = membership.clone();
        self.memberships.push(membership);
        if self.memberships.len() > MEMBERSHIPS_KEPT {
            self.memberships.remove(0);
        }
    }

    fn commit(&self) {
        if let Some(hook) = &self.on_commit {
            hook(self.next_offset);
        }
    }

    /// The offsets of entry `index` as stored, when the log holds it.
    async fn stored_offsets(&self, index: u64) -> io::Result<Option<AppliedBatch>> {
        let log = Arc::clone(&self.log);
        let entry = blocking(move || {
            log.lock()
                .log_mut()
                .entry_at(index)
                .map_err(io::Error::other)
        })
        .await?;
        Ok(entry.map(|(base, last, _)| AppliedBatch {
            base_offset: base,
            last_offset: last,
        }))
    }
}

impl RaftStateMachine<PartitionRaft> for PartitionStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<RaftLogId>, Membership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm:
            Stream<Item = Result<EntryResponder<PartitionRaft>, io::Error>> + Unpin + OptionalSend,
    {
        let mut applied_any = false;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            // A normal entry read back from the log carries its offsets; others are
            // looked up (they are rare: one per election or membership change).
            let offsets = match &entry.payload {
                EntryPayload::Normal(batch) => {
                    if let Some(hook) = &self.on_apply {
                        hook(entry.log_id.index, &batch.0);
                    }
                    BatchView::parse(&batch.0).ok().map(|v| AppliedBatch {
                        base_offset: v.base_offset(),
                        last_offset: v.last_offset(),
                    })
                }
                EntryPayload::Membership(m) => {
                    self.remember(StoredMembership::new(Some(entry.log_id), m.clone()));
                    self.stored_offsets(entry.log_id.index).await?
                }
                EntryPayload::Blank => self.stored_offsets(entry.log_id.index).await?,
            };
            if let Some(o) = offsets {
                self.next_offset = self.next_offset.max(o.last_offset.next());
            }
            self.applied = Some(entry.log_id);
            applied_any = true;
            if let Some(responder) = responder {
                responder.send(offsets.unwrap_or(AppliedBatch {
                    base_offset: self.next_offset,
                    last_offset: Offset(self.next_offset.0 - 1),
                }));
            }
        }
        if applied_any {
            self.commit();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        PartitionSnapshotBuilder {
            applied: self.applied,
            memberships: self.memberships.clone(),
            next_offset: self.next_offset,
            target: self.target.lock().take(),
            log: Arc::clone(&self.log),
            current: Arc::clone(&self.current),
            path: self.path.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let (next_offset, producers) = decode_data(&data)?;
        let current = Current {
            meta: meta.clone(),
            data,
        };
        let (log, path, written) = (Arc::clone(&self.log), self.path.clone(), current.clone());
        blocking(move || {
            if let Some(last) = written.meta.last_log_id {
                let mut log = log.lock();
                let term = epoch_of(last.leader_id.term)?;
                let holds_point = log
                    .log_mut()
                    .entry_at(last.index)
                    .map_err(io::Error::other)?
                    .is_some_and(|(_, _, t)| t == term);
                if !holds_point {
                    let start = LogStart {
                        offset: next_offset,
                        entry: last.index + 1,
                        prev_term: Some(term),
                    };
                    log.reset_to(start, producers).map_err(io::Error::other)?;
                }
            }
            write_snapshot(&path, &written)
        })
        .await?;
        self.applied = meta.last_log_id;
        self.memberships.clear();
        self.remember(meta.last_membership.clone());
        self.next_offset = next_offset;
        *self.current.lock() = Some(current);
        self.commit();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<PartitionSnapshot>, io::Error> {
        Ok(self.current.lock().clone().map(|c| Snapshot {
            meta: c.meta,
            snapshot: Cursor::new(c.data),
        }))
    }
}

/// Asks a partition's state machine for its next snapshot point.
#[derive(Debug, Clone)]
pub struct SnapshotRequests(Arc<Mutex<Option<(RaftLogId, Offset)>>>);

impl SnapshotRequests {
    /// See [`PartitionStateMachine::request_snapshot_at`].
    pub fn request(&self, point: RaftLogId, next_offset: Offset) {
        *self.0.lock() = Some((point, next_offset));
    }
}

/// Builds a snapshot from the state taken when it was created, at the point the
/// module documentation describes.
pub struct PartitionSnapshotBuilder {
    applied: Option<RaftLogId>,
    memberships: Vec<Membership>,
    next_offset: Offset,
    target: Option<(RaftLogId, Offset)>,
    log: SharedLog,
    current: Arc<Mutex<Option<Current>>>,
    path: PathBuf,
}

impl fmt::Debug for PartitionSnapshotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionSnapshotBuilder")
            .field("applied", &self.applied)
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<PartitionRaft> for PartitionSnapshotBuilder {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<PartitionSnapshot, io::Error> {
        let (target, applied, next) = (self.target, self.applied, self.next_offset);
        let (log, path, memberships) = (
            Arc::clone(&self.log),
            self.path.clone(),
            self.memberships.clone(),
        );
        let current = blocking(move || {
            let (point, next_offset, producers) = {
                let mut log = log.lock();
                let (point, next_offset) = snapshot_point(target, applied, next, &log)?;
                let producers = log.producers_at(next_offset).map_err(io::Error::other)?;
                (point, next_offset, producers)
            };
            let last_membership = memberships
                .iter()
                .rev()
                .find(|m| *m.log_id() <= point)
                .cloned()
                .unwrap_or_default();
            let current = Current {
                meta: SnapshotMeta {
                    last_log_id: point,
                    last_membership,
                },
                data: encode_data(next_offset, &producers),
            };
            write_snapshot(&path, &current)?;
            Ok(current)
        })
        .await?;
        *self.current.lock() = Some(current.clone());
        Ok(Snapshot {
            meta: current.meta,
            snapshot: Cursor::new(current.data),
        })
    }
}

/// A snapshot's point and the offset after it: `target` if it is applied, else
/// (when the log holds the applied entry) the entry below the log start, else
/// the applied entry and `next_offset`.
fn snapshot_point(
    target: Option<(RaftLogId, Offset)>,
    applied: Option<RaftLogId>,
    next_offset: Offset,
    log: &Partition,
) -> io::Result<(Option<RaftLogId>, Offset)> {
    if let Some((point, next)) = target {
        if Some(point) <= applied {
            return Ok((Some(point), next));
        }
    }
    let holds_applied = applied
        .is_some_and(|a| (log.first_entry_index()..log.next_entry_index()).contains(&a.index));
    if !holds_applied {
        return Ok((applied, next_offset));
    }
    let purged = log
        .log_start()
        .last_purged()
        .map(|(index, epoch)| Ok::<_, io::Error>(log_id(term_of(epoch)?, index)))
        .transpose()?;
    Ok((purged, log.log_start_offset()))
}

fn encode_data(next_offset: Offset, producers: &ProducerStates) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&next_offset.0.to_be_bytes());
    out.extend_from_slice(&producers.encode(next_offset));
    out
}

fn decode_data(data: &[u8]) -> io::Result<(Offset, ProducerStates)> {
    if data.len() < 9 || data[0] != VERSION {
        return Err(invalid("snapshot data is not a version 0 partition state"));
    }
    let next = Offset(i64::from_be_bytes(data[1..9].try_into().expect("8 bytes")));
    match ProducerStates::decode(&data[9..]) {
        Some((at, producers)) if at == next => Ok((next, producers)),
        _ => Err(invalid(
            "snapshot data holds no producer state for its offset",
        )),
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn put_log_id(out: &mut Vec<u8>, id: Option<&RaftLogId>) {
    out.push(u8::from(id.is_some()));
    let (term, index) = id.map_or((0, 0), |i| (i.leader_id.term, i.index));
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
}

fn get_log_id(buf: &mut &[u8]) -> io::Result<Option<RaftLogId>> {
    if buf.remaining() < 17 {
        return Err(invalid("snapshot ends inside a log id"));
    }
    let present = buf.get_u8() != 0;
    let (term, index) = (buf.get_u64(), buf.get_u64());
    Ok(present.then(|| log_id(term, index)))
}

fn get_sized<'a>(buf: &mut &'a [u8]) -> io::Result<&'a [u8]> {
    if buf.remaining() < 4 {
        return Err(invalid("snapshot ends inside a length"));
    }
    let n = buf.get_u32() as usize;
    if buf.remaining() < n {
        return Err(invalid(format!(
            "snapshot claims {n} bytes it does not hold"
        )));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn write_snapshot(path: &Path, current: &Current) -> io::Result<()> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.push(VERSION);
    put_log_id(&mut out, current.meta.last_log_id.as_ref());
    put_log_id(&mut out, current.meta.last_membership.log_id().as_ref());
    let membership = encode_membership(current.meta.last_membership.membership());
    for part in [&membership, &current.data] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&out)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_snapshot(path: &Path) -> io::Result<Option<Current>> {
    let bytes = match File::open(path) {
        Ok(f) => {
            let len = f.metadata()?.len();
            if len > SNAPSHOT_BYTES_MAX {
                return Err(invalid(format!(
                    "{}: {len} bytes is larger than any snapshot",
                    path.display()
                )));
            }
            fs::read(path)?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let damaged = |what: &str| invalid(format!("{}: {what}", path.display()));
    if bytes.len() < 9 || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err(damaged("not a snapshot file"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(damaged("checksum mismatch"));
    }
    let mut buf = &body[4..];
    if buf.get_u8() != VERSION {
        return Err(damaged("unknown version"));
    }
    let last_log_id = get_log_id(&mut buf)?;
    let membership_id = get_log_id(&mut buf)?;
    let membership = decode_membership(get_sized(&mut buf)?).map_err(|e| damaged(&e))?;
    let data = get_sized(&mut buf)?.to_vec();
    if buf.has_remaining() {
        return Err(damaged("bytes after the snapshot"));
    }
    Ok(Some(Current {
        meta: SnapshotMeta {
            last_log_id,
            last_membership: StoredMembership::new(membership_id, membership),
        },
        data,
    }))
}
