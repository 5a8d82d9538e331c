//! The controller: a Raft group on every peer whose log is the internal partition
//! `__cluster_metadata-0` and whose state is the [`MetadataImage`]. Admin changes
//! are commands proposed by the controller's Raft leader; a broker that is not the
//! leader forwards them over the inter-broker transport. A change is answered once
//! every live broker has applied it and started what it asks for (the
//! [`reconciler`]), so each broker's own Metadata shows it.
//!
//! ```text
//!  submit(cmd) ─► leader? propose ─► commit ─► apply on every broker (image)
//!              └► else forward to the leader ──┘      │
//!  reconciler: image changed ─► open logs, start partition groups, drop deleted
//!  leader: ask each live peer "reconciled up to N?" ─► answer the caller
//! ```

pub mod coordination;
pub mod election;
pub mod groups;
pub mod image;
pub mod leadership;
pub mod reconciler;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::async_runtime::watch::WatchReceiver;
use parking_lot::{Mutex, RwLock};
use sluice_protocol::batch::{build_batch, BatchView};
use sluice_protocol::records::{parse_records, records_data};
use sluice_replication::raft::{ApplyHook, ProducerBatch, RaftNode};
use sluice_replication::transport::network::GroupNetwork;
use sluice_replication::transport::Transport;
use sluice_replication::{initialize_if_pristine, start_group, Replica};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::BrokerConfig;
pub use image::{
    Applied, BrokerInfo, Command, LeaderRecord, MetadataImage, PublishedLeader, CONTROLLER_GROUP,
};

/// Broker-level request kinds on the inter-broker transport (Raft's are below).
pub const FORWARD: u8 = 16;
pub const WAIT_RECONCILED: u8 = 17;
/// Asks a partition's leader to elect the preferred replica.
pub const ELECT_PREFERRED: u8 = 18;
/// The controller's partition.
pub const METADATA_PARTITION: &str = "__cluster_metadata-0";
/// Results of applied commands kept for their proposers.
const RESULTS_KEPT: usize = 1024;
/// Largest metadata record decoded.
const COMMAND_BYTES_MAX: usize = 16 << 20;
/// Pause between attempts to reach the controller.
const RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Error, Clone)]
pub enum ControllerError {
    #[error("no controller reachable within {0:?}")]
    Unavailable(Duration),
    #[error("{0}")]
    Refused(String),
}

/// What the apply hook and the controller share.
#[derive(Debug, Default)]
pub struct MetadataState {
    image: RwLock<MetadataImage>,
    results: Mutex<BTreeMap<u64, Applied>>,
}

/// The Raft config of every group on this broker.
pub fn raft_config(config: &BrokerConfig) -> Arc<openraft::Config> {
    let c = &config.cluster;
    let raft = openraft::Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: c.raft_heartbeat_interval_ms,
        // Under writes, replication answers prove liveness: no extra heartbeats.
        heartbeat_min_interval: Some(c.raft_heartbeat_interval_ms),
        election_timeout_min: c.raft_election_timeout_ms,
        election_timeout_max: 2 * c.raft_election_timeout_ms,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        enable_pre_vote: Some(true),
        // A broker whose data directory was wiped rejoins with an empty log; its
        // peers replicate everything to it again instead of refusing it.
        allow_log_reversion: Some(true),
        // A restarted leader stands for election like everyone else (restoring
        // leadership without a vote can serve from a stale view).
        enable_leader_restore: Some(false),
        ..openraft::Config::default()
    };
    Arc::new(raft.validate().unwrap_or_default())
}

#[derive(Debug)]
pub struct Controller {
    node: i32,
    peers: Vec<i32>,
    config: BrokerConfig,
    transport: Arc<Transport>,
    replica: Arc<Replica>,
    raft: RaftNode,
    state: Arc<MetadataState>,
    /// One past the index of the last metadata entry applied here.
    applied: Arc<watch::Sender<u64>>,
    /// One past the index up to which the reconciler has acted on the image.
    reconciled: watch::Sender<u64>,
    /// Proposals from this broker go one at a time (each is checked against the
    /// image its predecessors left).
    proposing: tokio::sync::Mutex<()>,
    /// DeleteRecords floors this broker's replicas follow (or are following),
    /// by Raft group.
    pub(crate) deletions: Mutex<BTreeMap<u64, i64>>,
}

