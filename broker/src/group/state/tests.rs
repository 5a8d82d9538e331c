use super::*;

const LIMITS: GroupLimits = GroupLimits {
    initial_rebalance_delay_ms: 3000,
    min_session_timeout_ms: 6000,
    max_session_timeout_ms: 300_000,
    max_size: 100,
};

fn req(member_id: &str, metadata: &'static [u8]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 60_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(metadata))],
        require_known_member_id: true,
        ..JoinRequest::default()
    }
}

fn join(g: &mut Group, r: JoinRequest, now: i64) -> oneshot::Receiver<JoinResult> {
    let (tx, rx) = oneshot::channel();
    g.join(r, tx, &LIMITS, now);
    rx
}

fn sync(
    g: &mut Group,
    member: &str,
    generation: i32,
    assign: &[(&str, &'static [u8])],
    now: i64,
) -> oneshot::Receiver<SyncResult> {
    let (tx, rx) = oneshot::channel();
    let r = SyncRequest {
        member_id: member.into(),
        generation,
        assignments: assign
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from_static(a)))
            .collect(),
        ..SyncRequest::default()
    };
    g.sync(r, tx, now);
    rx
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("answered")
}

fn pending<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<T>) {
    assert!(
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "answered early"
    );
}

/// A new dynamic member: MEMBER_ID_REQUIRED, then a join with that id.
fn first_join(g: &mut Group, now: i64) -> (String, oneshot::Receiver<JoinResult>) {
    let r = ready(&mut join(g, req("", b"m"), now));
    assert_eq!(r.error, Some(GroupError::MemberIdRequired));
    assert!(r.member_id.starts_with("c-"));
    let rx = join(g, req(&r.member_id, b"m"), now);
    (r.member_id, rx)
}

/// The coordinator's part once a requested store is durable.
fn deliver(g: &mut Group) {
    if let Some(deferred) = g.take_store() {
        deferred.into_iter().for_each(Deferred::send);
    }
    if let Some(generation) = g.assignment_storing() {
        g.assignment_stored(generation, Ok(()), &LIMITS, 0);
    }
}

/// Two members through the initial delay into a stable generation 1.
fn stable_pair(g: &mut Group) -> (String, String) {
    let (a, mut ja) = first_join(g, 0);
    let (b, mut jb) = first_join(g, 1000);
    g.poll(&LIMITS, 2999);
    pending(&mut ja);
    g.poll(&LIMITS, 3000); // the delay is extended once: a member joined during it
    pending(&mut ja);
    g.poll(&LIMITS, 6000);
    let (ra, rb) = (ready(&mut ja), ready(&mut jb));
    assert_eq!((ra.generation, rb.generation), (1, 1));
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty());
    assert_eq!(ra.protocol.as_deref(), Some("range"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let mut sb = sync(g, &b, 1, &[], 6001);
    pending(&mut sb);
    let mut sa = sync(g, &a, 1, &[(&a, b"A"), (&b, b"B")], 6002);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    pending(&mut sa); // not before the assignment is durable
    assert_eq!(
        g.validate_commit(&b, None, 1, 6003),
        Err(GroupError::RebalanceInProgress)
    );
    deliver(g);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(ready(&mut sa).assignment, Bytes::from_static(b"A"));
    assert_eq!(ready(&mut sb).assignment, Bytes::from_static(b"B"));
    (a, b)
}

#[test]
fn members_join_sync_and_heartbeat() {
    let mut g = Group::new("g", 0);
    let (a, b) = stable_pair(&mut g);
    assert_eq!(g.heartbeat(&a, None, 1, 7000), Ok(()));
    assert_eq!(
        g.heartbeat(&b, None, 0, 7000),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("nobody", None, 1, 7000),
        Err(GroupError::UnknownMemberId)
    );
    let stored = g.stored_value();
    assert_eq!(stored.generation, 1);
    assert_eq!(stored.members.len(), 2);
    assert_eq!(stored.leader.as_deref(), Some(a.as_str()));
}

#[test]
fn session_timeout_removes_a_silent_member_and_rebalances() {
    let mut g = Group::new("g", 0);
    let (a, _b) = stable_pair(&mut g);
    g.heartbeat(&a, None, 1, 15_000).expect("alive");
    g.poll(&LIMITS, 16_003); // b's last sign of life was its sync at 6001
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&a, None, 1, 16_100),
        Err(GroupError::RebalanceInProgress)
    );
    let mut ja = join(&mut g, req(&a, b"m"), 16_200);
    let r = ready(&mut ja);
    assert_eq!(r.generation, 2);
    assert_eq!(r.members.len(), 1, "b is gone");
}

