//! The group coordinator: consumer groups (Kafka's classic protocol) and their
//! committed offsets, persisted in the compacted internal topic `__consumer_offsets`.
//!
//! A group lives in partition `abs(javaHash(group)) % partitions` of that topic, and
//! the coordinator of a group is that partition's leader (this broker, until
//! replication lands). Every change is queued for the partition's append task while
//! the group's lock is held (never appended on a network thread), so the log holds
//! changes in the order they were made; replies wait until the append is durable.
//! On start the coordinator replays the topic.
//!
//! ```text
//!  handlers/{join,sync,heartbeat,...}.rs ─► Coordinator ─► Group (state.rs, pure)
//!                                               │ append key/value records (records.rs)
//!                                               ▼
//!                                 __consumer_offsets-N (Replica) ─► wait durable ─► reply
//! ```

pub mod consumer_protocol;
pub mod records;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sluice_protocol::batch::{build_batch, Batches, KeyValue};
use sluice_protocol::records::{parse_records, records_data};
use sluice_replication::{AppendTicket, Replica, ReplicaError};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::cluster::{Cluster, NotHere, Topic, TopicError};
use crate::config::GroupCoordinatorConfig;
use crate::topic_config;
use records::{GroupValue, OffsetValue, RecordKey};
use state::Group;
pub use state::{
    Deferred, GroupError, GroupLimits, GroupState, GroupSummary, JoinRequest, JoinResult,
    SyncRequest, SyncResult,
};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Bytes read from the log at once while loading groups.
const LOAD_READ_BYTES: usize = 1 << 20;
/// Longest decompressed records section accepted while loading.
const LOAD_RECORDS_MAX_BYTES: usize = 64 << 20;
/// Longest string the stored record format can hold.
const STRING_MAX_BYTES: usize = i16::MAX as usize;

/// One partition's committed offset to store.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Committed offsets by topic: each partition asked for, with its offset if any.
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

/// Who commits: a member of the current generation, or (generation -1, no member)
/// a tool or `assign()` consumer committing for an empty group.
#[derive(Debug, Clone, Default)]
pub struct Committer {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
}

/// An append queued for a group's partition, durable once the partition appended
/// and then committed it.
struct Durable {
    replica: Arc<Replica>,
    ticket: AppendTicket,
}

impl Durable {
    async fn wait(self) -> Result<(), GroupError> {
        let failed = |e: ReplicaError| {
            warn!(partition = self.replica.name(), error = %e, "group state not durable");
            GroupError::Storage
        };
        let info = self.ticket.appended().await.map_err(failed)?;
        self.replica
            .wait_committed(info.last_offset.next())
            .await
            .map_err(failed)
    }
}

/// What waits for a stored group's metadata to be durable: held-back replies, and
/// the generation whose assignment makes the group Stable.
struct PendingStore {
    deferred: Vec<Deferred>,
    assignment: Option<(Arc<Mutex<Group>>, i32, GroupLimits)>,
    now: i64,
}

impl PendingStore {
    fn complete(self, stored: Result<(), GroupError>) {
        match stored {
            Ok(()) => self.deferred.into_iter().for_each(Deferred::send),
            Err(e) => self.deferred.into_iter().for_each(|d| d.fail(e)),
        }
        if let Some((group, generation, limits)) = self.assignment {
            group
                .lock()
                .assignment_stored(generation, stored, &limits, self.now);
        }
    }
}

#[derive(Debug)]
pub struct Coordinator {
    cluster: Arc<Cluster>,
    config: GroupCoordinatorConfig,
    limits: GroupLimits,
    groups: RwLock<HashMap<String, Arc<Mutex<Group>>>>,
    /// `__consumer_offsets`, once it exists (created on first use, like Kafka).
    topic: Mutex<Option<Arc<Topic>>>,
    closed: AtomicBool,
    /// In a cluster: asks the controller to create `__consumer_offsets`.
    create_topic: std::sync::OnceLock<TopicCreator>,
    /// In a cluster: the `__consumer_offsets` partitions this broker leads and
    /// has loaded the groups of (only their groups are coordinated here).
    loaded: RwLock<std::collections::HashSet<usize>>,
}

