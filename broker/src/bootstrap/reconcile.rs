//! Makes the broker or cluster match a bootstrap file: missing topics are
//! created, partition counts raised and the file's configs set. Nothing is
//! deleted or lowered; what differs and stays (more partitions, another
//! replication factor, configs the file does not name) is logged. In a cluster
//! only the controller's leader changes anything (its commands are checked
//! against the metadata, so a leader change half-way is safe); every broker waits
//! until the metadata matches the file before it serves clients, so no client
//! auto-creates a bootstrap topic with default settings first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{error, info, warn};

use super::{TopicSpec, TopicsFile};
use crate::handlers::{alter_configs, create_partitions, create_topics};
use crate::topic_config::MIN_INSYNC_REPLICAS;
use crate::Broker;

/// Topics created at once in a cluster (each waits for every broker to start
/// its partitions' groups).
const CREATES_IN_FLIGHT: usize = 8;
/// Pause between checks while another broker leads the controller.
const POLL: Duration = Duration::from_millis(250);

/// What one pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub created: usize,
    pub raised: usize,
    pub reconfigured: usize,
    pub unchanged: usize,
    pub failed: usize,
}

/// The file's topics as this cluster can hold them: the replication factor (and
/// `min.insync.replicas` with it) capped to the brokers there are.
fn fitted(broker: &Broker, file: &TopicsFile, warn_once: bool) -> Vec<TopicSpec> {
    let brokers = i16::try_from(broker.cluster.broker_count()).unwrap_or(i16::MAX);
    let mut capped = 0;
    let topics: Vec<TopicSpec> = file
        .topics
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.replication_factor > brokers {
                capped += 1;
                t.replication_factor = brokers;
                if let Some(min) = t.configs.get_mut(MIN_INSYNC_REPLICAS) {
                    if min.parse::<i16>().is_ok_and(|m| m > brokers) {
                        *min = brokers.to_string();
                    }
                }
            }
            t
        })
        .collect();
    if capped > 0 && warn_once {
        warn!(
            file = %file.source,
            topics = capped,
            brokers,
            "bootstrap: the replication factor these topics ask for is above the number of brokers; capped to {brokers}, and min.insync.replicas with it"
        );
    }
    topics
}

/// The configs a topic should have: what it has, with the file's keys set.
fn wanted_configs(
    current: &BTreeMap<String, String>,
    spec: &TopicSpec,
) -> BTreeMap<String, String> {
    let mut wanted = current.clone();
    wanted.extend(spec.configs.clone());
    wanted
}

/// Whether the topics match the file (what reconciling would not change).
fn matches(broker: &Broker, topics: &[TopicSpec]) -> bool {
    topics.iter().all(|spec| {
        broker.cluster.topic(&spec.name).is_some_and(|t| {
            t.partition_count() >= spec.partitions as usize
                && wanted_configs(t.configs.overrides(), spec) == *t.configs.overrides()
        })
    })
}

/// One pass over the file: creates, raises and sets what differs.
pub async fn reconcile(broker: &Arc<Broker>, file: &TopicsFile) -> Report {
    let topics = fitted(broker, file, true);
    let mut report = Report::default();
    let mut missing = Vec::new();
    for spec in &topics {
        let Some(topic) = broker.cluster.topic(&spec.name) else {
            missing.push(spec);
            continue;
        };
        let mut changed = false;
        let have = topic.partition_count() as i32;
        if have < spec.partitions {
            match create_partitions::add(broker, &spec.name, spec.partitions).await {
                Ok(()) => {
                    info!(topic = %spec.name, from = have, to = spec.partitions, "bootstrap: partitions raised");
                    report.raised += 1;
                    changed = true;
                }
                Err(e) => {
                    error!(topic = %spec.name, error = %e, "bootstrap: cannot raise the partition count");
                    report.failed += 1;
                }
            }
        } else if have > spec.partitions {
            info!(topic = %spec.name, partitions = have, file = spec.partitions, "bootstrap: drift left alone: the topic has more partitions than the file asks for (partition counts are never lowered)");
        }
        let rf = topic.replicas.first().map_or(0, Vec::len);
        if rf != spec.replication_factor as usize {
            warn!(topic = %spec.name, replication_factor = rf, file = spec.replication_factor, "bootstrap: drift left alone: replication factors are not changed");
        }
        let current = topic.configs.overrides();
        for (key, value) in current
            .iter()
            .filter(|(k, _)| !spec.configs.contains_key(*k))
        {
            info!(topic = %spec.name, key = %key, value = %value, "bootstrap: drift left alone: a config the file does not name");
        }
        let wanted = wanted_configs(current, spec);
        if wanted != *current {
            let keys: Vec<&String> = wanted
                .iter()
                .filter(|(k, v)| current.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .collect();
            match alter_configs::set_topic_configs(broker, &spec.name, wanted.clone()).await {
                Ok(()) => {
                    info!(topic = %spec.name, ?keys, "bootstrap: configs set");
                    report.reconfigured += 1;
                    changed = true;
                }
                Err((code, message)) => {
                    error!(topic = %spec.name, ?code, %message, "bootstrap: cannot set the configs");
                    report.failed += 1;
                }
            }
        }
        if !changed {
            report.unchanged += 1;
        }
    }
    let created: Vec<(String, bool)> = futures_util::stream::iter(missing)
        .map(|spec| async move {
            let outcome = create_topics::create_unled(
                broker,
                &spec.name,
                spec.partitions,
                spec.replication_factor,
                &spec.configs,
            )
            .await;
            match outcome {
                Ok(_) => {
                    info!(topic = %spec.name, partitions = spec.partitions, replication_factor = spec.replication_factor, dlq_of = ?spec.dlq_of, "bootstrap: topic created");
                    (spec.name.clone(), true)
                }
                Err(e) => {
                    error!(topic = %spec.name, error = %e, "bootstrap: cannot create the topic");
                    (spec.name.clone(), false)
                }
            }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect()
        .await;
    let names: Vec<&str> = created
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(n, _)| n.as_str())
        .collect();
    report.created = names.len();
    report.failed += created.len() - names.len();
    create_topics::wait_for_leaders(
        broker,
        &names,
        tokio::time::Instant::now() + Duration::from_secs(30),
    )
    .await;
    info!(
        file = %file.source,
        topics = topics.len(),
        created = report.created,
        raised = report.raised,
        reconfigured = report.reconfigured,
        unchanged = report.unchanged,
        failed = report.failed,
        "bootstrap reconciled"
    );
    report
}

/// In a cluster: the controller's leader reconciles, every broker waits (at
/// most `timeout`) until the metadata matches the file. Returns whether it does.
pub async fn converge(broker: &Arc<Broker>, file: &TopicsFile, timeout: Duration) -> bool {
    let Some(controller) = broker.controller() else {
        let report = reconcile(broker, file).await;
        return report.failed == 0;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tried_as_leader = false;
    loop {
        if matches(broker, &fitted(broker, file, false)) {
            if !tried_as_leader {
                info!(file = %file.source, "bootstrap: the cluster matches the file");
            }
            return true;
        }
        if controller.leader() == Some(broker.node_id()) {
            reconcile(broker, file).await;
            tried_as_leader = true;
        }
        if tokio::time::Instant::now() + POLL >= deadline {
            warn!(file = %file.source, "bootstrap: the cluster does not match the file yet; serving clients anyway");
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}