#[test]
fn leaving_rebalances_at_once() {
    let mut g = Group::new("g", 0);
    let (a, b) = stable_pair(&mut g);
    g.leave(&b, None, &LIMITS, 7000).expect("left");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let r = ready(&mut join(&mut g, req(&a, b"m"), 7100));
    assert_eq!((r.generation, r.members.len()), (2, 1));
    assert_eq!(
        g.leave(&b, None, &LIMITS, 7200),
        Err(GroupError::UnknownMemberId)
    );
    g.leave(&a, None, &LIMITS, 7300).expect("left");
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.take_store().is_some(), "the emptied group is stored");
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut g = Group::new("g", 0);
    let (a, b) = stable_pair(&mut g);
    // The leader rejoins (asks for a new assignment): a rebalance starts.
    let mut ja = join(&mut g, req(&a, b"m"), 7000);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // b keeps heartbeating (and hearing REBALANCE_IN_PROGRESS) but never rejoins.
    for t in (10_000..67_000).step_by(5000) {
        assert_eq!(
            g.heartbeat(&b, None, 1, t),
            Err(GroupError::RebalanceInProgress)
        );
        g.poll(&LIMITS, t);
    }
    pending(&mut ja);
    g.poll(&LIMITS, 7000 + 60_000);
    let r = ready(&mut ja);
    assert_eq!((r.generation, r.members.len()), (2, 1));
}

#[test]
fn changed_subscription_rebalances_and_sync_errors_meanwhile() {
    let mut g = Group::new("g", 0);
    let (a, b) = stable_pair(&mut g);
    let mut jb = join(&mut g, req(&b, b"changed"), 7000);
    pending(&mut jb);
    assert_eq!(
        ready(&mut sync(&mut g, &a, 1, &[], 7001)).error,
        Some(GroupError::RebalanceInProgress)
    );
    let mut ja = join(&mut g, req(&a, b"m"), 7002);
    let (ra, rb) = (ready(&mut ja), ready(&mut jb));
    assert_eq!((ra.generation, rb.generation), (2, 2));
    let leader = ra
        .members
        .iter()
        .find(|m| m.member_id == b)
        .expect("b listed");
    assert_eq!(leader.metadata, Bytes::from_static(b"changed"));
}

