//! One consumer group's classic-protocol state machine, as Apache Kafka's group
//! coordinator runs it. Pure: no I/O and no clock of its own; every call takes the
//! time. Requests that must wait (JoinGroup until the join phase completes, SyncGroup
//! until the leader assigns) leave a oneshot sender in the member; a timer calls
//! [`Group::poll`] to enforce deadlines.
//!
//! ```text
//!            join            all joined / rebalance timeout        leader syncs
//!  Empty ─────────► PreparingRebalance ──────────────► CompletingRebalance ──────► Stable
//!    ▲                 ▲   │ no member left                │  join/leave/expiry       │
//!    └─────────────────┼───┘                               ▼                          │
//!                      └──────────────── join (new or changed), leave, expiry ◄──────┘
//! ```
//! Changes to the group's metadata that must be durable before clients hear of them
//! (a new generation's assignment, a replaced static member, an emptied group) set
//! `store_requested`; the coordinator persists [`Group::stored_value`] and only then
//! sends the replies collected in `deferred`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::records::{GroupValue, OffsetValue, StoredMember};

/// How long a member that joined for the first time may take to finish joining
/// (Kafka's `newMemberJoinTimeoutMs`, KIP-394).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's tools print and ListGroups filters on.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Why a group request failed; each is one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group is being unloaded or deleted")]
    CoordinatorNotAvailable,
    #[error("this broker no longer coordinates the group")]
    NotCoordinator,
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("another member with the same group.instance.id replaced this one")]
    FencedInstanceId,
    #[error("the member's protocols are not compatible with the group's")]
    InconsistentGroupProtocol,
    #[error("the group has reached group.max.size members")]
    GroupMaxSizeReached,
    #[error("the session timeout is outside the broker's allowed range")]
    InvalidSessionTimeout,
    #[error("the group id is not valid")]
    InvalidGroupId,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("the group's members are subscribed to this topic")]
    GroupSubscribedToTopic,
    #[error("the committed metadata is longer than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    #[error("the group's state could not be written")]
    Storage,
}

/// The limits a group enforces (from the broker configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_size: usize,
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is given one and must rejoin with it.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a stable group need not reassign.
    pub supports_skip_assignment: bool,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn failed(member_id: &str, error: GroupError) -> Self {
        JoinResult {
            error: Some(error),
            member_id: member_id.to_string(),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn failed(error: GroupError) -> Self {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

/// A SyncGroup request, decoded.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignments: HashMap<String, Bytes>,
}

/// A JoinGroup reply held back until the group's metadata is durable (a static
/// member that took its old place).
#[derive(Debug)]
pub struct Deferred(oneshot::Sender<JoinResult>, JoinResult);

impl Deferred {
    pub fn send(self) {
        let _ = self.0.send(self.1);
    }

    pub fn fail(self, error: GroupError) {
        let _ = self.0.send(JoinResult::failed(&self.1.member_id, error));
    }
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    last_heartbeat_ms: i64,
    /// Joined during the current rebalance and never received a JoinGroup response.
    is_new: bool,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether the member's session has run out. Members waiting for a join or
    /// sync response are kept alive; a new member waiting to join gets longer.
    fn expired(&self, now: i64) -> bool {
        if self.join_waiter.is_some() {
            self.is_new && now > self.last_heartbeat_ms + NEW_MEMBER_JOIN_TIMEOUT_MS
        } else if self.sync_waiter.is_some() {
            false
        } else {
            now > self.last_heartbeat_ms + i64::from(self.session_timeout_ms)
        }
    }

    fn reply_join_error(&mut self, error: GroupError) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(JoinResult::failed(&self.id, error));
        }
    }

    fn reply_sync_error(&mut self, error: GroupError) {
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(SyncResult::failed(error));
        }
    }
}

/// A group's description (DescribeGroups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining_ms: i64,
    new_member_added: bool,
}

