//! Partition offsets: ListOffsets against each partition's leader, and
//! `sluice groups reset-offsets`, which moves an inactive group's committed
//! offsets (Kafka's rule: a group with members keeps its offsets) to the earliest
//! or latest offset, a given offset, the first offset at a time, or by a shift,
//! each clamped to the partition's log. A dry run unless `--execute`.

use std::collections::BTreeMap;

use clap::Args;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, TopicName,
};
use serde_json::json;

use super::groups::{committed_offsets, coordinator, describe_group};
use super::output::{print, Format, Table};
use super::{str_bytes, CliError, Client};

/// ListOffsets' timestamps for the log end and the log start.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// A topic partition.
pub type Tp = (String, i32);

/// The offset ListOffsets finds for `timestamp` in each partition, asked of
/// its leader (partitions without a leader, or in error, are left out).
pub async fn list_offsets(
    client: &mut Client,
    partitions: &[Tp],
    timestamp: i64,
) -> Result<BTreeMap<Tp, i64>, CliError> {
    let mut topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    let md = client.metadata(Some(&topics)).await?;
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        for p in &t.partitions {
            if p.leader_id.0 >= 0 && partitions.contains(&(name.clone(), p.partition_index)) {
                by_leader
                    .entry(p.leader_id.0)
                    .or_default()
                    .entry(name.clone())
                    .or_default()
                    .push(p.partition_index);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = client.send(Some(leader), request).await?;
        for t in response.topics {
            for p in t.partitions.into_iter().filter(|p| p.error_code == 0) {
                out.insert((t.name.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// Every partition of `topic` (or those named), checked against Metadata.
pub async fn partitions_of(
    client: &mut Client,
    topic: &str,
    only: &[i32],
) -> Result<Vec<Tp>, CliError> {
    let t = client.topic(topic).await?;
    let all: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    if let Some(missing) = only.iter().find(|p| !all.contains(p)) {
        return Err(CliError::Usage(format!(
            "topic {topic} has no partition {missing}"
        )));
    }
    let mut chosen: Vec<i32> = if only.is_empty() { all } else { only.to_vec() };
    chosen.sort_unstable();
    chosen.dedup();
    Ok(chosen.into_iter().map(|p| (topic.to_string(), p)).collect())
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(
    ["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"]
)))]
pub struct ResetArgs {
    pub group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    pub topic: String,
    /// Only these partitions (repeatable; default: all).
    #[arg(long = "partition")]
    pub partitions: Vec<i32>,
    /// To each partition's log start.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's log end.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (clamped to the log).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// To the first record at or after this time (RFC 3339, e.g.
    /// 2026-12-01T10:00:00Z, or milliseconds since the epoch).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to_datetime: Option<i64>,
    /// By this many records from the committed offset (negative: back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (without it, only show them).
    #[arg(long)]
    pub execute: bool,
}

/// Milliseconds since the epoch of an RFC 3339 time (or a plain number of ms).
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("{text:?} is not a time like 2026-12-01T10:00:00Z");
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>());
    let (y, m, day) = match (d.next(), d.next(), d.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(day))) => (y, m, day),
        _ => return Err(bad()),
    };
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, mi) = z[1..].split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        let mi: i64 = mi.parse().map_err(|_| bad())?;
        (c, sign * (h * 3600 + mi * 60))
    } else {
        return Err(bad());
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|v| v.parse::<i64>());
    let (h, mi, s) = match (t.next(), t.next(), t.next()) {
        (Some(Ok(h)), Some(Ok(mi)), Some(Ok(s))) => (h, mi, s),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let ms: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    // Days from 1970-01-01 of a proleptic Gregorian date.
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_s) * 1000 + ms)
}

/// Commits `offsets` for `group` at its coordinator `node` as a client outside
/// the group (generation -1), which Kafka allows while the group has no members.
pub async fn commit_offsets(
    client: &mut Client,
    node: i32,
    group: &str,
    offsets: &[(Tp, i64)],
) -> Result<(), CliError> {
    commit_with_metadata(client, node, group, offsets, None).await
}

