//! The RecordBatch v2 header view.
//!
//! A batch is validated by its header and CRC32C and then kept exactly as the producer
//! sent it; records are never decoded on the produce or fetch path.
//!
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records...
//! ```

use crate::types::{LeaderEpoch, Offset};
use crate::BatchError;

/// Bytes of the v2 batch header before the first record.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s count starts: baseOffset + batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(v)
}

/// Compression codec named in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Reads the size of the batch that starts at the front of `bytes`, from its first
/// 12 bytes. `None` when fewer than 12 bytes are present.
pub fn batch_size(bytes: &[u8]) -> Option<Result<usize, BatchError>> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    let length = i32_at(bytes, BATCH_LENGTH);
    if length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Some(Err(BatchError::BadLength { length }));
    }
    Some(Ok(LOG_OVERHEAD_BYTES + length as usize))
}

/// The fields of a batch header needed to walk a log, read from its first 61 bytes
/// without the rest of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub size: usize,
    pub max_timestamp: i64,
}

impl BatchHeader {
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                declared: HEADER_BYTES,
            });
        }
        let size = match batch_size(bytes) {
            Some(size) => size?,
            None => unreachable!("length checked above"),
        };
        let magic = bytes[MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let base_offset = Offset(i64_at(bytes, BASE_OFFSET));
        Ok(BatchHeader {
            base_offset,
            last_offset: Offset(base_offset.0 + i64::from(i32_at(bytes, LAST_OFFSET_DELTA))),
            size,
            max_timestamp: i64_at(bytes, MAX_TIMESTAMP),
        })
    }
}

/// A view of one complete v2 record batch (header fields read on demand).
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Views the batch at the front of `bytes` after checking that it is complete and
    /// that its header is a well-formed v2 header. The CRC is not checked here.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let size = match batch_size(bytes) {
            None => {
                return Err(BatchError::Truncated {
                    available: bytes.len(),
                    declared: LOG_OVERHEAD_BYTES,
                })
            }
            Some(size) => size?,
        };
        if bytes.len() < size {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                declared: size,
            });
        }
        let magic = bytes[MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let view = BatchView {
            bytes: &bytes[..size],
        };
        if view.record_count() < 0 {
            return Err(BatchError::Inconsistent {
                reason: "negative record count",
            });
        }
        if view.last_offset_delta() < 0 {
            return Err(BatchError::Inconsistent {
                reason: "negative lastOffsetDelta",
            });
        }
        Ok(view)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> Offset {
        Offset(i64_at(self.bytes, BASE_OFFSET))
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(self.bytes, LAST_OFFSET_DELTA)
    }
    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset().0 + i64::from(self.last_offset_delta()))
    }
    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(i32_at(self.bytes, LEADER_EPOCH))
    }
    pub fn stored_crc(&self) -> u32 {
        u32_at(self.bytes, CRC)
    }
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES..])
    }
    pub fn attributes(&self) -> i16 {
        i16_at(self.bytes, ATTRIBUTES)
    }
    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes() & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(BatchError::Inconsistent {
                reason: "unknown compression codec",
            }),
        }
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTR_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.bytes, BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        i64_at(self.bytes, MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.bytes, PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16_at(self.bytes, PRODUCER_EPOCH)
    }
    pub fn base_sequence(&self) -> i32 {
        i32_at(self.bytes, BASE_SEQUENCE)
    }
    pub fn record_count(&self) -> i32 {
        i32_at(self.bytes, RECORD_COUNT)
    }

    /// Checks the CRC32C over bytes 21..end.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let (stored, computed) = (self.stored_crc(), self.computed_crc());
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }
}

/// Fewest bytes one record occupies in a records section: its length varint and
/// the six one-byte fields of a record without key, value or headers.
pub const RECORD_BYTES_MIN: usize = 7;

/// Counts the records of an uncompressed records section by walking their length
/// varints only (no field is decoded). `None` when a length is malformed, negative
/// or runs past the end.
pub fn count_records(mut data: &[u8]) -> Option<usize> {
    let mut count = 0usize;
    while !data.is_empty() {
        let (len, used) = zigzag_varint(data)?;
        let len = usize::try_from(len).ok()?;
        data = data.get(used..)?.get(len..)?;
        count += 1;
    }
    Some(count)
}

