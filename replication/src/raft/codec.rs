//! Raft entries as stored batches. A data entry is the producer batch itself; Raft's
//! own entries are control batches whose key is Kafka's control key with a private
//! type, so clients skip them as they skip transaction markers:
//!
//! | entry      | stored as                                              |
//! |------------|--------------------------------------------------------|
//! | normal     | the producer's v2 batch, unchanged but for baseOffset and epoch |
//! | blank      | control batch, type [`CONTROL_RAFT_BLANK`], empty value |
//! | membership | control batch, type [`CONTROL_RAFT_MEMBERSHIP`], value below |
//!
//! Membership value: version `0u8`, config count `u32`, per config its voter count
//! `u32` and voter ids `u64`, then the count `u32` and ids `u64` of every node
//! (voters and learners). Integers are big-endian.
//!
//! The entry's term is the batch's partitionLeaderEpoch (an i32, so terms stop at
//! `i32::MAX`); its index is the batch's place in the log.

use std::collections::BTreeSet;
use std::io;

use bytes::{Buf, Bytes};
use openraft::entry::RaftEntry;
use openraft::{EmptyNode, EntryPayload, Membership};
use sluice_protocol::batch::{build_control_batch, BatchView};
use sluice_protocol::records::control_record;
use sluice_storage::{LeaderEpoch, StoredEntry};

use super::{log_id, Entry, ProducerBatch};

/// Control type of a new leader's blank entry.
pub const CONTROL_RAFT_BLANK: i16 = 100;
/// Control type of a membership entry.
pub const CONTROL_RAFT_MEMBERSHIP: i16 = 101;

const MEMBERSHIP_VERSION: u8 = 0;
/// Largest membership value decoded (a few hundred nodes fit).
const MEMBERSHIP_BYTES_MAX: usize = 1 << 20;

/// The stored form of a Raft term: the batch's partitionLeaderEpoch.
pub fn epoch_of(term: u64) -> io::Result<LeaderEpoch> {
    i32::try_from(term).map(LeaderEpoch).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("term {term} does not fit a partition leader epoch"),
        )
    })
}

/// The Raft term of a stored epoch.
pub fn term_of(epoch: LeaderEpoch) -> io::Result<u64> {
    u64::try_from(epoch.0).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("leader epoch {} is not a Raft term", epoch.0),
        )
    })
}

/// Timestamp of the control batches of Raft entries: every replica encodes them
/// itself, so they carry no clock and the stored bytes are the same everywhere.
const CONTROL_TIMESTAMP: i64 = 0;

/// The batch that stores `entry`.
pub fn encode(entry: &Entry) -> Bytes {
    match &entry.payload {
        EntryPayload::Normal(batch) => batch.0.clone(),
        EntryPayload::Blank => Bytes::from(build_control_batch(
            CONTROL_TIMESTAMP,
            CONTROL_RAFT_BLANK,
            &[],
        )),
        EntryPayload::Membership(m) => Bytes::from(build_control_batch(
            CONTROL_TIMESTAMP,
            CONTROL_RAFT_MEMBERSHIP,
            &encode_membership(m),
        )),
    }
}

/// The entry a stored batch holds.
pub fn decode(stored: StoredEntry) -> io::Result<Entry> {
    let id = log_id(term_of(stored.term)?, stored.index);
    let view = BatchView::parse(&stored.batch).map_err(|e| invalid(stored.index, e))?;
    if !view.is_control() {
        return Ok(Entry::new_normal(id, ProducerBatch(stored.batch)));
    }
    match control_record(&view, MEMBERSHIP_BYTES_MAX).map_err(|e| invalid(stored.index, e))? {
        Some((CONTROL_RAFT_BLANK, _)) => Ok(Entry::new_blank(id)),
        Some((CONTROL_RAFT_MEMBERSHIP, value)) => {
            let m = decode_membership(&value).map_err(|e| invalid(stored.index, e))?;
            Ok(Entry::new_membership(id, m))
        }
        other => Err(invalid(
            stored.index,
            format!(
                "control batch of type {:?} is not a Raft entry",
                other.map(|o| o.0)
            ),
        )),
    }
}

