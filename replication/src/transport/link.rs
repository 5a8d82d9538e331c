//! One connection to one peer, shared by every group: calls go out through a
//! bounded queue whose writer packs whatever is pending into one write; the reader
//! hands requests to the transport's handler and answers to their callers.
//!
//! Frame: `u32` length of the rest, kind `u8`, group `u64`, correlation id `u64`,
//! payload. Requests have kinds below [`RESPONSE`]; an answer has the request's
//! kind with [`RESPONSE`] set and its payload starts with a status byte (0: ok,
//! else the rest is an error message). Integers are big-endian.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::{Handler, TransportError};

/// Set on the kind of an answer.
pub const RESPONSE: u8 = 0x80;
/// A keep-alive request, answered by the link itself.
pub const PING: u8 = 0x7e;
/// Bytes of a frame header after the length.
const HEADER_BYTES: usize = 1 + 8 + 8;
/// Largest frame accepted (a batch may be as large as `max.message.bytes`; the
/// log store reads at most a few MiB of entries per append).
pub const FRAME_BYTES_MAX: usize = 256 << 20;
/// Frames queued for the writer of one link before callers wait.
const QUEUED_FRAMES_MAX: usize = 4096;
/// Frames written per write call at most.
const FRAMES_PER_WRITE_MAX: usize = 256;
/// Bytes read into a frame buffer before the rest of the frame arrives.
const READ_CHUNK: usize = 1 << 20;

/// A frame being sent.
#[derive(Debug)]
struct Outgoing {
    kind: u8,
    group: u64,
    correlation: u64,
    payload: Bytes,
}

/// A frame received.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub group: u64,
    pub correlation: u64,
    pub payload: Bytes,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, TransportError>>>>>;

/// Milliseconds since the first call in this process (a clock that fits an
/// atomic).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The sending side of a connection that is up.
#[derive(Debug, Clone)]
pub struct Link {
    peer: u64,
    tx: mpsc::Sender<Outgoing>,
    pending: Pending,
    next_correlation: Arc<AtomicU64>,
    /// When a frame last arrived from the peer ([`now_ms`]).
    heard: Arc<AtomicU64>,
}

impl Link {
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether the connection is up and a frame arrived within `within`.
    pub fn heard_within(&self, within: Duration) -> bool {
        let heard = self.heard.load(Ordering::Acquire);
        !self.is_closed() && now_ms().saturating_sub(heard) <= within.as_millis() as u64
    }

    /// Resolves once the connection is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends a request and waits for its answer.
    pub async fn call(
        &self,
        kind: u8,
        group: u64,
        payload: Bytes,
    ) -> Result<Bytes, TransportError> {
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        self.pending.lock().insert(correlation, done);
        let sent = self
            .tx
            .send(Outgoing {
                kind,
                group,
                correlation,
                payload,
            })
            .await;
        if sent.is_err() {
            self.pending.lock().remove(&correlation);
            return Err(TransportError::Disconnected { peer: self.peer });
        }
        let _unregister = Unregister {
            pending: &self.pending,
            correlation,
        };
        answer
            .await
            .unwrap_or(Err(TransportError::Disconnected { peer: self.peer }))
    }
}

/// Forgets a call whose caller stopped waiting (a timeout dropped the future).
struct Unregister<'a> {
    pending: &'a Pending,
    correlation: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.correlation);
    }
}

