//! # sluice-protocol
//!
//! The Kafka wire protocol as Sluice speaks it. No I/O and no async runtime here:
//! every function takes bytes and returns bytes or a typed error.
//!
//! ```text
//!  socket bytes ──► frame::split_frame ──► codec::decode_request ──► Request { header, body }
//!                                                                         │ (broker handlers)
//!  socket bytes ◄── codec::encode_response ◄──────────────────────── ResponseKind
//!
//!  Produce records ──► batch::BatchView::parse (header + CRC32C, records untouched)
//!                   ──► batch::assign_offsets (patch baseOffset + leader epoch in place)
//! ```
//!
//! - [`frame`]: length-prefixed frames with a bounded size.
//! - [`codec`]: request header + body decoding, response encoding with the right
//!   header version (ApiVersions always answers with a v0 header), KIP-511 fallback.
//! - [`batch`]: the RecordBatch v2 header view and its validation.
//! - [`compression`]: gzip, snappy (raw and xerial), LZ4 (Kafka frames) and zstd.
//! - [`records`]: the records inside a batch, for the few paths that need them.
//! - [`legacy`]: answers for Produce v0-v2, which we advertise but cannot store.
//! - [`types`]: newtypes that keep offsets, epochs and ids apart.
//! - [`alloc`]: the global allocator that keeps impossible wire counts from
//!   aborting the process.

pub mod alloc;
pub mod batch;
pub mod codec;
pub mod compression;
pub mod error;
pub mod frame;
pub mod legacy;
pub mod records;
pub mod types;

pub use error::{BatchError, CodecError, FrameError};
pub use kafka_protocol;

#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc::GuardedAlloc = alloc::GuardedAlloc;
