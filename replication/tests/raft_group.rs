//! Three replicas of one partition in one process, on the file log, over an
//! in-memory transport: openraft elects a leader, replicates producer batches and
//! the replicas end with the same entries at the same offsets; the high watermark
//! each hands its owner is the commit point; a new leader takes over after the
//! leader stops, and the survivors stay identical.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

/// Delivers RPCs to the replicas in this process; a stopped replica is unreachable.
#[derive(Default)]
struct Router {
    nodes: Mutex<BTreeMap<u64, Node>>,
}

impl Router {
    fn node(&self, id: u64) -> Result<Node, Unreachable<PartitionRaft>> {
        self.nodes
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("replica {id} is stopped")))
    }
}

#[derive(Clone)]
struct Network {
    router: Arc<Router>,
}

struct Connection {
    router: Arc<Router>,
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
        let node = self.router.node(self.target)?;
        node.append_entries(rpc).await.map_err(remote)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        let node = self.router.node(self.target)?;
        node.vote(rpc).await.map_err(remote)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        // Asked of the peer, not granted unasked as openraft's default does.
        let node = self.router.node(self.target)?;
        node.pre_vote(rpc).await.map_err(remote)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<PartitionRaft>, StreamingError<PartitionRaft>> {
        let node = self.router.node(self.target)?;
        node.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

struct Replica {
    _dir: tempfile::TempDir,
    log: Arc<Mutex<Partition>>,
    high_watermark: Arc<Mutex<Offset>>,
}

async fn start(id: u64, router: &Arc<Router>, flusher: &Arc<Flusher>) -> Replica {
    let dir = tempfile::tempdir().expect("tempdir");
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
    };
    let node = Raft::new(id, config, network, store, sm)
        .await
        .expect("raft");
    router.nodes.lock().insert(id, node);
    Replica {
        _dir: dir,
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
        let leader = leader_of(&router, &[1, 2, 3]).await;

        let mut acked = Vec::new();
        for i in 0..30 {
            let node = router.node(leader).expect("leader");
            let reply = node.client_write(batch(i)).await.expect("write");
            acked.push(reply.response().last_offset);
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
        let stopped = router.nodes.lock().remove(&leader).expect("leader");
        stopped.shutdown().await.expect("stop");
        let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let new_leader = leader_of(&router, &survivors).await;
        for i in 30..40 {
            let node = router.node(new_leader).expect("leader");
            let reply = node
                .client_write(batch(i))
                .await
                .expect("write after failover");
            acked.push(reply.response().last_offset);
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
