//! One client connection: frames in, responses out in request order.
//!
//! Requests take effect in the order they were sent: each one's ordered phase (a
//! produce's queueing into its partitions' append queues; all of any request other
//! than Produce and Fetch) finishes before the next request starts, and a request
//! other than Produce first waits until the produces before it took effect
//! (appended, or committed for acks=all), so a read that follows a write on one
//! connection sees it. What remains (a produce's appends and commit, a fetch) runs
//! concurrently, and a bounded queue of pending responses
//! (`max_inflight_requests_per_connection`) keeps the writer in request order.
//!
//! What a client can make the broker hold is bounded: request frames take request
//! budget before their bytes are buffered, responses hold response budget until
//! they are written, and when the client goes away the work of its requests stops.
//! A connection idle for `connections_max_idle_ms` is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_protocol::codec::{self, Decoded};
use sluice_protocol::frame;
use sluice_protocol::legacy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::budget::{Admission, ConnectionBudget, Held};
use crate::handlers::{self, Answer, Started};
use crate::Broker;

/// Bytes read from the socket at once (the buffer grows for larger frames).
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Bytes read ahead of a frame that waits for a place in the response queue.
const READ_AHEAD_MAX_BYTES: usize = 1 << 20;
/// Largest single growth of the read buffer before the bytes to fill it arrived
/// (growth doubles with what was received, up to the frame size).
const READ_GROWTH_MAX_BYTES: usize = 1 << 20;

/// A response frame and the budget it holds until written.
struct Reply {
    frame: Bytes,
    _held: Held,
}

type Pending = oneshot::Receiver<Option<Reply>>;

/// Milliseconds since the connection opened at its last read or write.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.opened.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Why the read loop stopped.
#[derive(Debug, PartialEq, Eq)]
enum Close {
    /// The client reset the connection, sent something we cannot serve or went
    /// idle: its work stops.
    Client,
    /// The client closed its side (end of stream): as for `Client`.
    Eof,
    /// The broker is shutting down: requests already read are answered.
    Shutdown,
}

