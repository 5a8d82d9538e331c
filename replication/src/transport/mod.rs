//! The inter-broker transport: one connection per broker pair, shared by every
//! Raft group and by broker-level calls (forwarded admin requests).
//!
//! ```text
//!  call(peer, kind, group, payload) ─► link of that peer ─► queue ─► writer
//!        (whatever is queued for the peer goes out in one write)
//!  reader ─► answer ─► the waiting call      reader ─► request ─► handler ─► answer
//! ```
//!
//! The broker with the lower node id dials, the other accepts; both send requests
//! and answers over the one connection. The dialer opens with a hello frame
//! (version, cluster id, its node id); the acceptor answers with its own node id,
//! or closes the connection when the cluster id or node id is not one it knows.

mod link;
pub mod network;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{info, warn};

pub use link::{Link, FRAME_BYTES_MAX, PING};

/// Handles a request from `peer`: (peer, kind, group, payload) to the answer's
/// payload or an error message.
pub type Handler =
    Arc<dyn Fn(u64, u8, u64, Bytes) -> BoxFuture<'static, Result<Bytes, String>> + Send + Sync>;

/// Kind of the hello frame that opens a connection.
const HELLO: u8 = 0x7f;
const HELLO_VERSION: u8 = 0;
/// Longest cluster id in a hello.
const CLUSTER_ID_MAX: usize = 255;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Redial backoff bounds.
const REDIAL_MIN: Duration = Duration::from_millis(50);
const REDIAL_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("no connection to broker {peer}")]
    Disconnected { peer: u64 },
    #[error("broker {peer} is not a peer of this broker")]
    UnknownPeer { peer: u64 },
    #[error("broker {peer} did not answer within {timeout:?}")]
    Timeout { peer: u64, timeout: Duration },
    #[error("broker {peer} answered with an error: {message}")]
    Remote { peer: u64, message: String },
    #[error("malformed inter-broker frame: {0}")]
    Malformed(String),
    #[error("inter-broker connection: {0}")]
    Io(#[from] std::io::Error),
}

/// This broker's end of the inter-broker connections.
pub struct Transport {
    node: u64,
    cluster_id: String,
    peers: BTreeMap<u64, String>,
    links: Mutex<HashMap<u64, Link>>,
    /// Bumped whenever a link comes up.
    connected: watch::Sender<u64>,
    handler: OnceLock<Handler>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node", &self.node)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// `peers`: every other broker's id and inter-broker address.
    pub fn new(node: u64, cluster_id: &str, peers: BTreeMap<u64, String>) -> Arc<Self> {
        Arc::new(Transport {
            node,
            cluster_id: cluster_id.to_string(),
            peers: peers.into_iter().filter(|(id, _)| *id != node).collect(),
            links: Mutex::new(HashMap::new()),
            connected: watch::channel(0).0,
            handler: OnceLock::new(),
        })
    }

    /// Sets what answers requests from peers; the first call wins.
    pub fn set_handler(&self, handler: Handler) {
        let _ = self.handler.set(handler);
    }

    fn handler(&self) -> Handler {
        match self.handler.get() {
            Some(h) => Arc::clone(h),
            None => Arc::new(|_, _, _, _| Box::pin(async { Err("broker is starting".into()) })),
        }
    }

    /// Whether a connection to `peer` is up.
    pub fn is_connected(&self, peer: u64) -> bool {
        self.links.lock().get(&peer).is_some_and(|l| !l.is_closed())
    }

    /// Whether a connection to `peer` is up and brought a frame within `within`
    /// (the keep-alive sends one at least every keep-alive period).
    pub fn heard_within(&self, peer: u64, within: Duration) -> bool {
        self.links
            .lock()
            .get(&peer)
            .is_some_and(|l| l.heard_within(within))
    }

    /// How many times a connection to a peer has come up.
    pub fn connection_count(&self) -> u64 {
        *self.connected.borrow()
    }

