//! ApiVersions (key 18): the APIs and version ranges we handle.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{code, SUPPORTED_APIS};
use crate::Broker;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.api_key as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect()
}

/// Only default-valued tagged fields are left out of v3+ answers: old librdkafka
/// (2.0, Debian's kcat) fails on brokers that send them.
pub fn handle(
    _broker: &Arc<Broker>,
    _request: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
}

/// The KIP-511 answer to an ApiVersions version above ours: v0 body, our ranges.
pub fn unsupported_version_response() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(code(ResponseError::UnsupportedVersion))
            .with_api_keys(api_keys()),
    )
}
