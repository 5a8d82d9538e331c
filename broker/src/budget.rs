//! Upper bounds on what clients can make the broker hold or do at once: bytes of
//! requests being read or processed, bytes of responses not yet written, disk work
//! in flight, and connections (in all and per address).
//!
//! ```text
//!  frame length known ──► requests.acquire(len) ──► ordered phase ──► released
//!  fetch read ──► connection + broker response permits (max_bytes) ──► read on the
//!      I/O pool ──► permits shrink to the bytes read ──► released once written
//!  disk work ──► io permit (num_io_threads) ──► spawn_blocking
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

/// Bytes held for one response until it is written to its socket.
pub type Held = Vec<OwnedSemaphorePermit>;

/// A request's handling failed (a task on the I/O pool panicked, or a request
/// reached a handler that does not exist): its connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("a request handler failed: {0}")]
pub struct HandlerFailed(pub String);

#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The broker's budgets (see the module documentation).
#[derive(Debug)]
pub struct Budgets {
    requests: Arc<Semaphore>,
    request_bytes_max: usize,
    responses: Arc<Semaphore>,
    response_bytes_max: usize,
    io: Arc<Semaphore>,
    connections: Arc<Mutex<Connections>>,
    max_connections: usize,
    max_connections_per_ip: usize,
}

/// A connection's place in the connection limits, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    ip: IpAddr,
    connections: Arc<Mutex<Connections>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = self.connections.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

fn permits(n: usize, max: usize) -> u32 {
    n.clamp(1, max).min(u32::MAX as usize) as u32
}

impl Budgets {
    pub fn new(config: &BrokerConfig) -> Self {
        Budgets {
            requests: Arc::new(Semaphore::new(config.queued_max_request_bytes)),
            request_bytes_max: config.queued_max_request_bytes,
            responses: Arc::new(Semaphore::new(config.queued_max_response_bytes)),
            response_bytes_max: config.queued_max_response_bytes,
            io: Arc::new(Semaphore::new(config.num_io_threads)),
            connections: Arc::default(),
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
        }
    }

    /// Waits until `bytes` of request frames may be held (a frame larger than the
    /// whole budget takes all of it).
    pub async fn request_bytes(&self, bytes: usize) -> OwnedSemaphorePermit {
        Arc::clone(&self.requests)
            .acquire_many_owned(permits(bytes, self.request_bytes_max))
            .await
            .expect("the request budget is never closed")
    }

    /// Waits until `bytes` of responses may be held broker-wide.
    pub async fn response_bytes(&self, bytes: usize) -> OwnedSemaphorePermit {
        Arc::clone(&self.responses)
            .acquire_many_owned(permits(bytes, self.response_bytes_max))
            .await
            .expect("the response budget is never closed")
    }

    /// The permits of the I/O pool, for work that runs blocking tasks of its own
    /// (each partition's append task).
    pub fn io_permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.io)
    }

    /// Runs blocking disk work on the I/O pool, at most `num_io_threads` at once.
    pub async fn io<T, F>(&self, work: F) -> Result<T, HandlerFailed>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = Arc::clone(&self.io)
            .acquire_owned()
            .await
            .expect("the I/O budget is never closed");
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| HandlerFailed(e.to_string()))
    }

    /// Admits a new connection from `ip`, or says which limit refuses it.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let mut c = self.connections.lock();
        if c.total >= self.max_connections {
            return Err(Refusal::MaxConnections);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_connections_per_ip {
            return Err(Refusal::MaxConnectionsPerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(Admission {
            ip,
            connections: Arc::clone(&self.connections),
        })
    }
}

/// Per-connection response budget: what one client may make the broker hold.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    responses: Arc<Semaphore>,
    bytes_max: usize,
}

impl ConnectionBudget {
    pub fn new(bytes_max: usize) -> Self {
        ConnectionBudget {
            responses: Arc::new(Semaphore::new(bytes_max)),
            bytes_max,
        }
    }

    /// The most one response of this connection may ask for.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Waits until `bytes` may be held by this connection.
    pub async fn response_bytes(&self, bytes: usize) -> OwnedSemaphorePermit {
        Arc::clone(&self.responses)
            .acquire_many_owned(permits(bytes, self.bytes_max))
            .await
            .expect("a connection budget is never closed")
    }
}

/// Keeps `bytes` of each permit (all of it when it holds less) and gives the rest
/// back.
pub fn shrink(held: Held, bytes: usize) -> Held {
    held.into_iter()
        .filter_map(|mut p| {
            if bytes == 0 {
                return None;
            }
            if p.num_permits() > bytes {
                p.split(bytes)
            } else {
                Some(p)
            }
        })
        .collect()
}

/// Lets a warning through at most once per `period`; counts what it held back.
#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    period: Duration,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub fn new(period: Duration) -> Self {
        RateLimit {
            start: Instant::now(),
            period,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when a warning may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.period.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BrokerConfig {
        BrokerConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn connections_are_limited_in_all_and_per_address() {
        let budgets = Budgets::new(&config());
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let first = budgets.admit(a).expect("first");
        let _second = budgets.admit(a).expect("second");
        assert_eq!(budgets.admit(a).err(), Some(Refusal::MaxConnectionsPerIp));
        let _third = budgets.admit(b).expect("other address");
        assert_eq!(budgets.admit(b).err(), Some(Refusal::MaxConnections));
        drop(first);
        budgets.admit(a).expect("a place came free");
    }

    #[tokio::test]
    async fn shrinking_gives_back_what_was_not_used() {
        let conn = ConnectionBudget::new(1 << 20);
        let held = vec![conn.response_bytes(1 << 20).await];
        let held = shrink(held, 1000);
        assert_eq!(held[0].num_permits(), 1000);
        let more = conn.response_bytes((1 << 20) - 1000).await;
        drop((held, more));
        assert!(shrink(vec![conn.response_bytes(10).await], 0).is_empty());
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.suppressed.load(Ordering::Relaxed), 2);
    }
}