/// Runs a connection to `peer` whose handshake is done: returns the link at
/// once; the connection's tasks run until either side closes it.
pub fn start<S>(peer: u64, stream: S, handler: Handler) -> Link
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES_MAX);
    let pending: Pending = Arc::default();
    let link = Link {
        peer,
        tx: tx.clone(),
        pending: Arc::clone(&pending),
        next_correlation: Arc::new(AtomicU64::new(1)),
        heard: Arc::new(AtomicU64::new(now_ms())),
    };
    let heard = Arc::clone(&link.heard);
    let write_task = tokio::spawn(write_loop(writer, rx));
    tokio::spawn(async move {
        let result = read_loop(reader, peer, &pending, tx, handler, &heard).await;
        if let Err(e) = result {
            debug!(peer, error = %e, "inter-broker connection closed");
        }
        write_task.abort();
        let waiting: Vec<_> = pending.lock().drain().collect();
        for (_, done) in waiting {
            let _ = done.send(Err(TransportError::Disconnected { peer }));
        }
    });
    link
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut frames = Vec::with_capacity(FRAMES_PER_WRITE_MAX);
    let mut buf = BytesMut::new();
    loop {
        if rx.recv_many(&mut frames, FRAMES_PER_WRITE_MAX).await == 0 {
            return;
        }
        for f in frames.drain(..) {
            buf.put_u32((HEADER_BYTES + f.payload.len()) as u32);
            buf.put_u8(f.kind);
            buf.put_u64(f.group);
            buf.put_u64(f.correlation);
            buf.put_slice(&f.payload);
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

/// Reads one frame; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, TransportError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(TransportError::Io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(HEADER_BYTES..=FRAME_BYTES_MAX).contains(&len) {
        return Err(TransportError::Malformed(format!(
            "frame of {len} bytes (between {HEADER_BYTES} and {FRAME_BYTES_MAX} allowed)"
        )));
    }
    // The buffer grows as bytes arrive, so a length the bytes do not back
    // costs at most one chunk.
    let mut buf = BytesMut::with_capacity(len.min(READ_CHUNK));
    while buf.len() < len {
        let want = (len - buf.len()).min(READ_CHUNK);
        buf.reserve(want);
        let mut limited = (&mut *reader).take(want as u64);
        let n = limited
            .read_buf(&mut buf)
            .await
            .map_err(TransportError::Io)?;
        if n == 0 {
            return Err(TransportError::Malformed(
                "connection closed inside a frame".into(),
            ));
        }
    }
    let mut buf = buf.freeze();
    let kind = buf.get_u8();
    let group = buf.get_u64();
    let correlation = buf.get_u64();
    Ok(Some(Frame {
        kind,
        group,
        correlation,
        payload: buf,
    }))
}

/// Writes one frame (the handshake, before a link runs).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(4 + HEADER_BYTES + payload.len());
    buf.put_u32((HEADER_BYTES + payload.len()) as u32);
    buf.put_u8(kind);
    buf.put_u64(0);
    buf.put_u64(0);
    buf.put_slice(payload);
    writer.write_all(&buf).await?;
    writer.flush().await
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    peer: u64,
    pending: &Pending,
    tx: mpsc::Sender<Outgoing>,
    handler: Handler,
    heard: &AtomicU64,
) -> Result<(), TransportError> {
    while let Some(frame) = read_frame(&mut reader).await? {
        heard.store(now_ms(), Ordering::Release);
        if frame.kind == PING {
            // A full queue already proves the link alive to the peer's reader.
            let _ = tx.try_send(Outgoing {
                kind: PING | RESPONSE,
                group: frame.group,
                correlation: frame.correlation,
                payload: Bytes::from_static(&[0]),
            });
            continue;
        }
        if frame.kind & RESPONSE != 0 {
            let Some(done) = pending.lock().remove(&frame.correlation) else {
                continue; // the caller gave up
            };
            let mut payload = frame.payload;
            let answer = match payload.first() {
                Some(0) => {
                    payload.advance(1);
                    Ok(payload)
                }
                Some(_) => Err(TransportError::Remote {
                    peer,
                    message: String::from_utf8_lossy(&payload[1..]).into_owned(),
                }),
                None => Err(TransportError::Malformed("answer without a status".into())),
            };
            let _ = done.send(answer);
            continue;
        }
        let (handler, tx) = (Arc::clone(&handler), tx.clone());
        tokio::spawn(async move {
            let result = handler(peer, frame.kind, frame.group, frame.payload).await;
            let payload = match result {
                Ok(body) => {
                    let mut out = BytesMut::with_capacity(1 + body.len());
                    out.put_u8(0);
                    out.put_slice(&body);
                    out.freeze()
                }
                Err(message) => {
                    let mut out = BytesMut::with_capacity(1 + message.len());
                    out.put_u8(1);
                    out.put_slice(message.as_bytes());
                    out.freeze()
                }
            };
            let _ = tx
                .send(Outgoing {
                    kind: frame.kind | RESPONSE,
                    group: frame.group,
                    correlation: frame.correlation,
                    payload,
                })
                .await;
        });
    }
    Ok(())
}
