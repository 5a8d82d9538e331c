//! Three replicas of one partition in one process, on the file log, over an
//! in-memory transport: openraft elects a leader, replicates producer batches and
//! the replicas end with the same entries at the same offsets; the high watermark
//! each hands its owner is the commit point; a new leader takes over after the
//! leader stops, and the survivors stay identical. A seeded schedule of crashes
//! (restart from the same files), network partitions, pauses (messages held and
//! delivered late), message loss and writes then checks the Raft invariants: one
//! leader per term, no high watermark going back, committed entries identical on
//! every replica, every acknowledged write present. Each run prints its seed
//! (`SLUICE_RAFT_SEED=N` replays one; 200 seeds run by default, 8 at a time,
//! `SLUICE_RAFT_SEEDS=N` runs another number).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, EmptyNode, Raft, RaftNetworkV2};
use parking_lot::Mutex;
use sluice_protocol::batch::build_batch;
use sluice_replication::raft::{
    CommitHook, PartitionLogStore, PartitionRaft, PartitionStateMachine, ProducerBatch,
};
use sluice_replication::{Flusher, Partition};
use sluice_storage::{LogConfig, Offset};

type Node = Raft<PartitionRaft, PartitionStateMachine>;
type Snapshot = openraft::alias::SnapshotOf<PartitionRaft, std::io::Cursor<Vec<u8>>>;
type Vote = openraft::alias::VoteOf<PartitionRaft>;

/// Delivers RPCs to the replicas in this process; a stopped replica is
/// unreachable, and so is every replica to and from an isolated one. Messages to
/// or from a paused replica wait until it resumes (a stalled process: they arrive
/// late); a loss rate drops messages at random (seeded).
#[derive(Default)]
struct Router {
    nodes: Mutex<BTreeMap<u64, Node>>,
    isolated: Mutex<BTreeSet<u64>>,
    paused: Mutex<BTreeSet<u64>>,
    /// (generator, per-mille of messages lost)
    loss: Mutex<Option<(Rng, u64)>>,
}

impl Router {
    fn node(&self, id: u64) -> Result<Node, Unreachable<PartitionRaft>> {
        self.nodes
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("replica {id} is stopped")))
    }

    fn deliver(&self, from: u64, to: u64) -> Result<Node, Unreachable<PartitionRaft>> {
        let isolated = self.isolated.lock();
        if isolated.contains(&from) || isolated.contains(&to) {
            return Err(Unreachable::from_string(format!("{from} -> {to} is cut")));
        }
        drop(isolated);
        if let Some((rng, per_mille)) = self.loss.lock().as_mut() {
            if rng.below(1000) < *per_mille {
                return Err(Unreachable::from_string(format!(
                    "{from} -> {to}: message lost"
                )));
            }
        }
        self.node(to)
    }

    /// Waits while either end is paused.
    async fn hold(&self, from: u64, to: u64) {
        while {
            let paused = self.paused.lock();
            paused.contains(&from) || paused.contains(&to)
        } {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[derive(Clone)]
struct Network {
    router: Arc<Router>,
    source: u64,
}

struct Connection {
    router: Arc<Router>,
    source: u64,
    target: u64,
}

fn remote<E: std::error::Error + 'static>(e: E) -> RPCError<PartitionRaft> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetworkFactory<PartitionRaft> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &EmptyNode) -> Connection {
        Connection {
            router: Arc::clone(&self.router),
            source: self.source,
            target,
        }
    }
}

