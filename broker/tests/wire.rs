//! The broker binary on a real socket, fed good and bad frames. A bad frame closes
//! its own connection and nothing else; invalid batches get Kafka error codes.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, ProduceResponse,
};
use sluice_protocol::batch::build_batch;

use common::*;

#[test]
fn garbage_closes_only_that_connection() {
    let broker = start_broker("");
    // A framed payload of random bytes: not a request.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let payload: Vec<u8> = (0..512)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame[4..6].copy_from_slice(&(-77i16).to_be_bytes()); // no such API key
    let mut s = broker.connect();
    s.write_all(&frame).expect("write");
    assert_closed(&mut s);
    assert_serving(&broker);
}

#[test]
fn oversized_frame_is_refused_before_its_body_arrives() {
    let broker = start_broker("socket_request_max_bytes = 1048576\n");
    let mut s = broker.connect();
    s.write_all(&(2_000_000i32).to_be_bytes()).expect("write");
    assert_closed(&mut s);
    let mut s = broker.connect();
    s.write_all(&(-5i32).to_be_bytes()).expect("write");
    assert_closed(&mut s);
    assert_serving(&broker);
}

#[test]
fn truncated_frame_and_unknown_api_key_close_the_connection() {
    let broker = start_broker("");
    let mut s = broker.connect();
    let frame = request_frame(ApiKey::ApiVersions, 3, 5, &ApiVersionsRequest::default());
    s.write_all(&frame[..frame.len() - 3]).expect("write");
    s.shutdown(Shutdown::Write).expect("half close");
    assert_closed(&mut s);

    let mut s = broker.connect();
    let mut frame = request_frame(ApiKey::ApiVersions, 3, 6, &ApiVersionsRequest::default());
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    s.write_all(&frame).expect("write");
    assert_closed(&mut s);
    assert_serving(&broker);
}

#[test]
fn api_versions_above_ours_gets_a_v0_answer_with_our_ranges() {
    let broker = start_broker("");
    let mut s = broker.connect();
    let mut frame = request_frame(ApiKey::ApiVersions, 3, 42, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&frame).expect("write");
    let (cid, r): (i32, ApiVersionsResponse) = response(&mut s, ApiKey::ApiVersions, 0);
    assert_eq!(cid, 42);
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    let av = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions listed");
    assert_eq!((av.min_version, av.max_version), (0, 4));
    let produce = r
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce listed");
    assert_eq!(produce.min_version, 0);
}

#[test]
fn corrupt_batches_and_missing_partitions_get_error_codes() {
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "orders");
    let mut s = broker.connect();

    let good = build_batch(1_700_000_000_000, &[(Some(b"k"), Some(b"v"))]);
    let mut corrupt = good.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 4);
    let mut doubled = good.clone();
    doubled.extend_from_slice(&good);

    let cases: [(&str, i32, Vec<u8>, i16); 5] = [
        ("orders", 0, corrupt, 2),             // CORRUPT_MESSAGE
        ("orders", 0, truncated, 2),           // CORRUPT_MESSAGE
        ("orders", 0, doubled, 87),            // INVALID_RECORD
        ("orders", 7, good.clone(), 3),        // UNKNOWN_TOPIC_OR_PARTITION
        ("no-such-topic", 0, good.clone(), 3), // UNKNOWN_TOPIC_OR_PARTITION
    ];
    for (i, (topic, partition, records, expected)) in cases.into_iter().enumerate() {
        let cid = 100 + i as i32;
        s.write_all(&request_frame(
            ApiKey::Produce,
            9,
            cid,
            &produce(topic, partition, records, -1),
        ))
        .expect("write");
        let (got_cid, r): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
        assert_eq!(got_cid, cid);
        let pr = &r.responses[0].partition_responses[0];
        assert_eq!(pr.error_code, expected, "case {i}: {topic}-{partition}");
    }
    // The same connection still works, and nothing bad was stored.
    s.write_all(&request_frame(
        ApiKey::Produce,
        9,
        200,
        &produce("orders", 0, good, -1),
    ))
    .expect("write");
    let (_, r): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!((pr.error_code, pr.base_offset), (0, 0));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "pipelined");
    let mut s = broker.connect();
    let mut burst = Vec::new();
    for i in 0..50 {
        let batch = build_batch(1, &[(None, Some(format!("v{i}").as_bytes()))]);
        burst.extend(request_frame(
            ApiKey::Produce,
            9,
            i,
            &produce("pipelined", 0, batch, -1),
        ));
        burst.extend(request_frame(
            ApiKey::ApiVersions,
            3,
            1000 + i,
            &ApiVersionsRequest::default(),
        ));
    }
    // acks=0 produces no response but must not disturb the order.
    let batch = build_batch(1, &[(None, Some(b"fire-and-forget"))]);
    burst.extend(request_frame(
        ApiKey::Produce,
        9,
        5000,
        &produce("pipelined", 0, batch, 0),
    ));
    burst.extend(request_frame(
        ApiKey::ApiVersions,
        3,
        5001,
        &ApiVersionsRequest::default(),
    ));
    s.write_all(&burst).expect("write");
    for i in 0..50 {
        let (cid, r): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
        assert_eq!(cid, i);
        assert_eq!(
            r.responses[0].partition_responses[0].base_offset,
            i64::from(i)
        );
        let (cid, _): (i32, ApiVersionsResponse) = response(&mut s, ApiKey::ApiVersions, 3);
        assert_eq!(cid, 1000 + i);
    }
    let (cid, _): (i32, ApiVersionsResponse) = response(&mut s, ApiKey::ApiVersions, 3);
    assert_eq!(cid, 5001);
}

