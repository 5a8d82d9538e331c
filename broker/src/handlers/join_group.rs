//! JoinGroup (key 11): answered when the group's join phase completes (or at once
//! with MEMBER_ID_REQUIRED for a new member on v4+).

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{group_code, str_bytes, ClientInfo};
use crate::group::{GroupError, JoinRequest, JoinResult};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> JoinGroupResponse {
    let member_id = request.member_id.to_string();
    let req = JoinRequest {
        member_id: member_id.clone(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let rx = broker
        .groups
        .join(request.group_id.as_str(), req, broker.now_ms());
    let result = rx
        .await
        .unwrap_or_else(|_| JoinResult::failed(&member_id, GroupError::NotCoordinator));
    let members = result
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(m.instance_id.map(str_bytes))
                .with_metadata(m.metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(group_code(result.error))
        .with_generation_id(result.generation)
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(members);
    if version >= 7 {
        response
            .with_protocol_type(result.protocol_type.map(str_bytes))
            .with_protocol_name(result.protocol.map(str_bytes))
            .with_skip_assignment(version >= 9 && result.skip_assignment)
    } else {
        response.with_protocol_name(Some(str_bytes(result.protocol.unwrap_or_default())))
    }
}
