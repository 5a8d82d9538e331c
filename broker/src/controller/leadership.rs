//! Where partition leadership sits: moved back to each partition's preferred
//! replica (the first of its replicas) once that broker is alive and caught up,
//! and moved away from this broker before a clean shutdown, so clients see a
//! retry, not an election timeout.

use std::sync::Arc;
use std::time::Duration;

use sluice_replication::Replica;
use tracing::{info, warn};

use super::{Command, LeaderRecord, PublishedLeader};
use crate::Broker;

/// How long a clean shutdown waits for leadership to move away.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// Every local replica of a replicated partition with its replica list.
fn local_partitions(broker: &Broker) -> Vec<(Arc<Replica>, Vec<i32>)> {
    broker
        .cluster
        .topics()
        .iter()
        .flat_map(|t| {
            t.hosted()
                .map(|(i, r)| (Arc::clone(r), t.replicas[i].clone()))
                .collect::<Vec<_>>()
        })
        .filter(|(r, _)| r.raft().is_some())
        .collect()
}

/// Periodically hands leadership of each partition this broker leads to its
/// preferred replica when that one is connected and caught up.
pub async fn rebalance_loop(broker: Arc<Broker>) {
    let c = &broker.config.cluster;
    if !c.auto_leader_rebalance_enable {
        return;
    }
    let period = Duration::from_millis(c.leader_imbalance_check_interval_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(controller) = broker.controller() else {
            continue;
        };
        let me = broker.node_id();
        for (replica, replicas) in local_partitions(&broker) {
            let Some(&preferred) = replicas.first() else {
                continue;
            };
            if preferred == me || !replica.is_leader() {
                continue;
            }
            let target = preferred as u64;
            if !controller.transport().is_connected(target) || !replica.follower_caught_up(target) {
                continue;
            }
            if let Some(raft) = replica.raft() {
                info!(
                    partition = replica.name(),
                    to = preferred,
                    "moving leadership to the preferred replica"
                );
                replica.wake();
                if let Err(e) = raft.trigger().transfer_leader(target).await {
                    warn!(partition = replica.name(), error = %e, "leadership transfer failed");
                }
            }
        }
    }
}

/// Before a clean shutdown: moves every leadership this broker holds (partitions
/// and the controller) to a connected, caught-up peer, and waits (bounded) until
/// it moved.
pub async fn hand_over(broker: &Broker) {
    let Some(controller) = broker.controller() else {
        return;
    };
    let peers: Vec<u64> = controller
        .peers()
        .iter()
        .filter(|p| **p != broker.node_id())
        .map(|p| *p as u64)
        .collect();
    let mut replicas: Vec<(Arc<Replica>, Vec<u64>)> = local_partitions(broker)
        .into_iter()
        .map(|(r, members)| {
            let others = members
                .into_iter()
                .map(|m| m as u64)
                .filter(|m| peers.contains(m))
                .collect();
            (r, others)
        })
        .collect();
    replicas.push((Arc::clone(controller.replica()), peers));
    let mut moving = Vec::new();
    for (replica, others) in replicas {
        if !replica.is_leader() {
            continue;
        }
        let connected = |p: &u64| controller.transport().is_connected(*p);
        let target = others
            .iter()
            .copied()
            .filter(connected)
            .find(|p| replica.follower_caught_up(*p))
            .or_else(|| others.iter().copied().find(connected));
        let (Some(target), Some(raft)) = (target, replica.raft()) else {
            continue;
        };
        replica.wake();
        if raft.trigger().transfer_leader(target).await.is_ok() {
            moving.push(replica);
        }
    }
    if moving.is_empty() {
        return;
    }
    info!(
        partitions = moving.len(),
        "handing leadership to peers before shutdown"
    );
    let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
    while tokio::time::Instant::now() < deadline && moving.iter().any(|r| r.is_leader()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept = moving.iter().filter(|r| r.is_leader()).count();
    if kept > 0 {
        warn!(
            partitions = kept,
            "some leadership did not move before shutdown"
        );
    }
}

/// How often leaders look for leadership to publish.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// Publishes, through the controller, the leader, epoch and ISR of every
/// partition this broker leads that some broker does not host, whenever they
/// differ from the image: those brokers answer Metadata and FindCoordinator from
/// it. One command carries every change of a pass.
pub async fn publish_loop(broker: Arc<Broker>) {
    let lag_max = Duration::from_millis(broker.config.cluster.replica_lag_time_max_ms);
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(controller) = broker.controller() else {
            continue;
        };
        let me = broker.node_id();
        let brokers = controller.peers().len();
        let topics = broker.cluster.topics();
        let leaders: Vec<PublishedLeader> = controller.with_image(|image| {
            let mut changed = Vec::new();
            for topic in &topics {
                let Some(wanted) = image.topics.get(&topic.name).filter(|t| t.id == topic.id)
                else {
                    continue;
                };
                for (index, replica) in topic.hosted() {
                    let Some(p) = wanted.partitions.get(index) else {
                        continue;
                    };
                    if p.replicas.len() >= brokers || !replica.is_leader() {
                        continue;
                    }
                    let Some(isr) = replica.in_sync_replicas(lag_max) else {
                        continue;
                    };
                    let mut isr: Vec<i32> = isr.into_iter().map(|r| r as i32).collect();
                    isr.sort_unstable();
                    let record = LeaderRecord {
                        leader: me,
                        epoch: replica.leader_epoch().0,
                        isr,
                    };
                    if p.leader.as_ref() != Some(&record) {
                        changed.push(PublishedLeader {
                            group: p.group,
                            record,
                        });
                    }
                }
            }
            changed
        });
        if leaders.is_empty() {
            continue;
        }
        let count = leaders.len();
        if let Err(e) = controller
            .submit(&Command::PublishLeaders { leaders })
            .await
        {
            warn!(partitions = count, error = %e, "publishing partition leadership failed; retrying");
        }
    }
}
