//! One partition group on three brokers (real transports on 127.0.0.1, with
//! their keep-alive) and the quiet loop running on each: an idle group goes quiet
//! on every replica while its leader keeps its lease and full ISR and no election
//! happens; a write wakes it and commits; a group that stopped on its leader's
//! broker, which keeps answering pings, is taken over by the followers once the
//! quiet lease they were given runs out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use parking_lot::Mutex;
use sluice_protocol::batch::build_idempotent_batch;
use sluice_replication::quiet::{self, QuietTimes};
use sluice_replication::transport::network::{serve_replica, GroupNetwork};
use sluice_replication::transport::{Handler, Transport};
use sluice_replication::{
    initialize_if_pristine, start_group, Commits, Flusher, HighWatermarkSource, Replica,
    ReplicaContext,
};
use sluice_storage::LogConfig;

mod common;

use common::{eventually, write_through_leader};

const GROUP: u64 = 9;
const TICK: Duration = Duration::from_millis(100);
const TIMES: QuietTimes = QuietTimes {
    idle_after: Duration::from_millis(1000),
    renew_every: Duration::from_millis(500),
    expire_after: Duration::from_millis(3000),
};

struct Broker {
    replica: Arc<Replica>,
    _transport: Arc<Transport>,
    _dir: tempfile::TempDir,
}

fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        enable_pre_vote: Some(true),
        allow_log_reversion: Some(true),
        ..openraft::Config::default()
    };
    Arc::new(config.validate().expect("config"))
}

fn router(groups: &Arc<Mutex<HashMap<u64, Arc<Replica>>>>) -> Handler {
    let routes = Arc::clone(groups);
    Arc::new(move |peer, kind, group, payload| {
        let replica = routes.lock().get(&group).cloned();
        Box::pin(async move {
            match replica {
                Some(r) => serve_replica(&r, peer, kind, payload).await,
                None => Err(format!("no group {group} here")),
            }
        })
    })
}

async fn cluster() -> Vec<Broker> {
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
        let transport = Transport::new(id, "quiet-test", peers.clone());
        let groups: Arc<Mutex<HashMap<u64, Arc<Replica>>>> = Arc::default();
        transport.set_handler(router(&groups));
        transport.start(listener);
        transport.keep_alive(TICK);
        let dir = tempfile::tempdir().expect("tempdir");
        let context = ReplicaContext {
            flusher: Arc::clone(&flusher),
            commits: Commits::new(),
            io: Arc::new(tokio::sync::Semaphore::new(2)),
            high_watermark: HighWatermarkSource::Owner,
        };
        let replica = Replica::open(
            "carts-0".into(),
            dir.path().join("carts-0"),
            LogConfig::default(),
            context,
        );
        let network = GroupNetwork::new(Arc::clone(&transport), GROUP);
        let raft = start_group(&replica, id, network, raft_config(), None)
            .await
            .expect("start group");
        groups.lock().insert(GROUP, Arc::clone(&replica));
        let watched = Arc::clone(&replica);
        tokio::spawn(quiet::run(
            move || watched.quiet().cloned().into_iter().collect(),
            TICK,
            TIMES,
        ));
        initialize_if_pristine(&raft, &members)
            .await
            .expect("initialize");
        brokers.push(Broker {
            replica,
            _transport: transport,
            _dir: dir,
        });
    }
    brokers
}

fn batch(seq: i32) -> Bytes {
    let v = format!("cart-{seq}");
    Bytes::from(build_idempotent_batch(
        7,
        0,
        seq,
        1_000,
        &[(None, Some(v.as_bytes()))],
    ))
}

/// Writes batch `seq` through whichever of `running` leads; returns the index
/// of the broker that took it.
async fn write_to_leader(brokers: &[Broker], running: &[usize], seq: i32) -> usize {
    let replicas: Vec<&Arc<Replica>> = running.iter().map(|i| &brokers[*i].replica).collect();
    let took = write_through_leader(&replicas, batch(seq), &format!("batch {seq}")).await;
    running[took]
}

/// Three brokers whose group took one write and then went quiet on every
/// replica: the brokers, the leader's index and its term.
async fn quiet_cluster() -> (Vec<Broker>, usize, u64) {
    let brokers = cluster().await;
    let l = write_to_leader(&brokers, &[0, 1, 2], 0).await;
    eventually("the idle group never went quiet everywhere", 15, || {
        brokers.iter().all(asleep)
    })
    .await;
    let term = term(&brokers[l]);
    (brokers, l, term)
}

fn asleep(b: &Broker) -> bool {
    b.replica.quiet().is_some_and(|q| q.is_asleep())
}

fn term(b: &Broker) -> u64 {
    let raft = b.replica.raft().expect("replicated");
    let metrics = raft.metrics();
    let term = metrics.borrow_watched().current_term;
    term
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_goes_quiet_keeps_its_leader_and_wakes_for_a_write() {
    let (brokers, l, before) = quiet_cluster().await;
    // Twice the election timeout without a tick or heartbeat anywhere: the
    // leader keeps its lease from the keep-alive, nobody stands for election.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(brokers.iter().all(asleep), "a replica woke while idle");
    assert!(
        brokers[l].replica.is_leader(),
        "the quiet leader lost its lease"
    );
    assert_eq!(
        brokers[l].replica.in_sync_replicas(Duration::from_secs(1)),
        Some(vec![1, 2, 3]),
        "the quiet followers dropped out of the ISR"
    );
    for b in &brokers {
        assert_eq!(term(b), before, "an election happened while quiet");
    }

    // A write wakes the group and commits in the same term.
    let started = Instant::now();
    let took = write_to_leader(&brokers, &[0, 1, 2], 1).await;
    assert_eq!(took, l, "leadership moved for a write to a quiet group");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the write to a quiet group took {:?}",
        started.elapsed()
    );
    assert_eq!(term(&brokers[l]), before);
    eventually("the group did not go quiet again", 15, || {
        brokers.iter().all(asleep)
    })
    .await;
    for b in &brokers {
        assert_eq!(
            b.replica.high_watermark(),
            brokers[l].replica.high_watermark()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_take_over_a_quiet_group_that_stopped_on_a_live_broker() {
    let (brokers, l, before) = quiet_cluster().await;
    // The leader's group stops; its transport keeps answering pings, so only
    // the quiet lease can tell the followers.
    let raft = brokers[l].replica.raft().expect("replicated").clone();
    raft.shutdown().await.expect("leader group stops");
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let started = Instant::now();
    let took = write_to_leader(&brokers, &others, 1).await;
    assert_ne!(took, l);
    assert!(
        term(&brokers[took]) > before,
        "no new term for the new leader"
    );
    let waited = started.elapsed();
    assert!(
        waited < TIMES.expire_after + Duration::from_secs(6),
        "the followers took {waited:?} to take over"
    );
}
