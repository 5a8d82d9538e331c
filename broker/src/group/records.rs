//! The records of `__consumer_offsets`, in Kafka's own format so that Kafka's tools
//! (the offsets and group-metadata message formatters) read our topic as theirs.
//!
//! ```text
//! key   v0/v1 offset commit:   version i16 | group string | topic string | partition i32
//! key   v2    group metadata:  version i16 | group string
//! value v3    offset commit:   version i16 | offset i64 | leader_epoch i32 | metadata string
//!                              | commit_timestamp i64
//! value v3    group metadata:  version i16 | protocol_type string | generation i32
//!                              | protocol string? | leader string? | state_timestamp i64
//!                              | members [member_id string | instance_id string?
//!                                | client_id string | client_host string
//!                                | rebalance_timeout i32 | session_timeout i32
//!                                | subscription bytes | assignment bytes]
//! ```
//! A null value is a tombstone: the offset (or the whole group) is gone.

use bytes::Bytes;
use thiserror::Error;

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct RecordError(&'static str);

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// A key version this broker does not use (records of Kafka's newer group
    /// protocols); skipped on load.
    Other(i16),
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member as stored in the group's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored after each generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(version: i16) -> Self {
        let mut w = Writer(Vec::with_capacity(64));
        w.i16(version);
        w
    }
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) {
        // Strings longer than i16::MAX never reach here: group ids, topics and
        // metadata are bounded by the request validation.
        self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn nullable(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    fn nullable(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| RecordError("string is not UTF-8"))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable()?.ok_or(RecordError("null string"))
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut w = Writer::new(OFFSET_KEY_VERSION);
    w.string(group);
    w.string(topic);
    w.i32(partition);
    w.0
}

pub fn group_key(group: &str) -> Vec<u8> {
    let mut w = Writer::new(GROUP_KEY_VERSION);
    w.string(group);
    w.0
}

pub fn parse_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader(bytes);
    match r.i16()? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.string()?,
            topic: r.string()?,
            partition: r.i32()?,
        }),
        2 => Ok(RecordKey::Group { group: r.string()? }),
        v => Ok(RecordKey::Other(v)),
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(OFFSET_VALUE_VERSION);
        w.i64(self.offset);
        w.i32(self.leader_epoch);
        w.string(&self.metadata);
        w.i64(self.commit_timestamp);
        w.0
    }

    /// Reads value versions 0-3 (v1 adds an expire timestamp, v2 drops it, v3 adds
    /// the leader epoch).
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(RecordError("unknown offset value version"));
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp = r.i64()?;
        if version == 1 {
            r.i64()?; // expire timestamp
        }
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(GROUP_VALUE_VERSION);
        w.string(&self.protocol_type);
        w.i32(self.generation);
        w.nullable(self.protocol.as_deref());
        w.nullable(self.leader.as_deref());
        w.i64(self.state_timestamp);
        w.i32(self.members.len() as i32);
        for m in &self.members {
            w.string(&m.member_id);
            w.nullable(m.instance_id.as_deref());
            w.string(&m.client_id);
            w.string(&m.client_host);
            w.i32(m.rebalance_timeout_ms);
            w.i32(m.session_timeout_ms);
            w.bytes(&m.subscription);
            w.bytes(&m.assignment);
        }
        w.0
    }

    /// Reads value versions 0-3 (v1 adds the rebalance timeout, v2 the state
    /// timestamp, v3 the instance id).
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(RecordError("unknown group value version"));
        }
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable()?;
        let leader = r.nullable()?;
        let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = r.string()?;
            let instance_id = if version >= 3 { r.nullable()? } else { None };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
            let session_timeout_ms = r.i32()?;
            let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            };
            members.push(StoredMember {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

/// Java's `String.hashCode`, so a group maps to the same `__consumer_offsets`
/// partition as on Apache Kafka: `abs(hash) % partitions`.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = offset_key("orders", "business.orders.created", 3);
        assert_eq!(
            parse_key(&k),
            Ok(RecordKey::Offset {
                group: "orders".into(),
                topic: "business.orders.created".into(),
                partition: 3
            })
        );
        assert_eq!(
            parse_key(&group_key("g")),
            Ok(RecordKey::Group { group: "g".into() })
        );
        assert_eq!(parse_key(&[0, 11, 0]), Ok(RecordKey::Other(11)));
        assert!(parse_key(&[0, 1, 0, 9, b'x']).is_err());
    }

    #[test]
    fn values_round_trip() {
        let o = OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        assert_eq!(OffsetValue::parse(&o.encode()), Ok(o));
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "c-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::parse(&g.encode()), Ok(g));
    }

    #[test]
    fn partition_matches_java_string_hash() {
        // "hello".hashCode() = 99162322; "polygenelubricants".hashCode() = i32::MIN.
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 50), 0);
    }
}
