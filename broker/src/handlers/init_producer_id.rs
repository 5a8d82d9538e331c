//! InitProducerId (key 22), non-transactional: a producer id unique across restarts,
//! and a bumped epoch when a producer re-initializes its own id (KIP-360).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::code;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        // Transactions are not supported: a clear error instead of a coordinator loop.
        return response.with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch + 1);
    }
    match broker.next_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "cannot allocate a producer id");
            response.with_error_code(code(ResponseError::KafkaStorageError))
        }
    }
}
