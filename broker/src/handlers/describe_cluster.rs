//! DescribeCluster (key 60): the cluster id, the controller and the brokers
//! clients are told about (the same list as Metadata's). Only the broker
//! endpoints are described: a request for controller endpoints is refused with
//! UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker does.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::metadata::listed_brokers;
use super::{code, str_bytes};
use crate::Broker;

/// `endpoint_type` of broker listeners.
const ENDPOINT_BROKERS: i8 = 1;
/// Authorized operations are not computed (there is no authorization).
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.config.cluster_id.clone()))
        .with_cluster_authorized_operations(OPERATIONS_OMITTED);
    if request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_controller_id(BrokerId(-1))
            .with_error_code(code(ResponseError::UnsupportedEndpointType))
            .with_error_message(Some(str_bytes(format!(
                "endpoint type {} is not served here; brokers (1) are",
                request.endpoint_type
            ))));
    }
    let (brokers, controller) = listed_brokers(broker);
    response
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(str_bytes(b.host))
                        .with_port(b.port)
                })
                .collect(),
        )
}
