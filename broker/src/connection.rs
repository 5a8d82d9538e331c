//! One client connection: frames in, responses out in request order.
//!
//! The reader decodes each frame and spawns its handler at once, so requests on one
//! connection run concurrently; a bounded queue of pending responses
//! (`max_inflight_requests_per_connection`) keeps the writer in request order and
//! stops reading when the client runs too far ahead.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sluice_protocol::codec::{self, Decoded};
use sluice_protocol::frame;
use sluice_protocol::legacy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::handlers;
use crate::Broker;

/// Bytes read from the socket at once (the buffer grows for larger frames).
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Largest single growth of the read buffer before the bytes to fill it arrived
/// (growth doubles with what was received, up to the frame size).
const READ_GROWTH_MAX_BYTES: usize = 1 << 20;

type Pending = oneshot::Receiver<Option<Bytes>>;

/// Serves one connection until the client closes it, sends a malformed frame, or
/// the broker shuts down (after answering what was already read).
pub async fn serve<S>(
    stream: S,
    peer: String,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (queue_tx, mut queue_rx) =
        mpsc::channel::<Pending>(broker.config.max_inflight_requests_per_connection);
    let writer_peer = peer.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(pending) = queue_rx.recv().await {
            match pending.await {
                Ok(Some(frame)) => {
                    if let Err(e) = writer.write_all(&frame).await {
                        debug!(peer = %writer_peer, error = %e, "write failed");
                        return;
                    }
                }
                Ok(None) => {} // acks=0 produce: no response
                Err(_) => {
                    warn!(peer = %writer_peer, "a request handler failed; closing the connection");
                    return;
                }
            }
        }
        let _ = writer.shutdown().await;
    });

    let limit = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    'read: loop {
        loop {
            match frame::split_frame(&mut buf, limit) {
                Ok(Some(f)) => {
                    if !dispatch(f, &peer, &broker, &queue_tx).await {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %peer, error = %e, "closing connection");
                    break 'read;
                }
            }
        }
        // Grow toward the declared frame size only as its bytes arrive, so a length
        // prefix alone cannot make the broker allocate a whole frame.
        let wanted = match frame::peek_length(&buf, limit) {
            Ok(Some(len)) => (frame::LENGTH_PREFIX_BYTES + len).saturating_sub(buf.len()),
            _ => READ_CHUNK_BYTES,
        };
        let step = wanted.clamp(1, READ_GROWTH_MAX_BYTES.max(buf.len()));
        if buf.capacity() - buf.len() < step.min(READ_CHUNK_BYTES) {
            buf.reserve(step);
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        debug!(peer = %peer, bytes = buf.len(), "connection closed mid-frame");
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(peer = %peer, error = %e, "read failed");
                    break;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    drop(queue_tx);
    let _ = writer_task.await;
}

/// Decodes one frame and queues its response. Returns false when the connection
/// must be closed.
async fn dispatch(
    frame: Bytes,
    peer: &str,
    broker: &Arc<Broker>,
    queue: &mpsc::Sender<Pending>,
) -> bool {
    let decoded = match codec::decode_request(frame, handlers::SUPPORTED_APIS) {
        Ok(d) => d,
        Err(e) => {
            warn!(peer = %peer, error = %e, "closing connection");
            return false;
        }
    };
    let (tx, rx) = oneshot::channel();
    if queue.send(rx).await.is_err() {
        return false;
    }
    match decoded {
        Decoded::Request(request) => {
            let peer = peer.to_string();
            let (api_key, version, correlation_id) = (
                request.api_key,
                request.version,
                request.header.correlation_id,
            );
            let host = peer.rsplit_once(':').map_or(peer.as_str(), |(h, _)| h);
            let handling = handlers::start(broker, *request, host);
            tokio::spawn(async move {
                let Some(body) = handling.await else {
                    let _ = tx.send(None);
                    return;
                };
                match codec::encode_response(api_key, version, correlation_id, &body) {
                    Ok(frame) => {
                        let _ = tx.send(Some(frame));
                    }
                    // Dropping `tx` closes the connection.
                    Err(e) => warn!(peer = %peer, error = %e, "cannot encode response"),
                }
            });
        }
        Decoded::ApiVersionsTooNew {
            correlation_id,
            version,
        } => {
            debug!(peer = %peer, version, "ApiVersions above ours: answering with v0");
            let body = handlers::api_versions::unsupported_version_response();
            match codec::encode_response(
                kafka_protocol::messages::ApiKey::ApiVersions,
                0,
                correlation_id,
                &body,
            ) {
                Ok(frame) => {
                    let _ = tx.send(Some(frame));
                }
                Err(e) => {
                    warn!(peer = %peer, error = %e, "cannot encode response");
                    return false;
                }
            }
        }
        Decoded::LegacyProduce {
            version,
            correlation_id,
            body,
        } => {
            if legacy::produce_acks(&body) == Some(0) {
                let _ = tx.send(None);
                return true;
            }
            match legacy::unsupported_produce_response(version, correlation_id, body) {
                Ok(frame) => {
                    let _ = tx.send(Some(frame));
                }
                Err(e) => {
                    warn!(peer = %peer, error = %e, "closing connection");
                    return false;
                }
            }
        }
    }
    true
}
