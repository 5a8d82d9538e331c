//! FindCoordinator (key 10): every group's coordinator is this broker, the leader of
//! the group's `__consumer_offsets` partition. v4+ asks for several keys at once.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{code, group_code, str_bytes};
use crate::group::GroupError;
use crate::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let ready = if request.key_type == KEY_TYPE_GROUP {
        // Creating __consumer_offsets on first use writes many files: off the async threads.
        let b = Arc::clone(broker);
        broker
            .budgets
            .io(move || b.groups.offsets_topic().map(|_| ()))
            .await
            .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    } else {
        Ok(())
    };
    let (host, port) = broker.config.advertised();
    let answers: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let error = match (request.key_type, &ready) {
                (KEY_TYPE_GROUP, _) if key.is_empty() => {
                    Some((code(ResponseError::InvalidRequest), "the group id is empty"))
                }
                (KEY_TYPE_GROUP, Ok(())) => None,
                (KEY_TYPE_GROUP, Err(e)) => Some((group_code(Some(*e)), "no coordinator yet")),
                (KEY_TYPE_TRANSACTION, _) => Some((
                    code(ResponseError::TransactionalIdAuthorizationFailed),
                    "transactions are not supported",
                )),
                _ => Some((code(ResponseError::InvalidRequest), "unknown key type")),
            };
            let c = Coordinator::default().with_key(key.clone());
            let coordinator = match (error, request.key_type) {
                (None, KEY_TYPE_GROUP) => match broker.groups.coordinator_of(&key) {
                    Ok(Some(node)) => match broker.address_of(node as i32) {
                        Some(address) => Ok(address),
                        None => Err((
                            group_code(Some(GroupError::CoordinatorNotAvailable)),
                            "the coordinator's address is not known yet",
                        )),
                    },
                    Ok(None) => Err((
                        group_code(Some(GroupError::CoordinatorNotAvailable)),
                        "the group's partition has no leader yet",
                    )),
                    Err(e) => Err((group_code(Some(e)), "no coordinator yet")),
                },
                (None, _) => Ok((broker.node_id(), host.clone(), port)),
                (Some(e), _) => Err(e),
            };
            match coordinator {
                Ok((node, host, port)) => c
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port),
                Err((error, message)) => c
                    .with_error_code(error)
                    .with_error_message(Some(str_bytes(message)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let c = answers.into_iter().next().unwrap_or_default();
    let response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response.with_error_message(c.error_message)
    } else {
        response
    }
}