/// A zig-zag varint of at most 5 bytes (Kafka's `varint`) and the bytes it took.
fn zigzag_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i == 4 && *b > 0x0f {
                return None;
            }
            return Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), i + 1));
        }
    }
    None
}

/// Validates the record set of one partition of a Produce request (v3+): exactly one
/// v2 batch, a correct CRC, and a header consistent with what a producer writes and
/// with what its bytes can hold. An uncompressed batch's record count is checked by
/// walking the record lengths; a compressed batch may claim no more records than
/// `decompressed_bytes_max` (the most it may inflate to) can hold; its records are
/// checked against the count wherever they are decoded.
pub fn validate_produce_records(
    records: &[u8],
    decompressed_bytes_max: usize,
) -> Result<BatchView<'_>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let batch = BatchView::parse(records)?;
    if batch.size() != records.len() {
        let mut count = 1;
        let mut rest = &records[batch.size()..];
        while let Ok(next) = BatchView::parse(rest) {
            count += 1;
            rest = &rest[next.size()..];
        }
        if !rest.is_empty() {
            return Err(BatchError::Truncated {
                available: rest.len(),
                declared: batch_size(rest)
                    .and_then(Result::ok)
                    .unwrap_or(LOG_OVERHEAD_BYTES),
            });
        }
        return Err(BatchError::NotOneBatch { count });
    }
    batch.verify_crc()?;
    if batch.base_offset() != Offset(0) {
        return Err(BatchError::NonZeroBaseOffset {
            base_offset: batch.base_offset().0,
        });
    }
    let declared = batch.record_count();
    if declared == 0 {
        return Err(BatchError::Inconsistent {
            reason: "a produced batch must hold at least one record",
        });
    }
    if i64::from(batch.last_offset_delta()) != i64::from(declared) - 1 {
        return Err(BatchError::Inconsistent {
            reason: "lastOffsetDelta does not match recordCount - 1",
        });
    }
    match batch.compression()? {
        Compression::None => {
            let found =
                count_records(&batch.bytes()[HEADER_BYTES..]).ok_or(BatchError::Inconsistent {
                    reason: "a record length runs past the end of the batch",
                })?;
            if found != declared as usize {
                return Err(BatchError::RecordCountMismatch { declared, found });
            }
        }
        _ => {
            let bound = decompressed_bytes_max / RECORD_BYTES_MIN;
            if declared as usize > bound {
                return Err(BatchError::TooManyRecords {
                    declared,
                    bound: decompressed_bytes_max,
                });
            }
        }
    }
    Ok(batch)
}

/// Bytes at the front of a batch that offset assignment rewrites: baseOffset,
/// batchLength and partitionLeaderEpoch (batchLength is copied unchanged).
pub const PATCHED_PREFIX_BYTES: usize = 16;

/// The first [`PATCHED_PREFIX_BYTES`] of `batch` with `baseOffset` and the leader
/// epoch replaced, and the batch's last offset. The CRC covers bytes 21..end, so
/// the prefix can be written in front of the untouched rest of the batch.
pub fn patched_prefix(
    batch: &[u8],
    base_offset: Offset,
    epoch: LeaderEpoch,
) -> ([u8; PATCHED_PREFIX_BYTES], Offset) {
    assert!(
        batch.len() >= HEADER_BYTES,
        "patched_prefix of a batch of {} bytes",
        batch.len()
    );
    let mut prefix = [0u8; PATCHED_PREFIX_BYTES];
    prefix.copy_from_slice(&batch[..PATCHED_PREFIX_BYTES]);
    prefix[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.0.to_be_bytes());
    prefix[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.0.to_be_bytes());
    let delta = i32_at(batch, LAST_OFFSET_DELTA);
    (prefix, Offset(base_offset.0 + i64::from(delta)))
}

/// Assigns offsets to a batch in place by patching `baseOffset` and the leader
/// epoch. The CRC covers bytes 21..end, so it stays valid. Returns the last offset.
pub fn assign_offsets(batch: &mut [u8], base_offset: Offset, epoch: LeaderEpoch) -> Offset {
    let (prefix, last) = patched_prefix(batch, base_offset, epoch);
    batch[..PATCHED_PREFIX_BYTES].copy_from_slice(&prefix);
    last
}

