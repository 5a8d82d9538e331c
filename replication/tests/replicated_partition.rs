//! Three replicas of one partition, each behind its own inter-broker transport on
//! 127.0.0.1 (real TCP, one connection per pair): the group elects a leader, the
//! leader's produce path proposes queued batches and answers at commit, a
//! non-leader refuses writes with the leader's id, an idempotent producer with many
//! batches in flight keeps its sequence and a retry gets the original offsets, and
//! every replica ends with the same entries at the same offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_protocol::batch::build_idempotent_batch;
use sluice_replication::raft::RaftNode;
use sluice_replication::transport::network::{serve, GroupNetwork};
use sluice_replication::transport::{Handler, Transport};
use sluice_replication::{
    initialize_if_pristine, start_group, Acks, Commits, Flusher, HighWatermarkSource, Replica,
    ReplicaContext, ReplicaError,
};
use sluice_storage::{LogConfig, Offset};

mod common;

use common::{eventually, write_through_leader};

const GROUP: u64 = 7;

struct Broker {
    id: u64,
    replica: Arc<Replica>,
    raft: RaftNode,
    groups: Arc<Mutex<HashMap<u64, RaftNode>>>,
    flusher: Arc<Flusher>,
    transport: Arc<Transport>,
    dir: tempfile::TempDir,
}

fn open_replica(flusher: &Arc<Flusher>, dir: &std::path::Path, config: LogConfig) -> Arc<Replica> {
    let context = ReplicaContext {
        flusher: Arc::clone(flusher),
        commits: Commits::new(),
        io: Arc::new(tokio::sync::Semaphore::new(2)),
        high_watermark: HighWatermarkSource::Owner,
    };
    Replica::open("orders-0".into(), dir.join("orders-0"), config, context)
}

fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        // Long enough that a loaded test machine does not lose leaders to
        // elections in the middle of a check.
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        allow_log_reversion: Some(true),
        ..openraft::Config::default()
    };
    Arc::new(config.validate().expect("config"))
}

async fn cluster() -> Vec<Broker> {
    cluster_with(LogConfig::default()).await
}

/// The handler of one broker's transport: a peer's request goes to the group.
fn router(groups: &Arc<Mutex<HashMap<u64, RaftNode>>>) -> Handler {
    let routes = Arc::clone(groups);
    Arc::new(move |_peer, kind, group, payload| {
        let raft = routes.lock().get(&group).cloned();
        Box::pin(async move {
            match raft {
                Some(raft) => serve(&raft, kind, payload).await,
                None => Err(format!("no group {group} here")),
            }
        })
    })
}

async fn cluster_with(log_config: LogConfig) -> Vec<Broker> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        peers.insert(id, l.local_addr().expect("addr").to_string());
        listeners.push((id, l));
    }
    let flusher = Flusher::start();
    let members: BTreeSet<u64> = peers.keys().copied().collect();
    let mut brokers = Vec::new();
    for (id, listener) in listeners {
        let transport = Transport::new(id, "test-cluster", peers.clone());
        let groups: Arc<Mutex<HashMap<u64, RaftNode>>> = Arc::default();
        transport.set_handler(router(&groups));
        transport.start(listener);
        let dir = tempfile::tempdir().expect("tempdir");
        let replica = open_replica(&flusher, dir.path(), log_config);
        let network = GroupNetwork::new(Arc::clone(&transport), GROUP);
        let raft = start_group(&replica, id, network, raft_config(), None)
            .await
            .expect("start group");
        groups.lock().insert(GROUP, raft.clone());
        initialize_if_pristine(&raft, &members)
            .await
            .expect("initialize");
        brokers.push(Broker {
            id,
            replica,
            raft,
            groups,
            flusher: Arc::clone(&flusher),
            transport,
            dir,
        });
    }
    brokers
}

