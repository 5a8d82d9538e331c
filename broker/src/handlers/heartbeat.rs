//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS tells
//! it to rejoin.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::group_code;
use crate::Broker;

pub fn handle(broker: &Arc<Broker>, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let result = broker.groups.heartbeat(
        request.group_id.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_deref(),
        request.generation_id,
        broker.now_ms(),
    );
    HeartbeatResponse::default().with_error_code(group_code(result.err()))
}
