//! LeaveGroup (key 13): one member (v0-2) or a batch of members by member id or
//! group.instance.id (v3+).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{group_code, str_bytes};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = broker
        .groups
        .leave(request.group_id.as_str(), &members, broker.now_ms());
    let results = match results {
        Ok(r) => r,
        Err(e) => return LeaveGroupResponse::default().with_error_code(group_code(Some(e))),
    };
    if version < 3 {
        let error = results.into_iter().next().and_then(Result::err);
        return LeaveGroupResponse::default().with_error_code(group_code(error));
    }
    let members = members
        .into_iter()
        .zip(results)
        .map(|((id, instance), r)| {
            MemberResponse::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(instance.map(str_bytes))
                .with_error_code(group_code(r.err()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
