//! Produce v0-v2. These versions carry magic 0/1 message sets, which Sluice does not
//! store; the versions are advertised anyway because old librdkafka disables
//! compression against a broker without Produce v0. Each partition is answered with
//! UNSUPPORTED_VERSION so the client reports a clear error.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::LENGTH_PREFIX_BYTES;
use crate::CodecError;

const UNSUPPORTED_VERSION: i16 = 35;

fn malformed(version: i16, reason: &str) -> CodecError {
    CodecError::Malformed {
        api: "Produce",
        version,
        reason: reason.to_string(),
    }
}

fn take_string(body: &mut Bytes, version: i16) -> Result<Bytes, CodecError> {
    if body.remaining() < 2 {
        return Err(malformed(version, "truncated string"));
    }
    let len = body.get_i16();
    if len < 0 || body.remaining() < len as usize {
        return Err(malformed(version, "bad string length"));
    }
    Ok(body.split_to(len as usize))
}

fn take_i32(body: &mut Bytes, version: i16) -> Result<i32, CodecError> {
    if body.remaining() < 4 {
        return Err(malformed(version, "truncated int32"));
    }
    Ok(body.get_i32())
}

/// Whether a Produce v0-v2 request asked for no response (acks = 0).
pub fn produce_acks(body: &[u8]) -> Option<i16> {
    body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

/// Answers a Produce v0-v2 request body (after the v1 request header) with
/// UNSUPPORTED_VERSION for every partition it names. Returns the whole frame.
pub fn unsupported_produce_response(
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Result<Bytes, CodecError> {
    if body.remaining() < 6 {
        return Err(malformed(version, "truncated header"));
    }
    let _acks = body.get_i16();
    let _timeout_ms = body.get_i32();
    let topic_count = take_i32(&mut body, version)?;
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(correlation_id);
    out.put_i32(topic_count.max(0));
    for _ in 0..topic_count.max(0) {
        let name = take_string(&mut body, version)?;
        out.put_i16(name.len() as i16);
        out.put_slice(&name);
        let partition_count = take_i32(&mut body, version)?;
        out.put_i32(partition_count.max(0));
        for _ in 0..partition_count.max(0) {
            let partition = take_i32(&mut body, version)?;
            let set_len = take_i32(&mut body, version)?;
            if set_len < 0 || body.remaining() < set_len as usize {
                return Err(malformed(version, "bad message set length"));
            }
            body.advance(set_len as usize);
            out.put_i32(partition);
            out.put_i16(UNSUPPORTED_VERSION);
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    let size = (out.len() - LENGTH_PREFIX_BYTES) as i32;
    out[..LENGTH_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_partition_with_unsupported_version() {
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(1);
        body.put_i16(1);
        body.put_slice(b"t");
        body.put_i32(1);
        body.put_i32(3);
        body.put_i32(2);
        body.put_slice(&[9, 9]);
        let frame = unsupported_produce_response(2, 5, body.freeze()).expect("encodes");
        let mut f = frame.clone();
        assert_eq!(f.get_i32() as usize, frame.len() - 4);
        assert_eq!(f.get_i32(), 5);
        assert_eq!(f.get_i32(), 1);
        assert_eq!(f.get_i16(), 1);
        f.advance(1);
        assert_eq!(f.get_i32(), 1);
        assert_eq!(f.get_i32(), 3);
        assert_eq!(f.get_i16(), UNSUPPORTED_VERSION);
    }

    #[test]
    fn truncated_body_is_malformed() {
        assert!(unsupported_produce_response(0, 1, Bytes::from_static(&[0, 1, 0])).is_err());
    }
}
