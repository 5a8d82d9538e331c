//! Partition log behaviour with real files.

use std::fs::OpenOptions;
use std::io::Write;

use sluice_protocol::batch::{build_batch, BatchView, Batches, KeyValue};
use sluice_storage::{LeaderEpoch, Log, LogConfig, Offset, PartitionLog, StorageError};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: i64::MAX,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A batch of `n` records whose values encode `tag`, with timestamp `ts`.
fn batch(tag: u32, n: usize, ts: i64) -> Vec<u8> {
    let value = tag.to_be_bytes();
    let values: Vec<KeyValue<'_>> = (0..n).map(|_| (None, Some(&value[..]))).collect();
    build_batch(ts, &values)
}

fn append(log: &mut PartitionLog, tag: u32, n: usize, ts: i64) -> (Offset, Offset) {
    let mut b = batch(tag, n, ts);
    log.append(&mut b, LeaderEpoch(3), ts).expect("append")
}

fn read_all(log: &mut PartitionLog, from: Offset) -> Vec<(Offset, Offset)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let end = log.log_end_offset();
        let r = log.read(next, 1 << 20, end, true).expect("read");
        if r.records.is_empty() {
            return out;
        }
        for b in Batches::new(&r.records) {
            let b = b.expect("whole batches");
            b.verify_crc().expect("stored CRC valid");
            assert_eq!(b.leader_epoch(), LeaderEpoch(3));
            out.push((b.base_offset(), b.last_offset()));
        }
        next = r.next_offset;
    }
}

#[test]
fn appends_get_dense_offsets_and_read_back_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut expected = Vec::new();
    for i in 0..100u32 {
        expected.push(append(
            &mut log,
            i,
            1 + (i as usize % 5),
            1000 + i64::from(i),
        ));
    }
    assert!(log.segment_count() > 3, "small segments roll");
    assert_eq!(read_all(&mut log, Offset(0)), expected);
    // A fetch from the middle of a batch returns that whole batch first.
    let (base, last) = expected[50];
    let mid = Offset((base.0 + last.0 + 1) / 2);
    assert_eq!(read_all(&mut log, mid)[0], expected[50]);
    // The upper bound (high watermark) is never passed.
    let upper = expected[10].1.next();
    let r = log.read(Offset(0), 1 << 20, upper, true).expect("read");
    let last_read = Batches::new(&r.records)
        .map(|b| b.expect("batch").last_offset())
        .last();
    assert_eq!(last_read, Some(expected[10].1));
    // Byte limit: at least one batch, never a partial one.
    let r = log.read(Offset(0), 10, upper, true).expect("read");
    assert_eq!(Batches::new(&r.records).count(), 1);
    let r = log.read(Offset(0), 10, upper, false).expect("read");
    assert!(r.records.is_empty());
}

#[test]
fn reopen_recovers_the_same_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected: Vec<_> = {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        let v = (0..60).map(|i| append(&mut log, i, 3, 5)).collect();
        log.sync_all().expect("sync");
        v
    };
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(read_all(&mut log, Offset(0)), expected);
    assert_eq!(log.log_end_offset(), Offset(180));
}

#[test]
fn torn_tail_is_cut_on_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg_path;
    {
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
        for i in 0..10 {
            append(&mut log, i, 2, 5);
        }
        seg_path = dir.path().join(format!("{:020}.log", 0));
    }
    // Half of an eleventh batch reached the disk.
    let partial = batch(99, 4, 5);
    let mut f = OpenOptions::new()
        .append(true)
        .open(&seg_path)
        .expect("open");
    f.write_all(&partial[..partial.len() / 2]).expect("write");
    drop(f);
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("recovers");
    assert_eq!(log.log_end_offset(), Offset(20));
    assert_eq!(append(&mut log, 11, 1, 5), (Offset(20), Offset(20)));
    assert_eq!(read_all(&mut log, Offset(0)).len(), 11);
}

