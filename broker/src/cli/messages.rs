//! `sluice produce TOPIC` (records from stdin, one per line, or JSON lines) and
//! `sluice consume TOPIC` (records to stdout with a `--format` or as JSON lines).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use clap::Args;
use serde_json::{json, Value};

use super::consumer::{Fetched, Reader};
use super::groups::{committed_offsets, coordinator};
use super::offsets::{commit_offsets, list_offsets, partitions_of, Tp, EARLIEST, LATEST};
use super::output::Format;
use super::producer::{OwnedRecord, Producer};
use super::{CliError, Client};

/// Records sent per batch.
const BATCH_RECORDS: usize = 500;
/// Longest input line accepted.
const LINE_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// The key of every record.
    #[arg(long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Each line is KEY, this separator, VALUE.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record, KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// The partition of every record (default: by key, else in turn).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Input: lines of text, or JSON lines `{"key", "value", "headers", "partition"}`.
    #[arg(long, value_enum, default_value_t = Input::Text)]
    pub input: Input,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Input {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Only these partitions (repeatable; default: all).
    #[arg(long = "partition")]
    pub partitions: Vec<i32>,
    /// Start at each partition's first record (default: its end, or the group's
    /// committed offset).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset.
    #[arg(long)]
    pub offset: Option<i64>,
    /// Start at this group's committed offsets and commit where reading stopped
    /// (the group must have no members).
    #[arg(long)]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<usize>,
    /// Keep waiting for new records (default: stop at the end of the log).
    #[arg(long)]
    pub follow: bool,
    /// Output of each record: %t topic, %p partition, %o offset, %T timestamp,
    /// %k key, %v value, %h headers, %% a percent sign; \n, \t. Ignored with
    /// --output json.
    #[arg(long, default_value = "%v\\n")]
    pub format: String,
}

fn parse_header(text: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), CliError> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("header {text:?} is not KEY=VALUE")))?;
    Ok((k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())))
}

/// One input line as a record and its partition, if it names one.
fn parse_line(
    line: &str,
    args: &ProduceArgs,
    headers: &[(Vec<u8>, Option<Vec<u8>>)],
    number: usize,
) -> Result<(OwnedRecord, Option<i32>), CliError> {
    let now = crate::broker::wall_clock_ms();
    let mut record = OwnedRecord {
        key: args.key.as_ref().map(|k| k.as_bytes().to_vec()),
        value: Some(line.as_bytes().to_vec()),
        headers: headers.to_vec(),
        timestamp: now,
    };
    let mut partition = args.partition;
    match args.input {
        Input::Text => {
            if let Some(sep) = &args.key_separator {
                let (k, v) = line.split_once(sep.as_str()).ok_or_else(|| {
                    CliError::Usage(format!("line {number} has no key separator {sep:?}"))
                })?;
                record.key = Some(k.as_bytes().to_vec());
                record.value = Some(v.as_bytes().to_vec());
            }
        }
        Input::Json => {
            let bad = |what: &str| CliError::Usage(format!("line {number}: {what}"));
            let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let text = |field: &str| -> Result<Option<Vec<u8>>, CliError> {
                match v.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.as_bytes().to_vec())),
                    Some(other) => Ok(Some(other.to_string().into_bytes())),
                }
            };
            record.key = text("key")?.or(record.key);
            record.value = text("value")?;
            if let Some(h) = v.get("headers") {
                let h = h
                    .as_object()
                    .ok_or_else(|| bad("headers is not an object"))?;
                for (k, v) in h {
                    let value = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.as_bytes().to_vec()),
                        other => Some(other.to_string().into_bytes()),
                    };
                    record.headers.push((k.as_bytes().to_vec(), value));
                }
            }
            if let Some(p) = v.get("partition") {
                partition = Some(
                    p.as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| bad("partition is not a number"))?,
                );
            }
        }
    }
    Ok((record, partition))
}

