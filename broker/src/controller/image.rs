//! The cluster metadata image and the commands that change it. Every broker
//! applies the same committed commands in the same order, so every broker holds
//! the same image; `apply` is deterministic and checks each command against the
//! image (a command that no longer fits, such as a second creation of one name
//! raced in by two brokers, changes nothing).
//!
//! A command is stored as the value of one record, in JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::dynamic_config::BrokerOverrides;

/// Raft group of the controller; partition groups are numbered from 1.
pub const CONTROLLER_GROUP: u64 = 0;
/// Producer ids per block handed to a broker.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// A broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub host: String,
    pub port: i32,
}

/// One partition: its replicas in preferred order, its Raft group and, when some
/// broker does not host it, the leadership its leader last published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub group: u64,
    #[serde(default)]
    pub leader: Option<LeaderRecord>,
    /// DeleteRecords asked for the log to start at or below this offset no
    /// lower than it (0: never asked); every replica follows.
    #[serde(default)]
    pub log_start_floor: i64,
}

/// A partition's leadership as its leader published it: brokers that do not
/// host the partition answer Metadata and FindCoordinator from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub leader: i32,
    /// The Raft term.
    pub epoch: i32,
    /// In-sync replicas, sorted.
    pub isr: Vec<i32>,
}

/// One partition's published leadership, by Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedLeader {
    pub group: u64,
    #[serde(flatten)]
    pub record: LeaderRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub id: Uuid,
    pub partitions: Vec<PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

/// A change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    RegisterBroker {
        id: i32,
        host: String,
        port: i32,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        /// Replicas of each partition, preferred leader first.
        replicas: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        /// Replicas of each new partition.
        replicas: Vec<Vec<i32>>,
        /// The partition count the proposer saw: a second proposal raced in
        /// from the same count adds nothing.
        #[serde(default)]
        from: Option<usize>,
    },
    AllocateProducerIds {
        broker: i32,
    },
    /// Leaders of partitions not hosted by every broker, published by the leaders.
    PublishLeaders {
        leaders: Vec<PublishedLeader>,
    },
    /// Replaces a topic's config overrides.
    AlterTopicConfigs {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// DeleteRecords on a replicated partition: its replicas delete the records
    /// below `offset` once they hold it.
    DeleteRecords {
        name: String,
        id: Uuid,
        partition: usize,
        offset: i64,
    },
    /// Replaces the dynamic configs of one broker resource (a broker id, or
    /// empty for the cluster default).
    AlterBrokerConfigs {
        resource: String,
        configs: BTreeMap<String, String>,
    },
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(value: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|e| format!("metadata command: {e}"))
    }
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A producer id block starting here went to the broker that asked.
    ProducerIds {
        broker: i32,
        start: i64,
    },
    /// The command did not fit the image and changed nothing.
    Refused(String),
}

/// The cluster metadata, as of the last applied command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicImage>,
    pub broker_configs: BrokerOverrides,
    next_group: u64,
    next_producer_id: i64,
}

