//! `sluice groups list | describe | delete`. Describe shows per partition the
//! committed offset, the log end offset and the lag, and the members with what
//! is assigned to them.

use std::collections::BTreeMap;

use bytes::Buf;
use clap::Subcommand;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::Decodable;
use serde_json::json;

use super::offsets::{list_offsets, ResetArgs, Tp, LATEST};
use super::output::{print, Format, Table};
use super::{str_bytes, CliError, Client};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Every consumer group with its state.
    List,
    /// A group's members, and per partition its committed offset, log end
    /// offset and lag.
    Describe { group: String },
    /// Deletes an empty group and its committed offsets.
    Delete { group: String },
    /// Moves an inactive group's committed offsets (a dry run unless --execute).
    ResetOffsets(ResetArgs),
}

pub async fn run(
    client: &mut Client,
    command: GroupsCommand,
    format: Format,
) -> Result<(), CliError> {
    match command {
        GroupsCommand::List => list(client, format).await,
        GroupsCommand::Describe { group } => describe(client, &group, format).await,
        GroupsCommand::Delete { group } => delete(client, &group, format).await,
        GroupsCommand::ResetOffsets(args) => super::offsets::reset(client, args, format).await,
    }
}

async fn list(client: &mut Client, format: Format) -> Result<(), CliError> {
    // Each broker lists the groups it coordinates.
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    let brokers: Vec<i32> = client.brokers.keys().copied().collect();
    for node in brokers {
        let response = client
            .send(Some(node), ListGroupsRequest::default())
            .await?;
        CliError::check(response.error_code, None, || {
            format!("list groups on broker {node}")
        })?;
        for g in response.groups {
            groups.insert(
                g.group_id.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    let json = serde_json::Value::Array(
        groups
            .iter()
            .map(|(id, (state, kind))| json!({"group": id, "state": state, "protocol_type": kind}))
            .collect(),
    );
    print(format, &json, || {
        let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
        for (id, (state, kind)) in &groups {
            table.row(vec![id.clone(), state.clone(), kind.clone()]);
        }
        table.render()
    });
    Ok(())
}

/// The broker coordinating `group`.
pub async fn coordinator(client: &mut Client, group: &str) -> Result<i32, CliError> {
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![str_bytes(group)]);
    let response = client.send(None, request).await?;
    let c = response
        .coordinators
        .first()
        .ok_or_else(|| CliError::Protocol("FindCoordinator answered no coordinator".into()))?;
    CliError::check(c.error_code, c.error_message.as_ref(), || {
        format!("find the coordinator of group {group}")
    })?;
    Ok(c.node_id.0)
}

/// A member's assigned partitions, from its assignment bytes.
fn assignment(bytes: &bytes::Bytes) -> Vec<(String, Vec<i32>)> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16();
    ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3))
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .map(|t| (t.topic.to_string(), t.partitions))
                .collect()
        })
        .unwrap_or_default()
}

/// A group's committed offsets with their metadata, from its coordinator `node`.
pub(super) async fn committed_with_metadata(
    client: &mut Client,
    node: i32,
    group: &str,
) -> Result<BTreeMap<Tp, (i64, Option<String>)>, CliError> {
    let fetched = client
        .send(
            Some(node),
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(None)]),
        )
        .await?;
    let mut committed = BTreeMap::new();
    for fg in &fetched.groups {
        CliError::check(fg.error_code, None, || {
            format!("fetch the offsets of group {group}")
        })?;
        for t in &fg.topics {
            for p in t.partitions.iter().filter(|p| p.committed_offset >= 0) {
                let metadata = p
                    .metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .filter(|m| !m.is_empty());
                committed.insert(
                    (t.name.to_string(), p.partition_index),
                    (p.committed_offset, metadata),
                );
            }
        }
    }
    Ok(committed)
}

