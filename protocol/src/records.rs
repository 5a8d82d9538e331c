//! The records inside a v2 batch. The produce and fetch paths never come here;
//! compaction and re-encoding do.
//!
//! ```text
//! record: length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//!         | keyLength varint | key | valueLength varint | value | headers
//! ```

use crate::batch::{BatchView, Compression, HEADER_BYTES};
use crate::compression::{self, CompressionError};
use crate::types::Offset;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error("malformed record {index}: {reason}")]
    Malformed { index: usize, reason: &'static str },
    #[error("batch declares {declared} records, holds {found}")]
    Count { declared: i32, found: usize },
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// One record, borrowed from the decompressed records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record, length prefix included: copy it to keep the record.
    pub raw: &'a [u8],
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The headers section after its count (see [`RecordView::headers`]).
    headers_raw: &'a [u8],
    header_count: i32,
}

impl<'a> RecordView<'a> {
    /// The record's headers, in order: (key, value). Checked when parsed.
    pub fn headers(&self) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        let mut c = Cursor {
            bytes: self.headers_raw,
            at: 0,
        };
        (0..self.header_count.max(0))
            .map_while(|_| {
                let key = c.nullable()?.unwrap_or_default();
                let value = c.nullable()?;
                Some((key, value))
            })
            .collect()
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn varlong(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            if shift == 63 && b > 1 {
                return None;
            }
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        self.varlong().and_then(|v| i32::try_from(v).ok())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn nullable(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            n if n >= 0 => self.take(n as usize).map(Some),
            _ => None,
        }
    }
}

/// Parses `count` records from a decompressed records section.
pub fn parse_records(data: &[u8], count: i32) -> Result<Vec<RecordView<'_>>, RecordsError> {
    let mut out = Vec::with_capacity((count.max(0) as usize).min(data.len()));
    let mut c = Cursor { bytes: data, at: 0 };
    while c.at < data.len() {
        let index = out.len();
        let bad = |reason| RecordsError::Malformed { index, reason };
        let start = c.at;
        let len = c.varint().ok_or(bad("bad length"))?;
        if len < 0 {
            return Err(bad("negative length"));
        }
        let body = c.take(len as usize).ok_or(bad("truncated"))?;
        let raw = &data[start..c.at];
        let mut r = Cursor { bytes: body, at: 0 };
        let _attributes = r.take(1).ok_or(bad("no attributes"))?;
        let timestamp_delta = r.varlong().ok_or(bad("bad timestamp delta"))?;
        let offset_delta = r.varint().ok_or(bad("bad offset delta"))?;
        let key = r.nullable().ok_or(bad("bad key"))?;
        let value = r.nullable().ok_or(bad("bad value"))?;
        let headers = r.varint().ok_or(bad("bad header count"))?;
        let headers_at = r.at;
        for _ in 0..headers.max(0) {
            r.nullable().ok_or(bad("bad header key"))?;
            r.nullable().ok_or(bad("bad header value"))?;
        }
        if r.at != body.len() {
            return Err(bad("length does not match the fields"));
        }
        out.push(RecordView {
            raw,
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers_raw: &body[headers_at..],
            header_count: headers,
        });
    }
    if out.len() != count.max(0) as usize {
        return Err(RecordsError::Count {
            declared: count,
            found: out.len(),
        });
    }
    Ok(out)
}

/// The control type and value of a control batch's first record (its key is
/// Kafka's control key: version, then type); `None` for a batch that is not a
/// control batch or whose first record has no such key.
pub fn control_record(
    batch: &BatchView<'_>,
    limit: usize,
) -> Result<Option<(i16, Vec<u8>)>, RecordsError> {
    if !batch.is_control() || batch.record_count() < 1 {
        return Ok(None);
    }
    let data = records_data(batch, limit)?;
    let records = parse_records(&data, batch.record_count())?;
    let Some(first) = records.first() else {
        return Ok(None);
    };
    let Some(key) = first.key.filter(|k| k.len() == 4) else {
        return Ok(None);
    };
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    Ok(Some((
        control_type,
        first.value.unwrap_or_default().to_vec(),
    )))
}

/// The decompressed records section of a batch, at most `limit` bytes.
pub fn records_data(batch: &BatchView<'_>, limit: usize) -> Result<Vec<u8>, RecordsError> {
    let codec = batch.compression().map_err(|_| RecordsError::Malformed {
        index: 0,
        reason: "unknown compression codec",
    })?;
    Ok(compression::decompress(
        codec,
        &batch.bytes()[HEADER_BYTES..],
        limit,
    )?)
}

