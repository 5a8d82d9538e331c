//! One handler per Kafka API. Kafka error codes are chosen here and nowhere else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_protocol::codec::{ApiRange, Request};

use crate::Broker;

pub mod api_versions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_configs;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

const fn range(api_key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { api_key, min, max }
}

/// The APIs and versions this broker handles, as advertised in ApiVersions.
///
/// Produce starts at v0 because old librdkafka turns compression off against a broker
/// without it (v0-v2 are answered with UNSUPPORTED_VERSION). Produce v13 and Fetch
/// v13+ address topics by id and are left out until topic ids work end to end.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    range(ApiKey::Produce, 0, 12),
    range(ApiKey::Fetch, 4, 12),
    range(ApiKey::ListOffsets, 1, 10),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::ApiVersions, 0, 4),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::InitProducerId, 0, 5),
];

/// The rest of a request's handling, run concurrently with later requests.
pub type Handling = Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>;

/// Starts a request. Work whose order matters (appends) happens here, before the
/// connection reads its next request; the returned future does the rest. Its
/// output `None` means no response is sent (Produce with acks=0).
pub fn start(broker: &Arc<Broker>, request: Request) -> Handling {
    let broker = Arc::clone(broker);
    match request.body {
        RequestKind::Produce(r) => {
            let pending = produce::append(&broker, r, request.version);
            Box::pin(async move { produce::finish(pending).await.map(ResponseKind::Produce) })
        }
        body => Box::pin(async move { handle(&broker, body, request.version).await }),
    }
}

async fn handle(broker: &Arc<Broker>, body: RequestKind, version: i16) -> Option<ResponseKind> {
    let response = match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(broker, r, version))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, r, version)),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, version).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, r, version))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, r, version))
        }
        other => unreachable!("the codec only decodes advertised APIs, got {other:?}"),
    };
    Some(response)
}

pub(crate) fn code(error: ResponseError) -> i16 {
    error.code()
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
