//! Makes this broker match the metadata image: for each topic partition the image
//! assigns here it opens the log and starts the partition's Raft group (every
//! replica of a new partition initializes it with the same members, which is
//! safe); for a topic no longer in the image it stops the groups and removes the
//! logs. Runs after every applied metadata change, one pass at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_replication::raft::RaftNode;
use sluice_replication::transport::network::GroupNetwork;
use sluice_replication::{initialize_if_pristine, start_group, Replica};
use tracing::{error, info, warn};

use super::image::TopicImage;
use super::Controller;
use crate::cluster::{Partition, Topic};
use crate::topic_config::TopicConfigs;
use crate::Broker;

/// Attempts of a new partition's preferred replica to be elected at once.
const STAND_TRIES: usize = 10;
const STAND_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs until the broker stops.
pub async fn run(broker: Arc<Broker>, controller: Arc<Controller>) {
    let mut applied = controller.applied();
    loop {
        let upto = *applied.borrow_and_update();
        reconcile(&broker, &controller).await;
        controller.set_reconciled(upto);
        if applied.changed().await.is_err() {
            return;
        }
    }
}

async fn reconcile(broker: &Arc<Broker>, controller: &Arc<Controller>) {
    let image = controller.image();
    let node = broker.node_id();
    broker.cluster.set_broker_count(controller.peers().len());
    broker
        .cluster
        .set_broker_overrides(image.broker_configs.clone());
    for (name, wanted) in &image.topics {
        let existing = broker.cluster.topic(name);
        let kept: Vec<Partition> = match &existing {
            Some(t) if t.id == wanted.id => {
                broker
                    .cluster
                    .reconfigure_topic(t, TopicConfigs::from_stored(wanted.configs.clone()));
                if t.partition_count() >= wanted.partitions.len() {
                    note_published_leaders(t, wanted);
                    continue;
                }
                t.partitions.clone()
            }
            Some(_) => {
                stop_topic(broker, name).await;
                Vec::new()
            }
            None => Vec::new(),
        };
        let first = kept.len();
        let hosted: Vec<usize> = (first..wanted.partitions.len())
            .filter(|i| wanted.partitions[*i].replicas.contains(&node))
            .collect();
        let opened = open_partitions(broker, name, wanted, hosted).await;
        // Groups start together: each start waits on its own syncs (vote,
        // membership entry), which the flusher then shares.
        futures_util::future::join_all(opened.iter().map(|(index, replica)| {
            let p = &wanted.partitions[*index];
            start_partition_group(broker, controller, replica, p.group, &p.replicas)
        }))
        .await;
        let mut partitions = kept;
        let mut opened = opened.into_iter().peekable();
        for index in first..wanted.partitions.len() {
            match opened.next_if(|(i, _)| *i == index) {
                Some((_, replica)) => partitions.push(Partition::Hosted(replica)),
                None => partitions.push(Partition::Elsewhere(Default::default())),
            }
        }
        let topic = Topic {
            name: name.clone(),
            id: wanted.id,
            partitions,
            replicas: wanted
                .partitions
                .iter()
                .map(|p| p.replicas.clone())
                .collect(),
            configs: TopicConfigs::from_stored(wanted.configs.clone()),
        };
        note_published_leaders(&topic, wanted);
        let hosted = topic.hosted().count();
        info!(topic = %name, partitions = topic.partition_count(), hosted, "topic serving");
        broker.cluster.install_topic(Arc::new(topic));
    }
    follow_deletions(broker, controller, &image);
    for topic in broker.cluster.topics() {
        let keep = image
            .topics
            .get(&topic.name)
            .is_some_and(|t| t.id == topic.id);
        if !keep {
            stop_topic(broker, &topic.name).await;
        }
    }
}

