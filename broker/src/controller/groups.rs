//! The Raft groups running on this broker, by group id, and the transport handler
//! that routes a peer's request to the group it names (or to the controller for
//! broker-level requests).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use parking_lot::RwLock;
use sluice_replication::quiet::Quiet;
use sluice_replication::raft::RaftNode;
use sluice_replication::transport::network::serve_replica;
use sluice_replication::transport::Handler;
use sluice_replication::Replica;

use super::image::CONTROLLER_GROUP;
use super::{election, Controller, ELECT_PREFERRED, FORWARD, WAIT_RECONCILED};

#[derive(Debug, Default)]
pub struct RaftGroups {
    /// Group id to the replica whose group it is.
    groups: RwLock<HashMap<u64, Arc<Replica>>>,
    controller: OnceLock<Weak<Controller>>,
}

impl RaftGroups {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Registers the group of `replica` (whose Raft group is started).
    pub fn insert(&self, group: u64, replica: &Arc<Replica>) {
        self.groups.write().insert(group, Arc::clone(replica));
    }

    pub fn remove(&self, group: u64) -> Option<Arc<Replica>> {
        self.groups.write().remove(&group)
    }

    fn get(&self, group: u64) -> Option<Arc<Replica>> {
        self.groups.read().get(&group).cloned()
    }

    /// The group of a partition (by its name, `topic-N`).
    pub fn group_of(&self, partition: &str) -> Option<u64> {
        self.groups
            .read()
            .iter()
            .find(|(_, r)| r.name() == partition)
            .map(|(g, _)| *g)
    }

    pub fn all(&self) -> Vec<RaftNode> {
        self.groups
            .read()
            .values()
            .filter_map(|r| r.raft().cloned())
            .collect()
    }

    /// The partition groups that may go quiet (all but the controller's, whose
    /// leader's heartbeats every broker follows).
    pub fn quiet_groups(&self) -> Vec<Arc<Quiet>> {
        self.groups
            .read()
            .iter()
            .filter(|(g, _)| **g != CONTROLLER_GROUP)
            .filter_map(|(_, r)| r.quiet().cloned())
            .collect()
    }

    pub fn set_controller(&self, controller: &Arc<Controller>) {
        let _ = self.controller.set(Arc::downgrade(controller));
    }

    /// What answers the transport's requests.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let groups = Arc::downgrade(self);
        Arc::new(move |peer, kind, group, payload: Bytes| {
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
                    ELECT_PREFERRED => {
                        let (target, timeout) = election::decode_request(payload)?;
                        let replica = groups
                            .get(group)
                            .ok_or_else(|| format!("group {group} does not run on this broker"))?;
                        let controller = groups
                            .controller
                            .get()
                            .and_then(Weak::upgrade)
                            .ok_or("the controller is not started")?;
                        let transport = std::sync::Arc::clone(controller.transport());
                        let outcome = election::elect_preferred(
                            &replica,
                            target,
                            |n| transport.is_connected(n),
                            timeout,
                        )
                        .await;
                        Ok(election::encode_outcome(&outcome))
                    }
                    _ => match groups.get(group) {
                        Some(replica) => serve_replica(&replica, peer, kind, payload).await,
                        None => Err(format!("group {group} does not run on this broker")),
                    },
                }
            })
        })
    }
}