#[derive(Debug)]
pub struct Group {
    id: String,
    state: GroupState,
    state_since_ms: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// Members by id, and the order they joined in (the leader is the first).
    members: BTreeMap<String, Member>,
    join_order: Vec<String>,
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending_members: HashMap<String, i64>,
    /// Members that have not sent SyncGroup for the current generation.
    pending_sync: BTreeSet<String>,
    /// The join phase completes at this time at the latest.
    join_deadline: Option<i64>,
    initial_delay: Option<InitialDelay>,
    /// Members still in `pending_sync` at this time are removed.
    sync_deadline: Option<i64>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// The generation whose leader assignment is being made durable.
    assignment_storing: Option<i32>,
    store_requested: bool,
    deferred: Vec<Deferred>,
}

impl Group {
    pub fn new(id: &str, now: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            join_order: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            offsets: BTreeMap::new(),
            assignment_storing: None,
            store_requested: false,
            deferred: Vec::new(),
        }
    }

    /// A group as last stored: with members it resumes Stable, and each member's
    /// session starts again now.
    pub fn from_stored(id: &str, value: GroupValue, now: i64) -> Self {
        let mut g = Group::new(id, now);
        g.generation = value.generation;
        g.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        g.protocol = value.protocol;
        g.state_since_ms = if value.state_timestamp > 0 {
            value.state_timestamp
        } else {
            now
        };
        let protocol = g.protocol.clone().unwrap_or_default();
        for m in value.members {
            if let Some(instance) = &m.instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            g.join_order.push(m.member_id.clone());
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat_ms: now,
                    is_new: false,
                },
            );
        }
        if !g.members.is_empty() {
            g.state = GroupState::Stable;
            g.leader = value
                .leader
                .filter(|l| g.members.contains_key(l))
                .or_else(|| g.join_order.first().cloned());
        }
        g
    }

    /// The metadata to persist: generation, protocol, leader, members with their
    /// subscriptions and assignments.
    pub fn stored_value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since_ms,
            members: self
                .ordered_members()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Whether a store was requested, and the replies to send once it is durable.
    pub fn take_store(&mut self) -> Option<Vec<Deferred>> {
        if !std::mem::take(&mut self.store_requested) {
            return None;
        }
        Some(std::mem::take(&mut self.deferred))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    fn ordered_members(&self) -> impl Iterator<Item = &Member> {
        self.join_order.iter().filter_map(|id| self.members.get(id))
    }

    fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since_ms = now;
    }

    /// The largest rebalance timeout among members: how long a join phase may last.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `supportsProtocols`: a first member needs a type and protocols; later
    /// ones the group's type and a protocol every member supports.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.supported_by_all(name))
    }

    fn supported_by_all(&self, protocol: &str) -> bool {
        self.members
            .values()
            .all(|m| m.protocols.iter().any(|(n, _)| n == protocol))
    }

    /// The protocol every member supports that most members list first among those.
    fn select_protocol(&self) -> Option<String> {
        let mut votes: Vec<(String, usize)> = Vec::new();
        for m in self.ordered_members() {
            let Some((choice, _)) = m.protocols.iter().find(|(n, _)| self.supported_by_all(n))
            else {
                continue;
            };
            match votes.iter_mut().find(|(n, _)| n == choice) {
                Some((_, count)) => *count += 1,
                None => votes.push((choice.clone(), 1)),
            }
        }
        // The first protocol to reach the highest count wins ties.
        let best = votes.iter().map(|(_, c)| *c).max()?;
        votes.into_iter().find(|(_, c)| *c == best).map(|(n, _)| n)
    }

    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|known| known != member_id)
    }

    /// Kafka's `validateCurrentMember`.
    fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if self.fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    /// A member of the current generation: the group is alive, the member known and
    /// not fenced, the generation the group's.
    fn validate_current(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
    }

    fn join_result(
        &self,
        member_id: &str,
        with_members: bool,
        skip_assignment: bool,
    ) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: None,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment,
            members: if with_members {
                self.ordered_members()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// JoinGroup. The answer arrives on `tx`, now or when the join phase completes.
    pub fn join(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResult>,
        limits: &GroupLimits,
        now: i64,
    ) {
        let fail = |tx: oneshot::Sender<JoinResult>, error| {
            let _ = tx.send(JoinResult::failed(&req.member_id, error));
        };
        if self.state == GroupState::Dead {
            return fail(tx, GroupError::CoordinatorNotAvailable);
        }
        if !(limits.min_session_timeout_ms..=limits.max_session_timeout_ms)
            .contains(&req.session_timeout_ms)
        {
            return fail(tx, GroupError::InvalidSessionTimeout);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(tx, GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            return self.join_new_member(req, tx, limits, now);
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member_and_rebalance(id, req, tx, limits, now);
        }
        if let Err(e) = self.validate_member(&req.member_id, req.instance_id.as_deref()) {
            return fail(tx, e);
        }
        let id = req.member_id.clone();
        let Some(member) = self.members.get(&id) else {
            return fail(tx, GroupError::UnknownMemberId);
        };
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(req, tx, limits, now)
            }
            GroupState::CompletingRebalance if unchanged => {
                // A repeated join (its response was lost): the same answer again.
                self.touch(&id, now);
                let _ = tx.send(self.join_result(&id, is_leader, false));
            }
            GroupState::Stable if unchanged && !is_leader => {
                self.touch(&id, now);
                let _ = tx.send(self.join_result(&id, false, false));
            }
            // A changed subscription, or the leader asking for a new assignment.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(req, tx, limits, now)
            }
            GroupState::Empty | GroupState::Dead => fail(tx, GroupError::UnknownMemberId),
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResult>,
        limits: &GroupLimits,
        now: i64,
    ) {
        let member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = &req.instance_id {
            if let Some(old) = self.static_members.get(instance).cloned() {
                return self.replace_static_member(&old, member_id, req, tx, limits, now);
            }
            return self.add_member_and_rebalance(member_id, req, tx, limits, now);
        }
        if req.require_known_member_id {
            if self.members.len() >= limits.max_size {
                let _ = tx.send(JoinResult::failed("", GroupError::GroupMaxSizeReached));
                return;
            }
            self.pending_members
                .insert(member_id.clone(), now + i64::from(req.session_timeout_ms));
            let _ = tx.send(JoinResult::failed(&member_id, GroupError::MemberIdRequired));
            return;
        }
        self.add_member_and_rebalance(member_id, req, tx, limits, now);
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResult>,
        limits: &GroupLimits,
        now: i64,
    ) {
        if self.members.len() >= limits.max_size {
            let _ = tx.send(JoinResult::failed(
                &member_id,
                GroupError::GroupMaxSizeReached,
            ));
            return;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            if let Some(delay) = &mut self.initial_delay {
                delay.new_member_added = true;
            }
        }
        self.join_order.push(member_id.clone());
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                last_heartbeat_ms: now,
                is_new: true,
            },
        );
        self.maybe_prepare_rebalance(limits, now);
        self.poll(limits, now);
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResult>,
        limits: &GroupLimits,
        now: i64,
    ) {
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.protocols = req.protocols;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.last_heartbeat_ms = now;
            m.reply_join_error(GroupError::RebalanceInProgress);
            m.join_waiter = Some(tx);
        }
        self.maybe_prepare_rebalance(limits, now);
        self.poll(limits, now);
    }

    /// A static member restarted with a new member id: the old id is fenced and,
    /// in a stable group whose protocol does not change, no rebalance happens.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResult>,
        limits: &GroupLimits,
        now: i64,
    ) {
        let Some(mut member) = self.members.remove(old_id) else {
            let _ = tx.send(JoinResult::failed("", GroupError::UnknownMemberId));
            return;
        };
        member.reply_join_error(GroupError::FencedInstanceId);
        member.reply_sync_error(GroupError::FencedInstanceId);
        member.id = new_id.clone();
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.last_heartbeat_ms = now;
        self.members.insert(new_id.clone(), member);
        for id in &mut self.join_order {
            if id == old_id {
                id.clone_from(&new_id);
            }
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        let is_leader = self.leader.as_deref() == Some(old_id);
        if is_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol => {
                self.store_requested = true;
                let skip = is_leader && req.supports_skip_assignment;
                let mut result = self.join_result(&new_id, skip, skip);
                if is_leader && !skip {
                    // Before v9 a client told it leads would reassign with no members:
                    // it is told the old leader id, as Kafka does.
                    result.leader = old_id.to_string();
                }
                self.deferred.push(Deferred(tx, result));
            }
            _ => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some(tx);
                }
                self.maybe_prepare_rebalance(limits, now);
                self.poll(limits, now);
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, limits: &GroupLimits, now: i64) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(limits, now);
        }
    }

    fn prepare_rebalance(&mut self, limits: &GroupLimits, now: i64) {
        if self.state == GroupState::CompletingRebalance {
            // The leader's assignment will not come: everyone waiting for it rejoins.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                m.reply_sync_error(GroupError::RebalanceInProgress);
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        self.assignment_storing = None;
        if self.state == GroupState::Empty {
            let delay = limits.initial_rebalance_delay_ms;
            self.initial_delay = Some(InitialDelay {
                remaining_ms: (self.rebalance_timeout_ms() - delay).max(0),
                new_member_added: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + self.rebalance_timeout_ms());
        }
        self.transition(GroupState::PreparingRebalance, now);
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase: members that did not rejoin (unless static) are dropped,
    /// the generation advances, and every joined member hears who leads.
    fn complete_join(&mut self, now: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        if !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_none()) {
            // Only static members that have not rejoined: wait another round for them
            // rather than start a generation nobody was told about.
            self.initial_delay = None;
            self.join_deadline = Some(now + self.rebalance_timeout_ms());
            return;
        }
        self.join_deadline = None;
        self.initial_delay = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.transition(GroupState::Empty, now);
            self.store_requested = true;
            return;
        }
        self.protocol = self.select_protocol();
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_joined {
            let joined = self
                .ordered_members()
                .find(|m| m.join_waiter.is_some())
                .map(|m| m.id.clone());
            if joined.is_some() {
                self.leader = joined;
            }
        }
        self.transition(GroupState::CompletingRebalance, now);
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(now + self.rebalance_timeout_ms());
        let leader = self.leader.clone().unwrap_or_default();
        let leader_view = self.join_result(&leader, true, false);
        for m in self.members.values_mut() {
            let Some(tx) = m.join_waiter.take() else {
                continue;
            };
            let mut result = leader_view.clone();
            if m.id != leader {
                result.members = Vec::new();
            }
            result.member_id.clone_from(&m.id);
            let _ = tx.send(result);
            m.is_new = false;
            m.last_heartbeat_ms = now;
        }
    }

    /// Removes a member; its pending join is answered UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, id: &str) {
        let Some(mut m) = self.members.remove(id) else {
            return;
        };
        m.reply_join_error(GroupError::UnknownMemberId);
        m.reply_sync_error(GroupError::UnknownMemberId);
        if let Some(instance) = &m.instance_id {
            self.static_members.remove(instance);
        }
        self.join_order.retain(|j| j != id);
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.join_order.first().cloned();
        }
    }

    fn remove_member_and_rebalance(&mut self, id: &str, limits: &GroupLimits, now: i64) {
        self.remove_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(limits, now)
            }
            _ => {}
        }
    }

    /// Enforces deadlines: lapsed pending members and sessions, the sync timeout,
    /// the initial delay and the rebalance timeout; completes a join phase that can.
    pub fn poll(&mut self, limits: &GroupLimits, now: i64) {
        self.pending_members.retain(|_, deadline| *deadline >= now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member_and_rebalance(&id, limits, now);
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !self.pending_sync.is_empty()
            {
                let late: Vec<String> = self.pending_sync.iter().cloned().collect();
                for id in late {
                    tracing::info!(group = %self.id, member = %id, "member did not sync in time");
                    self.remove_member(&id);
                }
                self.prepare_rebalance(limits, now);
            }
        }
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let due = self.join_deadline.is_some_and(|d| d <= now);
        match self.initial_delay {
            Some(delay) if due && delay.new_member_added && delay.remaining_ms > 0 => {
                let step = limits.initial_rebalance_delay_ms.min(delay.remaining_ms);
                self.initial_delay = Some(InitialDelay {
                    remaining_ms: delay.remaining_ms - step,
                    new_member_added: false,
                });
                self.join_deadline = Some(now + step);
            }
            Some(_) if due => self.complete_join(now),
            Some(_) => {}
            None if due || self.all_members_joined() => self.complete_join(now),
            None => {}
        }
    }

    /// The next time [`Group::poll`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self.members.values().filter_map(|m| {
            if m.join_waiter.is_some() {
                m.is_new
                    .then_some(m.last_heartbeat_ms + NEW_MEMBER_JOIN_TIMEOUT_MS + 1)
            } else if m.sync_waiter.is_some() {
                None
            } else {
                Some(m.last_heartbeat_ms + i64::from(m.session_timeout_ms) + 1)
            }
        });
        let pending = self.pending_members.values().map(|d| d + 1);
        sessions
            .chain(pending)
            .chain(self.join_deadline)
            .chain(self.sync_deadline)
            .min()
    }

    /// SyncGroup. The answer arrives on `tx`: at once, or when the leader's
    /// assignment is durable.
    pub fn sync(&mut self, req: SyncRequest, tx: oneshot::Sender<SyncResult>, now: i64) {
        let fail = |tx: oneshot::Sender<SyncResult>, error| {
            let _ = tx.send(SyncResult::failed(error));
        };
        if let Err(e) =
            self.validate_current(&req.member_id, req.instance_id.as_deref(), req.generation)
        {
            return fail(tx, e);
        }
        let mismatch =
            |asked: &Option<String>, ours: &Option<String>| asked.is_some() && asked != ours;
        if mismatch(&req.protocol_type, &self.protocol_type)
            || mismatch(&req.protocol, &self.protocol)
        {
            return fail(tx, GroupError::InconsistentGroupProtocol);
        }
        self.touch(&req.member_id, now);
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(tx, GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(tx, GroupError::RebalanceInProgress),
            GroupState::Stable => {
                self.pending_sync.remove(&req.member_id);
                let assignment = self.members[&req.member_id].assignment.clone();
                let _ = tx.send(self.sync_result(assignment));
            }
            GroupState::CompletingRebalance => {
                self.pending_sync.remove(&req.member_id);
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.reply_sync_error(GroupError::RebalanceInProgress);
                    m.sync_waiter = Some(tx);
                }
                let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
                if !is_leader || self.assignment_storing.is_some() {
                    return;
                }
                // The group turns Stable once the assignment is durable
                // ([`Group::assignment_stored`]); until then syncs wait and commits
                // are refused as in any CompletingRebalance.
                let mut assignments = req.assignments;
                for m in self.members.values_mut() {
                    m.assignment = assignments.remove(&m.id).unwrap_or_default();
                }
                self.assignment_storing = Some(self.generation);
                self.store_requested = true;
            }
        }
    }

    /// The generation whose assignment is being stored, if any: the coordinator calls
    /// [`Group::assignment_stored`] for it once the store is durable (or failed).
    pub fn assignment_storing(&self) -> Option<i32> {
        self.assignment_storing
    }

    /// The leader's assignment for `generation` is durable (or could not be stored):
    /// the group becomes Stable and every waiting member gets its part, or everyone
    /// rejoins.
    pub fn assignment_stored(
        &mut self,
        generation: i32,
        stored: Result<(), GroupError>,
        limits: &GroupLimits,
        now: i64,
    ) {
        if self.assignment_storing != Some(generation)
            || self.generation != generation
            || self.state != GroupState::CompletingRebalance
        {
            return; // a later rebalance took over
        }
        self.assignment_storing = None;
        if let Err(e) = stored {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                m.reply_sync_error(e);
            }
            self.prepare_rebalance(limits, now);
            return;
        }
        self.transition(GroupState::Stable, now);
        let waiting: Vec<(oneshot::Sender<SyncResult>, Bytes)> = self
            .members
            .values_mut()
            .filter_map(|m| m.sync_waiter.take().map(|tx| (tx, m.assignment.clone())))
            .collect();
        for (tx, assignment) in waiting {
            let _ = tx.send(self.sync_result(assignment));
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment,
        }
    }

    /// Heartbeat: keeps the session alive and tells the member to rejoin while the
    /// group rebalances.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        self.validate_current(member_id, instance_id, generation)?;
        self.touch(member_id, now);
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// LeaveGroup for one member, named by member id or (static) instance id.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        limits: &GroupLimits,
        now: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let id = match (member_id, instance_id) {
            ("", Some(instance)) => self
                .static_members
                .get(instance)
                .cloned()
                .ok_or(GroupError::UnknownMemberId)?,
            (id, _) => id.to_string(),
        };
        if self.fenced(&id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if self.pending_members.remove(&id).is_some() {
            self.poll(limits, now);
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(GroupError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove_member_and_rebalance(&id, limits, now);
        self.poll(limits, now);
        Ok(())
    }

    /// Kafka's offset-commit validation. A commit with no member and generation -1
    /// (admin tools, `assign()` consumers) is allowed only while the group is empty.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return Err(GroupError::UnknownMemberId);
        }
        self.validate_current(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        self.touch(member_id, now);
        Ok(())
    }

    /// Topics the members subscribe to, from their consumer-protocol metadata; `None`
    /// when that is not known (another protocol type, or undecodable metadata).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(super::consumer_protocol::subscribed_topics(
                &m.metadata(protocol),
            )?);
        }
        Some(topics)
    }

    /// Offsets past `offsets.retention.minutes` (KIP-211): for an empty group, all of
    /// them once it has been empty that long; for a standalone group (no protocol), each
    /// by its commit time; for a stable consumer group, those of topics no member
    /// subscribes to, by commit time.
    pub fn expired_offsets(&self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let by_commit = |c: &OffsetValue| c.commit_timestamp + retention_ms <= now;
        let subscribed = match (self.protocol_type.is_some(), self.state) {
            (true, GroupState::Empty) => {
                if self.state_since_ms + retention_ms > now {
                    return Vec::new();
                }
                return self.offsets.keys().cloned().collect();
            }
            (false, _) => None,
            (true, GroupState::Stable) => match self.subscribed_topics() {
                Some(topics) => Some(topics),
                None => return Vec::new(),
            },
            (true, _) => return Vec::new(),
        };
        self.offsets
            .iter()
            .filter(|((topic, _), c)| {
                by_commit(c) && subscribed.as_ref().is_none_or(|s| !s.contains(topic))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// DescribeGroups: metadata and assignments only once the group is stable.
    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .ordered_members()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// The group is gone (deleted, or expired empty): pending requests are told
    /// to find the coordinator again.
    pub fn mark_dead(&mut self, now: i64) {
        self.unload();
        self.transition(GroupState::Dead, now);
    }

    /// Answers every waiting request NOT_COORDINATOR (broker shutting down).
    pub fn unload(&mut self) {
        for m in self.members.values_mut() {
            m.reply_join_error(GroupError::NotCoordinator);
            m.reply_sync_error(GroupError::NotCoordinator);
        }
        for d in self.deferred.drain(..) {
            d.fail(GroupError::NotCoordinator);
        }
    }
}

#[cfg(test)]
mod tests;