#[test]
fn corruption_in_the_middle_takes_the_log_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sizes: Vec<usize>;
    {
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
        sizes = (0..5)
            .map(|i| {
                let b = batch(i, 2, 5);
                let n = b.len();
                append(&mut log, i, 2, 5);
                n
            })
            .collect();
    }
    let seg_path = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg_path).expect("read");
    let in_second = sizes[0] + sizes[1] - 1;
    bytes[in_second] ^= 0x55;
    std::fs::write(&seg_path, &bytes).expect("write");
    match PartitionLog::open(dir.path(), LogConfig::default()) {
        Err(StorageError::Corrupt { position, .. }) => assert_eq!(position, sizes[0] as u64),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn truncate_to_rewinds_offsets_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let offsets: Vec<_> = (0..80).map(|i| append(&mut log, i, 2, 5)).collect();
    let cut = offsets[30].0;
    log.truncate_to(cut).expect("truncate");
    assert_eq!(log.log_end_offset(), cut);
    assert_eq!(read_all(&mut log, Offset(0)), offsets[..30].to_vec());
    assert_eq!(append(&mut log, 7, 1, 5).0, cut);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), cut.next());
}

#[test]
fn advancing_log_start_deletes_whole_segments_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let offsets: Vec<_> = (0..80).map(|i| append(&mut log, i, 2, 5)).collect();
    let before = log.segment_count();
    log.advance_log_start(offsets[50].0).expect("advance");
    assert!(log.segment_count() < before);
    assert_eq!(log.log_start_offset(), offsets[50].0);
    let end = log.log_end_offset();
    assert!(matches!(
        log.read(Offset(0), 100, end, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_start_offset(), offsets[50].0);
    assert_eq!(read_all(&mut log, offsets[50].0), offsets[50..].to_vec());
}

#[test]
fn offset_for_timestamp_finds_first_batch_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let offsets: Vec<_> = (0..50)
        .map(|i| append(&mut log, i, 2, 1000 + 10 * i64::from(i)))
        .collect();
    assert_eq!(
        log.offset_for_timestamp(0).expect("lookup"),
        Some((Offset(0), 1000))
    );
    assert_eq!(
        log.offset_for_timestamp(1205).expect("lookup"),
        Some((offsets[21].0, 1210))
    );
    assert_eq!(
        log.offset_for_timestamp(1210).expect("lookup"),
        Some((offsets[21].0, 1210))
    );
    assert_eq!(log.offset_for_timestamp(99_999).expect("lookup"), None);
}

#[test]
fn sync_target_covers_sealed_segments_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    assert!(log.sync_target().is_none());
    for i in 0..40 {
        append(&mut log, i, 2, 5);
    }
    let t = log.sync_target().expect("dirty");
    assert_eq!(t.end, log.log_end_offset());
    assert!(t.files.len() > 1, "sealed segments are synced too");
    assert!(log.sync_target().is_none());
    let b = batch(1, 1, 1);
    assert!(BatchView::parse(&b).is_ok());
}

fn segment_files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn missing_and_corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected: Vec<_> = {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        let v = (0..80)
            .map(|i| append(&mut log, i, 2, 100 + i64::from(i)))
            .collect();
        log.sync_all().expect("sync");
        v
    };
    let indexes = segment_files(dir.path(), "index");
    assert!(indexes.len() > 3);
    // One sealed index is gone, another is garbage, a time index is torn.
    std::fs::remove_file(&indexes[0]).expect("remove");
    std::fs::write(&indexes[1], [0xab; 24]).expect("corrupt");
    let times = segment_files(dir.path(), "timeindex");
    std::fs::write(&times[2], [1, 2, 3]).expect("tear");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("recovers");
    assert_eq!(read_all(&mut log, Offset(0)), expected);
    assert_eq!(
        log.offset_for_timestamp(150).expect("lookup"),
        Some((expected[50].0, 150))
    );
    assert!(indexes[0].exists(), "the missing index was rewritten");
    assert_eq!(std::fs::metadata(&indexes[1]).expect("stat").len() % 8, 0);
}

#[test]
fn sealed_indexes_are_trimmed_and_active_ones_preallocated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    for i in 0..40 {
        append(&mut log, i, 2, 5);
    }
    let indexes = segment_files(dir.path(), "index");
    let (active, sealed) = indexes.split_last().expect("segments");
    for p in sealed {
        let len = std::fs::metadata(p).expect("stat").len();
        assert!(
            len > 0 && len < 200,
            "sealed index {} is {len} bytes",
            p.display()
        );
    }
    assert_eq!(
        std::fs::metadata(active).expect("stat").len(),
        LogConfig::default().index_max_bytes
    );
}

