//! Mutated frames never panic the decoder, the batch validator or the framer.
//! proptest prints the failing input and persists its seed for replay.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use sluice_protocol::alloc::GuardedAlloc;
use sluice_protocol::batch::{build_batch, validate_produce_records, Batches};
use sluice_protocol::codec::{decode_request, ApiRange};
use sluice_protocol::frame::split_frame;

// The broker runs with this allocator; without it an impossible array count in a
// frame aborts the process inside the kafka-protocol decoders.
#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

const SUPPORTED: &[ApiRange] = &[
    ApiRange {
        api_key: ApiKey::Produce,
        min: 0,
        max: 12,
    },
    ApiRange {
        api_key: ApiKey::Fetch,
        min: 4,
        max: 12,
    },
    ApiRange {
        api_key: ApiKey::Metadata,
        min: 0,
        max: 12,
    },
    ApiRange {
        api_key: ApiKey::ApiVersions,
        min: 0,
        max: 4,
    },
];

fn encode(key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(3)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.to_vec()
}

fn seeds() -> Vec<Vec<u8>> {
    let topic = TopicName(StrBytes::from_static_str("orders"));
    let batch = Bytes::from(build_batch(5, &[(Some(b"k"), Some(b"value"))]));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic)
            .with_partitions(vec![
                FetchPartition::default().with_fetch_offset(4)
            ])]);
    vec![
        encode(ApiKey::Produce, 3, &produce),
        encode(ApiKey::Produce, 9, &produce),
        encode(ApiKey::Fetch, 4, &fetch),
        encode(ApiKey::Fetch, 12, &fetch),
        encode(ApiKey::Metadata, 1, &MetadataRequest::default()),
        encode(ApiKey::Metadata, 12, &MetadataRequest::default()),
        encode(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Overwrite { at: usize, value: i32 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (
            any::<usize>(),
            prop_oneof![Just(-1), Just(i32::MAX), Just(i32::MIN), any::<i32>()]
        )
            .prop_map(|(at, value)| Mutation::Overwrite { at, value }),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    if frame.is_empty() {
        return;
    }
    match m {
        Mutation::Flip { at, bits } => {
            let i = at % frame.len();
            frame[i] ^= bits;
        }
        Mutation::Truncate { len } => frame.truncate(len % frame.len()),
        Mutation::Insert { at, bytes } => {
            let i = at % frame.len();
            frame.splice(i..i, bytes.iter().copied());
        }
        Mutation::Overwrite { at, value } => {
            let i = at % frame.len();
            for (j, b) in value.to_be_bytes().iter().enumerate() {
                if let Some(slot) = frame.get_mut(i + j) {
                    *slot = *b;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn mutated_requests_never_panic(seed in 0usize..7, mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut frame = seeds()[seed].clone();
        for m in &mutations {
            apply(&mut frame, m);
        }
        let _ = decode_request(Bytes::from(frame.clone()), SUPPORTED);
        let _ = validate_produce_records(&frame, 1 << 20);
        for b in Batches::new(&frame).flatten() {
            let _ = (b.last_offset(), b.compression(), b.verify_crc());
        }
        let mut framed = BytesMut::from(&(frame.len() as i32).to_be_bytes()[..]);
        framed.extend_from_slice(&frame);
        let _ = split_frame(&mut framed, 1 << 20);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(Bytes::from(bytes.clone()), SUPPORTED);
        let _ = validate_produce_records(&bytes, 1 << 20);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = split_frame(&mut buf, 4096) {}
    }
}

#[test]
fn unmutated_seeds_decode() {
    for (i, frame) in seeds().into_iter().enumerate() {
        assert!(
            decode_request(Bytes::from(frame), SUPPORTED).is_ok(),
            "seed {i}"
        );
    }
}
