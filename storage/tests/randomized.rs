//! Random sequences of log operations against the in-memory model, including
//! simulated crashes that tear the unsynced tail of the active segment.
//!
//! A failure names its seed; replay one with
//! `SLUICE_SEED=<seed> cargo test -p sluice-storage --test randomized -- --nocapture`,
//! run more with `SLUICE_SEEDS=<count>`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use sluice_protocol::batch::{build_batch, Batches};
use sluice_storage::{
    CompactionConfig, LeaderEpoch, Log, LogConfig, MemoryLog, Offset, PartitionLog,
};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

fn config(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_bytes: rng.range(1000, 6000) as u64,
        index_interval_bytes: rng.range(1, 1500) as u64,
        index_max_bytes: rng.range(24, 400) as u64,
        open_sealed_segments_max: rng.range(1, 4) as usize,
        ..LogConfig::default()
    }
}

fn last_segment(dir: &Path) -> (Offset, std::path::PathBuf) {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().into_string().expect("utf8");
            let base: i64 = name.strip_suffix(".log")?.parse().ok()?;
            Some((Offset(base), dir.join(name)))
        })
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

fn check_same(file: &mut PartitionLog, model: &mut MemoryLog, ctx: &str) {
    assert_eq!(
        file.log_start_offset(),
        model.log_start_offset(),
        "log start ({ctx})"
    );
    assert_eq!(
        file.log_end_offset(),
        model.log_end_offset(),
        "log end ({ctx})"
    );
    // Raft entry numbering: the file may still hold batches below the log start
    // (whole segments go), never fewer than the model.
    assert_eq!(
        file.next_entry_index(),
        model.next_entry_index(),
        "next entry ({ctx})"
    );
    assert!(
        file.first_entry_index() <= model.first_entry_index(),
        "first entry ({ctx})"
    );
}

fn check_entry(file: &mut PartitionLog, model: &MemoryLog, index: u64) {
    let want = model.entry(index);
    let got = file
        .locate_entry(index)
        .expect("locate entry")
        .map(|e| (e.base_offset, e.last_offset, e.term));
    assert_eq!(got, want, "entry {index}");
}