pub async fn produce(
    client: &mut Client,
    args: ProduceArgs,
    format: Format,
) -> Result<(), CliError> {
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let mut producer = Producer::new(client, &args.topic).await?;
    let mut pending: BTreeMap<i32, Vec<OwnedRecord>> = BTreeMap::new();
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    let stdin = std::io::stdin();
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
        if line.len() > LINE_BYTES_MAX {
            return Err(CliError::Usage(format!(
                "line {} is longer than {LINE_BYTES_MAX} bytes",
                i + 1
            )));
        }
        if line.is_empty() && args.input == Input::Json {
            continue;
        }
        let (record, partition) = parse_line(&line, &args, &headers, i + 1)?;
        let p = producer.partition_for(record.key.as_deref(), partition)?;
        let batch = pending.entry(p).or_default();
        batch.push(record);
        if batch.len() >= BATCH_RECORDS {
            let records = std::mem::take(batch);
            producer.send(client, p, &records).await?;
            *counts.entry(p).or_default() += records.len();
        }
    }
    for (p, records) in pending {
        producer.send(client, p, &records).await?;
        *counts.entry(p).or_default() += records.len();
    }
    let total: usize = counts.values().sum();
    let json = json!({
        "topic": args.topic,
        "produced": total,
        "partitions": counts.iter().map(|(p, n)| (p.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
    });
    super::output::print(format, &json, || {
        format!("Produced {total} records to {}.", args.topic)
    });
    Ok(())
}

fn text(bytes: &Option<Vec<u8>>) -> Value {
    bytes.as_ref().map_or(Value::Null, |b| {
        Value::String(String::from_utf8_lossy(b).into_owned())
    })
}

/// A record as one JSON object.
pub fn record_json(r: &Fetched) -> Value {
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": text(&r.key),
        "value": text(&r.value),
        "headers": r.headers.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), text(v))).collect::<serde_json::Map<_, _>>(),
    })
}

/// A record through a `--format` string.
pub fn render(format: &str, r: &Fetched) -> String {
    let lossy = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
    };
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.push_str(&r.topic),
                Some('p') => out.push_str(&r.partition.to_string()),
                Some('o') => out.push_str(&r.offset.to_string()),
                Some('T') => out.push_str(&r.timestamp.to_string()),
                Some('k') => out.push_str(&lossy(&r.key)),
                Some('v') => out.push_str(&lossy(&r.value)),
                Some('h') => out.push_str(
                    &r.headers
                        .iter()
                        .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), lossy(v)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

pub async fn consume(
    client: &mut Client,
    args: ConsumeArgs,
    format: Format,
) -> Result<(), CliError> {
    let partitions = partitions_of(client, &args.topic, &args.partitions).await?;
    let earliest = list_offsets(client, &partitions, EARLIEST).await?;
    let latest = list_offsets(client, &partitions, LATEST).await?;
    let group = match &args.group {
        Some(g) => {
            let node = coordinator(client, g).await?;
            Some((g.clone(), node, committed_offsets(client, node, g).await?))
        }
        None => None,
    };
    let start: BTreeMap<Tp, i64> = partitions
        .iter()
        .map(|tp| {
            let lo = earliest.get(tp).copied().unwrap_or(0);
            let hi = latest.get(tp).copied().unwrap_or(lo);
            let committed = group.as_ref().and_then(|(_, _, c)| c.get(tp).copied());
            let at = match (args.offset, committed) {
                (Some(o), _) => o.clamp(lo, hi),
                (None, Some(c)) => c.clamp(lo, hi),
                (None, None) if args.from_beginning => lo,
                (None, None) => hi,
            };
            (tp.clone(), at)
        })
        .collect();
    // Where a group would resume: after the last record printed.
    let mut resume = start.clone();
    let mut reader = Reader::new(start);
    let mut printed = 0usize;
    let mut stopped_by_count = false;
    let stdout = std::io::stdout();
    'reading: loop {
        if !args.follow
            && reader
                .positions
                .iter()
                .all(|(tp, pos)| latest.get(tp).is_none_or(|hi| pos >= hi))
        {
            break;
        }
        let records = reader.poll(client, 500).await?;
        let mut out = stdout.lock();
        for r in &records {
            if args.count.is_some_and(|n| printed >= n) {
                stopped_by_count = true;
                break 'reading;
            }
            let line = match format {
                Format::Json => format!("{}\n", record_json(r)),
                Format::Table => render(&args.format, r),
            };
            out.write_all(line.as_bytes())
                .map_err(|e| CliError::Usage(format!("writing stdout: {e}")))?;
            printed += 1;
            resume.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        let _ = out.flush();
        if args.count.is_some_and(|n| printed >= n) {
            stopped_by_count = true;
            break;
        }
    }
    if let Some((g, node, _)) = group {
        // Read to the end: past skipped control batches too. Stopped by
        // --count: right after the last record printed.
        let positions = if stopped_by_count {
            &resume
        } else {
            &reader.positions
        };
        let offsets: Vec<(Tp, i64)> = positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        commit_offsets(client, node, &g, &offsets).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_name_every_field() {
        let r = Fetched {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp: 1000,
            key: Some(b"k1".to_vec()),
            value: Some(b"v1".to_vec()),
            headers: vec![(b"retry".to_vec(), Some(b"3".to_vec()))],
        };
        assert_eq!(
            render("%t/%p@%o %T %k\\t%v %h 100%%\\n", &r),
            "orders/2@41 1000 k1\tv1 retry=3 100%\n"
        );
        assert_eq!(record_json(&r)["headers"]["retry"], "3");
    }
}