#[test]
fn open_sealed_segments_stay_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        open_sealed_segments_max: 3,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    for i in 0..300 {
        append(&mut log, i, 2, 5);
    }
    assert!(log.segment_count() > 20);
    assert!(log.open_segment_count() <= 4);
    read_all(&mut log, Offset(0));
    assert!(
        log.open_segment_count() <= 4,
        "reads reopen and close sealed segments"
    );
    let log = PartitionLog::open(dir.path(), config).expect("reopen");
    assert_eq!(
        log.open_segment_count(),
        1,
        "only the active segment is open after start"
    );
}

#[test]
fn time_retention_deletes_expired_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let old: Vec<_> = (0..30).map(|i| append(&mut log, i, 2, 1_000)).collect();
    log.roll_segment().expect("roll");
    let new: Vec<_> = (0..30).map(|i| append(&mut log, i, 2, 50_000)).collect();
    let outcome = log.apply_retention(60_000, 30_000, -1).expect("retention");
    assert!(outcome.segments_deleted > 0);
    assert_eq!(
        log.log_start_offset(),
        new[0].0,
        "exactly the expired segments went"
    );
    assert_eq!(read_all(&mut log, new[0].0), new);
    assert!(old.iter().all(|(_, last)| *last < log.log_start_offset()));
    // Everything expired: the active segment rolls and goes too; appends continue.
    log.apply_retention(200_000, 30_000, -1).expect("retention");
    assert_eq!(log.log_start_offset(), log.log_end_offset());
    let next = log.log_end_offset();
    assert_eq!(append(&mut log, 1, 1, 200_000).0, next);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_start_offset(), next);
}

#[test]
fn size_retention_keeps_the_newest_bytes_and_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    for i in 0..200 {
        append(&mut log, i, 2, 5);
    }
    let before = log.size_bytes();
    log.apply_retention(10, -1, 3000).expect("retention");
    let after = log.size_bytes();
    assert!(
        after < before && after >= 3000 - 1024,
        "{before} -> {after}"
    );
    log.apply_retention(10, -1, 0).expect("retention");
    assert_eq!(
        log.segment_count(),
        1,
        "the active segment is never removed by size"
    );
}

#[test]
fn flush_messages_and_flush_ms_signal_a_due_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        flush_messages: 5,
        flush_ms: 1000,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    append(&mut log, 1, 2, 100);
    assert!(!log.flush_due(100));
    assert!(log.flush_due(1100), "flush.ms elapsed");
    append(&mut log, 2, 3, 200);
    assert!(log.flush_due(200), "flush.messages reached");
    log.sync_target().expect("dirty");
    assert!(!log.flush_due(5000), "nothing unsynced");
}

