//! What a hostile or careless client may send must never crash, hang or brick the
//! broker: lying batch headers, writes to internal topics, per-record rejections.

mod common;

use std::io::Write;

use kafka_protocol::messages::{ApiKey, ProduceResponse};
use sluice_protocol::batch::build_batch;

use common::*;

/// INVALID_RECORD, INVALID_TOPIC_EXCEPTION.
const INVALID_RECORD: i16 = 87;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// Rewrites header bytes of a built batch and recomputes its CRC.
fn lie(mut batch: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
    batch[at..at + value.len()].copy_from_slice(value);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn produce_one(
    s: &mut std::net::TcpStream,
    version: i16,
    topic: &str,
    records: Vec<u8>,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    s.write_all(&request_frame(
        ApiKey::Produce,
        version,
        1,
        &produce(topic, 0, records, 1),
    ))
    .expect("write");
    let (_, r): (i32, ProduceResponse) = response(s, ApiKey::Produce, version);
    r.responses[0].partition_responses[0].clone()
}

#[test]
fn batches_whose_headers_lie_are_invalid_and_the_broker_restarts_clean() {
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "lies");
    let mut s = broker.connect();
    let one = build_batch(1, &[(None, Some(b"v"))]);
    // recordCount and lastOffsetDelta claim 2^31 - 1 records; the batch holds one.
    let claims_max = lie(
        lie(one.clone(), 57, &i32::MAX.to_be_bytes()),
        23,
        &(i32::MAX - 1).to_be_bytes(),
    );
    for _ in 0..40 {
        let p = produce_one(&mut s, 9, "lies", claims_max.clone());
        assert_eq!(p.error_code, INVALID_RECORD, "{:?}", p.error_message);
    }
    // A producer never picks the base offset.
    let mut based = one.clone();
    based[..8].copy_from_slice(&1000i64.to_be_bytes());
    let p = produce_one(&mut s, 9, "lies", based);
    assert_eq!(p.error_code, INVALID_RECORD);
    assert!(p
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("baseOffset")));
    // A compressed batch claiming more records than its inflated bytes can hold.
    let lz4_claim = lie(
        lie(
            lie(one.clone(), 21, &3i16.to_be_bytes()),
            57,
            &i32::MAX.to_be_bytes(),
        ),
        23,
        &(i32::MAX - 1).to_be_bytes(),
    );
    assert_eq!(
        produce_one(&mut s, 9, "lies", lz4_claim).error_code,
        INVALID_RECORD
    );

    let p = produce_one(&mut s, 9, "lies", one.clone());
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, 0),
        "offsets did not jump"
    );
    let dir = broker.kill();
    let broker = start_broker_in(dir, "");
    let mut s = broker.connect();
    let p = produce_one(&mut s, 9, "lies", one);
    assert_eq!((p.error_code, p.base_offset), (0, 1));
}

#[test]
fn clients_cannot_write_internal_topics() {
    let broker = start_broker("");
    let mut s = broker.connect();
    let batch = build_batch(1, &[(Some(b"k"), Some(b"v"))]);
    let p = produce_one(&mut s, 9, "__consumer_offsets", batch);
    assert_eq!(
        p.error_code, INVALID_TOPIC_EXCEPTION,
        "{:?}",
        p.error_message
    );
    assert_serving(&broker);
}

#[test]
fn keyless_records_on_a_compacted_topic_are_named_per_record() {
    let broker = start_broker("");
    create_topic_with_configs(&broker, "compacted", &[("cleanup.policy", "compact")]);
    let mut s = broker.connect();
    let mixed = build_batch(
        1,
        &[
            (Some(b"k"), Some(b"a")),
            (None, Some(b"b")),
            (Some(b"k"), Some(b"c")),
            (None, Some(b"d")),
        ],
    );
    let p = produce_one(&mut s, 9, "compacted", mixed.clone());
    assert_eq!(p.error_code, INVALID_RECORD);
    let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3]);
    assert!(p.record_errors.iter().all(|e| e
        .batch_index_error_message
        .as_deref()
        .is_some_and(|m| m.contains("without key"))));
    assert!(p
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("2 record errors")));
    // Below v8 the field does not exist: the partition error alone.
    let p = produce_one(&mut s, 7, "compacted", mixed);
    assert_eq!((p.error_code, p.record_errors.len()), (INVALID_RECORD, 0));
}
