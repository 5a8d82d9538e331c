//! SyncGroup (key 14): the leader hands in the assignment; every member gets its
//! part once the assignment is durable.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{group_code, str_bytes};
use crate::group::{GroupError, SyncRequest, SyncResult};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let req = SyncRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let rx = broker
        .groups
        .sync(request.group_id.as_str(), req, broker.now_ms());
    let result = rx
        .await
        .unwrap_or_else(|_| SyncResult::failed(GroupError::NotCoordinator));
    let response = SyncGroupResponse::default()
        .with_error_code(group_code(result.error))
        .with_assignment(result.assignment);
    if version >= 5 {
        response
            .with_protocol_type(result.protocol_type.map(str_bytes))
            .with_protocol_name(result.protocol.map(str_bytes))
    } else {
        response
    }
}
