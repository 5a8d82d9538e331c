//! Compaction with real files: latest record per key, offsets unchanged, tombstones
//! expire after delete.retention.ms, every client codec, interrupted runs.

use std::collections::HashMap;

use sluice_protocol::batch::{build_batch, BatchView, Batches, Compression};
use sluice_protocol::records::{parse_records, rebuild_batch, records_data};
use sluice_storage::{CompactionConfig, LeaderEpoch, Log, LogConfig, Offset, PartitionLog};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A batch of (key, value) records compressed with `codec`.
fn batch(records: &[(&str, Option<&str>)], ts: i64, codec: Compression) -> Vec<u8> {
    let kv: Vec<_> = records
        .iter()
        .map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes)))
        .collect();
    let mut plain = build_batch(ts, &kv);
    if codec == Compression::None {
        return plain;
    }
    let data = records_data(&BatchView::parse(&plain).expect("batch"), 1 << 20).expect("data");
    let bits = match codec {
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        _ => 4,
    };
    plain[22] |= bits;
    let view = BatchView::parse(&plain).expect("batch");
    let records = parse_records(&data, view.record_count()).expect("records");
    rebuild_batch(&view, &records)
}

/// Every record in the log: offset -> (key, value).
fn contents(log: &mut PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let end = log.log_end_offset();
    let mut next = log.log_start_offset();
    while next < end {
        let r = log.read(next, 1 << 20, end, true).expect("read");
        if r.records.is_empty() {
            break; // the log ends in a gap compaction left
        }
        for b in Batches::new(&r.records) {
            let b = b.expect("batch");
            b.verify_crc().expect("crc");
            let data = records_data(&b, 1 << 20).expect("data");
            for rec in parse_records(&data, b.record_count()).expect("records") {
                let offset = b.base_offset().0 + i64::from(rec.offset_delta);
                let key = String::from_utf8(rec.key.expect("keyed").to_vec()).expect("utf8");
                let value = rec
                    .value
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
                out.push((offset, key, value));
            }
        }
        next = r.next_offset;
    }
    out
}

fn compact(log: &mut PartitionLog, now_ms: i64, delete_retention_ms: i64) -> u64 {
    let upper = log.log_end_offset();
    let Some(plan) = log.compaction_plan(upper) else {
        return 0;
    };
    let config = CompactionConfig {
        delete_retention_ms,
        ..CompactionConfig::default()
    };
    let done = plan.run(now_ms, &config).expect("run");
    log.install_compaction(done)
        .expect("install")
        .records_removed
}

#[test]
fn keeps_the_latest_record_per_key_at_its_original_offset_for_every_codec() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open(dir.path(), config()).expect("open");
        for round in 0..30 {
            let v1 = format!("v{round}-a");
            let v2 = format!("v{round}-b");
            let records = [
                ("order-1", Some(v1.as_str())),
                ("order-2", Some(v2.as_str())),
            ];
            let mut b = batch(&records, 1000 + round, codec);
            log.append(&mut b, LeaderEpoch(1), 1000).expect("append");
        }
        let mut b = batch(&[("order-3", Some("only"))], 2000, codec);
        log.append(&mut b, LeaderEpoch(1), 2000).expect("append");
        log.roll_segment().expect("roll");
        let before = contents(&mut log);
        let latest: HashMap<&str, i64> = before.iter().map(|(o, k, _)| (k.as_str(), *o)).collect();
        let removed = compact(&mut log, 3000, 1000);
        assert!(removed > 0, "{codec:?}: nothing removed");
        let after = contents(&mut log);
        assert_eq!(after.len(), 3, "{codec:?}: one record per key: {after:?}");
        for (offset, key, value) in &after {
            assert_eq!(latest[key.as_str()], *offset, "{codec:?}: {key} moved");
            let original = before
                .iter()
                .find(|(o, _, _)| o == offset)
                .expect("was there");
            assert_eq!(&original.2, value, "{codec:?}: value of {key} changed");
        }
        // The stored batches keep the codec they were written with.
        let r = log
            .read(Offset(0), 1 << 20, log.log_end_offset(), true)
            .expect("read");
        let mut emptied = 0;
        for b in Batches::new(&r.records) {
            let b = b.expect("batch");
            if b.record_count() == 0 {
                emptied += 1; // kept in place of an emptied batch: batches are Raft entries
                continue;
            }
            assert_eq!(b.compression(), Ok(codec));
        }
        assert!(
            emptied > 0,
            "{codec:?}: emptied batches are kept, not dropped"
        );
        // And survive a restart, with rebuilt indexes.
        drop(log);
        let mut log = PartitionLog::open(dir.path(), config()).expect("reopen");
        assert_eq!(contents(&mut log), after, "{codec:?}");
    }
}

#[test]
fn tombstones_outlive_delete_retention_then_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config()).expect("open");
    let mut b = batch(
        &[("customer-7", Some("alice")), ("customer-8", Some("bob"))],
        1_000,
        Compression::None,
    );
    log.append(&mut b, LeaderEpoch(1), 1_000).expect("append");
    let mut b = batch(&[("customer-7", None)], 5_000, Compression::None);
    log.append(&mut b, LeaderEpoch(1), 5_000).expect("append");
    log.roll_segment().expect("roll");

    compact(&mut log, 6_000, 10_000);
    let c = contents(&mut log);
    assert_eq!(
        c.iter()
            .map(|(_, k, v)| (k.as_str(), v.as_deref()))
            .collect::<Vec<_>>(),
        vec![("customer-8", Some("bob")), ("customer-7", None)],
        "the tombstone hides the old value and stays while young"
    );
    compact(&mut log, 20_000, 10_000);
    let c = contents(&mut log);
    assert_eq!(c.len(), 1, "the expired tombstone is gone: {c:?}");
    assert_eq!(c[0].1, "customer-8");
}

#[test]
fn the_active_segment_and_uncommitted_segments_are_never_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config()).expect("open");
    for i in 0..5 {
        let v = format!("{i}");
        let mut b = batch(&[("k", Some(v.as_str()))], 1, Compression::None);
        log.append(&mut b, LeaderEpoch(1), 1).expect("append");
    }
    assert!(
        log.compaction_plan(log.log_end_offset()).is_none(),
        "only an active segment"
    );
    log.roll_segment().expect("roll");
    assert!(
        log.compaction_plan(Offset(3)).is_none(),
        "the sealed segment is not committed"
    );
    assert_eq!(compact(&mut log, 10, 0), 4);
}

#[test]
fn an_interrupted_compaction_leaves_the_original() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = {
        let mut log = PartitionLog::open(dir.path(), config()).expect("open");
        for i in 0..40 {
            let v = format!("{i}");
            let mut b = batch(&[("k", Some(v.as_str()))], 1, Compression::None);
            log.append(&mut b, LeaderEpoch(1), 1).expect("append");
        }
        log.roll_segment().expect("roll");
        // Run without installing: the crash comes before the swap.
        let plan = log.compaction_plan(log.log_end_offset()).expect("plan");
        drop(plan.run(10, &CompactionConfig::default()).expect("run"));
        log.sync_all().expect("sync");
        contents(&mut log)
    };
    assert!(std::fs::read_dir(dir.path()).expect("list").any(|e| e
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .ends_with(".cleaned")));
    let mut log = PartitionLog::open(dir.path(), config()).expect("reopen");
    assert_eq!(contents(&mut log), expected);
    assert!(!std::fs::read_dir(dir.path()).expect("list").any(|e| e
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .ends_with(".cleaned")));
}