impl Controller {
    /// Starts the controller group over `replica` (the metadata partition, opened
    /// by the caller). The lowest peer initializes the group when its log is
    /// pristine.
    pub async fn start(
        config: &BrokerConfig,
        transport: Arc<Transport>,
        replica: Arc<Replica>,
    ) -> Result<Arc<Self>, String> {
        let state = Arc::new(MetadataState::default());
        let applied = Arc::new(watch::channel(0u64).0);
        let hook = apply_hook(Arc::clone(&state), Arc::clone(&applied));
        let network = GroupNetwork::new(Arc::clone(&transport), CONTROLLER_GROUP);
        let raft = start_group(
            &replica,
            config.node_id as u64,
            network,
            raft_config(config),
            Some(hook),
        )
        .await
        .map_err(|e| e.to_string())?;
        let peers: Vec<i32> = config
            .cluster
            .peer_list()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if peers.first() == Some(&config.node_id) {
            let members: BTreeSet<u64> = peers.iter().map(|p| *p as u64).collect();
            if initialize_if_pristine(&raft, &members)
                .await
                .map_err(|e| e.to_string())?
            {
                info!(?peers, "controller group initialized");
            }
        }
        Ok(Arc::new(Controller {
            node: config.node_id,
            peers,
            config: config.clone(),
            transport,
            replica,
            raft,
            state,
            applied,
            reconciled: watch::channel(0).0,
            proposing: tokio::sync::Mutex::new(()),
            deletions: Mutex::new(BTreeMap::new()),
        }))
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// The metadata partition's replica on this broker.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    pub fn peers(&self) -> &[i32] {
        &self.peers
    }

    /// The metadata as of the last applied command.
    pub fn image(&self) -> MetadataImage {
        self.state.image.read().clone()
    }

    pub fn with_image<T>(&self, f: impl FnOnce(&MetadataImage) -> T) -> T {
        f(&self.state.image.read())
    }

    /// The controller's current leader.
    pub fn leader(&self) -> Option<i32> {
        self.replica.leader().map(|l| l as i32)
    }

    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub(crate) fn set_reconciled(&self, upto: u64) {
        self.reconciled.send_if_modified(|r| {
            let moved = upto > *r;
            if moved {
                *r = upto;
            }
            moved
        });
    }