#[test]
fn entry_indexes_number_batches_and_survive_lost_sidecars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let offsets: Vec<_> = (0..120).map(|i| append(&mut log, i, 2, 5)).collect();
    assert_eq!((log.first_entry_index(), log.next_entry_index()), (0, 120));
    for (i, (base, last)) in offsets.iter().enumerate() {
        let e = log
            .locate_entry(i as u64)
            .expect("locate")
            .expect("present");
        assert_eq!(
            (e.base_offset, e.last_offset, e.term),
            (*base, *last, LeaderEpoch(3))
        );
    }
    assert_eq!(log.locate_entry(120).expect("locate"), None);
    log.advance_log_start(offsets[30].0).expect("advance");
    let first = log.first_entry_index();
    assert!(
        first > 0 && first <= 30,
        "whole segments went: first entry {first}"
    );
    log.sync_all().expect("sync");
    drop(log);

    let sidecars = segment_files(dir.path(), "entries");
    assert!(sidecars.len() > 3);
    std::fs::remove_file(&sidecars[0]).expect("remove first");
    std::fs::write(&sidecars[2], b"garbage").expect("damage middle");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("recovers");
    assert_eq!(
        (log.first_entry_index(), log.next_entry_index()),
        (first, 120)
    );
    for i in first..120 {
        let e = log.locate_entry(i).expect("locate").expect("present");
        assert_eq!(e.base_offset, offsets[i as usize].0, "entry {i}");
    }
    drop(log);

    // With every sidecar lost and the log not starting at 0, the numbering is gone.
    for p in segment_files(dir.path(), "entries") {
        std::fs::remove_file(p).expect("remove");
    }
    assert!(matches!(
        PartitionLog::open(dir.path(), small_config()),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn every_fetch_position_works_with_a_sparse_index() {
    // One index entry per MiB: more than one walk chunk of batches lies between
    // the entry and most fetch offsets.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    let value = vec![7u8; 3000];
    let mut bounds = Vec::new();
    for _ in 0..200 {
        let mut b = build_batch(1, &[(None, Some(&value[..]))]);
        bounds.push(log.append(&mut b, LeaderEpoch(3), 1).expect("append"));
    }
    let end = log.log_end_offset();
    for (base, _) in &bounds {
        for max_bytes in [1, 100, 5000, 1 << 20] {
            let r = log.read(*base, max_bytes, end, true).expect("read");
            let first = Batches::new(&r.records)
                .next()
                .expect("a batch")
                .expect("whole");
            assert_eq!(first.base_offset(), *base);
        }
    }
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config).expect("reopen");
    assert_eq!(read_all(&mut log, Offset(0)), bounds);
}

/// A batch whose header claims `delta + 1` offsets (the log trusts headers that
/// validation let through).
fn wide_batch(delta: i32) -> Vec<u8> {
    let mut b = build_batch(1, &[(None, Some(b"v"))]);
    b[23..27].copy_from_slice(&delta.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn a_segment_rolls_before_an_offset_its_index_cannot_express() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
    let wide = 1 << 29;
    let mut appended = Vec::new();
    for _ in 0..5 {
        let mut b = wide_batch(wide);
        appended.push(log.append(&mut b, LeaderEpoch(3), 1).expect("append"));
    }
    // Three batches of 2^29 + 1 offsets fit below 2^31; the fourth starts a segment.
    assert_eq!(log.segment_count(), 2);
    for (base, last) in log.segment_summaries().iter().map(|(b, n, _)| (*b, *n)) {
        assert!(last.0 - 1 - base.0 <= i64::from(i32::MAX));
    }
    assert_eq!(read_all(&mut log, Offset(0)), appended);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("reopen");
    assert_eq!(read_all(&mut log, Offset(0)), appended);
    let (base, _) = appended[3];
    let r = log
        .read(Offset(base.0 + 5), 1 << 20, log.log_end_offset(), true)
        .expect("read inside a wide batch");
    assert_eq!(
        Batches::new(&r.records)
            .next()
            .expect("batch")
            .expect("whole")
            .base_offset(),
        base
    );
}

#[test]
fn entries_are_located_through_sparse_marks_in_large_segments() {
    // Segments of about a thousand small batches: lookups start from a mark, in
    // the active segment, in sealed ones, and in sealed ones opened from their
    // index after a restart (marks built on first lookup).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 100_000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    let offsets: Vec<_> = (0..3000).map(|i| append(&mut log, i, 1, 5)).collect();
    assert!(log.segment_count() >= 3);
    let check = |log: &mut PartitionLog| {
        for (i, (base, last)) in offsets.iter().enumerate().step_by(7) {
            let e = log
                .locate_entry(i as u64)
                .expect("locate")
                .expect("present");
            assert_eq!((e.base_offset, e.last_offset), (*base, *last), "entry {i}");
        }
        let last = offsets.len() as u64 - 1;
        let e = log.locate_entry(last).expect("locate").expect("present");
        assert_eq!(e.base_offset, offsets[last as usize].0);
    };
    check(&mut log);
    log.sync_all().expect("sync");
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config).expect("reopen");
    check(&mut log);
    // Truncation keeps the marks right.
    log.truncate_to(offsets[2500].0).expect("truncate");
    let e = log.locate_entry(2499).expect("locate").expect("present");
    assert_eq!(e.base_offset, offsets[2499].0);
    assert_eq!(log.locate_entry(2500).expect("locate"), None);
    let (base, _) = append(&mut log, 9, 1, 5);
    assert_eq!(
        log.locate_entry(2500)
            .expect("locate")
            .expect("new")
            .base_offset,
        base
    );
}

#[test]
fn the_raft_start_and_vote_survive_a_reopen_and_a_reset_finishes_after_a_crash() {
    use sluice_storage::{LogStart, VoteRecord};
    let dir = tempfile::tempdir().expect("tempdir");
    let vote = VoteRecord {
        term: 4,
        voted_for: Some(1),
        committed: true,
    };
    let mut ends = Vec::new();
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        for i in 0..40 {
            ends.push(append(&mut log, i, 2, 1000).1);
        }
        log.purge_entries(24, LeaderEpoch(0)).expect("purge");
        log.save_vote(&vote).expect("vote");
        log.sync_all().expect("sync");
    }
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(
        log.log_start(),
        LogStart {
            offset: ends[24].next(),
            entry: 25,
            prev_term: Some(LeaderEpoch(0)),
        }
    );
    assert_eq!(log.first_entry_index(), 25);
    assert_eq!(log.next_entry_index(), 40);
    assert_eq!(log.vote(), Some(vote));
    assert!(log.segment_count() < 40, "purged segments are deleted");
    drop(log);

    // A reset interrupted after its start record was written: the next open
    // removes the old segments and starts empty where the reset asked.
    std::fs::write(dir.path().join("log-start-offset"), "5000 900 7 reset\n").expect("write");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen after reset");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(5000), Offset(5000))
    );
    assert_eq!(
        (log.first_entry_index(), log.next_entry_index()),
        (900, 900)
    );
    assert_eq!(log.log_start().last_purged(), Some((899, LeaderEpoch(7))));
    assert_eq!(append(&mut log, 1, 1, 1000).0, Offset(5000));
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.next_entry_index(), 901);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn entries_read_back_in_order_across_segments_within_a_byte_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut stored = Vec::new();
    for i in 0..200u32 {
        let mut b = batch(i, 1 + (i % 3) as usize, 1000);
        let term = LeaderEpoch(1 + (i / 50) as i32);
        let (base, last) = log.append(&mut b, term, 1000).expect("append");
        stored.push((base, last, term, b));
    }
    assert!(log.segment_count() > 10, "the entries cross segments");
    let all = log.read_entries(0, 1000, usize::MAX).expect("read");
    assert_eq!(all.len(), 200);
    for (e, (base, last, term, bytes)) in all.iter().zip(&stored) {
        assert_eq!(
            (e.base_offset, e.last_offset, e.term),
            (*base, *last, *term)
        );
        assert_eq!(&e.batch[..], &bytes[..], "entry {} as stored", e.index);
    }
    let some = log.read_entries(37, 120, 1).expect("read");
    assert_eq!(some.len(), 1, "at least one entry, however small the bound");
    assert_eq!(some[0].index, 37);
    let bounded = log.read_entries(37, 120, 2000).expect("read");
    let bytes: usize = bounded.iter().map(|e| e.batch.len()).sum();
    assert!(
        bytes >= 2000 || bounded.len() == 83,
        "stops once the bound is reached"
    );
    assert!(bytes - bounded.last().expect("some").batch.len() < 2000);
    assert!(bounded
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == 37 + i as u64));
    log.purge_entries(99, LeaderEpoch(2)).expect("purge");
    let rest = log.read_entries(0, 1000, usize::MAX).expect("read");
    assert_eq!(rest.first().map(|e| e.index), Some(100));
    assert_eq!(rest.len(), 100);
}

#[test]
fn fits_active_segment_says_when_an_append_would_roll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    assert!(
        log.fits_active_segment(1024, 1000),
        "an empty segment never rolls"
    );
    assert!(
        !log.fits_active_segment(1025, 1000),
        "larger than a segment"
    );
    let mut b = batch(1, 20, 1000);
    let size = b.len() as u64;
    log.append(&mut b, LeaderEpoch(1), 1000).expect("append");
    assert!(log.fits_active_segment(1024 - size, 1000));
    assert!(!log.fits_active_segment(1024 - size + 1, 1000));
    let segments = log.segment_count();
    let mut b = batch(2, 1, 1000);
    let small = b.len() as u64;
    assert!(log.fits_active_segment(small, 1000));
    log.append(&mut b, LeaderEpoch(1), 1000).expect("append");
    assert_eq!(
        log.segment_count(),
        segments,
        "an append that fits does not roll"
    );
}