#[test]
fn bad_config_file_fails_startup_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "num_partitions = 3\nretention_hours = 5\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.toml"), "{stderr}");
    assert!(stderr.contains("retention_hours"), "{stderr}");
}

#[test]
fn impossible_array_count_closes_the_connection_without_killing_the_broker() {
    let broker = start_broker("");
    let mut frame = Vec::new();
    frame.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    frame.extend_from_slice(&1i16.to_be_bytes()); // v1
    frame.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.extend_from_slice(&i32::MAX.to_be_bytes()); // "2 billion topics follow"
    frame.extend_from_slice(&[0, 1, b'x']);
    let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&frame);
    for _ in 0..3 {
        let mut s = broker.connect();
        s.write_all(&framed).expect("write");
        assert_closed(&mut s);
    }
    assert_serving(&broker);
}

#[test]
fn fetch_long_poll_is_woken_by_a_commit_and_never_passes_the_high_watermark() {
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "long-poll");
    let mut consumer = broker.connect();
    let started = Instant::now();
    consumer
        .write_all(&request_frame(
            ApiKey::Fetch,
            12,
            1,
            &fetch("long-poll", 0, 8000),
        ))
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    let mut producer = broker.connect();
    let batch = build_batch(1, &[(Some(b"k"), Some(b"woken"))]);
    producer
        .write_all(&request_frame(
            ApiKey::Produce,
            9,
            2,
            &produce("long-poll", 0, batch.clone(), -1),
        ))
        .expect("write");
    let (_, r): (i32, FetchResponse) = response(&mut consumer, ApiKey::Fetch, 12);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fetch waited for its timeout"
    );
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 1));
    let records = p.records.clone().expect("records present");
    assert_eq!(
        records.len(),
        batch.len(),
        "exactly the one committed batch"
    );
    assert_eq!(&records[8..12], &batch[8..12], "same length");
    assert_eq!(
        &records[16..],
        &batch[16..],
        "stored as sent, apart from offset and epoch"
    );

    // At the high watermark with nothing new: an empty (not null) record set after max_wait.
    let started = Instant::now();
    consumer
        .write_all(&request_frame(
            ApiKey::Fetch,
            12,
            3,
            &fetch("long-poll", 1, 300),
        ))
        .expect("write");
    let (_, r): (i32, FetchResponse) = response(&mut consumer, ApiKey::Fetch, 12);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map(Bytes::len),
        Some(0)
    );

    // Past the log end: OFFSET_OUT_OF_RANGE with the offsets filled in.
    consumer
        .write_all(&request_frame(
            ApiKey::Fetch,
            12,
            4,
            &fetch("long-poll", 9, 0),
        ))
        .expect("write");
    let (_, r): (i32, FetchResponse) = response(&mut consumer, ApiKey::Fetch, 12);
    let p = &r.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (1, 1, 0)
    );
}

#[test]
fn sigterm_answers_requests_already_read_then_exits_cleanly() {
    let mut broker = start_broker("");
    create_topic_via_metadata(&broker, "shutdown");
    let mut s = broker.connect();
    let batch = build_batch(1, &[(Some(b"k"), Some(b"before shutdown"))]);
    let mut burst = request_frame(ApiKey::Fetch, 12, 1, &fetch("shutdown", 0, 1500));
    burst.extend(request_frame(
        ApiKey::Produce,
        9,
        2,
        &produce("shutdown", 0, batch, -1),
    ));
    s.write_all(&burst).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    let status = Command::new("kill")
        .args(["-TERM", &broker.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // Both requests are answered, in order, before the connection closes.
    let (cid, f): (i32, FetchResponse) = response(&mut s, ApiKey::Fetch, 12);
    assert_eq!((cid, f.responses[0].partitions[0].error_code), (1, 0));
    let (cid, p): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
    assert_eq!(
        (cid, p.responses[0].partition_responses[0].error_code),
        (2, 0)
    );
    assert_closed(&mut s);
    let exit = broker.child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn undecodable_compressed_batches_and_oversized_batches_are_refused() {
    let broker = start_broker("");
    create_topic_with_configs(
        &broker,
        "reencoded",
        &[("compression.type", "gzip"), ("max.message.bytes", "2000")],
    );
    let mut s = broker.connect();
    // A batch that claims LZ4 but carries garbage, with a valid CRC.
    let mut bogus = build_batch(1, &[(Some(b"k"), Some(b"not really lz4"))]);
    bogus[22] |= 3;
    let crc = crc32c::crc32c(&bogus[21..]);
    bogus[17..21].copy_from_slice(&crc.to_be_bytes());
    let big_value = vec![b'x'; 5000];
    let big = build_batch(1, &[(Some(b"k"), Some(&big_value[..]))]);
    let good = build_batch(1, &[(Some(b"k"), Some(b"fine"))]);
    for (cid, records, expected) in [(1, bogus, 2), (2, big, 10), (3, good, 0)] {
        s.write_all(&request_frame(
            ApiKey::Produce,
            9,
            cid,
            &produce("reencoded", 0, records, 1),
        ))
        .expect("write");
        let (_, r): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            p.error_code, expected,
            "request {cid}: {:?}",
            p.error_message
        );
    }
}