/// Builds a batch that keeps `kept` (records of `original`, in order) and
/// everything else of its header: base offset, lastOffsetDelta, producer id,
/// epoch and base sequence stay, so offsets and producer state are unchanged.
/// Records are compressed with the original codec and the CRC is recomputed.
pub fn rebuild_batch(original: &BatchView<'_>, kept: &[RecordView<'_>]) -> Vec<u8> {
    let codec = original.compression().unwrap_or(Compression::None);
    let mut plain = Vec::with_capacity(kept.iter().map(|r| r.raw.len()).sum());
    for r in kept {
        plain.extend_from_slice(r.raw);
    }
    let body = compression::compress(codec, &plain);
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&original.bytes()[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - crate::batch::LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    if !original.is_log_append_time() {
        let max_ts = kept
            .iter()
            .map(|r| original.base_timestamp() + r.timestamp_delta)
            .max()
            .unwrap_or(original.max_timestamp());
        out[35..43].copy_from_slice(&max_ts.to_be_bytes());
    }
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The header of `original` with no records: same base offset, lastOffsetDelta,
/// timestamps and producer fields, uncompressed, CRC recomputed. Compaction keeps
/// such a batch where it removes every record, so the sequence of batches (Raft
/// entries) never changes; clients skip empty batches.
pub fn empty_batch(original: &BatchView<'_>) -> Vec<u8> {
    let mut out = original.bytes()[..HEADER_BYTES].to_vec();
    let batch_length = (HEADER_BYTES - crate::batch::LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = original.attributes() & !0x07;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Re-encodes a batch's records with `target` (the topic's `compression.type`),
/// keeping every header field but the codec bits; the CRC is recomputed. The
/// records are parsed first, so a batch that does not decompress or parse is an
/// error.
pub fn reencode_batch(
    original: &BatchView<'_>,
    target: Compression,
    limit: usize,
) -> Result<Vec<u8>, RecordsError> {
    let data = records_data(original, limit)?;
    parse_records(&data, original.record_count())?;
    let body = compression::compress(target, &data);
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&original.bytes()[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - crate::batch::LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let codec_bits: i16 = match target {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let attributes = (original.attributes() & !0x07) | codec_bits;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// The first record of `batch` whose timestamp is at least `timestamp_ms` and whose
/// offset is at least `min_offset`: its (offset, timestamp). A LogAppendTime batch
/// stamps every record with its max timestamp. `Ok(None)` when no record qualifies.
pub fn first_record_at_or_after(
    batch: &BatchView<'_>,
    timestamp_ms: i64,
    min_offset: Offset,
    limit: usize,
) -> Result<Option<(Offset, i64)>, RecordsError> {
    let data = records_data(batch, limit)?;
    let base = batch.base_offset();
    Ok(parse_records(&data, batch.record_count())?
        .iter()
        .map(|r| {
            let offset = Offset(base.0 + i64::from(r.offset_delta));
            let ts = if batch.is_log_append_time() {
                batch.max_timestamp()
            } else {
                batch.base_timestamp().saturating_add(r.timestamp_delta)
            };
            (offset, ts)
        })
        .find(|(offset, ts)| *ts >= timestamp_ms && *offset >= min_offset))
}

/// The indexes (within the batch) of the records that have no key; compacted
/// topics refuse them.
pub fn keyless_records(batch: &BatchView<'_>, limit: usize) -> Result<Vec<usize>, RecordsError> {
    let data = records_data(batch, limit)?;
    Ok(parse_records(&data, batch.record_count())?
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{
        build_batch, build_control_batch, build_records_batch, build_timed_batch, NewRecord,
    };

    #[test]
    fn control_batches_carry_their_type_and_value() {
        let bytes = build_control_batch(5, 101, b"membership");
        let view = BatchView::parse(&bytes).expect("parse");
        view.verify_crc().expect("crc");
        assert!(view.is_control());
        assert_eq!(
            control_record(&view, 1 << 20).expect("decode"),
            Some((101, b"membership".to_vec()))
        );
        let plain = build_batch(5, &[(Some(&b"abcd"[..]), None)]);
        let view = BatchView::parse(&plain).expect("parse");
        assert_eq!(control_record(&view, 1 << 20).expect("decode"), None);
    }

    #[test]
    fn headers_round_trip_with_null_values() {
        let headers: &[(&[u8], Option<&[u8]>)] =
            &[(b"dlq.original.topic", Some(b"orders")), (b"empty", None)];
        let bytes = build_records_batch(&[
            NewRecord {
                timestamp: 7,
                key: Some(b"k"),
                value: Some(b"v"),
                headers,
            },
            NewRecord {
                timestamp: 9,
                key: None,
                value: None,
                headers: &[],
            },
        ]);
        let view = BatchView::parse(&bytes).expect("batch");
        view.verify_crc().expect("crc");
        let data = records_data(&view, 1 << 20).expect("data");
        let records = parse_records(&data, view.record_count()).expect("records");
        assert_eq!(records[0].headers(), headers.to_vec());
        assert_eq!(records[0].timestamp_delta, 0);
        assert_eq!(records[1].timestamp_delta, 2);
        assert!(records[1].headers().is_empty());
    }

    #[test]
    fn parses_records_and_rebuilds_a_subset() {
        let bytes = build_batch(
            1000,
            &[
                (Some(b"a"), Some(b"1")),
                (Some(b"b"), None),
                (None, Some(b"3")),
            ],
        );
        let view = BatchView::parse(&bytes).expect("batch");
        let data = records_data(&view, 1 << 20).expect("data");
        let records = parse_records(&data, view.record_count()).expect("records");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].key, Some(&b"a"[..]));
        assert_eq!(records[1].value, None, "tombstone");
        assert_eq!(records[2].offset_delta, 2);

        let rebuilt = rebuild_batch(&view, &[records[0], records[2]]);
        let v = BatchView::parse(&rebuilt).expect("rebuilt batch");
        v.verify_crc().expect("CRC recomputed");
        assert_eq!(v.record_count(), 2);
        assert_eq!(v.last_offset_delta(), 2, "lastOffsetDelta kept");
        let data = records_data(&v, 1 << 20).expect("data");
        let kept = parse_records(&data, 2).expect("records");
        assert_eq!(kept[1].offset_delta, 2, "offsets of kept records unchanged");
    }

    #[test]
    fn reencoding_changes_only_the_codec() {
        let bytes = build_batch(7, &[(Some(b"k"), Some(b"v")), (Some(b"k2"), None)]);
        let view = BatchView::parse(&bytes).expect("batch");
        assert!(keyless_records(&view, 1 << 20).expect("parse").is_empty());
        let lz4 = reencode_batch(&view, Compression::Lz4, 1 << 20).expect("re-encode");
        let v = BatchView::parse(&lz4).expect("batch");
        v.verify_crc().expect("crc");
        assert_eq!(v.compression(), Ok(Compression::Lz4));
        assert_eq!((v.record_count(), v.last_offset_delta()), (2, 1));
        let back = reencode_batch(&v, Compression::None, 1 << 20).expect("back");
        assert_eq!(back, bytes, "round trip restores the original batch");
        let keyless = build_batch(7, &[(Some(b"k"), None), (None, Some(b"v")), (None, None)]);
        let view = BatchView::parse(&keyless).expect("batch");
        assert_eq!(keyless_records(&view, 1 << 20).expect("parse"), vec![1, 2]);
    }

    #[test]
    fn the_first_record_at_a_timestamp_is_found_inside_its_batch() {
        let bytes = build_timed_batch(&[
            (1234, (None, Some(b"a"))),
            (999_999_999_999, (None, Some(b"b"))),
        ]);
        let view = BatchView::parse(&bytes).expect("batch");
        let find =
            |ts, min| first_record_at_or_after(&view, ts, Offset(min), 1 << 20).expect("parse");
        assert_eq!(find(999_999_999_999, 0), Some((Offset(1), 999_999_999_999)));
        assert_eq!(find(1234, 0), Some((Offset(0), 1234)));
        assert_eq!(find(1234, 1), Some((Offset(1), 999_999_999_999)));
        assert_eq!(find(1_000_000_000_000, 0), None);
    }

    #[test]
    fn empty_batches_keep_their_offsets() {
        let bytes = build_batch(7, &[(Some(b"k"), Some(b"v")), (Some(b"k"), None)]);
        let view = BatchView::parse(&bytes).expect("batch");
        let empty = empty_batch(&view);
        let v = BatchView::parse(&empty).expect("empty batch");
        v.verify_crc().expect("crc");
        assert_eq!((v.record_count(), v.last_offset_delta()), (0, 1));
        assert!(parse_records(&records_data(&v, 100).expect("data"), 0)
            .expect("records")
            .is_empty());
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(parse_records(&[0x7f], 1).is_err());
        assert!(parse_records(&[2, 0], 1).is_err());
        assert!(matches!(
            parse_records(&[], 1),
            Err(RecordsError::Count { .. })
        ));
    }
}