/// Asks for `__consumer_offsets` to be created (in a cluster, by the controller).
pub struct TopicCreator(pub Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for TopicCreator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicCreator")
    }
}

impl Coordinator {
    /// Loads every group from `__consumer_offsets` if the topic exists.
    pub fn open(cluster: Arc<Cluster>, now: i64) -> Result<Arc<Self>, TopicError> {
        let config = cluster.config().group_coordinator;
        let coordinator = Coordinator {
            limits: GroupLimits {
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                max_size: config.group_max_size,
            },
            config,
            groups: RwLock::new(HashMap::new()),
            topic: Mutex::new(cluster.topic(OFFSETS_TOPIC)),
            closed: AtomicBool::new(false),
            create_topic: std::sync::OnceLock::new(),
            loaded: RwLock::new(std::collections::HashSet::new()),
            cluster,
        };
        if let Some(topic) = coordinator.topic.lock().clone() {
            coordinator.load(&topic, now)?;
        }
        Ok(Arc::new(coordinator))
    }

    /// `__consumer_offsets`, created with `offsets_topic_num_partitions` partitions
    /// on first use.
    pub fn offsets_topic(&self) -> Result<Arc<Topic>, GroupError> {
        if self.cluster.is_replicated() {
            // The controller creates it; the reconciler installs it.
            return match self.cluster.topic(OFFSETS_TOPIC) {
                Some(t) => Ok(t),
                None => {
                    if let Some(create) = self.create_topic.get() {
                        (create.0)();
                    }
                    Err(GroupError::CoordinatorNotAvailable)
                }
            };
        }
        let mut slot = self.topic.lock();
        if let Some(topic) = slot.as_ref() {
            return Ok(Arc::clone(topic));
        }
        let configs = self.offsets_topic_configs();
        let topic = match self.cluster.create_topic(
            OFFSETS_TOPIC,
            self.config.offsets_topic_num_partitions,
            1,
            &configs,
        ) {
            Ok(t) => t,
            Err(TopicError::AlreadyExists(_)) => self
                .cluster
                .topic(OFFSETS_TOPIC)
                .ok_or(GroupError::CoordinatorNotAvailable)?,
            Err(e) => {
                warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                return Err(GroupError::CoordinatorNotAvailable);
            }
        };
        *slot = Some(Arc::clone(&topic));
        Ok(topic)
    }

