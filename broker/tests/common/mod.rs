//! Helpers shared by the tests that drive the broker binary over a socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_broker(extra_config: &str) -> Broker {
    start_broker_in(tempfile::tempdir().expect("tempdir"), extra_config)
}

/// Starts the broker on the data under `dir` (`dir/data`); its log goes to
/// `dir/broker.log`.
pub fn start_broker_in(dir: tempfile::TempDir, extra_config: &str) -> Broker {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, extra_config).expect("write config");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("broker.log"))
        .expect("broker log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default();
            panic!("broker exited with {status} at start:\n{log}");
        }
        assert!(Instant::now() < deadline, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker { child, port, dir }
}

impl Broker {
    /// Kills the broker (SIGKILL) and hands back its directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }
}

pub fn request_frame(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
}

pub fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

pub fn response<T: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16) -> (i32, T) {
    let mut frame = read_frame(s).expect("a response frame");
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut frame, header_version).expect("response header");
    (
        header.correlation_id,
        T::decode(&mut frame, version).expect("response body"),
    )
}

/// The server closed the connection: a read returns EOF (or reset).
pub fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected a closed connection, read {n} bytes"),
    }
}

/// Another client is still served.
pub fn assert_serving(broker: &Broker) {
    let mut s = broker.connect();
    s.write_all(&request_frame(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    ))
    .expect("write");
    let (cid, r): (i32, ApiVersionsResponse) = response(&mut s, ApiKey::ApiVersions, 3);
    assert_eq!((cid, r.error_code), (1, 0));
}

pub fn produce(topic: &str, partition: i32, records: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])])
}

pub fn create_topic_via_metadata(broker: &Broker, topic: &str) {
    let mut s = broker.connect();
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(true);
    s.write_all(&request_frame(ApiKey::Metadata, 12, 9, &req))
        .expect("write");
    let (_, r): (i32, MetadataResponse) = response(&mut s, ApiKey::Metadata, 12);
    assert_eq!(r.topics[0].error_code, 0);
}

pub fn fetch(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

pub fn create_topic_with_configs(broker: &Broker, topic: &str, configs: &[(&str, &str)]) {
    let (code, message) = create_topic_code(broker, topic, configs);
    assert_eq!(code, 0, "{message:?}");
}

/// Creates a topic expecting the error `code`.
pub fn create_topic_with_configs_expecting(broker: &Broker, topic: &str, code: i16) {
    let (got, message) = create_topic_code(broker, topic, &[]);
    assert_eq!(got, code, "{message:?}");
}

/// CreateTopics v7 for one single-partition topic: its error code and message.
pub fn create_topic_code(
    broker: &Broker,
    topic: &str,
    configs: &[(&str, &str)],
) -> (i16, Option<String>) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let mut s = broker.connect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    s.write_all(&request_frame(ApiKey::CreateTopics, 7, 3, &req))
        .expect("write");
    let (_, r): (i32, CreateTopicsResponse) = response(&mut s, ApiKey::CreateTopics, 7);
    (
        r.topics[0].error_code,
        r.topics[0].error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Deletes a topic by name (DeleteTopics v6), expecting success.
pub fn delete_topic(broker: &Broker, topic: &str) {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    let mut s = broker.connect();
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteTopicState::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]);
    s.write_all(&request_frame(ApiKey::DeleteTopics, 6, 4, &req))
        .expect("write");
    let (_, r): (i32, DeleteTopicsResponse) = response(&mut s, ApiKey::DeleteTopics, 6);
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
}
