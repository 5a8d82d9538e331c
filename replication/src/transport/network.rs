//! openraft's network over the transport: the client side for a group's leader
//! and candidates, and [`serve`], which answers a peer's Raft request with the
//! local Raft node of that group.
//!
//! Overridden defaults: `pre_vote` asks the peer (openraft's default grants
//! unasked), and `transfer_leader` is delivered (the default answers
//! unreachable).

use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::TransferLeaderResponse;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    VoteRequest, VoteResponse,
};
use openraft::{EmptyNode, Raft, RaftNetworkV2};

use super::wire::{self, Snapshot, Vote};
use super::{Transport, TransportError};
use crate::raft::{PartitionRaft, PartitionStateMachine};
use crate::Replica;

/// Creates clients of one group towards its peers.
#[derive(Debug, Clone)]
pub struct GroupNetwork {
    transport: Arc<Transport>,
    group: u64,
}

impl GroupNetwork {
    pub fn new(transport: Arc<Transport>, group: u64) -> Self {
        GroupNetwork { transport, group }
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    pub fn group(&self) -> u64 {
        self.group
    }
}

/// One group's client towards one peer.
#[derive(Debug)]
pub struct GroupClient {
    transport: Arc<Transport>,
    group: u64,
    target: u64,
}

impl RaftNetworkFactory<PartitionRaft> for GroupNetwork {
    type Network = GroupClient;

    async fn new_client(&mut self, target: u64, _node: &EmptyNode) -> GroupClient {
        GroupClient {
            transport: Arc::clone(&self.transport),
            group: self.group,
            target,
        }
    }
}

fn rpc_error(e: TransportError) -> RPCError<PartitionRaft> {
    match e {
        TransportError::Disconnected { .. } | TransportError::UnknownPeer { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        e => RPCError::Network(NetworkError::new(&e)),
    }
}

fn decode_error(e: io::Error) -> RPCError<PartitionRaft> {
    RPCError::Network(NetworkError::new(&e))
}

impl GroupClient {
    async fn call(
        &self,
        kind: u8,
        payload: Bytes,
        option: &RPCOption,
    ) -> Result<Bytes, TransportError> {
        self.transport
            .call(self.target, kind, self.group, payload, option.hard_ttl())
            .await
    }
}

impl GroupClient {
    /// A vote or a pre-vote (`kind`), asked of the peer.
    async fn ask_vote(
        &self,
        kind: u8,
        rpc: &VoteRequest<PartitionRaft>,
        option: &RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        let answer = self
            .call(kind, wire::encode_vote_request(rpc), option)
            .await
            .map_err(rpc_error)?;
        wire::decode_vote_response(answer).map_err(decode_error)
    }
}

impl RaftNetworkV2<PartitionRaft> for GroupClient {
    type SnapshotData = std::io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        let payload = wire::encode_append(&rpc);
        let answer = self
            .call(wire::APPEND, payload, &option)
            .await
            .map_err(rpc_error)?;
        wire::decode_append_response(answer).map_err(decode_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.ask_vote(wire::VOTE, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.ask_vote(wire::PRE_VOTE, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<PartitionRaft>, StreamingError<PartitionRaft>> {
        let payload = wire::encode_snapshot(&vote, &snapshot);
        let answer =
            self.call(wire::SNAPSHOT, payload, &option)
                .await
                .map_err(|e| match rpc_error(e) {
                    RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                    other => StreamingError::Network(NetworkError::new(&other)),
                })?;
        wire::decode_snapshot_response(answer)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        let payload = wire::encode_transfer(&req);
        let answer = self
            .call(wire::TRANSFER_LEADER, payload, &option)
            .await
            .map_err(rpc_error)?;
        wire::decode_transfer_response(answer).map_err(decode_error)
    }
}

/// Answers a peer's request for a group this broker hosts: a Raft request goes
/// to the replica's Raft node, after which a quiet group wakes (so a follower's
/// election timer restarts from the message); a quiet request goes to the
/// group's quiet state.
pub async fn serve_replica(
    replica: &Replica,
    from: u64,
    kind: u8,
    payload: Bytes,
) -> Result<Bytes, String> {
    let raft = replica
        .raft()
        .ok_or_else(|| format!("{} is not replicated here", replica.name()))?;
    if kind == wire::QUIET {
        return match replica.quiet() {
            Some(quiet) => quiet.on_request(from, payload),
            None => Ok(Bytes::from_static(&[0])),
        };
    }
    let answer = serve(raft, kind, payload).await;
    replica.wake();
    answer
}

/// Answers a peer's Raft request of `kind` with the local node of its group.
pub async fn serve(
    raft: &Raft<PartitionRaft, PartitionStateMachine>,
    kind: u8,
    payload: Bytes,
) -> Result<Bytes, String> {
    let bad = |e: io::Error| format!("malformed Raft request: {e}");
    match kind {
        wire::VOTE => {
            let req = wire::decode_vote_request(payload).map_err(bad)?;
            let r = raft.vote(req).await.map_err(|e| e.to_string())?;
            Ok(wire::encode_vote_response(&r))
        }
        wire::PRE_VOTE => {
            let req = wire::decode_vote_request(payload).map_err(bad)?;
            let r = raft.pre_vote(req).await.map_err(|e| e.to_string())?;
            Ok(wire::encode_vote_response(&r))
        }
        wire::APPEND => {
            let req = wire::decode_append(payload).map_err(bad)?;
            let r = raft.append_entries(req).await.map_err(|e| e.to_string())?;
            Ok(wire::encode_append_response(&r))
        }
        wire::SNAPSHOT => {
            let (vote, snapshot) = wire::decode_snapshot(payload).map_err(bad)?;
            let r = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(|e| e.to_string())?;
            Ok(wire::encode_snapshot_response(&r))
        }
        wire::TRANSFER_LEADER => {
            let req = wire::decode_transfer(payload).map_err(bad)?;
            let r = raft
                .handle_transfer_leader(req)
                .await
                .map_err(|e| e.to_string())?;
            Ok(wire::encode_transfer_response(&r))
        }
        other => Err(format!("unknown Raft request kind {other}")),
    }
}