fn check_read(
    file: &mut PartitionLog,
    model: &mut MemoryLog,
    offset: Offset,
    max: usize,
    upper: Offset,
    min_one: bool,
) {
    let want = model.read(offset, max, upper, min_one);
    let got = file.read(offset, max, upper, min_one);
    match (want, got) {
        (Ok(want), Ok(got)) => {
            assert_eq!(
                want.records.is_empty(),
                got.records.is_empty(),
                "read {offset} (max {max}, upper {upper}, min_one {min_one}) emptiness; model batches {:?}, segments {:?}",
                model.batches().map(|(b, l, _)| (b.0, l.0)).collect::<Vec<_>>(),
                file.segment_summaries()
            );
            assert!(
                want.records.starts_with(&got.records),
                "read {offset}: bytes differ from the model"
            );
            let batches: Vec<_> = Batches::new(&got.records).collect();
            assert!(
                batches.iter().all(Result::is_ok),
                "read {offset}: partial batch"
            );
            if !got.records.is_empty() {
                let last = batches
                    .last()
                    .and_then(|b| b.as_ref().ok())
                    .map(|b| b.last_offset());
                assert_eq!(last.map(Offset::next), Some(got.next_offset));
            }
        }
        (Err(_), Err(_)) => {}
        (want, got) => panic!("read {offset}: model {want:?}, file {got:?}"),
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&mut rng);
    let mut file = PartitionLog::open(dir.path(), config).expect("open");
    let mut model = MemoryLog::new();
    let mut synced_end = Offset(0);
    let mut compacted_below = Offset(0);
    let mut now_ms = 1_000_000i64;
    for step in 0..steps {
        now_ms += rng.range(0, 50);
        let op = rng.below(100);
        let ctx = format!("step {step}, op {op}");
        if std::env::var("SLUICE_TRACE_OPS").is_ok() {
            eprintln!(
                "{ctx}: entries file {}..{} model {}..{} segments {:?} start {} end {} synced {synced_end} active base {}",
                file.first_entry_index(),
                file.next_entry_index(),
                model.first_entry_index(),
                model.next_entry_index(),
                file.segment_summaries(),
                file.log_start_offset(),
                file.log_end_offset(),
                file.active_segment_base()
            );
        }
        match op {
            0..=39 => {
                let records = rng.range(1, 6) as usize;
                let ts = now_ms - rng.range(0, 500);
                let value = vec![rng.below(256) as u8; rng.range(0, 120) as usize];
                // A few keys, some keyless records and some tombstones, so that
                // compaction has work to do.
                let keys: Vec<Option<Vec<u8>>> = (0..records)
                    .map(|_| match rng.below(8) {
                        0 => None,
                        k => Some(format!("key-{k}").into_bytes()),
                    })
                    .collect();
                let tombstones: Vec<bool> = (0..records).map(|_| rng.below(6) == 0).collect();
                let kv: Vec<_> = keys
                    .iter()
                    .zip(&tombstones)
                    .map(|(k, t)| (k.as_deref(), (!t).then_some(&value[..])))
                    .collect();
                let bytes = build_batch(ts, &kv);
                let epoch = LeaderEpoch(rng.range(0, 3) as i32);
                let a = model
                    .append(&mut bytes.clone(), epoch, now_ms)
                    .expect("model append");
                let b = file
                    .append(&mut bytes.clone(), epoch, now_ms)
                    .expect("file append");
                assert_eq!(a, b, "{ctx}: offsets");
            }
            40..=44 => {
                let (first, next) = (model.first_entry_index(), model.next_entry_index());
                let index = first + rng.below(next - first + 1);
                check_entry(&mut file, &model, index);
            }
            45..=59 => {
                let (start, end) = (model.log_start_offset().0, model.log_end_offset().0);
                let offset = Offset(rng.range(start - 1, end + 1));
                let upper = if rng.below(2) == 0 {
                    Offset(end)
                } else {
                    Offset(rng.range(start, end))
                };
                check_read(
                    &mut file,
                    &mut model,
                    offset,
                    rng.range(1, 3000) as usize,
                    upper,
                    rng.below(3) > 0,
                );
            }
            60..=61 => file.roll_segment().expect("roll"),
            62..=63 => {
                // Compaction stays below the commit point (here: what is synced), and
                // Raft never truncates below it afterwards.
                let delete_retention_ms = rng.range(0, 2000);
                if let Some(plan) = file.compaction_plan(synced_end) {
                    let covers_below = plan.covers_below();
                    let config = CompactionConfig {
                        delete_retention_ms,
                        ..CompactionConfig::default()
                    };
                    let done = plan.run(now_ms, &config).expect("compaction run");
                    file.install_compaction(done).expect("compaction install");
                    model.compact(covers_below, now_ms, delete_retention_ms);
                    compacted_below = compacted_below.max(covers_below);
                }
            }
            64..=68 => {
                let points: Vec<Offset> = model
                    .truncation_points()
                    .into_iter()
                    .filter(|p| *p >= compacted_below)
                    .collect();
                let next = points[rng.below(points.len() as u64) as usize];
                model.truncate_to(next).expect("model truncate");
                file.truncate_to(next).expect("file truncate");
                synced_end = synced_end.min(next);
            }
            69..=71 => {
                let (start, end) = (model.log_start_offset().0, model.log_end_offset().0);
                let to = Offset(rng.range(start, end));
                model.advance_log_start(to).expect("model advance");
                let before = file.log_start_offset();
                file.advance_log_start(to).expect("file advance");
                if file.log_start_offset() > before {
                    synced_end = file.log_end_offset(); // advancing syncs first
                }
            }
            72..=74 => {
                let before = file.log_start_offset();
                let retention_ms = if rng.below(2) == 0 {
                    -1
                } else {
                    rng.range(0, 3000)
                };
                let retention_bytes = if rng.below(2) == 0 {
                    -1
                } else {
                    rng.range(0, 8000)
                };
                file.apply_retention(now_ms, retention_ms, retention_bytes)
                    .expect("retention");
                let after = file.log_start_offset();
                assert!(
                    after >= before && after <= model.log_end_offset(),
                    "{ctx}: retention start"
                );
                // Retention removes whole segments: it never cuts through a batch.
                assert!(
                    after == before
                        || !model
                            .batches()
                            .any(|(b, last, _)| b < after && after <= last),
                    "{ctx}: retention moved the start from {before} to {after}, inside a batch"
                );
                model.advance_log_start(after).expect("model advance");
                if after > before {
                    synced_end = file.log_end_offset();
                }
            }
            75..=79 => {
                let ts = now_ms - rng.range(-100, 3000);
                let a = model.offset_for_timestamp(ts).expect("model ts");
                let b = file.offset_for_timestamp(ts).expect("file ts");
                assert_eq!(a, b, "{ctx}: offset for timestamp {ts}");
            }
            80..=87 => {
                file.sync_all().expect("sync");
                synced_end = file.log_end_offset();
            }
            88..=92 => {
                drop(file);
                file = PartitionLog::open(dir.path(), config).expect("clean reopen");
                synced_end = file.log_end_offset();
            }
            _ => {
                // Crash: the active segment keeps everything synced and a random part
                // of the rest, possibly followed by garbage from a torn write.
                drop(file);
                let (_, path) = last_segment(dir.path());
                let content = std::fs::read(&path).expect("read segment");
                let synced_bytes: usize = Batches::new(&content)
                    .map_while(Result::ok)
                    .filter(|b| b.last_offset() < synced_end)
                    .map(|b| b.size())
                    .sum();
                let len = std::fs::metadata(&path).expect("stat").len();
                let keep = rng.range(synced_bytes as i64, len as i64) as u64;
                let f = OpenOptions::new().write(true).open(&path).expect("open");
                f.set_len(keep).expect("tear");
                if rng.below(2) == 0 {
                    let garbage: Vec<u8> = (0..rng.range(1, 100))
                        .map(|_| rng.below(256) as u8)
                        .collect();
                    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
                    f.write_all(&garbage).expect("garbage");
                }
                if std::env::var("SLUICE_TRACE").is_ok() {
                    eprintln!("{ctx}: crash: {} len {len} synced_bytes {synced_bytes} keep {keep} synced_end {synced_end}", path.display());
                }
                file = PartitionLog::open(dir.path(), config).expect("recovery after a crash");
                let end = file.log_end_offset();
                assert!(
                    end >= synced_end,
                    "{ctx}: lost synced data: end {end} < synced {synced_end}"
                );
                assert!(
                    end <= model.log_end_offset(),
                    "{ctx}: recovered more than was written"
                );
                model
                    .truncate_to(end)
                    .expect("model follows the recovered end");
                synced_end = end;
            }
        }
        check_same(&mut file, &mut model, &ctx);
    }
    // Everything readable, identical to the model.
    let (start, end) = (model.log_start_offset(), model.log_end_offset());
    let mut next = start;
    while next < end {
        check_read(&mut file, &mut model, next, 4096, end, true);
        let r = file.read(next, 4096, end, true).expect("read");
        if r.records.is_empty() {
            break; // the log ends in a gap compaction left
        }
        next = r.next_offset;
    }
}

#[test]
fn random_operations_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_SEED") {
        Ok(s) => vec![s.parse().expect("SLUICE_SEED is a number")],
        Err(_) => {
            let count = std::env::var("SLUICE_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(48);
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs());
            (0..count)
                .map(|i| base.wrapping_mul(31).wrapping_add(i))
                .collect()
        }
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| run(seed, 400));
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "seed {seed} failed: {msg}\nreplay: SLUICE_SEED={seed} cargo test -p sluice-storage --test randomized -- --nocapture"
            );
        }
    }
}
