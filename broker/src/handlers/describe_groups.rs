//! DescribeGroups (key 15): state, protocol and members; member metadata and
//! assignments once the group is stable. A group that does not exist is Dead.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{group_code, str_bytes};
use crate::group::{GroupError, GroupState};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            match broker.groups.describe(id.0.as_str()) {
                Err(e) => described
                    .with_error_code(group_code(Some(e)))
                    .with_group_state(str_bytes(GroupState::Dead.name())),
                // v6 (KIP-1043) says so with an error; earlier versions only by the state.
                Ok(None) if version >= 6 => described
                    .with_error_code(group_code(Some(GroupError::GroupIdNotFound)))
                    .with_error_message(Some(str_bytes(format!("group {} does not exist", id.0))))
                    .with_group_state(str_bytes(GroupState::Dead.name())),
                Ok(None) => described.with_group_state(str_bytes(GroupState::Dead.name())),
                Ok(Some(s)) => described
                    .with_group_state(str_bytes(s.state.name()))
                    .with_protocol_type(str_bytes(s.protocol_type))
                    .with_protocol_data(str_bytes(s.protocol))
                    .with_members(
                        s.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
