//! Start-up never aborts because of one partition, and topic directories are
//! never wiped by a create.

mod common;

use std::io::Write;

use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
use sluice_protocol::batch::build_batch;

use common::*;

const KAFKA_STORAGE_ERROR: i16 = 56;

fn produce_code(broker: &Broker, topic: &str) -> (i16, i64) {
    let mut s = broker.connect();
    let batch = build_batch(1, &[(Some(b"k"), Some(b"v"))]);
    s.write_all(&request_frame(
        ApiKey::Produce,
        9,
        1,
        &produce(topic, 0, batch, -1),
    ))
    .expect("write");
    let (_, r): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_code(broker: &Broker, topic: &str) -> (i16, usize) {
    let mut s = broker.connect();
    s.write_all(&request_frame(ApiKey::Fetch, 12, 2, &fetch(topic, 0, 0)))
        .expect("write");
    let (_, r): (i32, FetchResponse) = response(&mut s, ApiKey::Fetch, 12);
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.records.as_ref().map_or(0, |b| b.len()))
}

#[test]
fn a_damaged_partition_goes_offline_and_the_rest_serve() {
    let broker = start_broker("");
    for topic in ["healthy", "damaged"] {
        create_topic_via_metadata(&broker, topic);
        for _ in 0..3 {
            assert_eq!(produce_code(&broker, topic).0, 0);
        }
    }
    let dir = broker.kill();
    // Damage the first of three batches: valid batches follow it, so this is
    // corruption in the middle of the log, not a torn tail.
    let segment = dir.path().join("data/damaged-0/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[40] ^= 0xff;
    std::fs::write(&segment, bytes).expect("damage");

    let broker = start_broker_in(dir, "");
    assert_eq!(produce_code(&broker, "healthy"), (0, 3));
    let (code, bytes) = fetch_code(&broker, "healthy");
    assert!(code == 0 && bytes > 0);
    assert_eq!(produce_code(&broker, "damaged").0, KAFKA_STORAGE_ERROR);
    assert_eq!(fetch_code(&broker, "damaged").0, KAFKA_STORAGE_ERROR);
    let log = broker.log();
    assert!(
        log.contains("damaged-0")
            && log.contains("00000000000000000000.log")
            && log.contains("at byte 0"),
        "the log names the partition, file and position:\n{log}"
    );
    // A clean restart keeps serving the healthy partition and keeps the damage.
    let dir = broker.kill();
    let broker = start_broker_in(dir, "");
    assert_eq!(produce_code(&broker, "healthy"), (0, 4));
    assert_eq!(produce_code(&broker, "damaged").0, KAFKA_STORAGE_ERROR);
}

#[test]
fn creating_a_topic_never_wipes_an_existing_directory() {
    let broker = start_broker("");
    let orphan = broker.dir.path().join("data/orphan-0");
    std::fs::create_dir_all(&orphan).expect("dir");
    std::fs::write(orphan.join("precious"), b"data").expect("file");
    create_topic_with_configs_expecting(&broker, "orphan", KAFKA_STORAGE_ERROR);
    assert_eq!(
        std::fs::read(orphan.join("precious")).expect("still there"),
        b"data"
    );
    assert_serving(&broker);
}

#[test]
fn a_deleted_topic_can_be_created_again_empty() {
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "again");
    assert_eq!(produce_code(&broker, "again"), (0, 0));
    delete_topic(&broker, "again");
    create_topic_via_metadata(&broker, "again");
    assert_eq!(produce_code(&broker, "again"), (0, 0), "a new, empty log");
}