/// [`commit_offsets`] with each offset's metadata string.
pub async fn commit_with_metadata(
    client: &mut Client,
    node: i32,
    group: &str,
    offsets: &[(Tp, i64)],
    metadata: Option<&str>,
) -> Result<(), CliError> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), offset) in offsets {
        topics.entry(t.as_str()).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*offset)
                .with_committed_metadata(metadata.map(str_bytes)),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = client.send(Some(node), request).await?;
    for t in &response.topics {
        for p in &t.partitions {
            CliError::check(p.error_code, None, || {
                format!(
                    "commit group {group}'s offset of {}-{}",
                    t.name.as_str(),
                    p.partition_index
                )
            })?;
        }
    }
    Ok(())
}

pub async fn reset(client: &mut Client, args: ResetArgs, format: Format) -> Result<(), CliError> {
    let group = args.group.as_str();
    let node = coordinator(client, group).await?;
    let described = describe_group(client, node, group).await?;
    let (state, members) = (described.group_state.to_string(), described.members.len());
    if members > 0 {
        return Err(CliError::Usage(format!(
            "group {group} is {state} with {members} member(s): stop its consumers before resetting its offsets"
        )));
    }
    let partitions = partitions_of(client, &args.topic, &args.partitions).await?;
    let earliest = list_offsets(client, &partitions, EARLIEST).await?;
    let latest = list_offsets(client, &partitions, LATEST).await?;
    let committed = committed_offsets(client, node, group).await?;
    let at_time = match args.to_datetime {
        Some(ts) => Some(list_offsets(client, &partitions, ts).await?),
        None => None,
    };
    let mut plan = Vec::new();
    for tp in &partitions {
        let (Some(&lo), Some(&hi)) = (earliest.get(tp), latest.get(tp)) else {
            return Err(CliError::Usage(format!(
                "partition {}-{} has no leader now",
                tp.0, tp.1
            )));
        };
        let current = committed.get(tp).copied();
        let wanted = if args.to_earliest {
            lo
        } else if args.to_latest {
            hi
        } else if let Some(o) = args.to_offset {
            o
        } else if let Some(found) = &at_time {
            // No record at or after the time: the log end.
            found.get(tp).copied().filter(|o| *o >= 0).unwrap_or(hi)
        } else {
            let shift = args.shift_by.unwrap_or(0);
            let from = current.ok_or_else(|| {
                CliError::Usage(format!(
                    "group {group} has no committed offset for {}-{} to shift",
                    tp.0, tp.1
                ))
            })?;
            from.saturating_add(shift)
        };
        plan.push((tp.clone(), current, wanted.clamp(lo, hi)));
    }
    if args.execute {
        let offsets: Vec<(Tp, i64)> = plan.iter().map(|(tp, _, new)| (tp.clone(), *new)).collect();
        commit_offsets(client, node, group, &offsets).await?;
    }
    let json = json!({
        "group": group,
        "executed": args.execute,
        "offsets": plan.iter().map(|((t, p), current, new)| json!({
            "topic": t, "partition": p, "current": current, "new": new,
        })).collect::<Vec<_>>(),
    });
    print(format, &json, || {
        let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
        for ((t, p), current, new) in &plan {
            table.row(vec![
                t.clone(),
                p.to_string(),
                current.map_or("-".into(), |c| c.to_string()),
                new.to_string(),
            ]);
        }
        let note = if args.execute {
            "Committed."
        } else {
            "Dry run: nothing committed (add --execute)."
        };
        format!("{}\n{note}", table.render())
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_milliseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2026-12-01T10:00:00Z"), Ok(1_796_119_200_000));
        assert_eq!(
            parse_time("2026-12-01T11:00:00.250+01:00"),
            Ok(1_796_119_200_250)
        );
        assert_eq!(parse_time("1796119200000"), Ok(1_796_119_200_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
    }
}
