//! Starting a partition's Raft group on this broker: the replica's log becomes the
//! Raft log, the state machine's commits move the replica's high watermark, and the
//! replica's write path becomes proposals to the group.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::Raft;

use crate::quiet::Quiet;
use crate::raft::{ApplyHook, CommitHook, PartitionLogStore, PartitionStateMachine, RaftNode};
use crate::replica::Replica;
use crate::transport::network::GroupNetwork;
use crate::ReplicaError;

/// Starts the Raft group of `replica` as node `node`, over `network`. `apply`
/// sees every normal entry as it is applied (the controller's metadata image).
pub async fn start_group(
    replica: &Arc<Replica>,
    node: u64,
    network: GroupNetwork,
    config: Arc<openraft::Config>,
    apply: Option<ApplyHook>,
) -> Result<RaftNode, ReplicaError> {
    let failed = |reason: String| ReplicaError::Raft {
        partition: replica.name().to_string(),
        reason,
    };
    let log = replica.shared_log().ok_or_else(|| ReplicaError::Offline {
        partition: replica.name().to_string(),
        reason: replica
            .offline_reason()
            .unwrap_or_else(|| "the log is not open".into()),
    })?;
    let weak = Arc::downgrade(replica);
    let hook: CommitHook = Arc::new(move |high_watermark| {
        if let Some(r) = weak.upgrade() {
            r.advance_high_watermark(high_watermark);
        }
    });
    let store = PartitionLogStore::new(Arc::clone(&log), replica.flusher())
        .with_append_notices(Arc::clone(replica.append_notices()));
    let mut sm = PartitionStateMachine::open(log, Some(hook)).map_err(|e| failed(e.to_string()))?;
    if let Some(apply) = apply {
        sm = sm.with_apply_hook(apply);
    }
    let snapshots = sm.snapshot_requests();
    let (transport, group) = (Arc::clone(network.transport()), network.group());
    let raft = Raft::new(node, config, network, store, sm)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let quiet = Quiet::new(raft.clone(), transport, group);
    replica.attach_raft(raft.clone(), snapshots, quiet);
    Ok(raft)
}

/// Makes `members` the group's first membership when its log is pristine (every
/// member may do this with the same members: the entry is identical everywhere).
pub async fn initialize_if_pristine(
    raft: &RaftNode,
    members: &BTreeSet<u64>,
) -> Result<bool, ReplicaError> {
    let raft_error = |reason: String| ReplicaError::Raft {
        partition: format!("group of node {}", raft.node_id()),
        reason,
    };
    if raft
        .is_initialized()
        .await
        .map_err(|e| raft_error(e.to_string()))?
    {
        return Ok(false);
    }
    match raft.initialize(members.clone()).await {
        Ok(()) => Ok(true),
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => Ok(false),
        Err(e) => Err(raft_error(e.to_string())),
    }
}