/// How long a replica waits to hold a DeleteRecords offset before it leaves the
/// deletion to a later reconciliation.
const DELETION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Each hosted replica deletes the records below its partition's DeleteRecords
/// floor once its high watermark reaches it (a follower behind, or a broker
/// replaying the metadata after a restart, catches up first).
fn follow_deletions(
    broker: &Arc<Broker>,
    controller: &Arc<Controller>,
    image: &super::MetadataImage,
) {
    for (name, wanted) in &image.topics {
        let Some(topic) = broker.cluster.topic(name).filter(|t| t.id == wanted.id) else {
            continue;
        };
        for (index, replica) in topic.hosted() {
            let Some(p) = wanted
                .partitions
                .get(index)
                .filter(|p| p.log_start_floor > 0)
            else {
                continue;
            };
            let floor = p.log_start_floor;
            {
                let mut deletions = controller.deletions.lock();
                if deletions.get(&p.group).is_some_and(|f| *f >= floor) {
                    continue;
                }
                deletions.insert(p.group, floor);
            }
            let (replica, controller, group) =
                (Arc::clone(replica), Arc::clone(controller), p.group);
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + DELETION_WAIT;
                while replica.high_watermark().0 < floor && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                match replica.delete_records(floor).await {
                    Ok(start) => {
                        info!(partition = replica.name(), floor, log_start = %start, "records deleted")
                    }
                    Err(e) => {
                        warn!(partition = replica.name(), floor, error = %e, "cannot delete records yet; retried at the next metadata change");
                        controller.deletions.lock().remove(&group);
                    }
                }
            });
        }
    }
}

/// Hands the published leadership of partitions other brokers host to them.
fn note_published_leaders(topic: &Topic, wanted: &TopicImage) {
    for (partition, image) in topic.partitions.iter().zip(&wanted.partitions) {
        if let Partition::Elsewhere(remote) = partition {
            remote.set_published(image.leader.clone());
        }
    }
}

async fn open_partitions(
    broker: &Arc<Broker>,
    name: &str,
    wanted: &TopicImage,
    indices: Vec<usize>,
) -> Vec<(usize, Arc<Replica>)> {
    if indices.is_empty() {
        return Vec::new();
    }
    let (b, name, id) = (Arc::clone(broker), name.to_string(), wanted.id);
    let configs = TopicConfigs::from_stored(wanted.configs.clone());
    let opened = tokio::task::spawn_blocking(move || {
        b.cluster
            .open_replicated_partitions(&name, id, &indices, &configs)
    })
    .await;
    opened.unwrap_or_else(|e| {
        error!(error = %e, "opening partition logs failed");
        Vec::new()
    })
}

async fn start_partition_group(
    broker: &Arc<Broker>,
    controller: &Arc<Controller>,
    replica: &Arc<Replica>,
    group: u64,
    replicas: &[i32],
) {
    let network = GroupNetwork::new(Arc::clone(controller.transport()), group);
    let config = super::raft_config(&broker.config);
    let raft = match start_group(replica, broker.node_id() as u64, network, config, None).await {
        Ok(raft) => raft,
        Err(e) => {
            // This partition stays offline here; the others serve.
            error!(partition = replica.name(), error = %e, "cannot start the partition's Raft group");
            return;
        }
    };
    broker.raft_groups.insert(group, replica);
    let members: BTreeSet<u64> = replicas.iter().map(|r| *r as u64).collect();
    match initialize_if_pristine(&raft, &members).await {
        Ok(true) if replicas.first() == Some(&broker.node_id()) => {
            tokio::spawn(stand_first(raft));
        }
        Ok(_) => {}
        Err(e) => {
            warn!(partition = replica.name(), error = %e, "cannot initialize the partition's Raft group")
        }
    }
}

/// A new partition's preferred replica stands for election at once instead of
/// after an election timeout (CreateTopics answers once its partitions have
/// leaders). It asks with a pre-vote, which changes no term, and tries again
/// while the other replicas are still starting their groups.
async fn stand_first(raft: RaftNode) {
    for _ in 0..STAND_TRIES {
        if raft.current_leader().await.is_some() {
            return;
        }
        if raft.trigger().elect(true).await.is_err() {
            return;
        }
        tokio::time::sleep(STAND_RETRY).await;
    }
}

/// Stops a topic's groups on this broker and removes its logs.
async fn stop_topic(broker: &Arc<Broker>, name: &str) {
    let Some(topic) = broker.cluster.topic(name) else {
        return;
    };
    for replica in topic.hosted_replicas() {
        if let Some(raft) = replica.raft() {
            if let Err(e) = raft.shutdown().await {
                warn!(partition = replica.name(), error = %e, "stopping a Raft group failed");
            }
        }
    }
    let b = Arc::clone(broker);
    let name = name.to_string();
    let removed =
        tokio::task::spawn_blocking(move || b.cluster.remove_replicated_topic(&name)).await;
    if let Ok(Some(topic)) = removed {
        for replica in topic.hosted_replicas() {
            if let Some(group) = broker.raft_groups.group_of(replica.name()) {
                broker.raft_groups.remove(group);
            }
        }
    }
}
