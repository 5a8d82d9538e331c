//! An idempotent, acks=all producer for the `sluice` command: records go to
//! their partition's leader in batches with the producer's id and sequences, so
//! a retried batch is stored once. Keys pick partitions as the Java client's
//! default partitioner does (murmur2), so a key lands where other clients put it.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::ResponseError;
use sluice_protocol::batch::{build_records_batch, set_producer, Header, NewRecord};

use super::{str_bytes, CliError, Client};

/// Produce v13 addresses topics by id; v12 by name.
const PRODUCE_VERSION_MAX: i16 = 12;
/// Attempts of one batch (retried with the same sequence: stored once).
const ATTEMPTS: usize = 5;

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

#[derive(Debug)]
pub struct Producer {
    topic: String,
    /// Partition to its leader.
    leaders: BTreeMap<i32, i32>,
    producer_id: i64,
    epoch: i16,
    sequences: BTreeMap<i32, i32>,
    next_unkeyed: usize,
}

impl Producer {
    /// A producer for `topic` with a fresh producer id.
    pub async fn new(client: &mut Client, topic: &str) -> Result<Self, CliError> {
        let init = client
            .send(
                None,
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(-1)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await?;
        CliError::check(init.error_code, None, || "get a producer id".into())?;
        let mut producer = Producer {
            topic: topic.to_string(),
            leaders: BTreeMap::new(),
            producer_id: init.producer_id.0,
            epoch: init.producer_epoch,
            sequences: BTreeMap::new(),
            next_unkeyed: 0,
        };
        producer.refresh(client).await?;
        Ok(producer)
    }

    async fn refresh(&mut self, client: &mut Client) -> Result<(), CliError> {
        let t = client.topic(&self.topic).await?;
        self.leaders = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        Ok(())
    }

    pub fn partition_count(&self) -> usize {
        self.leaders.len()
    }

    /// The partition a record goes to: the one given, its key's, or the next in
    /// turn for a record without a key.
    pub fn partition_for(
        &mut self,
        key: Option<&[u8]>,
        given: Option<i32>,
    ) -> Result<i32, CliError> {
        let n = self.leaders.len();
        let p = match (given, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => {
                self.next_unkeyed += 1;
                ((self.next_unkeyed - 1) % n.max(1)) as i32
            }
        };
        if !self.leaders.contains_key(&p) {
            return Err(CliError::Usage(format!(
                "topic {} has no partition {p}",
                self.topic
            )));
        }
        Ok(p)
    }

    /// Sends `records` to `partition` as one batch; returns the offset of the
    /// first.
    pub async fn send(
        &mut self,
        client: &mut Client,
        partition: i32,
        records: &[OwnedRecord],
    ) -> Result<i64, CliError> {
        if records.is_empty() {
            return Ok(-1);
        }
        let headers: Vec<Vec<Header<'_>>> = records
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect()
            })
            .collect();
        let new: Vec<NewRecord<'_>> = records
            .iter()
            .zip(&headers)
            .map(|(r, h)| NewRecord {
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: h,
            })
            .collect();
        let mut batch = build_records_batch(&new);
        let sequence = self.sequences.get(&partition).copied().unwrap_or(0);
        set_producer(&mut batch, self.producer_id, self.epoch, sequence);
        let batch = Bytes::from(batch);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let leader = self.leaders.get(&partition).copied().unwrap_or(-1);
            if leader < 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                self.refresh(client).await?;
                continue;
            }
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(i32::try_from(client.timeout().as_millis()).unwrap_or(i32::MAX))
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(str_bytes(&self.topic)))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch.clone()))])]);
            let response = client
                .send_at_most(Some(leader), request, PRODUCE_VERSION_MAX)
                .await?;
            let p = response
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .ok_or_else(|| CliError::Protocol("Produce answered no partition".into()))?;
            let retriable = matches!(
                ResponseError::try_from_code(p.error_code),
                Some(
                    ResponseError::NotLeaderOrFollower
                        | ResponseError::LeaderNotAvailable
                        | ResponseError::RequestTimedOut
                        | ResponseError::NotEnoughReplicas
                        | ResponseError::NotEnoughReplicasAfterAppend
                )
            );
            if retriable {
                last = Some((p.error_code, p.error_message.clone()));
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                self.refresh(client).await?;
                continue;
            }
            let topic = self.topic.clone();
            CliError::check(p.error_code, p.error_message.as_ref(), || {
                format!("produce to {topic}-{partition}")
            })?;
            self.sequences.insert(
                partition,
                sequence.wrapping_add(records.len() as i32) & i32::MAX,
            );
            return Ok(p.base_offset);
        }
        let (code, message) = last.unwrap_or((-1, None));
        let topic = self.topic.clone();
        CliError::check(code, message.as_ref(), || {
            format!("produce to {topic}-{partition} after {ATTEMPTS} attempts")
        })?;
        Err(CliError::Protocol(format!(
            "produce to {topic}-{partition}: no leader"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_the_java_client_puts_them() {
        // Values of the Java client's Utils.murmur2.
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
    }
}
