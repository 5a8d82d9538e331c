//! One suite, every implementation of [`Log`]: the file log (with tiny segments so
//! every check crosses segment boundaries) and the in-memory reference log.

use sluice_protocol::batch::{build_batch, build_timed_batch, Batches};
use sluice_storage::{
    LeaderEpoch, Log, LogConfig, LogStart, MemoryLog, Offset, PartitionLog, StorageError,
    VoteRecord,
};

fn batch(records: usize, ts: i64, tag: u8) -> Vec<u8> {
    let value = [tag; 40];
    let kv: Vec<_> = (0..records).map(|_| (None, Some(&value[..]))).collect();
    build_batch(ts, &kv)
}

fn append(log: &mut dyn Log, records: usize, ts: i64) -> (Offset, Offset) {
    let mut b = batch(records, ts, records as u8);
    log.append(&mut b, LeaderEpoch(2), ts).expect("append")
}

fn batches_of(bytes: &[u8]) -> Vec<(Offset, Offset)> {
    Batches::new(bytes)
        .map(|b| {
            let b = b.expect("whole batches");
            b.verify_crc().expect("CRC intact");
            assert_eq!(b.leader_epoch(), LeaderEpoch(2));
            (b.base_offset(), b.last_offset())
        })
        .collect()
}

fn read_up_to(log: &mut dyn Log, from: Offset, upper: Offset) -> Vec<(Offset, Offset)> {
    let (mut next, mut out) = (from, Vec::new());
    loop {
        let r = log.read(next, 1000, upper, true).expect("read");
        if r.records.is_empty() {
            return out;
        }
        let got = batches_of(&r.records);
        assert!(
            got.iter().all(|(_, last)| *last < upper),
            "read past the upper bound"
        );
        out.extend(got);
        next = r.next_offset;
    }
}

fn read_everything(log: &mut dyn Log, from: Offset) -> Vec<(Offset, Offset)> {
    let end = log.log_end_offset();
    let out = read_up_to(log, from, end);
    assert_eq!(
        out.last().map(|b| b.1.next()),
        Some(end),
        "reads stopped short of the end"
    );
    out
}

fn dense_offsets(log: &mut dyn Log) {
    let mut expected = Vec::new();
    for i in 0..60 {
        let got = append(log, 1 + i % 4, 1000 + i as i64);
        if let Some((_, last)) = expected.last().copied() {
            assert_eq!(got.0, Offset::next(last));
        }
        expected.push(got);
    }
    assert_eq!(log.log_start_offset(), Offset(0));
    assert_eq!(read_everything(log, Offset(0)), expected);
}

