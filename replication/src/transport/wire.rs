//! Raft messages as transport payloads. Entries travel as the batches they are
//! stored as ([`crate::raft::encode`]), so a follower receives a producer batch as
//! one slice of the frame and stores it without copying it again.
//!
//! | value          | encoding                                                  |
//! |----------------|-----------------------------------------------------------|
//! | vote           | term `u64`, voted for `u64`, committed `u8`               |
//! | optional log id| `0u8`, or `1u8` then term `u64`, index `u64`              |
//! | entry          | term `u64`, index `u64`, batch length `u32`, batch        |
//! | membership     | length `u32`, then the membership value of the codec      |
//!
//! Every count and length is checked against the bytes that remain.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    VoteRequest, VoteResponse,
};
use openraft::raft::{TransferLeaderError, TransferLeaderResponse};
use openraft::storage::SnapshotMeta;
use openraft::StoredMembership;
use sluice_protocol::types::Offset;
use sluice_storage::{LeaderEpoch, StoredEntry};

use crate::raft::codec::{decode_membership, encode_membership};
use crate::raft::{decode, encode, log_id, Entry, PartitionRaft, RaftLogId};

pub type Vote = openraft::alias::VoteOf<PartitionRaft>;
pub type Snapshot = openraft::alias::SnapshotOf<PartitionRaft, std::io::Cursor<Vec<u8>>>;
type Meta = openraft::alias::SnapshotMetaOf<PartitionRaft>;

/// Request kinds of Raft groups.
pub const VOTE: u8 = 1;
pub const PRE_VOTE: u8 = 2;
pub const APPEND: u8 = 3;
pub const SNAPSHOT: u8 = 4;
pub const TRANSFER_LEADER: u8 = 5;
/// A leader asks a follower to stop ticking ([`crate::quiet`]).
pub const QUIET: u8 = 6;

/// Largest snapshot payload accepted.
const SNAPSHOT_BYTES_MAX: usize = 64 << 20;

fn short(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what} ends early"))
}

fn need(buf: &Bytes, n: usize, what: &str) -> io::Result<()> {
    if buf.remaining() < n {
        Err(short(what))
    } else {
        Ok(())
    }
}

pub fn put_vote(out: &mut BytesMut, v: &Vote) {
    out.put_u64(v.leader_id.term);
    out.put_u64(v.leader_id.voted_for);
    out.put_u8(u8::from(v.committed));
}

pub fn get_vote(buf: &mut Bytes) -> io::Result<Vote> {
    need(buf, 17, "vote")?;
    let (term, node, committed) = (buf.get_u64(), buf.get_u64(), buf.get_u8() != 0);
    Ok(if committed {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    })
}

fn put_log_id(out: &mut BytesMut, id: Option<&RaftLogId>) {
    match id {
        None => out.put_u8(0),
        Some(id) => {
            out.put_u8(1);
            out.put_u64(id.leader_id.term);
            out.put_u64(id.index);
        }
    }
}

fn get_log_id(buf: &mut Bytes) -> io::Result<Option<RaftLogId>> {
    need(buf, 1, "log id")?;
    if buf.get_u8() == 0 {
        return Ok(None);
    }
    need(buf, 16, "log id")?;
    let (term, index) = (buf.get_u64(), buf.get_u64());
    Ok(Some(log_id(term, index)))
}

fn get_bool(buf: &mut Bytes) -> io::Result<bool> {
    need(buf, 1, "flag")?;
    Ok(buf.get_u8() != 0)
}

fn put_chunk(out: &mut BytesMut, chunk: &[u8]) {
    out.put_u32(chunk.len() as u32);
    out.put_slice(chunk);
}

fn get_chunk(buf: &mut Bytes, max: usize, what: &str) -> io::Result<Bytes> {
    need(buf, 4, what)?;
    let n = buf.get_u32() as usize;
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} of {n} bytes is over the limit of {max}"),
        ));
    }
    need(buf, n, what)?;
    Ok(buf.split_to(n))
}

fn done<T>(buf: &Bytes, value: T, what: &str) -> io::Result<T> {
    if buf.has_remaining() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes after the {what}", buf.remaining()),
        ));
    }
    Ok(value)
}

