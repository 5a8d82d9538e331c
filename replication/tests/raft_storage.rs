//! openraft's own storage suite on the file-backed partition log: every check of
//! `openraft::testing::log::Suite`, each on a fresh log in its own directory, with
//! the real flusher completing appends.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use parking_lot::Mutex;
use sluice_replication::raft::{PartitionLogStore, PartitionRaft, PartitionStateMachine};
use sluice_replication::{Flusher, Partition};
use sluice_storage::LogConfig;
use tempfile::TempDir;

struct FileLogBuilder {
    flusher: Arc<Flusher>,
    config: LogConfig,
}

impl StoreBuilder<PartitionRaft, PartitionLogStore, PartitionStateMachine, TempDir>
    for FileLogBuilder
{
    async fn build(
        &self,
    ) -> Result<(TempDir, PartitionLogStore, PartitionStateMachine), StorageError<PartitionRaft>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Partition::open(dir.path().join("orders-0"), self.config).expect("open");
        let log = Arc::new(Mutex::new(log));
        let store = PartitionLogStore::new(Arc::clone(&log), Arc::clone(&self.flusher));
        let sm = PartitionStateMachine::open(log, None).expect("state machine");
        Ok((dir, store, sm))
    }
}

fn run_suite(config: LogConfig) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let flusher = Flusher::start();
    let builder = FileLogBuilder {
        flusher: Arc::clone(&flusher),
        config,
    };
    rt.block_on(Suite::test_all(builder))
        .expect("openraft's storage suite");
    flusher.shutdown();
}

#[test]
fn openraft_storage_suite_passes_on_the_partition_log() {
    run_suite(LogConfig::default());
}

#[test]
fn openraft_storage_suite_passes_with_a_segment_per_few_entries() {
    // Tiny segments: purges delete whole segments, reads cross segment ends.
    run_suite(LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        ..LogConfig::default()
    });
}

mod restart {
    use std::collections::BTreeSet;
    use std::io::Cursor;

