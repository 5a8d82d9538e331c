//! The high watermark is an input of a replica: on one node it follows what was
//! flushed; under an owner (Raft) it moves only when the owner says so, while the
//! flushed end still reports what is durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_protocol::batch::build_batch;
use sluice_replication::{Commits, Flusher, HighWatermarkSource, Replica, ReplicaContext};
use sluice_storage::{LogConfig, Offset};

fn replica(dir: &std::path::Path, source: HighWatermarkSource) -> (Arc<Replica>, Arc<Flusher>) {
    let flusher = Flusher::start();
    let context = ReplicaContext {
        flusher: Arc::clone(&flusher),
        commits: Commits::new(),
        io: Arc::new(tokio::sync::Semaphore::new(2)),
        high_watermark: source,
    };
    let r = Replica::open("t-0".into(), dir.join("t-0"), LogConfig::default(), context);
    (r, flusher)
}

fn append(r: &Arc<Replica>) -> Offset {
    let batch = build_batch(1, &[(None, Some(b"v"))]);
    r.append_now(Bytes::from(batch), 1)
        .expect("append")
        .last_offset
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn on_one_node_the_high_watermark_follows_the_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, flusher) = replica(dir.path(), HighWatermarkSource::LocalFlush);
    for _ in 0..10 {
        append(&r);
    }
    eventually("flushed and committed", || r.high_watermark() == Offset(10));
    assert_eq!(r.flushed_end(), Offset(10));
    flusher.shutdown();
}

#[test]
fn under_an_owner_the_high_watermark_moves_only_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, flusher) = replica(dir.path(), HighWatermarkSource::Owner);
    let commits_before = r.high_watermark();
    for _ in 0..5 {
        append(&r);
    }
    eventually("flushed", || r.flushed_end() == Offset(5));
    assert_eq!(
        r.high_watermark(),
        commits_before,
        "a flush is not a commit"
    );
    r.advance_high_watermark(Offset(3));
    assert_eq!(r.high_watermark(), Offset(3));
    r.advance_high_watermark(Offset(2));
    assert_eq!(r.high_watermark(), Offset(3), "never back");
    r.advance_high_watermark(Offset(99));
    assert_eq!(r.high_watermark(), Offset(5), "never past the log end");
    flusher.shutdown();
}
