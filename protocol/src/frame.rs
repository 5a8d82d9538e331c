//! Length-prefixed framing: a big-endian `i32` size followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};

use crate::FrameError;

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Cuts one frame (without its length prefix) from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. The size is checked as soon as the
/// prefix is known, before any of the body is buffered, so a hostile length cannot
/// make the caller allocate more than `limit_bytes`.
pub fn split_frame(buf: &mut BytesMut, limit_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = peek_length(buf, limit_bytes)? else {
        return Ok(None);
    };
    if buf.len() < LENGTH_PREFIX_BYTES + len {
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The body length of the frame at the front of `buf`, once its prefix is complete.
pub fn peek_length(buf: &[u8], limit_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size < 0 {
        return Err(FrameError::NegativeLength { size });
    }
    let size = size as usize;
    if size > limit_bytes {
        return Err(FrameError::TooLarge {
            size,
            limit: limit_bytes,
        });
    }
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_whole_frame_then_splits() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert_eq!(split_frame(&mut buf, 10), Ok(None));
        buf.extend_from_slice(&[3, 0, 0]);
        assert_eq!(
            split_frame(&mut buf, 10),
            Ok(Some(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn rejects_oversized_and_negative_lengths_before_buffering() {
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert_eq!(
            split_frame(&mut buf, 255),
            Err(FrameError::TooLarge {
                size: 256,
                limit: 255
            })
        );
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            split_frame(&mut buf, 255),
            Err(FrameError::NegativeLength { size: -1 })
        );
    }
}