impl RaftNetworkV2<PartitionRaft> for Connection {
    type SnapshotData = std::io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.router.hold(self.source, self.target).await;
        let node = self.router.deliver(self.source, self.target)?;
        node.append_entries(rpc).await.map_err(remote)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.router.hold(self.source, self.target).await;
        let node = self.router.deliver(self.source, self.target)?;
        node.vote(rpc).await.map_err(remote)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        // Asked of the peer, not granted unasked as openraft's default does.
        self.router.hold(self.source, self.target).await;
        let node = self.router.deliver(self.source, self.target)?;
        node.pre_vote(rpc).await.map_err(remote)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<PartitionRaft>, StreamingError<PartitionRaft>> {
        let node = self.router.deliver(self.source, self.target)?;
        node.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

struct Replica {
    dir: tempfile::TempDir,
    log: Arc<Mutex<Partition>>,
    high_watermark: Arc<Mutex<Offset>>,
}

async fn start(id: u64, router: &Arc<Router>, flusher: &Arc<Flusher>) -> Replica {
    open_replica(id, tempfile::tempdir().expect("tempdir"), router, flusher).await
}

/// Opens (or reopens, after a crash) replica `id` from the files in `dir`.
async fn open_replica(
    id: u64,
    dir: tempfile::TempDir,
    router: &Arc<Router>,
    flusher: &Arc<Flusher>,
) -> Replica {
    let log = Partition::open(dir.path().join("orders-0"), LogConfig::default()).expect("open");
    let log = Arc::new(Mutex::new(log));
    let high_watermark = Arc::new(Mutex::new(Offset(0)));
    let hw = Arc::clone(&high_watermark);
    let hook: CommitHook = Arc::new(move |o| *hw.lock() = o);
    let store = PartitionLogStore::new(Arc::clone(&log), Arc::clone(flusher));
    let sm = PartitionStateMachine::open(Arc::clone(&log), Some(hook)).expect("state machine");
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Config::default()
    };
    let config = Arc::new(config.validate().expect("config"));
    let network = Network {
        router: Arc::clone(router),
        source: id,
    };
    let node = Raft::new(id, config, network, store, sm)
        .await
        .expect("raft");
    router.nodes.lock().insert(id, node);
    Replica {
        dir,
        log,
        high_watermark,
    }
}

fn batch(i: usize) -> ProducerBatch {
    let value = format!("order-{i}");
    let records: Vec<_> = (0..1 + i % 3)
        .map(|_| (None, Some(value.as_bytes())))
        .collect();
    ProducerBatch(Bytes::from(build_batch(1000 + i as i64, &records)))
}

/// (index, term, base, last, data bytes or None for control batches) of every entry.
type Stored = Vec<(u64, i32, i64, i64, Option<Bytes>)>;

fn stored(r: &Replica) -> Stored {
    let mut log = r.log.lock();
    log.log_mut()
        .read_entries(0, u64::MAX, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|e| {
            let control = sluice_protocol::batch::BatchView::parse(&e.batch)
                .expect("stored batch")
                .is_control();
            (
                e.index,
                e.term.0,
                e.base_offset.0,
                e.last_offset.0,
                (!control).then_some(e.batch.slice(16..)),
            )
        })
        .collect()
}

async fn leader_of(router: &Router, among: &[u64]) -> u64 {
    for _ in 0..200 {
        for id in among {
            if let Ok(node) = router.node(*id) {
                if let Some(l) = node.current_leader().await {
                    if among.contains(&l) && router.node(l).is_ok() {
                        return l;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader among {among:?}");
}

/// Writes batch `i` through whoever leads among `among`; a write refused before
/// its entry was appended (leadership moved, as it may on a loaded machine) is
/// sent again. Returns its last offset.
async fn write_through_leader(router: &Router, among: &[u64], i: usize) -> Offset {
    for _ in 0..50 {
        let leader = leader_of(router, among).await;
        let Ok(node) = router.node(leader) else {
            continue;
        };
        match node.client_write(batch(i)).await {
            Ok(reply) => return reply.response().last_offset,
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(_),
            )) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    panic!("write {i} was never accepted");
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}");
}

#[test]
fn three_replicas_replicate_batches_to_identical_logs_and_survive_a_leader_stop() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let router = Arc::new(Router::default());
        let flusher = Flusher::start();
        let mut replicas = BTreeMap::new();
        for id in 1..=3 {
            replicas.insert(id, start(id, &router, &flusher).await);
        }
        router
            .node(1)
            .expect("node")
            .initialize(BTreeSet::from([1, 2, 3]))
            .await
            .expect("initialize");
        leader_of(&router, &[1, 2, 3]).await;

        let mut acked = Vec::new();
        for i in 0..30 {
            acked.push(write_through_leader(&router, &[1, 2, 3], i).await);
        }
        let end = acked.last().expect("acked").next();
        for r in replicas.values() {
            eventually("every replica applied every write", || {
                *r.high_watermark.lock() >= end
            })
            .await;
        }
        let first = stored(&replicas[&1]);
        assert_eq!(first.iter().filter(|e| e.4.is_some()).count(), 30);
        for r in replicas.values() {
            assert_eq!(
                stored(r),
                first,
                "replicas hold the same entries at the same offsets"
            );
        }

        // The leader stops: the other two elect one of themselves and go on.
        let leader = leader_of(&router, &[1, 2, 3]).await;
        let stopped = router.nodes.lock().remove(&leader).expect("leader");
        stopped.shutdown().await.expect("stop");
        let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        leader_of(&router, &survivors).await;
        for i in 30..40 {
            acked.push(write_through_leader(&router, &survivors, i).await);
        }
        let end = acked.last().expect("acked").next();
        for id in &survivors {
            let r = &replicas[id];
            eventually("the survivors applied the new writes", || {
                *r.high_watermark.lock() >= end
            })
            .await;
        }
        let a = stored(&replicas[&survivors[0]]);
        assert_eq!(a, stored(&replicas[&survivors[1]]));
        assert!(a.starts_with(&first), "committed entries never change");
        assert!(
            a.last().expect("entries").1 > first.last().expect("entries").1,
            "a new term"
        );
        // Acknowledged offsets are dense and increasing across the failover.
        assert!(acked.windows(2).all(|w| w[0] < w[1]));
        let nodes: Vec<Node> = router.nodes.lock().values().cloned().collect();
        for node in nodes {
            let _ = node.shutdown().await;
        }
        flusher.shutdown();
    });
}

/// xorshift64*: a seeded schedule without a dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Terms and their leaders as seen by every replica's metrics: one leader per term.
fn observe_leaders(router: &Router, leaders: &mut BTreeMap<u64, u64>, seed: u64) {
    let nodes: Vec<(u64, Node)> = router
        .nodes
        .lock()
        .iter()
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    for (id, node) in nodes {
        let m = node.metrics().borrow_watched().clone();
        if m.state == openraft::ServerState::Leader {
            let seen = *leaders.entry(m.current_term).or_insert(id);
            assert_eq!(
                seen, id,
                "seed {seed}: two leaders in term {}",
                m.current_term
            );
        }
    }
}

async fn chaos(seed: u64) {
    println!("raft chaos seed {seed} (replay: SLUICE_RAFT_SEED={seed})");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let router = Arc::new(Router::default());
    let flusher = Flusher::start();
    let mut replicas: BTreeMap<u64, Replica> = BTreeMap::new();
    for id in 1..=3 {
        replicas.insert(id, start(id, &router, &flusher).await);
    }
    router
        .node(1)
        .expect("node")
        .initialize(BTreeSet::from([1, 2, 3]))
        .await
        .expect("initialize");
    let mut leaders = BTreeMap::new();
    // (base offset, data bytes) of every acknowledged write.
    let mut acked: Vec<(i64, Bytes)> = Vec::new();
    let mut hw_seen: BTreeMap<u64, Offset> = BTreeMap::new();
    let (mut crashes, mut cuts, mut pauses) = (0, 0, 0);
    for step in 0..30 {
        observe_leaders(&router, &mut leaders, seed);
        for (id, r) in &replicas {
            let hw = *r.high_watermark.lock();
            let seen = hw_seen.entry(*id).or_insert(hw);
            assert!(
                hw >= *seen,
                "seed {seed} step {step}: replica {id} high watermark went back"
            );
            *seen = hw;
        }
        match rng.below(12) {
            0 => {
                // Crash a replica and restart it from its files.
                let id = 1 + rng.below(3);
                crashes += 1;
                let node = router.nodes.lock().remove(&id).expect("running");
                node.shutdown().await.expect("stop");
                drop(node);
                let old = replicas.remove(&id).expect("replica");
                let dir = old.dir;
                drop(old.log);
                let r = open_replica(id, dir, &router, &flusher).await;
                // A restarted state machine applies again from its start.
                hw_seen.insert(id, *r.high_watermark.lock());
                replicas.insert(id, r);
            }
            1 => {
                let id = 1 + rng.below(3);
                cuts += 1;
                router.isolated.lock().insert(id);
            }
            2 | 3 => router.isolated.lock().clear(),
            4 => {
                // Pause a replica (a stalled process) for up to 400 ms.
                let id = 1 + rng.below(3);
                pauses += 1;
                router.paused.lock().insert(id);
                let (r, ms) = (Arc::clone(&router), 50 + rng.below(350));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    r.paused.lock().remove(&id);
                });
            }
            5 => {
                // Lose up to 30% of messages from now on (0 half of the time).
                let rate = if rng.below(2) == 0 { 0 } else { rng.below(300) };
                *router.loss.lock() = Some((Rng(rng.next() | 1), rate));
            }
            _ => {
                // Mostly to the leader a replica names, sometimes to any replica.
                let any = 1 + rng.below(3);
                let Ok(asked) = router.node(any) else {
                    continue;
                };
                let target = match asked.current_leader().await {
                    Some(l) if rng.below(4) > 0 => l,
                    _ => any,
                };
                let Ok(node) = router.node(target) else {
                    continue;
                };
                let i = acked.len() + step * 100;
                let data = batch(i);
                let bytes = data.0.slice(16..);
                let write =
                    tokio::time::timeout(Duration::from_millis(700), node.client_write(data));
                if let Ok(Ok(reply)) = write.await {
                    acked.push((reply.response().base_offset.0, bytes));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
    }
    router.isolated.lock().clear();
    router.paused.lock().clear();
    *router.loss.lock() = None;
    // Heal, then one more write through whoever leads: every replica catches up.
    let end = loop {
        let leader = leader_of(&router, &[1, 2, 3]).await;
        let node = router.node(leader).expect("leader");
        let write = tokio::time::timeout(Duration::from_secs(5), node.client_write(batch(9999)));
        if let Ok(Ok(reply)) = write.await {
            break reply.response().last_offset.next();
        }
    };
    for (id, r) in &replicas {
        for _ in 0..400 {
            if *r.high_watermark.lock() >= end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            *r.high_watermark.lock() >= end,
            "seed {seed}: replica {id} did not catch up"
        );
    }
    observe_leaders(&router, &mut leaders, seed);
    let logs: Vec<Stored> = replicas.values().map(stored).collect();
    let committed_prefix =
        |log: &Stored| -> Stored { log.iter().filter(|e| e.3 < end.0).cloned().collect() };
    let reference = committed_prefix(&logs[0]);
    for log in &logs[1..] {
        assert_eq!(
            committed_prefix(log),
            reference,
            "seed {seed}: committed entries differ"
        );
    }
    for (base, bytes) in &acked {
        assert!(
            reference
                .iter()
                .any(|e| e.2 == *base && e.4.as_ref() == Some(bytes)),
            "seed {seed}: the write acknowledged at offset {base} is lost"
        );
    }
    println!(
        "seed {seed}: {} writes acknowledged, {crashes} crashes, {cuts} partitions, {pauses} pauses, leaders seen in {} terms",
        acked.len(),
        leaders.len()
    );
    let nodes: Vec<Node> = router.nodes.lock().values().cloned().collect();
    for node in nodes {
        let _ = node.shutdown().await;
    }
    flusher.shutdown();
}

#[test]
fn seeded_crashes_partitions_and_writes_keep_the_raft_invariants() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_RAFT_SEED") {
        Ok(s) => vec![s.parse().expect("SLUICE_RAFT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SLUICE_RAFT_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(200u64);
            (1..=n).collect()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Schedules mostly wait on timers: several run at once.
    for chunk in seeds.chunks(CONCURRENT_SEEDS) {
        rt.block_on(futures_util::future::join_all(
            chunk.iter().map(|s| chaos(*s)),
        ));
    }
}

/// Seeded schedules run at the same time.
const CONCURRENT_SEEDS: usize = 8;
