//! The coordinator over a real `__consumer_offsets`: what it stores survives a
//! reopen, and expiry and deletion leave tombstones that a reload honours.

use super::*;
use crate::config::BrokerConfig;
use sluice_replication::{Commits, Flusher, HighWatermarkSource, ReplicaContext};

struct Setup {
    _dir: tempfile::TempDir,
    cluster: Arc<Cluster>,
    flusher: Arc<Flusher>,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        config.group_coordinator.offsets_topic_num_partitions = 3;
        config.group_coordinator.offsets_retention_minutes = 1;
        let flusher = Flusher::start();
        let context = ReplicaContext {
            flusher: Arc::clone(&flusher),
            commits: Commits::new(),
            io: Arc::new(tokio::sync::Semaphore::new(2)),
            high_watermark: HighWatermarkSource::LocalFlush,
        };
        let cluster = Cluster::open(config, context).expect("cluster");
        cluster
            .create_topic("orders", 2, 1, &BTreeMap::new())
            .expect("topic");
        Setup {
            _dir: dir,
            cluster,
            flusher,
        }
    }

    /// The coordinator as a restarted broker would load it.
    fn reopen(&self) -> Arc<Coordinator> {
        self.cluster.sync_all();
        Coordinator::open(Arc::clone(&self.cluster), 0).expect("reload")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.flusher.shutdown();
    }
}

fn commit(partition: i32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: "orders".into(),
        partition,
        offset,
        leader_epoch: 3,
        metadata: "checkpoint".into(),
    }
}

fn simple() -> Committer {
    Committer {
        generation: -1,
        ..Committer::default()
    }
}

fn offsets(c: &Coordinator, group: &str) -> Vec<(i32, Option<i64>)> {
    let fetched = c
        .fetch_offsets(group, Some(&[("orders".to_string(), vec![0, 1])]))
        .expect("fetch");
    fetched[0]
        .1
        .iter()
        .map(|(p, v)| (*p, v.as_ref().map(|v| v.offset)))
        .collect()
}

#[tokio::test]
async fn committed_offsets_and_metadata_survive_a_reload() {
    let s = Setup::new();
    let c = Coordinator::open(Arc::clone(&s.cluster), 0).expect("open");
    let results = c
        .commit(
            "g",
            &simple(),
            &[commit(0, 10), commit(1, 20), commit(7, 1)],
            1000,
        )
        .await
        .expect("commit");
    assert_eq!(
        results,
        vec![Ok(()), Ok(()), Err(GroupError::UnknownTopicOrPartition)]
    );
    c.commit("g", &simple(), &[commit(0, 11)], 2000)
        .await
        .expect("commit");
    let reloaded = s.reopen();
    assert_eq!(offsets(&reloaded, "g"), vec![(0, Some(11)), (1, Some(20))]);
    let all = reloaded.fetch_offsets("g", None).expect("fetch");
    let (_, v) = &all[0].1[0];
    let v = v.as_ref().expect("committed");
    assert_eq!((v.leader_epoch, v.metadata.as_str()), (3, "checkpoint"));
    assert_eq!(offsets(&reloaded, "other"), vec![(0, None), (1, None)]);
}

#[tokio::test]
async fn expired_and_deleted_groups_stay_gone_after_a_reload() {
    let s = Setup::new();
    let c = Coordinator::open(Arc::clone(&s.cluster), 0).expect("open");
    c.commit("old", &simple(), &[commit(0, 5)], 0)
        .await
        .expect("commit");
    c.commit("fresh", &simple(), &[commit(0, 6)], 50_000)
        .await
        .expect("commit");
    c.commit("doomed", &simple(), &[commit(1, 7)], 50_000)
        .await
        .expect("commit");
    // One minute of retention: "old" has been empty long enough, "fresh" has not.
    c.expire_offsets(60_001).await;
    assert_eq!(offsets(&c, "old"), vec![(0, None), (1, None)]);
    assert!(
        c.describe("old").expect("describe").is_none(),
        "the empty group is removed"
    );
    assert_eq!(offsets(&c, "fresh"), vec![(0, Some(6)), (1, None)]);
    c.delete_group("doomed", 60_002).await.expect("deleted");
    assert_eq!(
        c.delete_group("doomed", 60_003).await,
        Err(GroupError::GroupIdNotFound)
    );
    let reloaded = s.reopen();
    let listed: Vec<String> = reloaded.list().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(listed, vec!["fresh".to_string()]);
    assert_eq!(offsets(&reloaded, "doomed"), vec![(0, None), (1, None)]);
}

#[tokio::test]
async fn a_stable_group_reloads_stable_with_its_members() {
    let s = Setup::new();
    let c = Coordinator::open(Arc::clone(&s.cluster), 0).expect("open");
    let join = JoinRequest {
        client_id: "c".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        ..JoinRequest::default()
    };
    let mut rx = c.join("g", join, 0);
    c.tick(3000); // the initial rebalance delay
    let joined = rx.try_recv().expect("joined");
    assert_eq!((joined.error, joined.generation), (None, 1));
    let sync = SyncRequest {
        member_id: joined.member_id.clone(),
        generation: 1,
        assignments: [(joined.member_id.clone(), Bytes::from_static(b"all"))].into(),
        ..SyncRequest::default()
    };
    let synced = c.sync("g", sync, 3001).await.expect("synced");
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));
    let reloaded = s.reopen();
    let summary = reloaded.describe("g").expect("describe").expect("exists");
    assert_eq!(summary.state, GroupState::Stable);
    assert_eq!(summary.members.len(), 1);
    assert_eq!(summary.members[0].assignment, Bytes::from_static(b"all"));
    // The member carries on in its generation without rejoining.
    assert_eq!(
        reloaded.heartbeat("g", &joined.member_id, None, 1, 4000),
        Ok(())
    );
}
