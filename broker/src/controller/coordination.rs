//! In a cluster the coordinator of a group is the leader of its
//! `__consumer_offsets` partition. This task follows leadership of those
//! partitions on this broker: on becoming leader it waits until the partition has
//! applied everything its log holds (the new leader's own entry included) and
//! loads the partition's groups; on losing leadership it unloads them, so their
//! requests are answered NOT_COORDINATOR and clients look for the new leader.

use std::sync::Arc;
use std::time::Duration;

use crate::group::OFFSETS_TOPIC;
use crate::Broker;

/// How often leadership of the offsets partitions is checked.
const CHECK: Duration = Duration::from_millis(100);

pub async fn run(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(topic) = broker.cluster.topic(OFFSETS_TOPIC) else {
            continue;
        };
        for (index, replica) in topic.hosted() {
            let leads = replica.is_leader() && replica.raft().is_some();
            let loaded = broker.groups.is_loaded(index);
            if !leads {
                if loaded {
                    broker.groups.unload_partition(index);
                }
                continue;
            }
            if loaded {
                continue;
            }
            // Everything in the leader's log (earlier leaders' entries included)
            // commits with the new leader's first entry; load once it applied.
            if replica.high_watermark() < replica.stored_end_offset() {
                continue;
            }
            let b = Arc::clone(&broker);
            let now = broker.now_ms();
            let _ = tokio::task::spawn_blocking(move || b.groups.load_partition(index, now)).await;
        }
    }
}
