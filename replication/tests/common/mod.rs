//! Helpers shared by the tests that run a partition group on several brokers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_replication::{Acks, Replica, ReplicaError};

/// Writes `batch` (acks=all) through whichever of `replicas` leads, retrying
/// while leadership moves (the producer's sequence makes a retry of a batch that
/// did commit answer with its offsets); returns the index of the one that took it.
pub async fn write_through_leader(replicas: &[&Arc<Replica>], batch: Bytes, what: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = replicas.iter().position(|r| r.is_leader()) {
            let ticket = replicas[i]
                .enqueue(batch.clone(), 1, Acks::All)
                .await
                .expect("queued");
            match ticket.appended().await {
                Ok(_) => return i,
                Err(
                    ReplicaError::NotLeader { .. }
                    | ReplicaError::InFlightRetry { .. }
                    | ReplicaError::Raft { .. },
                ) => {}
                Err(e) => panic!("{what}: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "{what} was never committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most `seconds`) until `done` holds.
pub async fn eventually(what: &str, seconds: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