fn invalid(index: u64, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("stored entry {index}: {e}"),
    )
}

pub fn encode_membership(m: &Membership<u64, EmptyNode>) -> Vec<u8> {
    let mut out = vec![MEMBERSHIP_VERSION];
    let configs = m.get_joint_config();
    out.extend_from_slice(&(configs.len() as u32).to_be_bytes());
    for config in configs {
        out.extend_from_slice(&(config.len() as u32).to_be_bytes());
        for id in config {
            out.extend_from_slice(&id.to_be_bytes());
        }
    }
    let nodes: Vec<u64> = m.nodes().map(|(id, _)| *id).collect();
    out.extend_from_slice(&(nodes.len() as u32).to_be_bytes());
    for id in nodes {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

/// Decodes a membership value; every count is checked against the bytes left.
pub fn decode_membership(mut value: &[u8]) -> Result<Membership<u64, EmptyNode>, String> {
    fn ids(value: &mut &[u8]) -> Result<Vec<u64>, String> {
        if value.remaining() < 4 {
            return Err("membership value ends inside a count".into());
        }
        let n = value.get_u32() as usize;
        if value.remaining() / 8 < n {
            return Err(format!("membership value claims {n} ids it does not hold"));
        }
        Ok((0..n).map(|_| value.get_u64()).collect())
    }
    if value.first() != Some(&MEMBERSHIP_VERSION) {
        return Err(format!("membership value version {:?}", value.first()));
    }
    value.advance(1);
    if value.remaining() < 4 {
        return Err("membership value ends inside a count".into());
    }
    let config_count = value.get_u32() as usize;
    if value.remaining() / 4 < config_count {
        return Err(format!(
            "membership value claims {config_count} configs it does not hold"
        ));
    }
    let mut configs = Vec::with_capacity(config_count);
    for _ in 0..config_count {
        configs.push(ids(&mut value)?.into_iter().collect::<BTreeSet<u64>>());
    }
    let nodes = ids(&mut value)?;
    if value.has_remaining() {
        return Err(format!(
            "{} bytes after the membership value",
            value.remaining()
        ));
    }
    Ok(Membership::new_with_defaults(configs, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::batch::build_batch;
    use sluice_protocol::types::Offset;

    fn stored(index: u64, term: i32, batch: Vec<u8>) -> StoredEntry {
        StoredEntry {
            index,
            term: LeaderEpoch(term),
            base_offset: Offset(0),
            last_offset: Offset(0),
            batch: Bytes::from(batch),
        }
    }

    #[test]
    fn every_kind_of_entry_round_trips_through_a_stored_batch() {
        let membership = Membership::new_with_defaults(
            vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([3, 4])],
            [9],
        );
        let data = ProducerBatch(Bytes::from(build_batch(7, &[(None, Some(&b"v"[..]))])));
        for entry in [
            Entry::new_blank(log_id(3, 10)),
            Entry::new_membership(log_id(4, 11), membership),
            Entry::new_normal(log_id(5, 12), data),
        ] {
            let id = entry.log_id;
            let batch = encode(&entry).to_vec();
            let back = decode(stored(id.index, id.leader_id.term as i32, batch)).expect("decode");
            assert_eq!(back, entry);
        }
    }

    #[test]
    fn damaged_values_and_foreign_control_batches_are_errors() {
        let m = Membership::new_with_defaults(vec![BTreeSet::from([1, 2])], []);
        let good = encode_membership(&m);
        for cut in 0..good.len() {
            assert!(decode_membership(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = good.clone();
        lying[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_membership(&lying).is_err());
        let foreign = build_control_batch(1, 0, &[]); // a transaction abort marker
        assert!(decode(stored(1, 1, foreign)).is_err());
        assert!(decode(stored(1, -1, build_batch(1, &[(None, None)]))).is_err());
        assert!(epoch_of(u64::from(i32::MAX as u32) + 1).is_err());
    }
}