/// Stamps a batch with the broker's clock (`message.timestamp.type=LogAppendTime`):
/// sets the timestamp-type attribute and the max timestamp, then recomputes the CRC
/// (both fields are covered by it).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(
        batch.len() >= HEADER_BYTES,
        "set_log_append_time on a short batch"
    );
    let attributes = i16_at(batch, ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the complete batches at the front of a buffer; stops at the first
/// incomplete or malformed one (its error is returned once).
#[derive(Debug)]
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Batches {
            rest: bytes,
            failed: false,
        }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match BatchView::parse(self.rest) {
            Ok(batch) => {
                self.rest = &self.rest[batch.size()..];
                Some(Ok(batch))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A record's key and value, either of which may be null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed v2 batch of simple records (for tests and the load
/// generator; the broker never builds batches on the produce path).
pub fn build_batch(base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    let timed: Vec<(i64, KeyValue<'_>)> = records.iter().map(|r| (base_timestamp, *r)).collect();
    build_timed_batch(&timed)
}

/// Builds an uncompressed v2 batch whose records carry their own timestamps; the
/// first record's is the base timestamp.
pub fn build_timed_batch(records: &[(i64, KeyValue<'_>)]) -> Vec<u8> {
    let records: Vec<NewRecord<'_>> = records
        .iter()
        .map(|(timestamp, (key, value))| NewRecord {
            timestamp: *timestamp,
            key: *key,
            value: *value,
            headers: &[],
        })
        .collect();
    build_records_batch(&records)
}

/// A record header: key and value (which may be null).
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// A record to put in a batch.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header<'a>],
}

/// Builds an uncompressed v2 batch of `records` (headers included); the first
/// record's timestamp is the base timestamp.
pub fn build_records_batch(records: &[NewRecord<'_>]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
        match field {
            Some(b) => {
                varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
            None => varint(out, -1),
        }
    }
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0); // attributes
        varint(&mut rec, r.timestamp - base_timestamp);
        varint(&mut rec, i as i64); // offset delta
        nullable(&mut rec, r.key);
        nullable(&mut rec, r.value);
        varint(&mut rec, r.headers.len() as i64);
        for (k, v) in r.headers {
            nullable(&mut rec, Some(k));
            nullable(&mut rec, *v);
        }
        varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Makes a built batch an idempotent producer's: producer id, epoch and base
/// sequence, CRC recomputed.
pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    if batch.len() < HEADER_BYTES {
        return;
    }
    batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Builds an uncompressed batch of an idempotent producer: `records` from
/// sequence `base_sequence` of producer `producer_id` at `epoch`.
pub fn build_idempotent_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    base_timestamp: i64,
    records: &[KeyValue<'_>],
) -> Vec<u8> {
    let mut out = build_batch(base_timestamp, records);
    set_producer(&mut out, producer_id, epoch, base_sequence);
    out
}

/// Builds a control batch (the control attribute set) of one record whose key is
/// Kafka's control key, version 0 and `control_type`, and whose value is `value`.
/// Clients skip control batches; Kafka's own types are 0-6.
pub fn build_control_batch(timestamp_ms: i64, control_type: i16, value: &[u8]) -> Vec<u8> {
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    let mut out = build_timed_batch(&[(timestamp_ms, (Some(&key[..]), Some(value)))]);
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&ATTR_CONTROL.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_batch(
            1_700_000_000_000,
            &[(Some(b"k1"), Some(b"v1")), (None, Some(b"v2"))],
        )
    }

    #[test]
    fn valid_batch_passes_and_reports_header_fields() {
        let bytes = sample();
        let view = validate_produce_records(&bytes, 1 << 20).expect("valid");
        assert_eq!(view.record_count(), 2);
        assert_eq!(view.last_offset_delta(), 1);
        assert_eq!(view.compression(), Ok(Compression::None));
        assert_eq!(view.max_timestamp(), 1_700_000_000_000);
    }

    #[test]
    fn assigning_offsets_keeps_the_crc_valid() {
        let mut bytes = sample();
        let last = assign_offsets(&mut bytes, Offset(41), LeaderEpoch(7));
        assert_eq!(last, Offset(42));
        let view = BatchView::parse(&bytes).expect("parse");
        assert_eq!(view.base_offset(), Offset(41));
        assert_eq!(view.leader_epoch(), LeaderEpoch(7));
        view.verify_crc().expect("crc still valid");
    }

    #[test]
    fn corrupted_payload_fails_crc() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            validate_produce_records(&bytes, 1 << 20),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn truncated_and_doubled_batches_are_rejected() {
        let bytes = sample();
        assert!(matches!(
            validate_produce_records(&bytes[..bytes.len() - 3], 1 << 20),
            Err(BatchError::Truncated { .. })
        ));
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(
            validate_produce_records(&two, 1 << 20).err(),
            Some(BatchError::NotOneBatch { count: 2 })
        );
        assert_eq!(
            validate_produce_records(&[], 1 << 20).err(),
            Some(BatchError::Empty)
        );
    }

    #[test]
    fn log_append_time_is_stamped_with_a_valid_crc() {
        let mut bytes = sample();
        set_log_append_time(&mut bytes, 42);
        let view = BatchView::parse(&bytes).expect("parse");
        view.verify_crc().expect("crc recomputed");
        assert!(view.is_log_append_time());
        assert_eq!(view.max_timestamp(), 42);
    }

    /// Rewrites header fields of a built batch and fixes its CRC, as a hostile
    /// producer would.
    fn lie(bytes: &mut [u8], at: usize, value: &[u8]) {
        bytes[at..at + value.len()].copy_from_slice(value);
        let crc = crc32c::crc32c(&bytes[ATTRIBUTES..]);
        bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn a_header_claiming_more_records_than_it_holds_is_rejected() {
        let mut bytes = build_batch(1, &[(None, Some(b"v"))]);
        lie(&mut bytes, RECORD_COUNT, &i32::MAX.to_be_bytes());
        lie(&mut bytes, LAST_OFFSET_DELTA, &(i32::MAX - 1).to_be_bytes());
        assert_eq!(
            validate_produce_records(&bytes, 1 << 20).err(),
            Some(BatchError::RecordCountMismatch {
                declared: i32::MAX,
                found: 1
            })
        );
        // Fewer records claimed than held.
        let mut bytes = sample();
        lie(&mut bytes, RECORD_COUNT, &1i32.to_be_bytes());
        lie(&mut bytes, LAST_OFFSET_DELTA, &0i32.to_be_bytes());
        assert!(matches!(
            validate_produce_records(&bytes, 1 << 20),
            Err(BatchError::RecordCountMismatch { found: 2, .. })
        ));
        // A record length that runs past the batch.
        let mut bytes = sample();
        lie(&mut bytes, HEADER_BYTES, &[0x7e]);
        assert!(matches!(
            validate_produce_records(&bytes, 1 << 20),
            Err(BatchError::Inconsistent { .. })
        ));
    }

    #[test]
    fn a_compressed_header_may_claim_only_what_its_inflated_bytes_can_hold() {
        let mut bytes = sample();
        lie(&mut bytes, ATTRIBUTES, &3i16.to_be_bytes()); // lz4
        lie(&mut bytes, RECORD_COUNT, &1_000_000i32.to_be_bytes());
        lie(&mut bytes, LAST_OFFSET_DELTA, &999_999i32.to_be_bytes());
        assert!(matches!(
            validate_produce_records(&bytes, 1 << 20),
            Err(BatchError::TooManyRecords { .. })
        ));
        assert!(validate_produce_records(&bytes, 7_000_000).is_ok());
    }

    #[test]
    fn a_producer_may_not_choose_the_base_offset() {
        let mut bytes = sample();
        bytes[..8].copy_from_slice(&5i64.to_be_bytes()); // not covered by the CRC
        assert_eq!(
            validate_produce_records(&bytes, 1 << 20).err(),
            Some(BatchError::NonZeroBaseOffset { base_offset: 5 })
        );
    }

    #[test]
    fn counting_records_walks_lengths_only() {
        let bytes = build_batch(
            1,
            &[(Some(b"k"), Some(b"v")), (None, None), (None, Some(b""))],
        );
        assert_eq!(count_records(&bytes[HEADER_BYTES..]), Some(3));
        assert_eq!(count_records(&[]), Some(0));
        assert_eq!(count_records(&[0x01]), None, "negative length");
        assert_eq!(count_records(&[0x80, 0x80, 0x80, 0x80, 0x80]), None);
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut bytes = sample();
        bytes[MAGIC] = 1;
        assert_eq!(
            validate_produce_records(&bytes, 1 << 20).err(),
            Some(BatchError::UnsupportedMagic { magic: 1 })
        );
    }
}