#[test]
fn same_metadata_rejoin_of_a_follower_keeps_the_generation() {
    let mut g = Group::new("g", 0);
    let (_a, b) = stable_pair(&mut g);
    let r = ready(&mut join(&mut g, req(&b, b"m"), 7000));
    assert_eq!((r.error, r.generation), (None, 1));
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn static_member_restart_keeps_the_assignment_without_rebalance() {
    let mut g = Group::new("g", 0);
    let static_req = |id: &str, instance: &str| JoinRequest {
        instance_id: Some(instance.into()),
        ..req(id, b"m")
    };
    let mut j1 = join(&mut g, static_req("", "i-1"), 0);
    let mut j2 = join(&mut g, static_req("", "i-2"), 0);
    g.poll(&LIMITS, 3000);
    pending(&mut j1);
    g.poll(&LIMITS, 6000);
    let (r1, r2) = (ready(&mut j1), ready(&mut j2));
    assert_eq!(r1.generation, 1);
    let _s2 = sync(&mut g, &r2.member_id, 1, &[], 6001);
    let _s1 = sync(
        &mut g,
        &r1.member_id,
        1,
        &[(&r1.member_id, b"P1"), (&r2.member_id, b"P2")],
        6002,
    );
    deliver(&mut g);
    // i-2 restarts: a new member id, the same generation and assignment.
    let mut j = join(&mut g, static_req("", "i-2"), 9000);
    pending(&mut j);
    deliver(&mut g);
    let r = ready(&mut j);
    assert_eq!((r.error, r.generation), (None, 1));
    assert_ne!(r.member_id, r2.member_id);
    assert_eq!(g.state(), GroupState::Stable);
    let s = ready(&mut sync(&mut g, &r.member_id, 1, &[], 9001));
    assert_eq!(s.assignment, Bytes::from_static(b"P2"));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&r2.member_id, Some("i-2"), 1, 9002),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(g.heartbeat(&r.member_id, Some("i-2"), 1, 9002), Ok(()));
    // Leaving by instance id.
    g.leave("", Some("i-2"), &LIMITS, 9003).expect("left");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn pending_member_holds_the_join_until_it_rejoins_or_lapses() {
    let mut g = Group::new("g", 0);
    let (a, b) = stable_pair(&mut g);
    let newcomer = ready(&mut join(&mut g, req("", b"m"), 7000));
    assert_eq!(newcomer.error, Some(GroupError::MemberIdRequired));
    let mut ja = join(&mut g, req(&a, b"m"), 7001);
    let mut jb = join(&mut g, req(&b, b"m"), 7002);
    pending(&mut ja);
    g.poll(&LIMITS, 7000 + 10_001); // the pending member never came back
    assert_eq!(ready(&mut ja).members.len(), 2);
    assert_eq!(ready(&mut jb).generation, 2);
}

#[test]
fn protocols_must_be_shared() {
    let mut g = Group::new("g", 0);
    stable_pair(&mut g);
    let mut other = req("", b"m");
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        ready(&mut join(&mut g, other, 7000)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut short = req("", b"m");
    short.session_timeout_ms = 10;
    assert_eq!(
        ready(&mut join(&mut g, short, 7000)).error,
        Some(GroupError::InvalidSessionTimeout)
    );
}

#[test]
fn commits_are_validated_like_kafka() {
    let mut g = Group::new("g", 0);
    assert_eq!(
        g.validate_commit("", None, -1, 0),
        Ok(()),
        "empty group: simple commit"
    );
    let (a, _b) = stable_pair(&mut g);
    assert_eq!(
        g.validate_commit("", None, -1, 7000),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_commit(&a, None, 0, 7000),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(g.validate_commit(&a, None, 1, 7000), Ok(()));
    let _rejoin = join(&mut g, req(&a, b"m"), 7001); // rebalancing: current generation may commit
    assert_eq!(g.validate_commit(&a, None, 1, 7002), Ok(()));
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let mut g = Group::new("g", 0);
    g.protocol_type = Some("consumer".into());
    g.offsets.insert(
        ("t".into(), 0),
        OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
        },
    );
    assert!(g.expired_offsets(999, 1000).is_empty());
    assert_eq!(g.expired_offsets(1000, 1000), vec![("t".to_string(), 0)]);
}

#[test]
fn a_failed_assignment_store_sends_everyone_back_to_rejoin() {
    let mut g = Group::new("g", 0);
    let (a, mut ja) = first_join(&mut g, 0);
    g.poll(&LIMITS, 3000);
    assert_eq!(ready(&mut ja).generation, 1);
    let mut sa = sync(&mut g, &a, 1, &[(&a, b"A")], 3001);
    assert!(g.take_store().is_some());
    g.assignment_stored(1, Err(GroupError::Storage), &LIMITS, 3002);
    assert_eq!(ready(&mut sa).error, Some(GroupError::Storage));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_static_leader_restart_below_v9_keeps_the_old_leader_id() {
    let mut g = Group::new("g", 0);
    let static_req = |instance: &str, v9: bool| JoinRequest {
        instance_id: Some(instance.into()),
        supports_skip_assignment: v9,
        ..req("", b"m")
    };
    let mut j = join(&mut g, static_req("i-1", false), 0);
    g.poll(&LIMITS, 3000);
    let first = ready(&mut j);
    let _s = sync(
        &mut g,
        &first.member_id,
        1,
        &[(&first.member_id, b"P")],
        3001,
    );
    deliver(&mut g);
    let mut again = join(&mut g, static_req("i-1", false), 4000);
    deliver(&mut g);
    let r = ready(&mut again);
    assert_eq!(
        (r.leader.as_str(), r.members.len()),
        (first.member_id.as_str(), 0)
    );
    let mut v9 = join(&mut g, static_req("i-1", true), 5000);
    deliver(&mut g);
    let r = ready(&mut v9);
    assert!(r.skip_assignment && r.leader == r.member_id && r.members.len() == 1);
}

#[test]
fn static_members_that_do_not_rejoin_do_not_start_an_empty_generation() {
    let mut g = Group::new("g", 0);
    let mut j = join(
        &mut g,
        JoinRequest {
            instance_id: Some("i".into()),
            ..req("", b"m")
        },
        0,
    );
    g.poll(&LIMITS, 3000);
    let r = ready(&mut j);
    let _s = sync(&mut g, &r.member_id, 1, &[], 3001);
    deliver(&mut g);
    // A changed subscription from nobody: force a rebalance the member never joins.
    g.prepare_rebalance(&LIMITS, 4000);
    for t in (5000..=65_000).step_by(5000) {
        let _ = g.heartbeat(&r.member_id, Some("i"), 1, t); // alive, never rejoining
        g.poll(&LIMITS, t);
    }
    assert_eq!(
        (g.state(), g.generation()),
        (GroupState::PreparingRebalance, 1)
    );
}