pub fn encode_vote_request(r: &VoteRequest<PartitionRaft>) -> Bytes {
    let mut out = BytesMut::with_capacity(40);
    put_vote(&mut out, &r.vote);
    put_log_id(&mut out, r.last_log_id.as_ref());
    out.put_u8(u8::from(r.leadership_transfer));
    out.freeze()
}

pub fn decode_vote_request(mut buf: Bytes) -> io::Result<VoteRequest<PartitionRaft>> {
    let vote = get_vote(&mut buf)?;
    let last = get_log_id(&mut buf)?;
    let mut r = VoteRequest::new(vote, last);
    r.leadership_transfer = get_bool(&mut buf)?;
    done(&buf, r, "vote request")
}

pub fn encode_vote_response(r: &VoteResponse<PartitionRaft>) -> Bytes {
    let mut out = BytesMut::with_capacity(40);
    put_vote(&mut out, &r.vote);
    out.put_u8(u8::from(r.vote_granted));
    put_log_id(&mut out, r.last_log_id.as_ref());
    out.freeze()
}

pub fn decode_vote_response(mut buf: Bytes) -> io::Result<VoteResponse<PartitionRaft>> {
    let vote = get_vote(&mut buf)?;
    let granted = get_bool(&mut buf)?;
    let last = get_log_id(&mut buf)?;
    done(
        &buf,
        VoteResponse::new(vote, last, granted),
        "vote response",
    )
}

pub fn encode_append(r: &AppendEntriesRequest<PartitionRaft>) -> Bytes {
    let batches: Vec<Bytes> = r.entries.iter().map(encode).collect();
    let size = 64 + batches.iter().map(|b| 20 + b.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    put_vote(&mut out, &r.vote);
    put_log_id(&mut out, r.prev_log_id.as_ref());
    put_log_id(&mut out, r.leader_commit.as_ref());
    out.put_u32(r.entries.len() as u32);
    for (entry, batch) in r.entries.iter().zip(&batches) {
        out.put_u64(entry.log_id.leader_id.term);
        out.put_u64(entry.log_id.index);
        put_chunk(&mut out, batch);
    }
    out.freeze()
}

pub fn decode_append(mut buf: Bytes) -> io::Result<AppendEntriesRequest<PartitionRaft>> {
    let vote = get_vote(&mut buf)?;
    let prev_log_id = get_log_id(&mut buf)?;
    let leader_commit = get_log_id(&mut buf)?;
    need(&buf, 4, "entry count")?;
    let count = buf.get_u32() as usize;
    if count > buf.remaining() / 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("append claims {count} entries its bytes do not hold"),
        ));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(count);
    for _ in 0..count {
        need(&buf, 16, "entry")?;
        let (term, index) = (buf.get_u64(), buf.get_u64());
        let batch = get_chunk(&mut buf, super::FRAME_BYTES_MAX, "entry batch")?;
        let term = i32::try_from(term).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("term {term} is out of range"),
            )
        })?;
        entries.push(decode(StoredEntry {
            index,
            term: LeaderEpoch(term),
            base_offset: Offset(0),
            last_offset: Offset(0),
            batch,
        })?);
    }
    let r = AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    };
    done(&buf, r, "append request")
}

pub fn encode_append_response(r: &AppendEntriesResponse<PartitionRaft>) -> Bytes {
    let mut out = BytesMut::with_capacity(24);
    match r {
        AppendEntriesResponse::Success => out.put_u8(0),
        AppendEntriesResponse::PartialSuccess(id) => {
            out.put_u8(1);
            put_log_id(&mut out, id.as_ref());
        }
        AppendEntriesResponse::Conflict => out.put_u8(2),
        AppendEntriesResponse::HigherVote(v) => {
            out.put_u8(3);
            put_vote(&mut out, v);
        }
    }
    out.freeze()
}

