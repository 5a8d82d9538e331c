//! DeleteGroups (key 42): removes empty groups and their committed offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::group_code;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let outcome = broker
            .groups
            .delete_group(id.0.as_str(), broker.now_ms())
            .await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(group_code(outcome.err())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
