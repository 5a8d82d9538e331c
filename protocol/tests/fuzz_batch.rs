//! Record-batch validation on hostile batches: header fields rewritten with their
//! CRC fixed, as a producer that lies would send them. Validation never panics,
//! and a batch it accepts is one whose header matches its bytes. proptest prints
//! the failing input and keeps its seed; set PROPTEST_CASES for a longer run.

use proptest::prelude::*;
use sluice_protocol::alloc::GuardedAlloc;
use sluice_protocol::batch::{build_batch, count_records, validate_produce_records, HEADER_BYTES};
use sluice_protocol::records::{keyless_records, parse_records, records_data};

#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

const INFLATE_LIMIT: usize = 1 << 20;

fn fix_crc(b: &mut [u8]) {
    if b.len() >= HEADER_BYTES {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// A header field (offset, width) a producer may lie about.
fn field() -> impl Strategy<Value = (usize, usize)> {
    prop::sample::select(vec![
        (0, 8),  // baseOffset
        (8, 4),  // batchLength
        (16, 1), // magic
        (21, 2), // attributes (codec, control, transactional)
        (23, 4), // lastOffsetDelta
        (27, 8), // baseTimestamp
        (35, 8), // maxTimestamp
        (43, 8), // producerId
        (51, 2), // producerEpoch
        (53, 4), // baseSequence
        (57, 4), // recordCount
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn lying_headers_are_refused_or_consistent(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8),
        lies in prop::collection::vec((field(), any::<u64>()), 1..4),
        body_flips in prop::collection::vec((any::<usize>(), 1u8..=255), 0..3),
    ) {
        let records: Vec<_> = values.iter().map(|v| (Some(&v[..1.min(v.len())]), Some(&v[..]))).collect();
        let mut batch = build_batch(1_700_000_000_000, &records);
        for ((at, width), value) in &lies {
            let bytes = value.to_be_bytes();
            batch[*at..at + width].copy_from_slice(&bytes[8 - width..]);
        }
        for (at, mask) in &body_flips {
            let len = batch.len() - HEADER_BYTES;
            if len > 0 {
                batch[HEADER_BYTES + at % len] ^= mask;
            }
        }
        fix_crc(&mut batch);
        if let Ok(view) = validate_produce_records(&batch, INFLATE_LIMIT) {
            prop_assert_eq!(view.base_offset().0, 0);
            prop_assert!(view.record_count() > 0);
            prop_assert_eq!(i64::from(view.last_offset_delta()), i64::from(view.record_count()) - 1);
            if view.compression().ok() == Some(sluice_protocol::batch::Compression::None) {
                prop_assert_eq!(count_records(&batch[HEADER_BYTES..]), Some(view.record_count() as usize));
            } else {
                prop_assert!(view.record_count() as usize <= INFLATE_LIMIT / 7);
            }
            // Where records are decoded anyway, a wrong count is an error, never a panic.
            if let Ok(data) = records_data(&view, INFLATE_LIMIT) {
                let _ = parse_records(&data, view.record_count());
            }
            let _ = keyless_records(&view, INFLATE_LIMIT);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_validation(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = bytes;
        fix_crc(&mut bytes);
        let _ = validate_produce_records(&bytes, INFLATE_LIMIT);
        let _ = count_records(&bytes);
    }
}