pub fn decode_append_response(mut buf: Bytes) -> io::Result<AppendEntriesResponse<PartitionRaft>> {
    need(&buf, 1, "append response")?;
    let r = match buf.get_u8() {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(get_log_id(&mut buf)?),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(get_vote(&mut buf)?),
        t => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("append response of type {t}"),
            ))
        }
    };
    done(&buf, r, "append response")
}

pub fn encode_snapshot(vote: &Vote, snapshot: &Snapshot) -> Bytes {
    let data = snapshot.snapshot.get_ref();
    let membership = encode_membership(snapshot.meta.last_membership.membership());
    let mut out = BytesMut::with_capacity(64 + membership.len() + data.len());
    put_vote(&mut out, vote);
    put_log_id(&mut out, snapshot.meta.last_log_id.as_ref());
    put_log_id(&mut out, snapshot.meta.last_membership.log_id().as_ref());
    put_chunk(&mut out, &membership);
    put_chunk(&mut out, data);
    out.freeze()
}

pub fn decode_snapshot(mut buf: Bytes) -> io::Result<(Vote, Snapshot)> {
    let vote = get_vote(&mut buf)?;
    let last_log_id = get_log_id(&mut buf)?;
    let membership_id = get_log_id(&mut buf)?;
    let membership = get_chunk(&mut buf, 1 << 20, "membership")?;
    let membership = decode_membership(&membership)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let data = get_chunk(&mut buf, SNAPSHOT_BYTES_MAX, "snapshot data")?;
    let meta: Meta = SnapshotMeta {
        last_log_id,
        last_membership: StoredMembership::new(membership_id, membership),
    };
    let snapshot = Snapshot {
        meta,
        snapshot: std::io::Cursor::new(data.to_vec()),
    };
    done(&buf, (vote, snapshot), "snapshot")
}

pub fn encode_snapshot_response(r: &SnapshotResponse<PartitionRaft>) -> Bytes {
    let mut out = BytesMut::with_capacity(17);
    put_vote(&mut out, &r.vote);
    out.freeze()
}

pub fn decode_snapshot_response(mut buf: Bytes) -> io::Result<SnapshotResponse<PartitionRaft>> {
    let vote = get_vote(&mut buf)?;
    done(&buf, SnapshotResponse::new(vote), "snapshot response")
}

pub fn encode_transfer(r: &TransferLeaderRequest<PartitionRaft>) -> Bytes {
    let mut out = BytesMut::with_capacity(48);
    put_vote(&mut out, r.from_leader());
    out.put_u64(*r.to_node_id());
    put_log_id(&mut out, r.last_log_id());
    out.freeze()
}

pub fn decode_transfer(mut buf: Bytes) -> io::Result<TransferLeaderRequest<PartitionRaft>> {
    let from = get_vote(&mut buf)?;
    need(&buf, 8, "transfer request")?;
    let to = buf.get_u64();
    let last = get_log_id(&mut buf)?;
    done(
        &buf,
        TransferLeaderRequest::new(from, to, last),
        "transfer request",
    )
}

pub fn encode_transfer_response(r: &TransferLeaderResponse<PartitionRaft>) -> Bytes {
    let mut out = BytesMut::with_capacity(48);
    match r {
        Ok(()) => out.put_u8(0),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => {
            out.put_u8(1);
            put_vote(&mut out, expected);
            put_vote(&mut out, actual);
        }
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
            out.put_u8(2);
            put_log_id(&mut out, expected.as_ref());
            put_log_id(&mut out, actual.as_ref());
        }
    }
    out.freeze()
}

pub fn decode_transfer_response(
    mut buf: Bytes,
) -> io::Result<TransferLeaderResponse<PartitionRaft>> {
    need(&buf, 1, "transfer response")?;
    let r = match buf.get_u8() {
        0 => Ok(()),
        1 => Err(TransferLeaderError::VoteChanged {
            expected: get_vote(&mut buf)?,
            actual: get_vote(&mut buf)?,
        }),
        2 => Err(TransferLeaderError::LogNotFlushed {
            expected: get_log_id(&mut buf)?,
            actual: get_log_id(&mut buf)?,
        }),
        t => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("transfer response of type {t}"),
            ))
        }
    };
    done(&buf, r, "transfer response")
}
