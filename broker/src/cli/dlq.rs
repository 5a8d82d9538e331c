//! `sluice dlq list | inspect | replay`: dead-letter topics (`{topic}.dlq`).
//!
//! A producer that dead-letters a message sets the `dlq.*` headers of the
//! convention in README.md. `replay` re-publishes dead letters to their topic
//! with an idempotent producer, without the `dlq.*` headers and with
//! `dlq.replay.source = DLQ/PARTITION/OFFSET`, and commits its progress in a
//! consumer group. Each run first commits, as the group's offset metadata, where
//! the target topic ended; a run that was killed between producing and
//! committing is finished by the next, which scans the target from there for
//! `dlq.replay.source` headers and skips what was already replayed: nothing is
//! published twice.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::consumer::{Fetched, Reader};
use super::groups::{committed_with_metadata, coordinator};
use super::messages::record_json;
use super::offsets::{commit_with_metadata, list_offsets, partitions_of, Tp, EARLIEST, LATEST};
use super::output::{print, Format, Table};
use super::producer::{OwnedRecord, Producer};
use super::{CliError, Client};

/// ListOffsets' timestamp for the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;
const SUFFIX: &str = ".dlq";
/// Headers of the convention.
pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
pub const ERROR: &str = "dlq.error";
pub const RETRY_COUNT: &str = "dlq.retry.count";
pub const REPLAY_SOURCE: &str = "dlq.replay.source";

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every dead-letter topic with its depth, its oldest and newest message
    /// age and its source topic.
    List,
    /// The dead letters of a DLQ with their headers.
    Inspect {
        dlq: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Re-publishes dead letters to their topic.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub dlq: String,
    /// The topic to publish to (default: the DLQ's name without `.dlq`).
    #[arg(long)]
    pub to: Option<String>,
    /// Only dead letters at or after this DLQ offset.
    #[arg(long)]
    pub from_offset: Option<i64>,
    /// Only dead letters before this DLQ offset.
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Only dead letters with this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only dead letters written at or after this time (RFC 3339 or epoch ms).
    #[arg(long, value_parser = super::offsets::parse_time)]
    pub since: Option<i64>,
    /// Show what would be replayed; publish and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The consumer group keeping the progress (default: sluice-replay-DLQ).
    #[arg(long)]
    pub group: Option<String>,
    /// At most this many records per second.
    #[arg(long)]
    pub rate: Option<u32>,
}

pub async fn run(client: &mut Client, command: DlqCommand, format: Format) -> Result<(), CliError> {
    match command {
        DlqCommand::List => list(client, format).await,
        DlqCommand::Inspect { dlq, count } => inspect(client, &dlq, count, format).await,
        DlqCommand::Replay(args) => replay(client, args, format).await,
    }
}

