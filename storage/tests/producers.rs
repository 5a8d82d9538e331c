//! Producer state survives restarts: rebuilt from the log, or from a snapshot and
//! the batches after it.

use sluice_protocol::batch::{build_idempotent_batch, BatchView};
use sluice_storage::{
    last_seq, BatchMeta, LeaderEpoch, Log, LogConfig, Offset, PartitionLog, ProducerStates,
    SequenceCheck,
};

/// An idempotent producer's batch of `n` records starting at sequence `seq`.
fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let kv: Vec<_> = (0..n).map(|_| (Some(&b"k"[..]), Some(&b"v"[..]))).collect();
    build_idempotent_batch(pid, epoch, seq, 1_000, &kv)
}

fn append(
    log: &mut PartitionLog,
    states: &mut ProducerStates,
    pid: i64,
    seq: i32,
    n: usize,
) -> (Offset, Offset) {
    let mut b = idempotent_batch(pid, 0, seq, n);
    let v = BatchView::parse(&b).expect("batch");
    let last = last_seq(seq, v.last_offset_delta());
    assert_eq!(states.check(pid, 0, seq, last), Ok(SequenceCheck::Append));
    let (base, end) = log.append(&mut b, LeaderEpoch(0), 1_000).expect("append");
    states.record(
        pid,
        0,
        BatchMeta {
            first_seq: seq,
            last_seq: last,
            base_offset: base,
            last_offset: end,
            timestamp_ms: 1_000,
        },
    );
    (base, end)
}

#[test]
fn state_is_rebuilt_from_the_log_and_from_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 1024,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    let mut states = ProducerStates::default();
    let mut seq = 0;
    let mut placed = Vec::new();
    for _ in 0..20 {
        placed.push((seq, append(&mut log, &mut states, 42, seq, 3)));
        seq += 3;
    }
    append(&mut log, &mut states, 7, 0, 1);
    log.sync_all().expect("sync");
    drop(log);

    // From the log alone.
    let mut log = PartitionLog::open(dir.path(), config).expect("reopen");
    let rebuilt = ProducerStates::rebuild(&mut log).expect("rebuild");
    assert_eq!(rebuilt, states);
    let (seq0, (base, last)) = placed[19];
    assert_eq!(
        rebuilt.check(42, 0, seq0, seq0 + 2),
        Ok(SequenceCheck::Duplicate {
            base_offset: base,
            last_offset: last
        }),
        "a retry after the restart gets its original offsets"
    );

    // From a snapshot plus the batches written after it.
    rebuilt
        .write_snapshot(dir.path(), log.log_end_offset())
        .expect("snapshot");
    let mut states = rebuilt;
    for _ in 0..5 {
        append(&mut log, &mut states, 42, seq, 2);
        seq += 2;
    }
    log.sync_all().expect("sync");
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config).expect("reopen");
    assert_eq!(ProducerStates::rebuild(&mut log).expect("rebuild"), states);

    // A snapshot past the log end (after truncation) is ignored and removed.
    let end = log.log_end_offset();
    states
        .write_snapshot(dir.path(), Offset(end.0 + 100))
        .expect("snapshot");
    assert_eq!(ProducerStates::rebuild(&mut log).expect("rebuild"), states);
}
