//! DescribeConfigs (key 32): topic configs with their sources; the broker resource
//! lists the broker-level settings clients commonly read.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::create_topics::{SOURCE_DEFAULT_CONFIG, SOURCE_TOPIC_CONFIG};
use super::{code, str_bytes};
use crate::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|res| {
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let entry = |name: &str, value: String, source: i8| {
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_config_source(source)
            };
            match res.resource_type {
                RESOURCE_TOPIC => match broker.cluster.topic(res.resource_name.as_str()) {
                    Some(topic) => result.with_configs(
                        topic
                            .configs
                            .describe(&broker.config.log)
                            .into_iter()
                            .filter(|(name, _, _)| wanted(name))
                            .map(|(name, value, set)| {
                                let source = if set {
                                    SOURCE_TOPIC_CONFIG
                                } else {
                                    SOURCE_DEFAULT_CONFIG
                                };
                                entry(name, value, source)
                            })
                            .collect(),
                    ),
                    None => result.with_error_code(code(ResponseError::UnknownTopicOrPartition)),
                },
                RESOURCE_BROKER => {
                    let c = &broker.config;
                    let settings = [
                        ("broker.id", c.node_id.to_string()),
                        (
                            "auto.create.topics.enable",
                            c.auto_create_topics_enable.to_string(),
                        ),
                        ("num.partitions", c.num_partitions.to_string()),
                        (
                            "default.replication.factor",
                            broker.cluster.default_replication_factor().to_string(),
                        ),
                        (
                            "socket.request.max.bytes",
                            c.socket_request_max_bytes.to_string(),
                        ),
                        ("log.segment.bytes", c.log.segment_bytes.to_string()),
                        ("log.retention.ms", c.log.retention_ms.to_string()),
                        ("log.retention.bytes", c.log.retention_bytes.to_string()),
                        ("message.max.bytes", c.log.max_message_bytes.to_string()),
                    ];
                    result.with_configs(
                        settings
                            .into_iter()
                            .filter(|(name, _)| wanted(name))
                            .map(|(name, value)| entry(name, value, SOURCE_STATIC_BROKER_CONFIG))
                            .collect(),
                    )
                }
                other => result
                    .with_error_code(code(ResponseError::InvalidRequest))
                    .with_error_message(Some(str_bytes(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
