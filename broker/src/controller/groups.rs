//! The Raft groups running on this broker, by group id, and the transport handler
//! that routes a peer's request to the group it names (or to the controller for
//! broker-level requests).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use parking_lot::RwLock;
use sluice_replication::raft::RaftNode;
use sluice_replication::transport::network::serve;
use sluice_replication::transport::Handler;

use super::{Controller, FORWARD, WAIT_RECONCILED};

#[derive(Debug, Default)]
pub struct RaftGroups {
    /// Group id to (partition name, node).
    groups: RwLock<HashMap<u64, (String, RaftNode)>>,
    controller: OnceLock<Weak<Controller>>,
}

impl RaftGroups {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn insert(&self, group: u64, partition: &str, raft: RaftNode) {
        self.groups
            .write()
            .insert(group, (partition.to_string(), raft));
    }

    pub fn remove(&self, group: u64) -> Option<RaftNode> {
        self.groups.write().remove(&group).map(|(_, r)| r)
    }

    pub fn get(&self, group: u64) -> Option<RaftNode> {
        self.groups.read().get(&group).map(|(_, r)| r.clone())
    }

    /// The group of a partition (by its name, `topic-N`).
    pub fn group_of(&self, partition: &str) -> Option<u64> {
        self.groups
            .read()
            .iter()
            .find(|(_, (name, _))| name == partition)
            .map(|(g, _)| *g)
    }

    pub fn all(&self) -> Vec<RaftNode> {
        self.groups
            .read()
            .values()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn set_controller(&self, controller: &Arc<Controller>) {
        let _ = self.controller.set(Arc::downgrade(controller));
    }

    /// What answers the transport's requests.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let groups = Arc::downgrade(self);
        Arc::new(move |_peer, kind, group, payload: Bytes| {
            let groups = groups.upgrade();
            Box::pin(async move {
                let groups = groups.ok_or("broker is stopping")?;
                match kind {
                    FORWARD | WAIT_RECONCILED => {
                        let controller = groups
                            .controller
                            .get()
                            .and_then(Weak::upgrade)
                            .ok_or("the controller is not started")?;
                        if kind == FORWARD {
                            controller.handle_forward(payload).await
                        } else {
                            controller.handle_wait_reconciled(payload).await
                        }
                    }
                    _ => match groups.get(group) {
                        Some(raft) => serve(&raft, kind, payload).await,
                        None => Err(format!("group {group} does not run on this broker")),
                    },
                }
            })
        })
    }
}