    use bytes::Bytes;
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogStorage, RaftStateMachine, SnapshotMeta};
    use openraft::type_config::TypeConfigExt;
    use openraft::{Membership, RaftLogReader, RaftSnapshotBuilder, StoredMembership};
    use sluice_protocol::batch::build_batch;
    use sluice_replication::raft::{log_id, Entry, ProducerBatch};
    use sluice_storage::{Log, Offset};

    use super::*;

    fn open(
        dir: &std::path::Path,
        flusher: &Arc<Flusher>,
    ) -> (PartitionLogStore, PartitionStateMachine) {
        let log = Partition::open(dir, LogConfig::default()).expect("open");
        let log = Arc::new(Mutex::new(log));
        let store = PartitionLogStore::new(Arc::clone(&log), Arc::clone(flusher));
        (
            store,
            PartitionStateMachine::open(log, None).expect("state machine"),
        )
    }

    async fn append(store: &mut PartitionLogStore, entries: Vec<Entry>) -> std::io::Result<()> {
        let (tx, rx) = PartitionRaft::oneshot();
        store.append(entries, IOFlushed::signal(tx)).await?;
        rx.await.expect("completed")
    }

    /// Builds a snapshot as openraft does when one is triggered.
    async fn build_snapshot(
        sm: &mut PartitionStateMachine,
    ) -> openraft::alias::SnapshotOf<PartitionRaft, Cursor<Vec<u8>>> {
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot")
    }

    /// Applies the stored entries of `range` to `sm`, as openraft's apply task does.
    async fn apply_stored(
        store: &mut PartitionLogStore,
        sm: &mut PartitionStateMachine,
        range: std::ops::Range<u64>,
    ) {
        let entries = store.try_get_log_entries(range).await.expect("read");
        let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        sm.apply(stream).await.expect("apply");
    }

    fn data(records: usize) -> ProducerBatch {
        let kv: Vec<_> = (0..records).map(|_| (None, Some(&b"order"[..]))).collect();
        ProducerBatch(Bytes::from(build_batch(1000, &kv)))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn entries_vote_and_commit_point_survive_a_restart_and_offsets_follow_the_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::start();
        let membership = Membership::new_with_defaults(vec![BTreeSet::from([1, 2, 3])], []);
        let entries = vec![
            Entry::new_membership(log_id(1, 0), membership.clone()),
            Entry::new_blank(log_id(1, 1)),
            Entry::new_normal(log_id(1, 2), data(3)),
            Entry::new_normal(log_id(2, 3), data(2)),
        ];
        let vote = openraft::Vote::new_committed(2, 1);
        runtime().block_on(async {
            let (mut store, _) = open(dir.path(), &flusher);
            append(&mut store, entries.clone()).await.expect("append");
            store.save_vote(&vote).await.expect("vote");
            store
                .save_committed(Some(log_id(2, 3)))
                .await
                .expect("committed");
            // Each control entry takes an offset, as a transaction marker does.
            let stored = store
                .log()
                .lock()
                .log_mut()
                .read_entries(0, 10, usize::MAX)
                .expect("read");
            let offsets: Vec<_> = stored
                .iter()
                .map(|e| (e.base_offset, e.last_offset))
                .collect();
            assert_eq!(
                offsets,
                [
                    (Offset(0), Offset(0)),
                    (Offset(1), Offset(1)),
                    (Offset(2), Offset(4)),
                    (Offset(5), Offset(6))
                ]
            );
        });
        runtime().block_on(async {
            let (mut store, _) = open(dir.path(), &flusher);
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_log_id, Some(log_id(2, 3)));
            assert_eq!(state.last_purged_log_id, None);
            assert_eq!(store.read_vote().await.expect("vote"), Some(vote));
            assert_eq!(
                store.read_committed().await.expect("committed"),
                Some(log_id(2, 3))
            );
            let back = store.try_get_log_entries(0..4).await.expect("entries");
            assert_eq!(back.len(), 4);
            assert_eq!(back[0], entries[0]);
            assert_eq!(back[1], entries[1]);
            assert_eq!(back[3].log_id, entries[3].log_id);

            // A leader's copy of the next entry says offset 7; one that says 9 is a
            // diverged log and is refused.
            let mut b = build_batch(1000, &[(None, Some(&b"x"[..]))]);
            sluice_protocol::batch::assign_offsets(
                &mut b,
                Offset(9),
                sluice_storage::LeaderEpoch(2),
            );
            let diverged = Entry::new_normal(log_id(2, 4), ProducerBatch(Bytes::from(b)));
            assert!(append(&mut store, vec![diverged]).await.is_err());
        });
        flusher.shutdown();
    }

    #[test]
    fn an_installed_snapshot_restarts_the_log_after_its_point_and_survives_a_restart() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::start();
        let membership = Membership::new_with_defaults(vec![BTreeSet::from([1, 2, 3])], []);
        runtime().block_on(async {
            let (mut leader, mut leader_sm) = open(leader_dir.path(), &flusher);
            let mut entries = vec![Entry::new_membership(log_id(1, 0), membership.clone())];
            entries.extend((1..20).map(|i| Entry::new_normal(log_id(1, i), data(2))));
            append(&mut leader, entries.clone()).await.expect("append");
            apply_stored(&mut leader, &mut leader_sm, 0..20).await;
            assert_eq!(
                leader_sm.next_offset(),
                Offset(39),
                "1 control offset + 19 x 2 records"
            );
            // Unasked, a snapshot is taken at the log start: installing it (or the
            // purge after building it) cannot remove readable records.
            let at_start = build_snapshot(&mut leader_sm).await;
            assert_eq!(at_start.meta.last_log_id, None);
            assert_eq!(at_start.meta.last_membership, StoredMembership::default());
            leader.purge(log_id(1, 4)).await.expect("purge");
            let after_purge = build_snapshot(&mut leader_sm).await;
            assert_eq!(after_purge.meta.last_log_id, Some(log_id(1, 4)));
            assert_eq!(
                after_purge.meta.last_membership,
                StoredMembership::new(Some(log_id(1, 0)), membership.clone())
            );
            // Retention asks for the point below its new log start.
            leader_sm.request_snapshot_at(log_id(1, 19), Offset(39));
            let snapshot = build_snapshot(&mut leader_sm).await;

            let (mut follower, mut follower_sm) = open(follower_dir.path(), &flusher);
            append(
                &mut follower,
                vec![Entry::new_membership(log_id(1, 0), membership.clone())],
            )
            .await
            .expect("append");
            follower_sm
                .install_snapshot(&snapshot.meta, Cursor::new(snapshot.snapshot.into_inner()))
                .await
                .expect("install");
            let state = follower.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id, Some(log_id(1, 19)));
            assert_eq!(state.last_log_id, Some(log_id(1, 19)));
            let log = follower.log().lock().log_start();
            assert_eq!(log.offset, Offset(39));
            assert_eq!(log.entry, 20);
            append(
                &mut follower,
                vec![Entry::new_normal(log_id(2, 20), data(1))],
            )
            .await
            .expect("the next entry follows the snapshot");
        });
        runtime().block_on(async {
            let (mut follower, mut sm) = open(follower_dir.path(), &flusher);
            let (applied, stored) = sm.applied_state().await.expect("applied");
            assert_eq!(applied, Some(log_id(1, 19)));
            assert_eq!(
                stored,
                StoredMembership::new(Some(log_id(1, 0)), membership.clone())
            );
            assert_eq!(sm.next_offset(), Offset(39));
            let current = sm
                .get_current_snapshot()
                .await
                .expect("snapshot")
                .expect("some");
            assert_eq!(
                current.meta,
                SnapshotMeta {
                    last_log_id: Some(log_id(1, 19)),
                    last_membership: StoredMembership::new(Some(log_id(1, 0)), membership),
                }
            );
            let entries = follower.try_get_log_entries(0..100).await.expect("read");
            assert_eq!(
                entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                [20]
            );
        });
        flusher.shutdown();
    }

    fn idempotent(pid: i64, seq: i32, records: usize) -> ProducerBatch {
        let kv: Vec<_> = (0..records).map(|_| (None, Some(&b"order"[..]))).collect();
        ProducerBatch(Bytes::from(sluice_protocol::batch::build_idempotent_batch(
            pid, 0, seq, 1000, &kv,
        )))
    }

    fn last_seq_of(p: &Partition, pid: i64) -> Option<i32> {
        p.producers()
            .get(pid)
            .and_then(|e| e.batches.back())
            .map(|b| b.last_seq)
    }

    #[test]
    fn producer_state_follows_replicated_appends_truncation_and_snapshots() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::start();
        runtime().block_on(async {
            let (mut leader, mut leader_sm) = open(leader_dir.path(), &flusher);
            // Entries as a follower receives them: producer 7's batches, sequences
            // 0..=29 in batches of three.
            let entries: Vec<Entry> = (0..10)
                .map(|i| Entry::new_normal(log_id(1, i), idempotent(7, i as i32 * 3, 3)))
                .collect();
            append(&mut leader, entries).await.expect("append");
            assert_eq!(last_seq_of(&leader.log().lock(), 7), Some(29));

            // Raft truncates the last four entries: the producer state rewinds.
            leader
                .truncate_after(Some(log_id(1, 5)))
                .await
                .expect("truncate");
            assert_eq!(last_seq_of(&leader.log().lock(), 7), Some(17));
            let more = (6..8)
                .map(|i| Entry::new_normal(log_id(2, i), idempotent(7, i as i32 * 3, 3)))
                .collect();
            append(&mut leader, more).await.expect("append");
            assert_eq!(last_seq_of(&leader.log().lock(), 7), Some(23));

            // A snapshot at entry 5 carries the state as of its offset.
            apply_stored(&mut leader, &mut leader_sm, 0..6).await;
            leader_sm.request_snapshot_at(log_id(1, 5), Offset(18));
            let snapshot = build_snapshot(&mut leader_sm).await;
            let (follower, mut follower_sm) = open(follower_dir.path(), &flusher);
            follower_sm
                .install_snapshot(&snapshot.meta, Cursor::new(snapshot.snapshot.into_inner()))
                .await
                .expect("install");
            assert_eq!(last_seq_of(&follower.log().lock(), 7), Some(17));
            assert_eq!(follower.log().lock().log_start_offset(), Offset(18));
        });
        let (follower, _) = open(follower_dir.path(), &flusher);
        assert_eq!(
            last_seq_of(&follower.log().lock(), 7),
            Some(17),
            "the installed producer state survives a restart"
        );
        flusher.shutdown();
    }
}