    /// Waits (at most `timeout`) until a controller leader is known and this
    /// broker has reconciled everything committed in the metadata log, so that it
    /// serves clients with current metadata (KRaft fences a broker until then).
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let target = {
                let m = metrics.borrow_watched();
                m.current_leader.and(m.local_committed).map(|c| c.index + 1)
            };
            if let Some(target) = target {
                return self.wait_reconciled(target, deadline).await;
            }
            if tokio::time::timeout_at(deadline, metrics.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.cluster.metadata_propagation_timeout_ms)
    }

    /// Proposes `command` through the controller leader (this broker or another)
    /// and returns once this broker and every live peer acted on it.
    pub async fn submit(&self, command: &Command) -> Result<Applied, ControllerError> {
        let timeout = self.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempt = if self.raft.as_leader().is_ok() {
                self.propose_and_propagate(command).await
            } else if let Some(leader) = self.leader().filter(|l| *l != self.node) {
                self.forward(leader, command, deadline).await
            } else {
                Err("no controller leader yet".to_string())
            };
            match attempt {
                Ok((index, Applied::Refused(reason))) => {
                    self.wait_reconciled(index + 1, deadline).await;
                    return Err(ControllerError::Refused(reason));
                }
                Ok((index, applied)) => {
                    self.wait_reconciled(index + 1, deadline).await;
                    return Ok(applied);
                }
                Err(e) => {
                    if tokio::time::Instant::now() + RETRY >= deadline {
                        warn!(error = %e, "metadata change not made");
                        return Err(ControllerError::Unavailable(timeout));
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn forward(
        &self,
        leader: i32,
        command: &Command,
        deadline: tokio::time::Instant,
    ) -> Result<(u64, Applied), String> {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer = self
            .transport
            .call(
                leader as u64,
                FORWARD,
                CONTROLLER_GROUP,
                Bytes::from(command.encode()),
                left,
            )
            .await
            .map_err(|e| e.to_string())?;
        decode_outcome(answer)
    }

    /// On the leader: proposes, then waits (bounded) until every connected peer
    /// has reconciled the change.
    async fn propose_and_propagate(&self, command: &Command) -> Result<(u64, Applied), String> {
        let (index, applied) = self.propose(command).await?;
        let peers: Vec<u64> = self
            .peers
            .iter()
            .filter(|p| **p != self.node)
            .map(|p| *p as u64)
            .filter(|p| self.transport.is_connected(*p))
            .collect();
        let upto = Bytes::copy_from_slice(&(index + 1).to_be_bytes());
        let waits = peers.into_iter().map(|p| {
            let upto = upto.clone();
            async move {
                let r = self
                    .transport
                    .call(p, WAIT_RECONCILED, CONTROLLER_GROUP, upto, self.timeout())
                    .await;
                if let Err(e) = r {
                    warn!(peer = p, error = %e, "a peer did not confirm a metadata change in time");
                }
            }
        });
        futures_util::future::join_all(waits).await;
        Ok((index, applied))
    }

    async fn propose(&self, command: &Command) -> Result<(u64, Applied), String> {
        let _one = self.proposing.lock().await;
        let value = command.encode();
        let now = crate::broker::wall_clock_ms();
        let batch = build_batch(now, &[(None, Some(&value))]);
        let written = self
            .raft
            .client_write(ProducerBatch(Bytes::from(batch)))
            .await
            .map_err(|e| e.to_string())?;
        let index = written.log_id.index;
        let applied = self
            .state
            .results
            .lock()
            .get(&index)
            .cloned()
            .unwrap_or(Applied::Done);
        Ok((index, applied))
    }

    async fn wait_reconciled(&self, upto: u64, deadline: tokio::time::Instant) -> bool {
        let mut rx = self.reconciled.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|r| *r >= upto))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A forwarded command, on the broker that believes it leads.
    pub async fn handle_forward(&self, payload: Bytes) -> Result<Bytes, String> {
        let command = Command::decode(&payload)?;
        if self.raft.as_leader().is_err() {
            return Err("this broker is not the controller leader".into());
        }
        let (index, applied) = self.propose_and_propagate(&command).await?;
        Ok(encode_outcome(index, &applied))
    }

    /// A leader asks whether this broker has reconciled up to an index.
    pub async fn handle_wait_reconciled(&self, mut payload: Bytes) -> Result<Bytes, String> {
        if payload.remaining() != 8 {
            return Err("malformed wait request".into());
        }
        let upto = payload.get_u64();
        let deadline = tokio::time::Instant::now() + self.timeout();
        if self.wait_reconciled(upto, deadline).await {
            Ok(Bytes::new())
        } else {
            Err(format!("not reconciled up to {upto} in time"))
        }
    }
}

/// Applies each committed metadata record to the image, in log order.
fn apply_hook(state: Arc<MetadataState>, applied: Arc<watch::Sender<u64>>) -> ApplyHook {
    Arc::new(move |index, batch| {
        let commands = decode_commands(batch);
        {
            let mut image = state.image.write();
            let mut results = state.results.lock();
            for command in commands {
                let result = match command {
                    Ok(c) => image.apply(&c),
                    Err(e) => {
                        warn!(index, error = %e, "skipping a metadata record");
                        Applied::Refused(e)
                    }
                };
                if let Applied::Refused(reason) = &result {
                    info!(index, %reason, "metadata command refused");
                }
                results.insert(index, result);
            }
            while results.len() > RESULTS_KEPT {
                results.pop_first();
            }
        }
        applied.send_modify(|a| *a = (*a).max(index + 1));
    })
}

fn decode_commands(batch: &Bytes) -> Vec<Result<Command, String>> {
    let decode = || -> Result<Vec<Result<Command, String>>, String> {
        let view = BatchView::parse(batch).map_err(|e| e.to_string())?;
        let data = records_data(&view, COMMAND_BYTES_MAX).map_err(|e| e.to_string())?;
        let records = parse_records(&data, view.record_count()).map_err(|e| e.to_string())?;
        Ok(records
            .iter()
            .map(|r| match r.value {
                Some(v) => Command::decode(v),
                None => Err("metadata record without a value".into()),
            })
            .collect())
    };
    decode().unwrap_or_else(|e| vec![Err(e)])
}

fn encode_outcome(index: u64, applied: &Applied) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64(index);
    match applied {
        Applied::Done => out.put_u8(0),
        Applied::ProducerIds { broker, start } => {
            out.put_u8(1);
            out.put_i32(*broker);
            out.put_i64(*start);
        }
        Applied::Refused(reason) => {
            out.put_u8(2);
            out.put_slice(reason.as_bytes());
        }
    }
    out.freeze()
}

fn decode_outcome(mut buf: Bytes) -> Result<(u64, Applied), String> {
    if buf.remaining() < 9 {
        return Err("short controller answer".into());
    }
    let index = buf.get_u64();
    let applied = match buf.get_u8() {
        0 => Applied::Done,
        1 if buf.remaining() == 12 => Applied::ProducerIds {
            broker: buf.get_i32(),
            start: buf.get_i64(),
        },
        2 => Applied::Refused(String::from_utf8_lossy(&buf).into_owned()),
        _ => return Err("malformed controller answer".into()),
    };
    Ok((index, applied))
}
