//! Reading partitions for the `sluice` command: Fetch from each partition's
//! leader, batches decompressed and their records decoded with headers, control
//! batches skipped, records below the asked offset (inside the first batch) left
//! out.

use std::collections::BTreeMap;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::ResponseError;
use sluice_protocol::batch::Batches;
use sluice_protocol::records::{parse_records, records_data};

use super::offsets::Tp;
use super::{str_bytes, CliError, Client};

/// Fetch v13 addresses topics by id; v12 by name.
const FETCH_VERSION_MAX: i16 = 12;
/// Bytes asked per partition and per fetch.
const PARTITION_BYTES: i32 = 8 << 20;
const FETCH_BYTES: i32 = 32 << 20;
/// Largest decompressed batch decoded.
const BATCH_BYTES_MAX: usize = 64 << 20;

/// One record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Where each partition's reading stands.
#[derive(Debug)]
pub struct Reader {
    /// Next offset to read, by partition.
    pub positions: BTreeMap<Tp, i64>,
    /// The high watermark each partition last reported.
    pub high_watermarks: BTreeMap<Tp, i64>,
    leaders: BTreeMap<Tp, i32>,
}

impl Reader {
    pub fn new(positions: BTreeMap<Tp, i64>) -> Self {
        Reader {
            positions,
            high_watermarks: BTreeMap::new(),
            leaders: BTreeMap::new(),
        }
    }

    async fn refresh(&mut self, client: &mut Client) -> Result<(), CliError> {
        let mut topics: Vec<&str> = self.positions.keys().map(|(t, _)| t.as_str()).collect();
        topics.dedup();
        let md = client.metadata(Some(&topics)).await?;
        self.leaders.clear();
        for t in &md.topics {
            let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
            for p in &t.partitions {
                self.leaders
                    .insert((name.clone(), p.partition_index), p.leader_id.0);
            }
        }
        Ok(())
    }

    /// Whether every partition reached the high watermark it reported.
    pub fn caught_up(&self) -> bool {
        self.positions
            .iter()
            .all(|(tp, pos)| self.high_watermarks.get(tp).is_some_and(|hw| pos >= hw))
    }

    /// One fetch from every leader (waiting at most `wait_ms` for data); the
    /// records read, in offset order per partition.
    pub async fn poll(
        &mut self,
        client: &mut Client,
        wait_ms: i32,
    ) -> Result<Vec<Fetched>, CliError> {
        if self.leaders.is_empty() {
            self.refresh(client).await?;
        }
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<(i32, i64)>>> = BTreeMap::new();
        for (tp, pos) in &self.positions {
            let leader = self.leaders.get(tp).copied().unwrap_or(-1);
            by_leader
                .entry(leader)
                .or_default()
                .entry(tp.0.clone())
                .or_default()
                .push((tp.1, *pos));
        }
        let mut out = Vec::new();
        let mut stale = false;
        for (leader, topics) in by_leader {
            if leader < 0 {
                stale = true;
                continue;
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_BYTES)
                .with_session_epoch(-1)
                .with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            FetchTopic::default()
                                .with_topic(TopicName(str_bytes(t)))
                                .with_partitions(
                                    ps.iter()
                                        .map(|(p, offset)| {
                                            FetchPartition::default()
                                                .with_partition(*p)
                                                .with_fetch_offset(*offset)
                                                .with_partition_max_bytes(PARTITION_BYTES)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let response = client
                .send_at_most(Some(leader), request, FETCH_VERSION_MAX)
                .await?;
            CliError::check(response.error_code, None, || "fetch".into())?;
            for t in response.responses {
                let topic = t.topic.to_string();
                for p in t.partitions {
                    let tp = (topic.clone(), p.partition_index);
                    match ResponseError::try_from_code(p.error_code) {
                        None => {}
                        Some(
                            ResponseError::NotLeaderOrFollower
                            | ResponseError::LeaderNotAvailable
                            | ResponseError::UnknownLeaderEpoch,
                        ) => {
                            stale = true;
                            continue;
                        }
                        Some(_) => {
                            CliError::check(p.error_code, None, || {
                                format!(
                                    "fetch {}-{} at offset {}",
                                    tp.0,
                                    tp.1,
                                    self.positions.get(&tp).copied().unwrap_or(-1)
                                )
                            })?;
                        }
                    }
                    self.high_watermarks.insert(tp.clone(), p.high_watermark);
                    let Some(bytes) = p.records else { continue };
                    let position = self.positions.get(&tp).copied().unwrap_or(0);
                    let next = decode(&topic, p.partition_index, &bytes, position, &mut out)?;
                    self.positions.insert(tp, next.max(position));
                }
            }
        }
        if stale {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            self.refresh(client).await?;
        }
        Ok(out)
    }
}

/// Decodes the records at or after `from` in fetched `bytes`; returns the next
/// offset to fetch.
fn decode(
    topic: &str,
    partition: i32,
    bytes: &[u8],
    from: i64,
    out: &mut Vec<Fetched>,
) -> Result<i64, CliError> {
    let mut next = from;
    for batch in Batches::new(bytes) {
        // A batch cut short at the end of a response is read again next time.
        let Ok(batch) = batch else { break };
        next = next.max(batch.last_offset().0 + 1);
        if batch.is_control() {
            continue;
        }
        let bad = |e: &dyn std::fmt::Display| {
            CliError::Protocol(format!(
                "{topic}-{partition}: bad batch at {}: {e}",
                batch.base_offset().0
            ))
        };
        let data = records_data(&batch, BATCH_BYTES_MAX).map_err(|e| bad(&e))?;
        let records = parse_records(&data, batch.record_count()).map_err(|e| bad(&e))?;
        for r in records {
            let offset = batch.base_offset().0 + i64::from(r.offset_delta);
            if offset < from {
                continue;
            }
            out.push(Fetched {
                topic: topic.to_string(),
                partition,
                offset,
                timestamp: if batch.is_log_append_time() {
                    batch.max_timestamp()
                } else {
                    batch.base_timestamp() + r.timestamp_delta
                },
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers()
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect(),
            });
        }
    }
    Ok(next)
}