fn read_rules(log: &mut dyn Log) {
    let all: Vec<_> = (0..30).map(|i| append(log, 3, i)).collect();
    let end = log.log_end_offset();
    // Mid-batch offset: the whole batch that holds it comes first.
    let r = log.read(Offset(4), 1 << 20, end, true).expect("read");
    assert_eq!(batches_of(&r.records)[0], all[1]);
    // Upper bound: nothing at or past it.
    assert_eq!(read_up_to(log, Offset(0), all[5].1), all[..5].to_vec());
    // Byte limit: whole batches only; at least one with min_one_batch.
    let r = log.read(Offset(0), 1, end, true).expect("read");
    assert_eq!(batches_of(&r.records), vec![all[0]]);
    assert!(log
        .read(Offset(0), 1, end, false)
        .expect("read")
        .records
        .is_empty());
    // At the end: empty. Beyond: out of range.
    let r = log.read(end, 1 << 20, end, true).expect("read");
    assert!(r.records.is_empty());
    assert_eq!(r.next_offset, end);
    assert!(matches!(
        log.read(Offset(end.0 + 1), 100, end, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

fn truncation(log: &mut dyn Log) {
    let all: Vec<_> = (0..40).map(|i| append(log, 2, i)).collect();
    log.truncate_to(all[25].0).expect("truncate");
    assert_eq!(log.log_end_offset(), all[25].0);
    assert_eq!(read_everything(log, Offset(0)), all[..25].to_vec());
    assert_eq!(append(log, 5, 99).0, all[25].0);
    log.truncate_to(all[0].0).expect("truncate to the start");
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(append(log, 1, 1), (Offset(0), Offset(0)));
}

fn log_start(log: &mut dyn Log) {
    let all: Vec<_> = (0..40).map(|i| append(log, 2, i)).collect();
    log.advance_log_start(all[20].0).expect("advance");
    assert_eq!(log.log_start_offset(), all[20].0);
    assert!(matches!(
        log.read(Offset(0), 100, log.log_end_offset(), true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_everything(log, all[20].0), all[20..].to_vec());
    log.advance_log_start(Offset(3))
        .expect("backwards is a no-op");
    assert_eq!(log.log_start_offset(), all[20].0);
    let end = log.log_end_offset();
    log.advance_log_start(Offset(end.0 + 50)).expect("clamped");
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(append(log, 1, 1).0, end);
}

fn timestamps(log: &mut dyn Log) {
    let all: Vec<_> = (0..30).map(|i| append(log, 2, 1000 + 10 * i)).collect();
    assert_eq!(
        log.offset_for_timestamp(0).expect("ts"),
        Some((Offset(0), 1000))
    );
    assert_eq!(
        log.offset_for_timestamp(1155).expect("ts"),
        Some((all[16].0, 1160))
    );
    assert_eq!(
        log.offset_for_timestamp(1160).expect("ts"),
        Some((all[16].0, 1160))
    );
    assert_eq!(log.offset_for_timestamp(5000).expect("ts"), None);
    log.advance_log_start(Offset(all[20].0 .0 + 1))
        .expect("advance");
    assert_eq!(
        log.offset_for_timestamp(0).expect("ts"),
        Some((Offset(all[20].0 .0 + 1), 1200)),
        "clamped to the log start"
    );
}

/// ListOffsets by timestamp answers a record, not the batch that holds it.
fn record_timestamps(log: &mut dyn Log) {
    append(log, 1, 100);
    let mut straddling = build_timed_batch(&[
        (1234, (None, Some(b"a"))),
        (999_999_999_999, (None, Some(b"b"))),
    ]);
    let (base, _) = log
        .append(&mut straddling, LeaderEpoch(1), 0)
        .expect("append");
    assert_eq!(
        log.offset_for_timestamp(999_999_999_999).expect("ts"),
        Some((Offset(base.0 + 1), 999_999_999_999)),
        "the second record of the batch"
    );
    assert_eq!(
        log.offset_for_timestamp(1000).expect("ts"),
        Some((base, 1234))
    );
    assert_eq!(
        log.offset_for_timestamp(1_000_000_000_000).expect("ts"),
        None
    );
}

/// Entries are the batches, numbered densely; their term is the epoch they were
/// appended with; Raft's truncate_after rewinds entries and offsets together.
fn entries(log: &mut dyn Log) {
    let first = log.first_entry_index();
    let mut appended = Vec::new();
    for term in [1, 1, 2, 3, 3, 3, 4, 4] {
        let mut b = batch(1 + appended.len() % 3, 10, 1);
        let (base, last) = log.append(&mut b, LeaderEpoch(term), 10).expect("append");
        appended.push((base, last, LeaderEpoch(term)));
    }
    assert_eq!(log.next_entry_index(), first + 8);
    for (i, e) in appended.iter().enumerate() {
        assert_eq!(log.entry_at(first + i as u64).expect("entry"), Some(*e));
    }
    assert_eq!(log.entry_at(first + 8).expect("entry"), None);
    log.truncate_after_entry(Some(first + 4)).expect("truncate");
    assert_eq!(log.next_entry_index(), first + 5);
    assert_eq!(
        log.log_end_offset(),
        appended[5].0,
        "offsets rewind with entries"
    );
    let mut b = batch(2, 10, 9);
    let (base, _) = log.append(&mut b, LeaderEpoch(5), 10).expect("append");
    assert_eq!(base, appended[5].0);
    assert_eq!(
        log.entry_at(first + 5).expect("entry").map(|e| e.2),
        Some(LeaderEpoch(5))
    );
    log.truncate_after_entry(Some(first + 99))
        .expect("nothing to cut");
    assert_eq!(log.next_entry_index(), first + 6);
    log.truncate_after_entry(None).expect("truncate all");
    assert_eq!(log.next_entry_index(), log.first_entry_index());
    assert_eq!(log.log_end_offset(), appended[0].0);
}

/// Raft's purge and snapshot install: the start moves as (offset, entry, term),
/// past the end the log empties at the next entry, and `reset_to` restarts it.
fn purge_and_reset(log: &mut dyn Log) {
    let first = log.first_entry_index();
    let mut appended = Vec::new();
    for term in [1, 1, 2, 2, 3] {
        let mut b = batch(2, 10, 3);
        appended.push(log.append(&mut b, LeaderEpoch(term), 10).expect("append"));
    }
    log.purge_entries(first + 1, LeaderEpoch(1)).expect("purge");
    assert_eq!(log.first_entry_index(), first + 2);
    assert_eq!(log.log_start_offset(), appended[2].0);
    assert_eq!(
        log.log_start().last_purged(),
        Some((first + 1, LeaderEpoch(1)))
    );
    assert_eq!(log.entry_at(first + 1).expect("entry"), None);
    assert_eq!(
        log.entry_at(first + 2).expect("entry"),
        Some((appended[2].0, appended[2].1, LeaderEpoch(2)))
    );
    assert!(matches!(
        log.read(appended[1].0, 1000, Offset(i64::MAX), true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.purge_entries(first, LeaderEpoch(1))
        .expect("an older purge is a no-op");
    assert_eq!(log.first_entry_index(), first + 2);

    log.purge_entries(first + 4, LeaderEpoch(3))
        .expect("purge all");
    let end = appended[4].1.next();
    assert_eq!(
        (log.first_entry_index(), log.next_entry_index()),
        (first + 5, first + 5)
    );
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    let mut b = batch(1, 10, 4);
    assert_eq!(
        log.append(&mut b, LeaderEpoch(4), 10).expect("append").0,
        end
    );
    assert_eq!(log.next_entry_index(), first + 6);

    log.purge_entries(first + 20, LeaderEpoch(7))
        .expect("purge past the end");
    let end = end.next();
    assert_eq!(
        (log.first_entry_index(), log.next_entry_index()),
        (first + 21, first + 21)
    );
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert_eq!(
        log.log_start().last_purged(),
        Some((first + 20, LeaderEpoch(7)))
    );
    let mut b = batch(1, 10, 5);
    assert_eq!(
        log.append(&mut b, LeaderEpoch(8), 10).expect("append").0,
        end
    );
    assert_eq!(
        log.entry_at(first + 21).expect("entry"),
        Some((end, end, LeaderEpoch(8)))
    );

    let start = LogStart {
        offset: Offset(1000),
        entry: 500,
        prev_term: Some(LeaderEpoch(9)),
    };
    log.reset_to(start).expect("reset");
    assert_eq!(log.log_start(), start);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(1000), Offset(1000))
    );
    assert_eq!(
        (log.first_entry_index(), log.next_entry_index()),
        (500, 500)
    );
    let mut b = batch(3, 10, 6);
    assert_eq!(
        log.append(&mut b, LeaderEpoch(9), 10).expect("append"),
        (Offset(1000), Offset(1002))
    );
    assert_eq!(
        log.entry_at(500).expect("entry"),
        Some((Offset(1000), Offset(1002), LeaderEpoch(9)))
    );
    log.truncate_after_entry(Some(499))
        .expect("truncate every entry");
    assert_eq!(log.log_end_offset(), Offset(1000));
    assert_eq!(log.next_entry_index(), 500);
}

/// The vote and the commit point read back as saved.
fn vote_and_committed(log: &mut dyn Log) {
    assert_eq!(log.vote(), None);
    let vote = VoteRecord {
        term: 3,
        voted_for: Some(2),
        committed: false,
    };
    log.save_vote(&vote).expect("save vote");
    assert_eq!(log.vote(), Some(vote));
    assert_eq!(log.committed(), None);
    log.save_committed(Some((7, LeaderEpoch(3))))
        .expect("save committed");
    assert_eq!(log.committed(), Some((7, LeaderEpoch(3))));
}

/// A named check that any [`Log`] must pass.
type Check = (&'static str, fn(&mut dyn Log));

const CHECKS: &[Check] = &[
    ("dense_offsets", dense_offsets),
    ("read_rules", read_rules),
    ("truncation", truncation),
    ("log_start", log_start),
    ("timestamps", timestamps),
    ("record_timestamps", record_timestamps),
    ("entries", entries),
    ("purge_and_reset", purge_and_reset),
    ("vote_and_committed", vote_and_committed),
];

#[test]
fn memory_log_conforms() {
    for (name, check) in CHECKS {
        println!("memory log: {name}");
        check(&mut MemoryLog::new());
    }
}

#[test]
fn partition_log_conforms() {
    for (name, check) in CHECKS {
        println!("partition log: {name}");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            segment_bytes: 700,
            index_interval_bytes: 200,
            open_sealed_segments_max: 2,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config).expect("open");
        check(&mut log);
        assert!(log.open_segment_count() <= 3, "open handles stay bounded");
    }
}