    /// The configs `__consumer_offsets` is created with.
    pub fn offsets_topic_configs(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                topic_config::CLEANUP_POLICY.to_string(),
                "compact".to_string(),
            ),
            (
                topic_config::SEGMENT_BYTES.to_string(),
                self.config.offsets_topic_segment_bytes.to_string(),
            ),
            (
                topic_config::COMPRESSION_TYPE.to_string(),
                "producer".to_string(),
            ),
        ])
    }

    /// Partitions of `__consumer_offsets`.
    pub fn offsets_topic_partitions(&self) -> i32 {
        self.config.offsets_topic_num_partitions
    }

    /// Replicas of each `__consumer_offsets` partition: the configured factor,
    /// capped to the brokers there are.
    pub fn offsets_topic_replication_factor(&self) -> i16 {
        let brokers = i16::try_from(self.cluster.broker_count()).unwrap_or(i16::MAX);
        self.config.offsets_topic_replication_factor.min(brokers)
    }

    fn replica_for(&self, group_id: &str) -> Result<Arc<Replica>, GroupError> {
        let topic = self.offsets_topic()?;
        let n = topic.partition_count() as i32;
        let p = records::partition_for(group_id, n);
        match topic.replica(p) {
            Ok(r) if r.offline_reason().is_none() => Ok(Arc::clone(r)),
            Err(NotHere::Elsewhere) if self.cluster.is_replicated() => {
                Err(GroupError::NotCoordinator)
            }
            _ => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// Checks a group id and that this broker can coordinate it.
    fn check(&self, group_id: &str) -> Result<Arc<Replica>, GroupError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(GroupError::NotCoordinator);
        }
        if group_id.is_empty() || group_id.len() > STRING_MAX_BYTES {
            return Err(GroupError::InvalidGroupId);
        }
        let replica = self.replica_for(group_id)?;
        if self.cluster.is_replicated() {
            if !replica.is_leader() {
                return Err(GroupError::NotCoordinator);
            }
            let index = self.partition_index(group_id)?;
            if !self.loaded.read().contains(&index) {
                return Err(GroupError::CoordinatorNotAvailable);
            }
        }
        Ok(replica)
    }

    fn partition_index(&self, group_id: &str) -> Result<usize, GroupError> {
        let topic = self.offsets_topic()?;
        Ok(records::partition_for(group_id, topic.partition_count() as i32) as usize)
    }

    /// In a cluster: the broker that coordinates `group_id` (the leader of its
    /// `__consumer_offsets` partition), if known. Alone: this broker.
    pub fn coordinator_of(&self, group_id: &str) -> Result<Option<u64>, GroupError> {
        if !self.cluster.is_replicated() {
            self.replica_for(group_id)?;
            return Ok(Some(self.cluster.config().node_id as u64));
        }
        let topic = self.offsets_topic()?;
        let index = self.partition_index(group_id)?;
        Ok(topic.leader_of(index).map(|l| l as u64))
    }

    /// Sets how `__consumer_offsets` is created in a cluster.
    pub fn set_topic_creator(&self, create: TopicCreator) {
        let _ = self.create_topic.set(create);
    }

    /// In a cluster: loads the groups of offsets partition `index`, which this
    /// broker now leads and whose log it has applied up to its leader's entries.
    pub fn load_partition(&self, index: usize, now: i64) {
        let Ok(topic) = self.offsets_topic() else {
            return;
        };
        let Ok(replica) = topic.replica(index as i32) else {
            return;
        };
        let n = topic.partition_count() as i32;
        self.unload_groups(|g| records::partition_for(g, n) as usize == index);
        if let Err(e) = self.load_replicas(std::slice::from_ref(replica), now) {
            error!(partition = replica.name(), error = %e, "cannot load the groups of this partition");
            return;
        }
        self.loaded.write().insert(index);
        info!(
            partition = replica.name(),
            "coordinating the groups of this partition"
        );
    }

    /// In a cluster: this broker no longer leads offsets partition `index`: its
    /// groups go (their waiting requests are answered NOT_COORDINATOR).
    pub fn unload_partition(&self, index: usize) {
        let Ok(topic) = self.offsets_topic() else {
            return;
        };
        if !self.loaded.write().remove(&index) {
            return;
        }
        let n = topic.partition_count() as i32;
        self.unload_groups(|g| records::partition_for(g, n) as usize == index);
        info!(partition = %format!("{OFFSETS_TOPIC}-{index}"), "no longer coordinating the groups of this partition");
    }

    /// Whether offsets partition `index` is loaded here.
    pub fn is_loaded(&self, index: usize) -> bool {
        self.loaded.read().contains(&index)
    }

    fn unload_groups(&self, doomed: impl Fn(&str) -> bool) {
        let removed: Vec<Arc<Mutex<Group>>> = {
            let mut groups = self.groups.write();
            let ids: Vec<String> = groups.keys().filter(|g| doomed(g)).cloned().collect();
            ids.iter().filter_map(|id| groups.remove(id)).collect()
        };
        for group in removed {
            group.lock().unload();
        }
    }

    fn group(&self, group_id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.read().get(group_id).cloned()
    }

    fn group_or_new(&self, group_id: &str, now: i64) -> Arc<Mutex<Group>> {
        if let Some(g) = self.group(group_id) {
            return g;
        }
        let mut groups = self.groups.write();
        Arc::clone(
            groups
                .entry(group_id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(Group::new(group_id, now)))),
        )
    }

    /// Queues records for a group's partition, without waiting: called with the
    /// group's lock held, so the log holds a group's changes in the order they were
    /// made. A full queue is an error the client retries
    /// (COORDINATOR_NOT_AVAILABLE), never an append out of order.
    fn append(
        replica: &Arc<Replica>,
        records: &[KeyValue<'_>],
        now: i64,
    ) -> Result<Durable, GroupError> {
        let batch = build_batch(now, records);
        match replica.try_enqueue(Bytes::from(batch), now) {
            Ok(Some(ticket)) => Ok(Durable {
                replica: Arc::clone(replica),
                ticket,
            }),
            Ok(None) => {
                warn!(partition = replica.name(), "group state append queue full");
                Err(GroupError::Storage)
            }
            Err(e) => {
                warn!(partition = replica.name(), error = %e, "cannot store group state");
                Err(GroupError::Storage)
            }
        }
    }

    /// Persists the group's metadata if a change asked for it (`g` is `group`,
    /// locked); what waits on it goes on once it is durable.
    fn store_if_requested(
        &self,
        replica: &Arc<Replica>,
        group: &Arc<Mutex<Group>>,
        g: &mut Group,
        now: i64,
    ) {
        let Some(deferred) = g.take_store() else {
            return;
        };
        let key = records::group_key(g.id());
        let value = g.stored_value().encode();
        let appended = Self::append(replica, &[(Some(&key), Some(&value))], now);
        let pending = PendingStore {
            deferred,
            assignment: g
                .assignment_storing()
                .map(|generation| (Arc::clone(group), generation, self.limits)),
            now,
        };
        match appended {
            Ok(durable) => {
                tokio::spawn(async move { pending.complete(durable.wait().await) });
            }
            Err(e) => {
                // Not yet unlocked: complete the assignment here, not through the lock.
                pending.deferred.into_iter().for_each(|d| d.fail(e));
                if let Some((_, generation, limits)) = pending.assignment {
                    g.assignment_stored(generation, Err(e), &limits, now);
                }
            }
        }
    }

    /// JoinGroup: the result arrives when the join phase completes.
    pub fn join(
        &self,
        group_id: &str,
        req: JoinRequest,
        now: i64,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let fail = |tx: oneshot::Sender<JoinResult>, e| {
            let _ = tx.send(JoinResult::failed(&req.member_id, e));
        };
        let replica = match self.check(group_id) {
            Ok(r) => r,
            Err(e) => {
                fail(tx, e);
                return rx;
            }
        };
        let too_long = [&req.client_id, &req.protocol_type]
            .into_iter()
            .chain(req.instance_id.as_ref())
            .chain(req.protocols.iter().map(|(name, _)| name))
            .any(|s| s.len() > STRING_MAX_BYTES / 2);
        if too_long {
            fail(tx, GroupError::InconsistentGroupProtocol);
            return rx;
        }
        let hopeless = !(self.limits.min_session_timeout_ms..=self.limits.max_session_timeout_ms)
            .contains(&req.session_timeout_ms)
            || req.protocol_type.is_empty()
            || req.protocols.is_empty();
        let group = if req.member_id.is_empty() && !hopeless {
            self.group_or_new(group_id, now)
        } else if req.member_id.is_empty() {
            // Let the group say why, without creating one for a join that must fail.
            self.group(group_id)
                .unwrap_or_else(|| Arc::new(Mutex::new(Group::new(group_id, now))))
        } else {
            match self.group(group_id) {
                Some(g) => g,
                None => {
                    fail(tx, GroupError::UnknownMemberId);
                    return rx;
                }
            }
        };
        let mut g = group.lock();
        g.join(req, tx, &self.limits, now);
        self.store_if_requested(&replica, &group, &mut g, now);
        rx
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub fn sync(
        &self,
        group_id: &str,
        req: SyncRequest,
        now: i64,
    ) -> oneshot::Receiver<SyncResult> {
        let (tx, rx) = oneshot::channel();
        let replica = match self.check(group_id) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(SyncResult::failed(e));
                return rx;
            }
        };
        let Some(group) = self.group(group_id) else {
            let _ = tx.send(SyncResult::failed(GroupError::UnknownMemberId));
            return rx;
        };
        let mut g = group.lock();
        g.sync(req, tx, now);
        self.store_if_requested(&replica, &group, &mut g, now);
        rx
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        self.check(group_id)?;
        let group = self.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut g = group.lock();
        g.heartbeat(member_id, instance_id, generation, now)
    }

    /// LeaveGroup for each `(member id, instance id)`; a group that does not exist
    /// answers UNKNOWN_MEMBER_ID for each member.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let replica = self.check(group_id)?;
        let Some(group) = self.group(group_id) else {
            return Ok(vec![Err(GroupError::UnknownMemberId); members.len()]);
        };
        let mut g = group.lock();
        let results = members
            .iter()
            .map(|(id, instance)| g.leave(id, instance.as_deref(), &self.limits, now))
            .collect();
        self.store_if_requested(&replica, &group, &mut g, now);
        Ok(results)
    }

    /// OffsetCommit: per-partition results, in the order given. Answered once the
    /// offsets are durable.
    pub async fn commit(
        &self,
        group_id: &str,
        committer: &Committer,
        commits: &[OffsetCommit],
        now: i64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let replica = self.check(group_id)?;
        let group = match self.group(group_id) {
            Some(g) => g,
            None if committer.generation < 0 => self.group_or_new(group_id, now),
            None => return Err(GroupError::IllegalGeneration),
        };
        let mut results: Vec<Result<(), GroupError>> =
            commits.iter().map(|c| self.check_commit(c)).collect();
        let durable = {
            let mut g = group.lock();
            g.validate_commit(
                &committer.member_id,
                committer.instance_id.as_deref(),
                committer.generation,
                now,
            )?;
            // The offsets to store, each with its record key.
            let accepted: Vec<((String, i32), Vec<u8>, OffsetValue)> = commits
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(c, _)| {
                    let key = records::offset_key(group_id, &c.topic, c.partition);
                    let value = OffsetValue {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata.clone(),
                        commit_timestamp: now,
                    };
                    ((c.topic.clone(), c.partition), key, value)
                })
                .collect();
            if accepted.is_empty() {
                return Ok(results);
            }
            let values: Vec<Vec<u8>> = accepted.iter().map(|(_, _, v)| v.encode()).collect();
            let kvs: Vec<KeyValue<'_>> = accepted
                .iter()
                .zip(&values)
                .map(|((_, k, _), v)| (Some(k.as_slice()), Some(v.as_slice())))
                .collect();
            let durable = Self::append(&replica, &kvs, now)?;
            for (partition, _, value) in accepted {
                g.offsets.insert(partition, value);
            }
            durable
        };
        if let Err(e) = durable.wait().await {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e);
            }
        }
        Ok(results)
    }

    fn check_commit(&self, c: &OffsetCommit) -> Result<(), GroupError> {
        if c.metadata.len() > self.config.offset_metadata_max_bytes {
            return Err(GroupError::OffsetMetadataTooLarge);
        }
        let exists = self
            .cluster
            .topic(&c.topic)
            .is_some_and(|t| usize::try_from(c.partition).is_ok_and(|p| p < t.partition_count()));
        if exists {
            Ok(())
        } else {
            Err(GroupError::UnknownTopicOrPartition)
        }
    }

    /// OffsetFetch: the committed offsets of the given partitions (`None`: all of
    /// the group's). Unknown groups and partitions have none.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Result<FetchedOffsets, GroupError> {
        self.check(group_id)?;
        let group = self.group(group_id);
        let g = group.as_ref().map(|g| g.lock());
        let offsets = g.as_ref().map(|g| &g.offsets);
        let found =
            |topic: &str, p: i32| offsets.and_then(|o| o.get(&(topic.to_string(), p)).cloned());
        Ok(match partitions {
            Some(wanted) => wanted
                .iter()
                .map(|(topic, ps)| {
                    let ps = ps.iter().map(|&p| (p, found(topic, p))).collect();
                    (topic.clone(), ps)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for ((topic, p), v) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*p, Some(v.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// OffsetDelete: removes committed offsets of topics the group does not
    /// subscribe to (all of them when the group is empty).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        now: i64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let replica = self.check(group_id)?;
        let group = self.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let durable = {
            let mut g = group.lock();
            if g.state() == GroupState::Dead {
                return Err(GroupError::GroupIdNotFound);
            }
            let subscribed = if g.has_members() {
                if g.protocol_type() != "consumer" {
                    return Err(GroupError::NonEmptyGroup);
                }
                g.subscribed_topics()
            } else {
                Some(Default::default())
            };
            let results: Vec<Result<(), GroupError>> = partitions
                .iter()
                .map(|(topic, _)| match &subscribed {
                    Some(s) if !s.contains(topic) => Ok(()),
                    _ => Err(GroupError::GroupSubscribedToTopic),
                })
                .collect();
            let doomed: Vec<(String, i32)> = partitions
                .iter()
                .zip(&results)
                .filter(|(k, r)| r.is_ok() && g.offsets.contains_key(k))
                .map(|(k, _)| k.clone())
                .collect();
            let durable = self.remove_offsets(&replica, &mut g, &doomed, now)?;
            (durable, results)
        };
        let (durable, mut results) = durable;
        if let Some(d) = durable {
            if let Err(e) = d.wait().await {
                results
                    .iter_mut()
                    .filter(|r| r.is_ok())
                    .for_each(|r| *r = Err(e));
            }
        }
        Ok(results)
    }

    /// Writes tombstones for some of a group's offsets and forgets them.
    fn remove_offsets(
        &self,
        replica: &Arc<Replica>,
        g: &mut Group,
        keys: &[(String, i32)],
        now: i64,
    ) -> Result<Option<Durable>, GroupError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let encoded: Vec<Vec<u8>> = keys
            .iter()
            .map(|(t, p)| records::offset_key(g.id(), t, *p))
            .collect();
        let kvs: Vec<KeyValue<'_>> = encoded.iter().map(|k| (Some(k.as_slice()), None)).collect();
        let durable = Self::append(replica, &kvs, now)?;
        for k in keys {
            g.offsets.remove(k);
        }
        Ok(Some(durable))
    }

    /// DescribeGroups; a group that does not exist is described as Dead.
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, GroupError> {
        self.check(group_id)?;
        Ok(self.group(group_id).map(|g| g.lock().summary()))
    }

    /// ListGroups: every group with its protocol type and state.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        let mut listed: Vec<(String, String, GroupState)> = groups
            .iter()
            .map(|g| {
                let g = g.lock();
                (g.id().to_string(), g.protocol_type().to_string(), g.state())
            })
            .filter(|(_, _, state)| *state != GroupState::Dead)
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// DeleteGroups for one group: only an empty group can be deleted; its offsets
    /// and metadata are tombstoned.
    pub async fn delete_group(&self, group_id: &str, now: i64) -> Result<(), GroupError> {
        let replica = self.check(group_id)?;
        let group = self.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let durable = {
            let mut g = group.lock();
            match g.state() {
                GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                GroupState::Empty => {}
                _ => return Err(GroupError::NonEmptyGroup),
            }
            let durable = self.bury(&replica, &mut g, now)?;
            self.groups.write().remove(group_id);
            durable
        };
        durable.wait().await
    }

    /// Tombstones every offset of the group and the group itself; the group is Dead.
    fn bury(&self, replica: &Arc<Replica>, g: &mut Group, now: i64) -> Result<Durable, GroupError> {
        let mut keys: Vec<Vec<u8>> = g
            .offsets
            .keys()
            .map(|(t, p)| records::offset_key(g.id(), t, *p))
            .collect();
        keys.push(records::group_key(g.id()));
        let kvs: Vec<KeyValue<'_>> = keys.iter().map(|k| (Some(k.as_slice()), None)).collect();
        let durable = Self::append(replica, &kvs, now)?;
        g.offsets.clear();
        g.mark_dead(now);
        Ok(durable)
    }

    /// Runs the groups' timers: session and rebalance timeouts, the initial delay.
    pub fn tick(&self, now: i64) {
        let groups: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        for group in groups {
            let mut g = group.lock();
            if g.next_deadline().is_none_or(|d| d > now) {
                continue;
            }
            g.poll(&self.limits, now);
            if let Ok(replica) = self.replica_for(g.id()) {
                self.store_if_requested(&replica, &group, &mut g, now);
            }
        }
    }

    /// Expires offsets past `offsets_retention_minutes` and removes groups left
    /// empty with no offsets.
    pub async fn expire_offsets(&self, now: i64) {
        let retention_ms = self.config.offsets_retention_minutes.saturating_mul(60_000);
        let groups: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        let mut waits = Vec::new();
        for group in groups {
            let mut g = group.lock();
            let Ok(replica) = self.replica_for(g.id()) else {
                continue;
            };
            let expired = g.expired_offsets(now, retention_ms);
            match self.remove_offsets(&replica, &mut g, &expired, now) {
                Ok(Some(d)) => {
                    info!(
                        group = g.id(),
                        offsets = expired.len(),
                        "expired committed offsets"
                    );
                    waits.push(d);
                }
                Ok(None) => {}
                Err(_) => continue,
            }
            if g.state() == GroupState::Empty && g.offsets.is_empty() {
                if let Ok(d) = self.bury(&replica, &mut g, now) {
                    info!(group = g.id(), "removed empty group");
                    self.groups.write().remove(g.id());
                    waits.push(d);
                }
            }
        }
        for d in waits {
            let _ = d.wait().await;
        }
    }

    /// Stops coordinating: waiting requests are answered NOT_COORDINATOR so clients
    /// look for the coordinator again.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let groups: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        for group in groups {
            group.lock().unload();
        }
    }

    /// Feeds every committed record of one `__consumer_offsets` partition to `apply`.
    fn replay(
        replica: &Replica,
        apply: &mut impl FnMut(&[u8], Option<&[u8]>) -> Result<(), records::RecordError>,
    ) -> Result<(), TopicError> {
        let mut at = replica.log_start_offset();
        let end = replica.high_watermark();
        while at < end {
            let data = replica.read(at, LOAD_READ_BYTES, true)?;
            if data.records.is_empty() {
                break;
            }
            for batch in Batches::new(&data.records) {
                let batch = batch.map_err(|e| TopicError::Storage(e.to_string()))?;
                at = batch.last_offset().next();
                if batch.is_control() {
                    continue;
                }
                let bad = |e: &dyn std::fmt::Display| {
                    TopicError::Storage(format!("{}: {e}", replica.name()))
                };
                let data = records_data(&batch, LOAD_RECORDS_MAX_BYTES).map_err(|e| bad(&e))?;
                for r in parse_records(&data, batch.record_count()).map_err(|e| bad(&e))? {
                    let Some(key) = r.key else { continue };
                    if let Err(e) = apply(key, r.value) {
                        warn!(partition = replica.name(), error = %e, "skipping a record");
                    }
                }
            }
        }
        Ok(())
    }

    /// Replays `__consumer_offsets`: the last record per key wins, null values delete.
    fn load(&self, topic: &Topic, now: i64) -> Result<(), TopicError> {
        let hosted: Vec<Arc<Replica>> = topic.hosted_replicas().cloned().collect();
        self.load_replicas(&hosted, now)
    }

    /// Replays the given partitions of `__consumer_offsets`.
    fn load_replicas(&self, partitions: &[Arc<Replica>], now: i64) -> Result<(), TopicError> {
        #[derive(Default)]
        struct Loaded {
            metadata: Option<GroupValue>,
            offsets: BTreeMap<(String, i32), OffsetValue>,
        }
        let mut loaded: BTreeMap<String, Loaded> = BTreeMap::new();
        let mut apply = |key: &[u8], value: Option<&[u8]>| -> Result<(), records::RecordError> {
            match records::parse_key(key)? {
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                } => {
                    let offsets = &mut loaded.entry(group).or_default().offsets;
                    match value {
                        Some(v) => {
                            offsets.insert((topic, partition), OffsetValue::parse(v)?);
                        }
                        None => {
                            offsets.remove(&(topic, partition));
                        }
                    }
                }
                RecordKey::Group { group } => {
                    loaded.entry(group).or_default().metadata =
                        value.map(GroupValue::parse).transpose()?;
                }
                RecordKey::Other(_) => {}
            }
            Ok(())
        };
        for replica in partitions {
            // A partition that cannot be read leaves its groups without a
            // coordinator (COORDINATOR_NOT_AVAILABLE); the others load.
            if let Err(e) = Self::replay(replica, &mut apply) {
                error!(partition = replica.name(), error = %e, "cannot load the groups of this partition");
            }
        }
        let mut groups = self.groups.write();
        for (id, l) in loaded {
            let mut group = match l.metadata {
                Some(value) => Group::from_stored(&id, value, now),
                None if l.offsets.is_empty() => continue,
                None => Group::new(&id, now),
            };
            group.offsets = l.offsets;
            info!(
                group = %id,
                state = group.state().name(),
                generation = group.generation(),
                offsets = group.offsets.len(),
                "group loaded"
            );
            groups.insert(id, Arc::new(Mutex::new(group)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
