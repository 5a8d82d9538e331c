//! `sluice cluster info`: the brokers, the controller, and per broker the
//! partition replicas it holds and the leaders among them, with the cluster's
//! under-replicated and offline partition counts.

use std::collections::BTreeMap;

use clap::Subcommand;
use kafka_protocol::messages::DescribeClusterRequest;
use serde_json::json;

use super::output::{print, Format, Table};
use super::{CliError, Client};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, controller, partitions and leaders per broker, under-replicated
    /// and offline partitions.
    Info,
}

#[derive(Debug, Default, Clone, Copy)]
struct Load {
    replicas: usize,
    leaders: usize,
}

pub async fn run(
    client: &mut Client,
    command: ClusterCommand,
    format: Format,
) -> Result<(), CliError> {
    let ClusterCommand::Info = command;
    let cluster = client.send(None, DescribeClusterRequest::default()).await?;
    CliError::check(cluster.error_code, cluster.error_message.as_ref(), || {
        "describe cluster".into()
    })?;
    let md = client.metadata(None).await?;
    let mut load: BTreeMap<i32, Load> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, Load::default()))
        .collect();
    let (mut partitions, mut under_replicated, mut offline) = (0, 0, 0);
    for t in &md.topics {
        for p in &t.partitions {
            partitions += 1;
            if p.leader_id.0 < 0 {
                offline += 1;
            } else if let Some(l) = load.get_mut(&p.leader_id.0) {
                l.leaders += 1;
            }
            if p.isr_nodes.len() < p.replica_nodes.len() {
                under_replicated += 1;
            }
            for r in &p.replica_nodes {
                load.entry(r.0).or_default().replicas += 1;
            }
        }
    }
    let brokers: Vec<_> = cluster
        .brokers
        .iter()
        .map(|b| {
            let l = load.get(&b.broker_id.0).copied().unwrap_or_default();
            json!({
                "id": b.broker_id.0,
                "host": b.host.to_string(),
                "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.to_string()),
                "controller": b.broker_id.0 == cluster.controller_id.0,
                "replicas": l.replicas,
                "leaders": l.leaders,
            })
        })
        .collect();
    let json = json!({
        "cluster_id": cluster.cluster_id.to_string(),
        "controller": cluster.controller_id.0,
        "brokers": brokers,
        "topics": md.topics.len(),
        "partitions": partitions,
        "under_replicated_partitions": under_replicated,
        "offline_partitions": offline,
    });
    print(format, &json, || {
        let mut table = Table::new(&["BROKER", "ADDRESS", "CONTROLLER", "REPLICAS", "LEADERS"]);
        for b in &cluster.brokers {
            let l = load.get(&b.broker_id.0).copied().unwrap_or_default();
            table.row(vec![
                b.broker_id.0.to_string(),
                format!("{}:{}", b.host, b.port),
                if b.broker_id.0 == cluster.controller_id.0 {
                    "yes"
                } else {
                    ""
                }
                .to_string(),
                l.replicas.to_string(),
                l.leaders.to_string(),
            ]);
        }
        format!(
            "Cluster: {}\tController: {}\tTopics: {}\tPartitions: {partitions}\tUnder-replicated: {under_replicated}\tOffline: {offline}\n{}",
            cluster.cluster_id,
            cluster.controller_id.0,
            md.topics.len(),
            table.render()
        )
    });
    Ok(())
}