/// Serves one connection until the client closes it, sends a malformed frame, goes
/// idle, or the broker shuts down (after answering what was already read).
pub async fn serve<S>(
    stream: S,
    peer: String,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    _admission: Admission,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    debug!(peer = %peer, "connection opened");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (queue_tx, mut queue_rx) =
        mpsc::channel::<Pending>(broker.config.max_inflight_requests_per_connection);
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let writer_activity = Arc::clone(&activity);
    let writer_peer = peer.clone();
    let mut writer_task = tokio::spawn(async move {
        while let Some(pending) = queue_rx.recv().await {
            match pending.await {
                Ok(Some(reply)) => {
                    if let Err(e) = writer.write_all(&reply.frame).await {
                        debug!(peer = %writer_peer, error = %e, "write failed");
                        return;
                    }
                    writer_activity.touch();
                }
                Ok(None) => {} // acks=0 produce: no response
                Err(_) => {
                    debug!(peer = %writer_peer, "a request failed; closing the connection");
                    return;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut tasks = JoinSet::new();
    let budget = ConnectionBudget::new(broker.config.connection_response_bytes_max);
    let idle_max = Duration::from_millis(broker.config.connections_max_idle_ms);
    let limit = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    // Request budget for the large frame being read, taken before its bytes are.
    let mut frame_permit: Option<OwnedSemaphorePermit> = None;
    // Produces that have not taken effect yet (see `Dispatch::dispatch`).
    let mut unsettled: Vec<oneshot::Receiver<()>> = Vec::new();
    let mut writer_done = false;
    let close = loop {
        while tasks.try_join_next().is_some() {}
        let ready = match frame::peek_length(&buf, limit) {
            Ok(Some(len)) => buf.len() >= frame::LENGTH_PREFIX_BYTES + len,
            Ok(None) => false,
            Err(e) => {
                warn!(peer = %peer, error = %e, "closing connection");
                break Close::Client;
            }
        };
        if ready {
            // A whole frame waits for a place in the response queue. Meanwhile the
            // socket is still read (a bounded read-ahead), so a client that resets
            // the connection is noticed and its queued work stopped.
            tokio::select! {
                slot = queue_tx.reserve() => {
                    let Ok(slot) = slot else { break Close::Client };
                    let Ok(Some(f)) = frame::split_frame(&mut buf, limit) else {
                        break Close::Client;
                    };
                    activity.touch();
                    let mut ctx = Dispatch {
                        peer: &peer,
                        broker: &broker,
                        budget: &budget,
                        unsettled: &mut unsettled,
                    };
                    if !ctx.dispatch(f, frame_permit.take(), slot, &mut tasks).await {
                        break Close::Client;
                    }
                }
                read = reader.read_buf(&mut buf), if buf.len() < READ_AHEAD_MAX_BYTES => {
                    if let Some(close) = read_outcome(read, &peer, &activity) {
                        break close;
                    }
                }
                () = stopped(&mut shutdown) => break Close::Shutdown,
                _ = &mut writer_task => {
                    writer_done = true;
                    break Close::Client;
                }
            }
            continue;
        }
        // Grow toward the declared frame size only as its bytes arrive, so a length
        // prefix alone cannot make the broker allocate a whole frame.
        let wanted = match frame::peek_length(&buf, limit) {
            Ok(Some(len)) => {
                if len > READ_CHUNK_BYTES && frame_permit.is_none() {
                    tokio::select! {
                        p = broker.budgets.request_bytes(len) => frame_permit = Some(p),
                        () = stopped(&mut shutdown) => break Close::Shutdown,
                    }
                }
                (frame::LENGTH_PREFIX_BYTES + len).saturating_sub(buf.len())
            }
            _ => READ_CHUNK_BYTES,
        };
        let step = wanted.clamp(1, READ_GROWTH_MAX_BYTES.max(buf.len()));
        if buf.capacity() - buf.len() < step.min(READ_CHUNK_BYTES) {
            buf.reserve(step);
        }
        let idle_check = idle_max.saturating_sub(activity.idle_for());
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                if let Some(close) = read_outcome(read, &peer, &activity) {
                    if !buf.is_empty() {
                        debug!(peer = %peer, bytes = buf.len(), "connection closed mid-frame");
                    }
                    break close;
                }
            }
            () = stopped(&mut shutdown) => break Close::Shutdown,
            _ = &mut writer_task => {
                writer_done = true;
                break Close::Client;
            }
            () = tokio::time::sleep(idle_check) => {
                let in_flight = queue_tx.capacity() < queue_tx.max_capacity();
                if !in_flight && activity.idle_for() >= idle_max {
                    debug!(peer = %peer, idle_ms = idle_max.as_millis() as u64, "closing an idle connection");
                    break Close::Client;
                }
            }
        }
    };
    drop(queue_tx);
    debug!(peer = %peer, reason = ?close, "connection closing");
    if close == Close::Shutdown {
        // Answer what was read; once a write fails nobody reads the rest.
        if !writer_done {
            let _ = (&mut writer_task).await;
            writer_done = true;
        }
    } else {
        // Nobody will read the answers (Kafka, too, drops a channel's requests at
        // end of stream): stop the work of this client's requests.
        writer_task.abort();
    }
    tasks.abort_all();
    if !writer_done {
        let _ = writer_task.await;
    }
    debug!(peer = %peer, "connection closed");
}

/// What a read from the socket means for the connection: `None` to go on.
fn read_outcome(read: std::io::Result<usize>, peer: &str, activity: &Activity) -> Option<Close> {
    match read {
        Ok(0) => Some(Close::Eof),
        Ok(_) => {
            activity.touch();
            None
        }
        Err(e) => {
            debug!(peer = %peer, error = %e, "read failed");
            Some(Close::Client)
        }
    }
}

/// Completes once the broker shuts down.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What dispatching a frame needs from its connection.
struct Dispatch<'a> {
    peer: &'a str,
    broker: &'a Arc<Broker>,
    budget: &'a ConnectionBudget,
    unsettled: &'a mut Vec<oneshot::Receiver<()>>,
}

impl Dispatch<'_> {
    /// Decodes one frame, runs its ordered phase and queues its response. Returns
    /// false when the connection must be closed.
    async fn dispatch(
        &mut self,
        frame: Bytes,
        permit: Option<OwnedSemaphorePermit>,
        slot: mpsc::Permit<'_, Pending>,
        tasks: &mut JoinSet<()>,
    ) -> bool {
        let peer = self.peer;
        let decoded = match codec::decode_request(frame, handlers::SUPPORTED_APIS) {
            Ok(d) => d,
            Err(e) => {
                warn!(peer = %peer, error = %e, "closing connection");
                return false;
            }
        };
        let (tx, rx) = oneshot::channel();
        slot.send(rx);
        let reply = |frame| {
            Some(Reply {
                frame,
                _held: Held::new(),
            })
        };
        match decoded {
            Decoded::Request(request) => {
                let (api_key, version, correlation_id) = (
                    request.api_key,
                    request.version,
                    request.header.correlation_id,
                );
                let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
                if api_key != kafka_protocol::messages::ApiKey::Produce {
                    // What this request reads or writes follows the produces before it.
                    for settled in self.unsettled.drain(..) {
                        let _ = settled.await;
                    }
                }
                self.unsettled
                    .retain_mut(|a| a.try_recv() == Err(oneshot::error::TryRecvError::Empty));
                // The frame's bytes are released once its ordered phase is done (a
                // produce's once its batches are appended).
                let started =
                    match handlers::start(self.broker, *request, host, self.budget, permit).await {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(peer = %peer, error = %e, "closing connection");
                            return false;
                        }
                    };
                let peer = peer.to_string();
                let finish = move |handling: handlers::Handling| async move {
                    let answer = match handling.await {
                        Ok(Some(answer)) => answer,
                        Ok(None) => {
                            let _ = tx.send(None);
                            return true;
                        }
                        Err(e) => {
                            // Dropping `tx` closes the connection.
                            warn!(peer = %peer, error = %e, "closing connection");
                            return false;
                        }
                    };
                    let Answer { body, held } = answer;
                    match codec::encode_response(api_key, version, correlation_id, &body) {
                        Ok(frame) => {
                            let _ = tx.send(Some(Reply { frame, _held: held }));
                            true
                        }
                        Err(e) => {
                            warn!(peer = %peer, error = %e, "cannot encode response");
                            false
                        }
                    }
                };
                match started {
                    Started::InOrder(handling) => return finish(handling).await,
                    Started::Produce { settled, handling } => {
                        self.unsettled.push(settled);
                        tasks.spawn(async move {
                            finish(handling).await;
                        });
                    }
                    Started::Concurrent(handling) => {
                        tasks.spawn(async move {
                            finish(handling).await;
                        });
                    }
                }
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
                        let _ = tx.send(reply(frame));
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
                        let _ = tx.send(reply(frame));
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
}