    /// Pings every connected peer each `every`, so each side hears the other at
    /// least that often whatever its groups do (one frame per broker pair).
    pub fn keep_alive(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else {
                    return;
                };
                let links: Vec<Link> = me.links.lock().values().cloned().collect();
                for link in links.into_iter().filter(|l| !l.is_closed()) {
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(every * 4, link.call(PING, 0, Bytes::new())).await;
                    });
                }
            }
        });
    }

    /// Accepts peers' connections and dials the peers with higher ids, until the
    /// process ends.
    pub fn start(self: &Arc<Self>, listener: TcpListener) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.accept_loop(listener).await });
        for (&peer, addr) in &self.peers {
            if peer > self.node {
                let me = Arc::clone(self);
                let addr = addr.clone();
                tokio::spawn(async move { me.dial_loop(peer, addr).await });
            }
        }
    }

    /// Sends a request to `peer` and waits at most `timeout` for its answer.
    pub async fn call(
        &self,
        peer: u64,
        kind: u8,
        group: u64,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        if !self.peers.contains_key(&peer) {
            return Err(TransportError::UnknownPeer { peer });
        }
        let link = self
            .links
            .lock()
            .get(&peer)
            .filter(|l| !l.is_closed())
            .cloned()
            .ok_or(TransportError::Disconnected { peer })?;
        tokio::time::timeout(timeout, link.call(kind, group, payload))
            .await
            .unwrap_or(Err(TransportError::Timeout { peer, timeout }))
    }

    /// Changes whenever a connection to a peer comes up.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connected.subscribe()
    }

    fn install(&self, peer: u64, link: Link) {
        self.links.lock().insert(peer, link);
        self.connected.send_modify(|n| *n += 1);
    }

    fn hello(&self) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(HELLO_VERSION);
        out.put_u8(self.cluster_id.len().min(CLUSTER_ID_MAX) as u8);
        out.put_slice(&self.cluster_id.as_bytes()[..self.cluster_id.len().min(CLUSTER_ID_MAX)]);
        out.put_u64(self.node);
        out.to_vec()
    }

    /// The node id a hello names, if it is from a peer of this cluster.
    fn check_hello(&self, mut payload: Bytes) -> Result<u64, TransportError> {
        let bad = |m: String| TransportError::Malformed(m);
        if payload.remaining() < 2 || payload.get_u8() != HELLO_VERSION {
            return Err(bad("hello of an unknown version".into()));
        }
        let n = payload.get_u8() as usize;
        if payload.remaining() != n + 8 {
            return Err(bad("hello of the wrong length".into()));
        }
        let cluster = payload.split_to(n);
        let node = payload.get_u64();
        let ours = &self.cluster_id.as_bytes()[..self.cluster_id.len().min(CLUSTER_ID_MAX)];
        if cluster != ours {
            return Err(bad(format!(
                "hello from cluster '{}', this is '{}'",
                String::from_utf8_lossy(&cluster),
                self.cluster_id
            )));
        }
        if !self.peers.contains_key(&node) {
            return Err(TransportError::UnknownPeer { peer: node });
        }
        Ok(node)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "inter-broker accept failed");
                    tokio::time::sleep(REDIAL_MIN).await;
                    continue;
                }
            };
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, me.accept_hello(stream)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(%addr, error = %e, "inter-broker connection refused"),
                    Err(_) => warn!(%addr, "inter-broker handshake timed out"),
                }
            });
        }
    }

    async fn accept_hello(self: &Arc<Self>, mut stream: TcpStream) -> Result<(), TransportError> {
        let frame = link::read_frame(&mut stream)
            .await?
            .ok_or_else(|| TransportError::Malformed("closed before the hello".into()))?;
        if frame.kind != HELLO {
            return Err(TransportError::Malformed(format!(
                "first frame is of kind {}, not a hello",
                frame.kind
            )));
        }
        let peer = self.check_hello(frame.payload)?;
        link::write_frame(&mut stream, HELLO, &self.hello()).await?;
        info!(peer, "inter-broker connection accepted");
        self.run_link(peer, stream);
        Ok(())
    }

    fn run_link<S: AsyncRead + AsyncWrite + Send + 'static>(&self, peer: u64, stream: S) {
        let link = link::start(peer, stream, self.handler());
        self.install(peer, link);
    }

    async fn dial_loop(self: Arc<Self>, peer: u64, addr: String) {
        let mut backoff = REDIAL_MIN;
        let mut announced = false;
        loop {
            let dialed = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.dial(peer, &addr)).await;
            match dialed {
                Ok(Ok(stream)) => {
                    info!(peer, %addr, "inter-broker connection open");
                    announced = false;
                    backoff = REDIAL_MIN;
                    let link = link::start(peer, stream, self.handler());
                    self.install(peer, link.clone());
                    link.closed().await;
                    info!(peer, "inter-broker connection lost; redialing");
                }
                Ok(Err(e)) if !announced => {
                    info!(peer, %addr, error = %e, "cannot reach peer yet; retrying");
                    announced = true;
                }
                _ => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(REDIAL_MAX);
        }
    }

    async fn dial(&self, peer: u64, addr: &str) -> Result<TcpStream, TransportError> {
        let mut stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        link::write_frame(&mut stream, HELLO, &self.hello()).await?;
        let frame = link::read_frame(&mut stream)
            .await?
            .ok_or_else(|| TransportError::Malformed("peer closed during the hello".into()))?;
        if frame.kind != HELLO {
            return Err(TransportError::Malformed(
                "peer did not answer the hello".into(),
            ));
        }
        let answered = self.check_hello(frame.payload)?;
        if answered != peer {
            return Err(TransportError::Malformed(format!(
                "{addr} is broker {answered}, expected broker {peer}"
            )));
        }
        Ok(stream)
    }
}