async fn leader(brokers: &[Broker]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = brokers.iter().position(|b| b.raft.as_leader().is_ok()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Queues a batch on `replica` and waits for its answer.
async fn write(
    replica: &Arc<Replica>,
    seq: i32,
) -> Result<sluice_replication::AppendInfo, ReplicaError> {
    replica
        .enqueue(batch(seq), 1, Acks::All)
        .await
        .expect("queued")
        .appended()
        .await
}

/// Writes batch `seq` through whichever of `running` leads.
async fn write_to_leader(brokers: &[Broker], running: &[usize], seq: i32) {
    let replicas: Vec<&Arc<Replica>> = running.iter().map(|i| &brokers[*i].replica).collect();
    write_through_leader(&replicas, batch(seq), &format!("batch {seq}")).await;
}

fn batch(seq: i32) -> Bytes {
    let v = format!("order-{seq}");
    Bytes::from(build_idempotent_batch(
        42,
        0,
        seq,
        1_000,
        &[(None, Some(v.as_bytes()))],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_partition_answers_at_commit_and_keeps_replicas_identical() {
    let brokers = cluster().await;
    let l = leader(&brokers).await;
    let leader_id = l as u64 + 1;
    let follower = &brokers[(l + 1) % 3];
    eventually("the follower never learned the leader", 10, || {
        follower.replica.leader() == Some(leader_id)
    })
    .await;

    // A follower refuses and names the leader.
    let refused = follower
        .replica
        .enqueue(batch(0), 1, Acks::All)
        .await
        .expect("queued")
        .appended()
        .await;
    match refused {
        Err(ReplicaError::NotLeader { leader, .. }) => assert_eq!(leader, Some(leader_id)),
        other => panic!("a follower accepted a write: {other:?}"),
    }

    // 40 batches of one idempotent producer, all queued before any is answered.
    let mut tickets = Vec::new();
    for seq in 0..40 {
        let ticket = brokers[l]
            .replica
            .enqueue(batch(seq), 1, Acks::All)
            .await
            .expect("queued");
        tickets.push(ticket);
    }
    let mut offsets = Vec::new();
    for t in tickets {
        let info = t.appended().await.expect("committed");
        offsets.push(info.base_offset);
    }
    let mut sorted = offsets.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 40, "offsets repeat: {offsets:?}");
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "order lost: {offsets:?}"
    );
    // Answered at commit: the leader's high watermark covers the last batch.
    let last = *offsets.last().expect("offsets");
    assert!(brokers[l].replica.high_watermark() > last);

    // A retry of a committed batch (one of the producer's last five) gets its
    // original offsets; nothing is appended.
    let end_before = brokers[l].replica.high_watermark();
    let retry = write(&brokers[l].replica, 37)
        .await
        .expect("retry answered");
    assert_eq!(retry.base_offset, offsets[37]);
    // A gap in the sequence is refused.
    let gap = write(&brokers[l].replica, 45).await;
    assert!(gap.is_err(), "a sequence gap was accepted");

    // Every replica reaches the same high watermark and holds the same batches.
    eventually("followers did not catch up", 10, || {
        brokers
            .iter()
            .all(|b| b.replica.high_watermark() >= end_before)
    })
    .await;
    let read = |b: &Broker| {
        let log = b.replica.shared_log().expect("log");
        let mut log = log.lock();
        log.log_mut()
            .read_entries(0, u64::MAX, usize::MAX)
            .expect("read")
            .into_iter()
            .map(|e| (e.index, e.base_offset, e.batch))
            .collect::<Vec<_>>()
    };
    let expected = read(&brokers[l]);
    assert!(expected.len() > 40);
    for b in &brokers {
        assert_eq!(read(b), expected, "replicas differ");
        assert!(b.replica.high_watermark() >= Offset(40));
    }
}

fn entries_from(b: &Broker, offset: Offset) -> Vec<(i64, Bytes)> {
    let log = b.replica.shared_log().expect("log");
    let mut log = log.lock();
    log.log_mut()
        .read_entries(0, u64::MAX, usize::MAX)
        .expect("read")
        .into_iter()
        .filter(|e| e.base_offset >= offset)
        .map(|e| (e.base_offset.0, e.batch))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_log_start_installs_the_snapshot_and_replicates_the_rest() {
    let small = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let mut brokers = cluster_with(small).await;
    let l = leader(&brokers).await;
    let lagging = (l + 1) % 3;
    // The lagging replica stops; the others go on without it.
    let stopped = brokers[lagging].raft.clone();
    brokers[lagging].groups.lock().remove(&GROUP);
    stopped.shutdown().await.expect("shutdown");
    let running = [l, (l + 2) % 3];
    for seq in 0..200 {
        write_to_leader(&brokers, &running, seq).await;
    }
    // Leadership may have moved between the two running replicas meanwhile.
    let l = leader(&brokers).await;
    // Retention on the two running replicas keeps about the last 4 KiB: each
    // snapshots at its new log start and purges the segments below.
    for i in running {
        let start = brokers[i]
            .replica
            .apply_replicated_retention(1, -1, 4096)
            .await
            .expect("retention")
            .expect("a new log start");
        assert!(start > Offset(100), "retention kept too much: {start}");
        let replica = &brokers[i].replica;
        eventually("the log was not purged", 10, || {
            replica.log_start_offset() >= start
        })
        .await;
    }
    let log_start = brokers[l].replica.log_start_offset();
    let high_watermark = brokers[l].replica.high_watermark();

    // The lagging replica restarts from its files: what it needs is gone from the
    // leader's log, so it installs the snapshot and replicates the rest.
    let b = &mut brokers[lagging];
    let replica = open_replica(&b.flusher, b.dir.path(), small);
    let network = GroupNetwork::new(Arc::clone(&b.transport), GROUP);
    let raft = start_group(&replica, b.id, network, raft_config(), None)
        .await
        .expect("restart group");
    b.groups.lock().insert(GROUP, raft.clone());
    b.replica = replica;
    b.raft = raft;
    let caught_up = Arc::clone(&brokers[lagging].replica);
    eventually("the lagging replica did not catch up", 20, || {
        caught_up.high_watermark() >= high_watermark
    })
    .await;
    assert!(brokers[lagging].replica.log_start_offset() >= log_start);
    let expected = entries_from(&brokers[l], brokers[lagging].replica.log_start_offset());
    assert!(!expected.is_empty());
    assert_eq!(
        entries_from(
            &brokers[lagging],
            brokers[lagging].replica.log_start_offset()
        ),
        expected
    );
    // Still one group: a write after the catch-up reaches all three.
    let more = write(&brokers[l].replica, 200).await.expect("committed");
    eventually("a replica missed the write after catch-up", 10, || {
        brokers
            .iter()
            .all(|b| b.replica.high_watermark() > more.last_offset)
    })
    .await;
}

/// One try of the acks=1 test; `None` when the leader lost leadership before
/// the acks=1 batch was proposed (a loaded machine), which proves nothing.
async fn acks_1_without_a_majority() -> Option<()> {
    let brokers = cluster().await;
    // A committed write first: the leader has just heard from a majority.
    write_to_leader(&brokers, &[0, 1, 2], 0).await;
    let l = brokers.iter().position(|b| b.replica.is_leader())?;
    let leader = &brokers[l];
    for (i, b) in brokers.iter().enumerate() {
        if i != l {
            b.raft.shutdown().await.expect("follower stops");
        }
    }
    // No majority any more: nothing commits, but the leader still appends.
    let one = leader
        .replica
        .enqueue(batch(1), 1, Acks::Leader)
        .await
        .expect("queued");
    let all = leader
        .replica
        .enqueue(batch(2), 1, Acks::All)
        .await
        .expect("queued");
    let info = match tokio::time::timeout(Duration::from_secs(5), one.appended())
        .await
        .expect("acks=1 answered without a majority")
    {
        Ok(info) => info,
        Err(ReplicaError::NotLeader { .. }) => return None,
        Err(e) => panic!("acks=1 refused: {e}"),
    };
    assert!(
        leader.replica.high_watermark() <= info.base_offset,
        "the acks=1 batch was committed after all: it proves nothing"
    );
    let stored = entries_from(leader, info.base_offset);
    assert!(
        stored
            .first()
            .is_some_and(|(o, _)| *o == info.base_offset.0),
        "the answered offset {} is not in the leader's log",
        info.base_offset
    );
    let all = tokio::time::timeout(Duration::from_secs(1), all.appended()).await;
    assert!(
        !matches!(all, Ok(Ok(_))),
        "acks=all answered success without a majority"
    );
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_1_is_answered_at_the_leaders_append_and_acks_all_only_at_commit() {
    for _ in 0..3 {
        if acks_1_without_a_majority().await.is_some() {
            return;
        }
    }
    panic!("leadership was lost before the acks=1 batch in three tries");
}
