//! Connections: requests take effect in order, hostile clients cannot make the
//! broker hold unbounded memory or starve others, connection limits and idle
//! connections.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, GroupId,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::batch::build_batch;

use common::*;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[test]
fn a_fetch_of_offsets_after_a_commit_on_one_connection_sees_the_commit() {
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "ordered");
    let mut s = broker.connect();
    for round in 1..=30i64 {
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("ordered-group")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("ordered"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(round)])]);
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("ordered-group")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(name("ordered"))
                .with_partition_indexes(vec![0])]));
        // Both requests in one write: the fetch is read while the commit is stored.
        let mut frames = request_frame(ApiKey::OffsetCommit, 7, 1, &commit);
        frames.extend(request_frame(ApiKey::OffsetFetch, 7, 2, &fetch));
        s.write_all(&frames).expect("write");
        let (_, c): (i32, OffsetCommitResponse) = response(&mut s, ApiKey::OffsetCommit, 7);
        assert_eq!(c.topics[0].partitions[0].error_code, 0);
        let (_, f): (i32, OffsetFetchResponse) = response(&mut s, ApiKey::OffsetFetch, 7);
        assert_eq!(
            f.topics[0].partitions[0].committed_offset, round,
            "round {round}: the fetch saw an older commit"
        );
    }
}

#[test]
fn a_read_after_pipelined_produces_on_one_connection_sees_them() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let broker = start_broker("");
    create_topic_via_metadata(&broker, "pipelined");
    let mut s = broker.connect();
    for round in 1..=20i64 {
        // Five pipelined produces (acks=all) and a ListOffsets for the latest
        // offset, in one write: the ListOffsets is read while they are appended.
        let mut frames = Vec::new();
        for i in 0..5 {
            let batch = build_batch(1, &[(None, Some(&b"order-placed"[..]))]);
            let request = produce("pipelined", 0, batch, -1);
            frames.extend(request_frame(ApiKey::Produce, 9, 10 + i, &request));
        }
        let list = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("pipelined"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        frames.extend(request_frame(ApiKey::ListOffsets, 7, 99, &list));
        s.write_all(&frames).expect("write");
        let mut offsets = Vec::new();
        for _ in 0..5 {
            let (_, p): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
            let part = &p.responses[0].partition_responses[0];
            assert_eq!(part.error_code, 0);
            offsets.push(part.base_offset);
        }
        let first = (round - 1) * 5;
        assert_eq!(
            offsets,
            (first..first + 5).collect::<Vec<_>>(),
            "in request order"
        );
        let (_, l): (i32, ListOffsetsResponse) = response(&mut s, ApiKey::ListOffsets, 7);
        assert_eq!(
            l.topics[0].partitions[0].offset,
            round * 5,
            "round {round}: the ListOffsets missed a produce sent before it"
        );
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

fn big_fetch(topic: &str) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(20 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(20 << 20)])])
}

fn served_within(broker: &Broker, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut s = broker.connect();
    s.write_all(&request_frame(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    ))
    .expect("write");
    let (_, r): (i32, ApiVersionsResponse) = response(&mut s, ApiKey::ApiVersions, 3);
    assert_eq!(r.error_code, 0);
    let took = start.elapsed();
    assert!(took < limit, "a new client waited {took:?}");
    took
}

/// 20 connections pipeline 200 fetches of 20 MiB each for a 20 MB partition and
/// never read their responses. The broker holds at most its response budget
/// (here 128 MiB broker-wide, 32 MiB per connection) and keeps serving others.
#[test]
fn fetchers_that_never_read_cannot_exhaust_memory_or_starve_others() {
    const BUDGET: u64 = 128 << 20;
    let broker = start_broker(&format!(
        "queued_max_response_bytes = {BUDGET}\nconnection_response_bytes_max = {}\n",
        32 << 20
    ));
    create_topic_via_metadata(&broker, "big");
    let mut s = broker.connect();
    let value = vec![b'x'; 100_000];
    for i in 0..200 {
        let batch = build_batch(1, &[(None, Some(&value[..]))]);
        s.write_all(&request_frame(
            ApiKey::Produce,
            9,
            i,
            &produce("big", 0, batch, 1),
        ))
        .expect("write");
        let (_, r): (i32, ProduceResponse) = response(&mut s, ApiKey::Produce, 9);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let baseline = rss_bytes(broker.child.id());
    let frame = request_frame(ApiKey::Fetch, 4, 7, &big_fetch("big"));
    let mut hostile: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        let mut c = broker.connect();
        c.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut all = Vec::with_capacity(frame.len() * 200);
        for _ in 0..200 {
            all.extend_from_slice(&frame);
        }
        // The broker stops reading a connection that is far ahead: a write that
        // times out is the broker pushing back, as it should.
        let _ = c.write_all(&all);
        hostile.push(c);
    }
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        served_within(&broker, Duration::from_secs(1));
        peak = peak.max(rss_bytes(broker.child.id()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let bound = baseline + 2 * BUDGET + (64 << 20);
    eprintln!(
        "peak RSS {} MiB (baseline {} MiB, bound {} MiB)",
        peak >> 20,
        baseline >> 20,
        bound >> 20
    );
    assert!(
        peak < bound,
        "peak RSS {} MiB over the bound {} MiB (baseline {} MiB)",
        peak >> 20,
        bound >> 20,
        baseline >> 20
    );
    drop(hostile);
    // Their work stops with them: a fetch by someone else is answered at once.
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let mut s = broker.connect();
    s.write_all(&request_frame(ApiKey::Fetch, 12, 9, &fetch("big", 0, 0)))
        .expect("write");
    let (_, r): (i32, kafka_protocol::messages::FetchResponse) =
        response(&mut s, ApiKey::Fetch, 12);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

fn closed_by_broker(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn connections_beyond_the_limits_are_closed_at_accept() {
    let broker = start_broker("max_connections_per_ip = 3\n");
    let open: Vec<TcpStream> = (0..3).map(|_| broker.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fourth = broker.connect();
    assert!(
        closed_by_broker(&mut fourth),
        "the fourth connection was served"
    );
    drop(open);
    std::thread::sleep(Duration::from_millis(200));
    served_within(&broker, Duration::from_secs(1));
}

#[test]
fn idle_connections_are_closed() {
    let broker = start_broker("connections_max_idle_ms = 300\n");
    let mut idle = broker.connect();
    let start = Instant::now();
    assert!(closed_by_broker(&mut idle));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // An active connection is not idle.
    let mut busy = broker.connect();
    for i in 0..6 {
        busy.write_all(&request_frame(
            ApiKey::ApiVersions,
            3,
            i,
            &ApiVersionsRequest::default(),
        ))
        .expect("write");
        let _: (i32, ApiVersionsResponse) = response(&mut busy, ApiKey::ApiVersions, 3);
        std::thread::sleep(Duration::from_millis(150));
    }
}
