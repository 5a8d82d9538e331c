//! Segment recovery from arbitrary bytes: whatever lies in a partition directory,
//! opening the log never panics. It either recovers (and then every read returns
//! whole batches at increasing offsets, or a corruption error) or fails with an
//! error that names the file. proptest prints the failing input and keeps its seed; set
//! PROPTEST_CASES for a longer run.

use proptest::prelude::*;
use sluice_protocol::batch::{build_batch, BatchHeader};
use sluice_storage::{LeaderEpoch, Log, LogConfig, Offset, PartitionLog, StorageError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    AppendGarbage(Vec<u8>),
    Overwrite { at: usize, bytes: Vec<u8> },
    IndexGarbage(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
        prop::collection::vec(any::<u8>(), 1..200).prop_map(Damage::AppendGarbage),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Damage::IndexGarbage),
    ]
}

/// Writes a log of `batches` batches (several segments), then damages its files.
fn damaged_log(dir: &std::path::Path, batches: usize, damages: &[Damage], target: usize) {
    {
        let mut log = PartitionLog::open(dir, config()).expect("open");
        for i in 0..batches {
            let value = vec![i as u8; 20 + (i * 37) % 150];
            let mut b = build_batch(i as i64, &[(Some(b"k"), Some(&value[..])), (None, None)]);
            log.append(&mut b, LeaderEpoch(1), i as i64)
                .expect("append");
        }
        log.sync_all().expect("sync");
    }
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let path = &segments[target % segments.len()];
    let mut bytes = std::fs::read(path).expect("read");
    for d in damages {
        match d {
            Damage::Flip { at, mask } if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= mask;
            }
            Damage::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
            Damage::AppendGarbage(g) => bytes.extend_from_slice(g),
            Damage::Overwrite { at, bytes: b } if !bytes.is_empty() => {
                let at = at % bytes.len();
                let end = (at + b.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&b[..end - at]);
            }
            Damage::IndexGarbage(g) => {
                std::fs::write(path.with_extension("index"), g).expect("index");
            }
            _ => {}
        }
    }
    std::fs::write(path, bytes).expect("write");
}

fn check_recovered(log: &mut PartitionLog) {
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    let mut last_seen: Option<Offset> = None;
    while next < end {
        let r = match log.read(next, 4096, end, true) {
            Ok(r) => r,
            // Damage in a sealed segment is found when it is read: an error, never
            // a panic or a wrong batch.
            Err(StorageError::Corrupt { .. }) => return,
            Err(e) => panic!("unexpected read error: {e}"),
        };
        if r.records.is_empty() {
            break;
        }
        // Reads serve stored bytes without checking CRCs (clients do, as with
        // Kafka): damage inside a sealed batch may be served, but batches are
        // always whole and their offsets always go forward.
        let mut rest = &r.records[..];
        while !rest.is_empty() {
            let h = BatchHeader::parse(rest).expect("a whole batch header");
            assert!(h.size <= rest.len(), "whole batches");
            if let Some(prev) = last_seen {
                assert!(h.base_offset > prev, "offsets go forward");
            }
            last_seen = Some(h.last_offset);
            rest = &rest[h.size..];
        }
        assert!(r.next_offset > next, "reads make progress");
        next = r.next_offset;
    }
    // The recovered log takes appends at its end.
    let mut b = build_batch(1, &[(None, Some(b"after"))]);
    let (base, _) = log
        .append(&mut b, LeaderEpoch(2), 1)
        .expect("append after recovery");
    assert_eq!(base, end);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn damaged_segments_never_panic_recovery(
        batches in 1usize..40,
        target in any::<usize>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        damaged_log(dir.path(), batches, &damages, target);
        match PartitionLog::open(dir.path(), config()) {
            Ok(mut log) => check_recovered(&mut log),
            Err(StorageError::Corrupt { path, .. }) => {
                prop_assert!(path.starts_with(dir.path()), "the error names a file of the log");
            }
            Err(e) => prop_assert!(false, "unexpected error: {}", e),
        }
    }

    #[test]
    fn arbitrary_bytes_as_a_segment_never_panic_recovery(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        base in 0i64..1_000_000,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(format!("{base:020}.log")), &bytes).expect("write");
        if let Ok(mut log) = PartitionLog::open(dir.path(), config()) {
            check_recovered(&mut log);
        }
    }
}