impl MetadataImage {
    pub fn apply(&mut self, command: &Command) -> Applied {
        match command {
            Command::RegisterBroker { id, host, port } => {
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        host: host.clone(),
                        port: *port,
                    },
                );
                Applied::Done
            }
            Command::CreateTopic {
                name,
                id,
                replicas,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Applied::Refused(format!("topic '{name}' already exists"));
                }
                if self.topics.values().any(|t| t.id == *id) {
                    return Applied::Refused(format!("topic id {id} is taken"));
                }
                let partitions = self.new_partitions(replicas);
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: *id,
                        partitions,
                        configs: configs.clone(),
                    },
                );
                Applied::Done
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Applied::Done,
                None => Applied::Refused(format!("topic '{name}' does not exist")),
            },
            Command::CreatePartitions {
                name,
                replicas,
                from,
            } => {
                let Some(topic) = self.topics.get(name) else {
                    return Applied::Refused(format!("topic '{name}' does not exist"));
                };
                if from.is_some_and(|f| f != topic.partitions.len()) {
                    return Applied::Refused(format!(
                        "topic '{name}' has {} partitions now; the new count must be higher",
                        topic.partitions.len()
                    ));
                }
                let added = self.new_partitions(replicas);
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions.extend(added);
                }
                Applied::Done
            }
            Command::AllocateProducerIds { broker } => {
                let start = self.next_producer_id;
                self.next_producer_id += PRODUCER_ID_BLOCK;
                Applied::ProducerIds {
                    broker: *broker,
                    start,
                }
            }
            Command::PublishLeaders { leaders } => {
                // A record older than the one held (a leader that lost its term
                // publishing late) changes nothing.
                for published in leaders {
                    let partition = self
                        .topics
                        .values_mut()
                        .flat_map(|t| t.partitions.iter_mut())
                        .find(|p| p.group == published.group);
                    if let Some(p) = partition {
                        if p.leader
                            .as_ref()
                            .is_none_or(|l| l.epoch <= published.record.epoch)
                        {
                            p.leader = Some(published.record.clone());
                        }
                    }
                }
                Applied::Done
            }
            Command::AlterTopicConfigs { name, id, configs } => match self.topics.get_mut(name) {
                Some(t) if t.id == *id => {
                    t.configs = configs.clone();
                    Applied::Done
                }
                _ => Applied::Refused(format!("topic '{name}' does not exist")),
            },
            Command::DeleteRecords {
                name,
                id,
                partition,
                offset,
            } => {
                let p = self
                    .topics
                    .get_mut(name)
                    .filter(|t| t.id == *id)
                    .and_then(|t| t.partitions.get_mut(*partition));
                match p {
                    Some(p) => {
                        p.log_start_floor = p.log_start_floor.max(*offset);
                        Applied::Done
                    }
                    None => {
                        Applied::Refused(format!("partition {name}-{partition} does not exist"))
                    }
                }
            }
            Command::AlterBrokerConfigs { resource, configs } => {
                self.broker_configs.set(resource, configs.clone());
                Applied::Done
            }
        }
    }

    fn new_partitions(&mut self, replicas: &[Vec<i32>]) -> Vec<PartitionImage> {
        replicas
            .iter()
            .map(|r| {
                self.next_group += 1;
                PartitionImage {
                    replicas: r.clone(),
                    group: CONTROLLER_GROUP + self.next_group,
                    leader: None,
                    log_start_floor: 0,
                }
            })
            .collect()
    }

    /// Replica lists for `count` new partitions of `rf` replicas over `brokers`:
    /// round robin from a start that rotates with the partitions already placed,
    /// so leaders and replicas spread evenly.
    pub fn place(&self, brokers: &[i32], count: usize, rf: usize) -> Vec<Vec<i32>> {
        if brokers.is_empty() {
            return Vec::new();
        }
        let placed: usize = self.topics.values().map(|t| t.partitions.len()).sum();
        (0..count)
            .map(|p| {
                let start = placed + p;
                (0..rf.min(brokers.len()))
                    .map(|r| brokers[(start + r) % brokers.len()])
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(image: &mut MetadataImage, ids: &[i32]) {
        for id in ids {
            image.apply(&Command::RegisterBroker {
                id: *id,
                host: "127.0.0.1".into(),
                port: 9092 + id,
            });
        }
    }

    #[test]
    fn commands_round_trip_and_apply_in_order() {
        let mut image = MetadataImage::default();
        register(&mut image, &[1, 2, 3]);
        let create = Command::CreateTopic {
            name: "orders".into(),
            id: Uuid::from_u128(7),
            replicas: image.place(&[1, 2, 3], 3, 3),
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        };
        let back = Command::decode(&create.encode()).expect("decode");
        assert_eq!(back, create);
        assert_eq!(image.apply(&back), Applied::Done);
        assert!(matches!(image.apply(&back), Applied::Refused(_)));
        let t = &image.topics["orders"];
        let groups: Vec<u64> = t.partitions.iter().map(|p| p.group).collect();
        assert_eq!(groups, vec![1, 2, 3]);
        // Leaders (first replicas) spread over the brokers.
        let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.replicas[0]).collect();
        leaders.sort();
        assert_eq!(leaders, vec![1, 2, 3]);
        assert!(t.partitions.iter().all(|p| p.replicas.len() == 3));
        let a = image.apply(&Command::AllocateProducerIds { broker: 2 });
        let b = image.apply(&Command::AllocateProducerIds { broker: 3 });
        assert_eq!(
            a,
            Applied::ProducerIds {
                broker: 2,
                start: 0
            }
        );
        assert_eq!(
            b,
            Applied::ProducerIds {
                broker: 3,
                start: PRODUCER_ID_BLOCK
            }
        );
        assert_eq!(
            image.apply(&Command::DeleteTopic {
                name: "orders".into()
            }),
            Applied::Done
        );
        assert!(image.topics.is_empty());
        assert!(Command::decode(b"{\"type\":\"unknown\"}").is_err());
    }

    #[test]
    fn fewer_replicas_than_brokers_spread_and_take_only_newer_leadership() {
        let mut image = MetadataImage::default();
        register(&mut image, &[1, 2, 3, 4]);
        let replicas = image.place(&[1, 2, 3, 4], 4, 2);
        assert!(replicas.iter().all(|r| r.len() == 2 && r[0] != r[1]));
        let mut leaders: Vec<i32> = replicas.iter().map(|r| r[0]).collect();
        leaders.sort();
        assert_eq!(leaders, vec![1, 2, 3, 4]);
        image.apply(&Command::CreateTopic {
            name: "audit".into(),
            id: Uuid::from_u128(9),
            replicas,
            configs: BTreeMap::new(),
        });
        let publish = |leader, epoch| Command::PublishLeaders {
            leaders: vec![PublishedLeader {
                group: 1,
                record: LeaderRecord {
                    leader,
                    epoch,
                    isr: vec![1, 2],
                },
            }],
        };
        let leader = |image: &MetadataImage| image.topics["audit"].partitions[0].leader.clone();
        let back = Command::decode(&publish(2, 5).encode()).expect("decode");
        assert_eq!(back, publish(2, 5));
        image.apply(&back);
        assert_eq!(leader(&image).map(|l| (l.leader, l.epoch)), Some((2, 5)));
        // A leader of an older term publishing late changes nothing.
        image.apply(&publish(1, 4));
        assert_eq!(leader(&image).map(|l| (l.leader, l.epoch)), Some((2, 5)));
        image.apply(&publish(1, 6));
        assert_eq!(leader(&image).map(|l| (l.leader, l.epoch)), Some((1, 6)));
        assert!(image.topics["audit"].partitions[1].leader.is_none());
    }

    #[test]
    fn config_changes_apply_to_the_topic_of_that_id() {
        let mut image = MetadataImage::default();
        register(&mut image, &[1, 2, 3]);
        let id = Uuid::from_u128(3);
        image.apply(&Command::CreateTopic {
            name: "orders".into(),
            id,
            replicas: image.place(&[1, 2, 3], 1, 3),
            configs: BTreeMap::new(),
        });
        let retention = BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]);
        let alter = |id| Command::AlterTopicConfigs {
            name: "orders".into(),
            id,
            configs: retention.clone(),
        };
        let back = Command::decode(&alter(id).encode()).expect("decode");
        assert_eq!(image.apply(&back), Applied::Done);
        assert_eq!(image.topics["orders"].configs, retention);
        // A change meant for an earlier topic of the same name is refused.
        assert!(matches!(
            image.apply(&alter(Uuid::from_u128(4))),
            Applied::Refused(_)
        ));
        let brokers = Command::AlterBrokerConfigs {
            resource: String::new(),
            configs: BTreeMap::from([("log.retention.ms".to_string(), "1000".to_string())]),
        };
        image.apply(&Command::decode(&brokers.encode()).expect("decode"));
        assert!(image.broker_configs.get("").is_some());
        image.apply(&Command::AlterBrokerConfigs {
            resource: String::new(),
            configs: BTreeMap::new(),
        });
        assert!(image.broker_configs.get("").is_none());
    }

    #[test]
    fn a_second_partition_raise_from_the_same_count_adds_nothing() {
        let mut image = MetadataImage::default();
        register(&mut image, &[1, 2, 3]);
        image.apply(&Command::CreateTopic {
            name: "orders".into(),
            id: Uuid::from_u128(5),
            replicas: image.place(&[1, 2, 3], 1, 3),
            configs: BTreeMap::new(),
        });
        let raise = Command::CreatePartitions {
            name: "orders".into(),
            replicas: image.place(&[1, 2, 3], 2, 3),
            from: Some(1),
        };
        assert_eq!(image.apply(&raise), Applied::Done);
        assert!(matches!(image.apply(&raise), Applied::Refused(_)));
        assert_eq!(image.topics["orders"].partitions.len(), 3);
    }

    #[test]
    fn delete_records_floors_only_rise() {
        let mut image = MetadataImage::default();
        register(&mut image, &[1, 2, 3]);
        let id = Uuid::from_u128(6);
        image.apply(&Command::CreateTopic {
            name: "repartition".into(),
            id,
            replicas: image.place(&[1, 2, 3], 2, 3),
            configs: BTreeMap::new(),
        });
        let delete = |offset, partition| Command::DeleteRecords {
            name: "repartition".into(),
            id,
            partition,
            offset,
        };
        let back = Command::decode(&delete(50, 1).encode()).expect("decode");
        assert_eq!(image.apply(&back), Applied::Done);
        image.apply(&delete(20, 1));
        assert_eq!(
            image.topics["repartition"].partitions[1].log_start_floor,
            50
        );
        assert_eq!(image.topics["repartition"].partitions[0].log_start_floor, 0);
        assert!(matches!(image.apply(&delete(5, 2)), Applied::Refused(_)));
    }
}