fn header(r: &Fetched, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .and_then(|(_, v)| v.as_ref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn age(now: i64, ts: Option<i64>) -> String {
    let Some(ts) = ts.filter(|t| *t >= 0) else {
        return "-".into();
    };
    let s = (now - ts).max(0) / 1000;
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The timestamp of the first record at or after each partition's start.
async fn oldest(
    client: &mut Client,
    starts: &BTreeMap<Tp, i64>,
    ends: &BTreeMap<Tp, i64>,
) -> Result<Option<i64>, CliError> {
    let live: BTreeMap<Tp, i64> = starts
        .iter()
        .filter(|(tp, s)| ends.get(*tp).is_some_and(|e| e > *s))
        .map(|(tp, s)| (tp.clone(), *s))
        .collect();
    if live.is_empty() {
        return Ok(None);
    }
    let mut reader = Reader::new(live.clone());
    let mut found: BTreeMap<Tp, i64> = BTreeMap::new();
    for _ in 0..10 {
        for r in reader.poll(client, 100).await? {
            found
                .entry((r.topic.clone(), r.partition))
                .or_insert(r.timestamp);
        }
        if found.len() == live.len() || reader.caught_up() {
            break;
        }
    }
    Ok(found.values().min().copied())
}

async fn list(client: &mut Client, format: Format) -> Result<(), CliError> {
    let md = client.metadata(None).await?;
    let mut names: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .filter(|n| n.ends_with(SUFFIX))
        .collect();
    names.sort();
    let existing: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    let now = crate::broker::wall_clock_ms();
    let mut rows = Vec::new();
    for name in names {
        let partitions = partitions_of(client, &name, &[]).await?;
        let starts = list_offsets(client, &partitions, EARLIEST).await?;
        let ends = list_offsets(client, &partitions, LATEST).await?;
        let depth: i64 = partitions
            .iter()
            .map(|tp| ends.get(tp).copied().unwrap_or(0) - starts.get(tp).copied().unwrap_or(0))
            .sum();
        let newest = list_offsets(client, &partitions, MAX_TIMESTAMP).await?;
        let newest_ts = if depth > 0 {
            // ListOffsets by max timestamp gives the offset; read that record.
            let at: BTreeMap<Tp, i64> = newest.into_iter().filter(|(_, o)| *o >= 0).collect();
            let mut reader = Reader::new(at);
            reader
                .poll(client, 100)
                .await?
                .iter()
                .map(|r| r.timestamp)
                .max()
        } else {
            None
        };
        let oldest_ts = oldest(client, &starts, &ends).await?;
        let source = name.trim_end_matches(SUFFIX).to_string();
        let source_exists = existing.contains(&source);
        rows.push((name, depth, oldest_ts, newest_ts, source, source_exists));
    }
    let json = Value::Array(
        rows.iter()
            .map(|(name, depth, old, new, source, exists)| {
                json!({
                    "dlq": name, "depth": depth,
                    "oldest_timestamp": old, "newest_timestamp": new,
                    "oldest_age_ms": old.map(|t| now - t), "newest_age_ms": new.map(|t| now - t),
                    "source_topic": source, "source_exists": exists,
                })
            })
            .collect(),
    );
    print(format, &json, || {
        let mut table = Table::new(&["DLQ", "DEPTH", "OLDEST", "NEWEST", "SOURCE"]);
        for (name, depth, old, new, source, exists) in &rows {
            table.row(vec![
                name.clone(),
                depth.to_string(),
                age(now, *old),
                age(now, *new),
                if *exists {
                    source.clone()
                } else {
                    format!("{source} (missing)")
                },
            ]);
        }
        table.render()
    });
    Ok(())
}

/// Every record of `topic` from its start (at most `count`).
async fn read_all(
    client: &mut Client,
    topic: &str,
    count: usize,
) -> Result<Vec<Fetched>, CliError> {
    let partitions = partitions_of(client, topic, &[]).await?;
    let starts = list_offsets(client, &partitions, EARLIEST).await?;
    let ends = list_offsets(client, &partitions, LATEST).await?;
    let mut reader = Reader::new(starts);
    let mut out = Vec::new();
    while out.len() < count
        && !reader
            .positions
            .iter()
            .all(|(tp, p)| ends.get(tp).is_none_or(|e| p >= e))
    {
        out.extend(reader.poll(client, 200).await?);
    }
    out.truncate(count);
    Ok(out)
}

async fn inspect(
    client: &mut Client,
    dlq: &str,
    count: usize,
    format: Format,
) -> Result<(), CliError> {
    let records = read_all(client, dlq, count).await?;
    let json = Value::Array(records.iter().map(record_json).collect());
    print(format, &json, || {
        let mut table = Table::new(&[
            "PARTITION",
            "OFFSET",
            "KEY",
            "ORIGINAL",
            "RETRIES",
            "ERROR",
            "VALUE",
        ]);
        for r in &records {
            let original = match (
                header(r, ORIGINAL_TOPIC),
                header(r, ORIGINAL_PARTITION),
                header(r, ORIGINAL_OFFSET),
            ) {
                (Some(t), Some(p), Some(o)) => format!("{t}-{p}@{o}"),
                (Some(t), _, _) => t,
                _ => "-".into(),
            };
            let text = |b: &Option<Vec<u8>>| {
                b.as_ref()
                    .map_or("-".into(), |b| String::from_utf8_lossy(b).into_owned())
            };
            table.row(vec![
                r.partition.to_string(),
                r.offset.to_string(),
                text(&r.key),
                original,
                header(r, RETRY_COUNT).unwrap_or_else(|| "-".into()),
                header(r, ERROR).unwrap_or_else(|| "-".into()),
                text(&r.value),
            ]);
        }
        table.render()
    });
    Ok(())
}

/// The group's committed DLQ offsets and the metadata of its first partition.
async fn progress(
    client: &mut Client,
    node: i32,
    group: &str,
) -> Result<(BTreeMap<Tp, i64>, Option<String>), CliError> {
    let committed = committed_with_metadata(client, node, group).await?;
    let metadata = committed.values().find_map(|(_, m)| m.clone());
    Ok((
        committed.into_iter().map(|(tp, (o, _))| (tp, o)).collect(),
        metadata,
    ))
}

/// DLQ offsets already replayed to `target` after the offsets in `marks`:
/// the highest per DLQ partition.
async fn already_replayed(
    client: &mut Client,
    dlq: &str,
    marks: &BTreeMap<Tp, i64>,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let ends = list_offsets(client, &marks.keys().cloned().collect::<Vec<_>>(), LATEST).await?;
    let mut reader = Reader::new(marks.clone());
    let prefix = format!("{dlq}/");
    let mut done: BTreeMap<i32, i64> = BTreeMap::new();
    while !reader
        .positions
        .iter()
        .all(|(tp, p)| ends.get(tp).is_none_or(|e| p >= e))
    {
        for r in reader.poll(client, 200).await? {
            let Some(source) = header(&r, REPLAY_SOURCE) else {
                continue;
            };
            let Some(rest) = source.strip_prefix(&prefix) else {
                continue;
            };
            if let Some((p, o)) = rest.split_once('/') {
                if let (Ok(p), Ok(o)) = (p.parse::<i32>(), o.parse::<i64>()) {
                    let e = done.entry(p).or_insert(o);
                    *e = (*e).max(o);
                }
            }
        }
    }
    Ok(done)
}

async fn replay(client: &mut Client, args: ReplayArgs, format: Format) -> Result<(), CliError> {
    let dlq = args.dlq.clone();
    if !dlq.ends_with(SUFFIX) && args.to.is_none() {
        return Err(CliError::Usage(format!(
            "{dlq} is not named TOPIC.dlq: say --to TOPIC"
        )));
    }
    let target = args
        .to
        .clone()
        .unwrap_or_else(|| dlq.trim_end_matches(SUFFIX).to_string());
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("sluice-replay-{dlq}"));
    let dlq_partitions = partitions_of(client, &dlq, &[]).await?;
    let target_partitions = partitions_of(client, &target, &[]).await?;
    let starts = list_offsets(client, &dlq_partitions, EARLIEST).await?;
    let ends = list_offsets(client, &dlq_partitions, LATEST).await?;
    let node = coordinator(client, &group).await?;
    let (committed, marks) = progress(client, node, &group).await?;
    // Finish what a killed run published but did not commit.
    // (librdkafka ends the metadata it commits with a NUL.)
    let replayed = match marks
        .as_deref()
        .map(|m| serde_json::from_str::<BTreeMap<i32, i64>>(m.trim_end_matches('\0')))
    {
        Some(Ok(m)) => {
            let marks: BTreeMap<Tp, i64> = m
                .into_iter()
                .map(|(p, o)| ((target.clone(), p), o))
                .collect();
            already_replayed(client, &dlq, &marks).await?
        }
        _ => BTreeMap::new(),
    };
    let mut from: BTreeMap<Tp, i64> = BTreeMap::new();
    for tp in &dlq_partitions {
        let lo = starts.get(tp).copied().unwrap_or(0);
        let mut at = committed.get(tp).copied().unwrap_or(lo).max(lo);
        if let Some(o) = args.from_offset {
            at = at.max(o);
        }
        if let Some(done) = replayed.get(&tp.1) {
            at = at.max(done + 1);
        }
        from.insert(tp.clone(), at);
    }
    let stop: BTreeMap<Tp, i64> = dlq_partitions
        .iter()
        .map(|tp| {
            let end = ends.get(tp).copied().unwrap_or(0);
            (tp.clone(), args.to_offset.map_or(end, |t| t.min(end)))
        })
        .collect();
    let total: i64 = dlq_partitions
        .iter()
        .map(|tp| (stop[tp] - from[tp]).max(0))
        .sum();
    let mut producer = if args.dry_run {
        None
    } else {
        Some(Producer::new(client, &target).await?)
    };
    let metadata = if args.dry_run {
        None
    } else {
        // Where the target ends now: a later run looks for this run's records
        // from here.
        let target_ends = list_offsets(client, &target_partitions, LATEST).await?;
        let marks: BTreeMap<i32, i64> = target_ends.iter().map(|((_, p), o)| (*p, *o)).collect();
        let metadata = serde_json::to_string(&marks).unwrap_or_default();
        let offsets: Vec<(Tp, i64)> = from.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        commit_with_metadata(client, node, &group, &offsets, Some(&metadata)).await?;
        Some(metadata)
    };
    let mut reader = Reader::new(from.clone());
    let (mut done, mut sent, mut filtered) = (0i64, 0usize, 0usize);
    let mut planned = Vec::new();
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal() && format == Format::Table;
    while reader.positions.iter().any(|(tp, p)| p < &stop[tp]) {
        let records = reader.poll(client, 200).await?;
        // With --rate, a few records at a time, each group sent and committed
        // before the pause.
        let chunk = args.rate.map_or(usize::MAX, |r| (r as usize / 10).max(1));
        for records in records.chunks(chunk) {
            let mut batches: BTreeMap<i32, Vec<OwnedRecord>> = BTreeMap::new();
            let mut positions = from.clone();
            for r in records.iter() {
                let tp = (r.topic.clone(), r.partition);
                if r.offset >= stop[&tp] {
                    continue;
                }
                positions.insert(tp, r.offset + 1);
                done += 1;
                let wanted = args
                    .key
                    .as_ref()
                    .is_none_or(|k| r.key.as_deref() == Some(k.as_bytes()))
                    && args.since.is_none_or(|s| r.timestamp >= s);
                if !wanted {
                    filtered += 1;
                    continue;
                }
                if args.dry_run {
                    planned.push(record_json(r));
                    continue;
                }
                let Some(producer) = producer.as_mut() else {
                    continue;
                };
                let original = header(r, ORIGINAL_PARTITION).and_then(|p| p.parse::<i32>().ok());
                let partition = match original
                    .filter(|p| *p >= 0 && (*p as usize) < producer.partition_count())
                {
                    Some(p) => p,
                    None => producer.partition_for(r.key.as_deref(), None)?,
                };
                let mut headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = r
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with(b"dlq."))
                    .cloned()
                    .collect();
                headers.push((
                    REPLAY_SOURCE.as_bytes().to_vec(),
                    Some(format!("{dlq}/{}/{}", r.partition, r.offset).into_bytes()),
                ));
                batches.entry(partition).or_default().push(OwnedRecord {
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers,
                    timestamp: crate::broker::wall_clock_ms(),
                });
            }
            if let Some(producer) = producer.as_mut() {
                for (p, records) in &batches {
                    producer.send(client, *p, records).await?;
                    sent += records.len();
                }
                let offsets: Vec<(Tp, i64)> =
                    positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
                commit_with_metadata(client, node, &group, &offsets, metadata.as_deref()).await?;
            }
            from = positions;
            if bar {
                let width = 30usize;
                let filled = if total > 0 {
                    (done as usize * width / total as usize).min(width)
                } else {
                    width
                };
                eprint!(
                    "\r[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                );
                let _ = std::io::stderr().flush();
            }
            if let Some(rate) = args.rate.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(done as f64 / f64::from(rate));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    if bar {
        eprintln!();
    }
    let skipped_resumed: usize = replayed.len();
    let json = json!({
        "dlq": dlq, "to": target, "group": group, "dry_run": args.dry_run,
        "read": done, "replayed": sent, "filtered": filtered,
        "resumed_partitions": skipped_resumed,
        "records": if args.dry_run { Value::Array(planned.clone()) } else { Value::Null },
    });
    print(format, &json, || {
        if args.dry_run {
            format!("Dry run: {} of {done} dead letters of {dlq} would go to {target} ({filtered} filtered out).", planned.len())
        } else {
            format!("Replayed {sent} of {done} dead letters of {dlq} to {target} ({filtered} filtered out); progress committed in group {group}.")
        }
    });
    Ok(())
}