/// A group's committed offsets, from its coordinator `node`.
pub(super) async fn committed_offsets(
    client: &mut Client,
    node: i32,
    group: &str,
) -> Result<BTreeMap<Tp, i64>, CliError> {
    Ok(committed_with_metadata(client, node, group)
        .await?
        .into_iter()
        .map(|(tp, (offset, _))| (tp, offset))
        .collect())
}

/// A group as its coordinator `node` describes it.
pub(super) async fn describe_group(
    client: &mut Client,
    node: i32,
    group: &str,
) -> Result<DescribedGroup, CliError> {
    let described = client
        .send(
            Some(node),
            DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]),
        )
        .await?;
    let g = described
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Protocol("DescribeGroups answered no group".into()))?;
    CliError::check(g.error_code, g.error_message.as_ref(), || {
        format!("describe group {group}")
    })?;
    Ok(g)
}

/// One partition of a group's offsets.
struct OffsetRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    lag: Option<i64>,
    member: Option<String>,
}

async fn describe(client: &mut Client, group: &str, format: Format) -> Result<(), CliError> {
    let node = coordinator(client, group).await?;
    let g = describe_group(client, node, group).await?;
    if g.group_state.as_str() == "Dead" {
        return Err(CliError::Usage(format!("group {group} does not exist")));
    }
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let members: Vec<serde_json::Value> = g
        .members
        .iter()
        .map(|m| {
            let assigned = assignment(&m.member_assignment);
            for (t, ps) in &assigned {
                for p in ps {
                    owner.insert((t.clone(), *p), m.member_id.to_string());
                }
            }
            json!({
                "member_id": m.member_id.to_string(),
                "client_id": m.client_id.to_string(),
                "host": m.client_host.to_string(),
                "assignment": assigned.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let committed = committed_offsets(client, node, group).await?;
    let mut partitions: Vec<(String, i32)> =
        committed.keys().chain(owner.keys()).cloned().collect();
    partitions.sort();
    partitions.dedup();
    let ends = list_offsets(client, &partitions, LATEST).await?;
    let rows: Vec<OffsetRow> = partitions
        .iter()
        .map(|key| {
            let c = committed.get(key).copied();
            let e = ends.get(key).copied();
            let lag = match (c, e) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            OffsetRow {
                topic: key.0.clone(),
                partition: key.1,
                committed: c,
                log_end: e,
                lag,
                member: owner.get(key).cloned(),
            }
        })
        .collect();
    let json = json!({
        "group": group,
        "state": g.group_state.to_string(),
        "protocol": g.protocol_data.to_string(),
        "coordinator": node,
        "members": members,
        "offsets": rows.iter().map(|r| json!({
            "topic": r.topic, "partition": r.partition, "committed": r.committed,
            "log_end": r.log_end, "lag": r.lag, "member": r.member,
        })).collect::<Vec<_>>(),
    });
    print(format, &json, || {
        let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "MEMBER",
        ]);
        for r in &rows {
            table.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                dash(r.committed),
                dash(r.log_end),
                dash(r.lag),
                r.member.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let mut members = Table::new(&["MEMBER", "CLIENT-ID", "HOST"]);
        for m in &g.members {
            members.row(vec![
                m.member_id.to_string(),
                m.client_id.to_string(),
                m.client_host.to_string(),
            ]);
        }
        format!(
            "Group: {group}\tState: {}\tCoordinator: {node}\tMembers: {}\n{}\n\n{}",
            g.group_state,
            g.members.len(),
            table.render(),
            members.render()
        )
    });
    Ok(())
}

async fn delete(client: &mut Client, group: &str, format: Format) -> Result<(), CliError> {
    let node = coordinator(client, group).await?;
    let response = client
        .send(
            Some(node),
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]),
        )
        .await?;
    for r in &response.results {
        CliError::check(r.error_code, None, || format!("delete group {group}"))?;
    }
    print(format, &json!({ "deleted": group }), || {
        format!("Deleted group {group}.")
    });
    Ok(())
}
