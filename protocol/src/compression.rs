//! The record-batch codecs Kafka clients use, for the few places that must look
//! inside a batch (compaction, and re-encoding to a topic's `compression.type`).
//! Decompression is bounded: a batch that would inflate past the caller's limit is
//! an error, not an allocation.

use std::io::{Read, Write};

use crate::batch::Compression;

/// The 8-byte magic of the xerial snappy framing the Java client writes.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial chunk when we write snappy.
const XERIAL_CHUNK_BYTES: usize = 32 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressionError {
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
    #[error("{codec:?} data inflates past the limit of {limit} bytes")]
    TooLarge { codec: Compression, limit: usize },
}

fn corrupt(codec: Compression, e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    }
}

/// Reads a decoder to the end, failing once more than `limit` bytes come out.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if read > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Decompresses the records section of a batch.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => {
            if data.len() > limit {
                return Err(CompressionError::TooLarge { codec, limit });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(data), limit),
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), limit),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, limit)
        }
        Compression::Snappy => {
            if data.starts_with(XERIAL_MAGIC) {
                unsnappy_xerial(data, limit)
            } else {
                unsnappy_raw(data, limit)
            }
        }
    }
}

fn unsnappy_raw(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(data).map_err(|e| corrupt(codec, e))?;
    if len > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| corrupt(codec, e))
}

/// xerial framing: a 16-byte header, then chunks of (big-endian u32 length, raw
/// snappy block).
fn unsnappy_xerial(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or_else(|| corrupt(codec, "truncated xerial header"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some(len) = rest.get(..4) else {
            return Err(corrupt(codec, "truncated xerial chunk length"));
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let chunk = rest
            .get(4..4 + len)
            .ok_or_else(|| corrupt(codec, "truncated xerial chunk"))?;
        let block = unsnappy_raw(chunk, limit - out.len())?;
        out.extend_from_slice(&block);
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Compresses a records section the way Kafka clients expect to read it: LZ4 as
/// a Kafka LZ4 frame (64 KiB independent blocks, no block checksums), snappy in the
/// xerial framing, gzip and zstd as standard streams.
pub fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(data).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => zstd::bulk::compress(data, 3).expect("zstd accepts any input"),
        Compression::Snappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + XERIAL_HEADER_BYTES);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_CHUNK_BYTES) {
                let block = encoder
                    .compress_vec(chunk)
                    .expect("snappy accepts chunks of this size");
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in ALL {
            let packed = compress(codec, &data);
            assert_eq!(
                decompress(codec, &packed, 1 << 20).expect("inflate"),
                data,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let data = b"librdkafka writes raw snappy blocks".repeat(50);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("compress");
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).expect("inflate"),
            data
        );
    }

    #[test]
    fn bombs_and_garbage_are_errors() {
        let zeros = vec![0u8; 1 << 20];
        for codec in ALL {
            let packed = compress(codec, &zeros);
            assert_eq!(
                decompress(codec, &packed, 1000),
                Err(CompressionError::TooLarge { codec, limit: 1000 })
            );
        }
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(
                decompress(codec, b"definitely not compressed", 1000).is_err(),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn lz4_frames_use_64k_independent_blocks_without_checksums() {
        let packed = compress(Compression::Lz4, &[7u8; 1000]);
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18], "LZ4 frame magic");
        let flg = packed[4];
        assert_eq!(flg >> 6, 1, "version 01");
        assert_ne!(flg & 0x20, 0, "independent blocks");
        assert_eq!(flg & 0x10, 0, "no block checksums");
        assert_eq!(packed[5] >> 4 & 0x7, 4, "64 KiB maximum block size");
    }
}
