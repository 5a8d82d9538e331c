//! `sluice-bench`: storage benchmarks measured against the disk they run on.
//!
//! ```text
//! sluice-bench storage [--dir DIR] [--total-mib 1024] [--batch-bytes 16384] [--cycle-batches 64]
//! ```
//! reports, in one run: raw sequential write bandwidth (buffered, then with one final
//! fdatasync), partition-log append throughput of v2 batches buffered and with an
//! fdatasync per group-commit cycle, read throughput from the page cache, and the
//! recovery time of the resulting active segment (a full CRC32C scan).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_protocol::batch::{build_batch, Batches};
use sluice_storage::{LeaderEpoch, Log, LogConfig, Offset, PartitionLog};

#[derive(Debug, Parser)]
#[command(name = "sluice-bench", about = "Sluice benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Partition-log append, read and recovery against raw disk bandwidth.
    Storage(StorageArgs),
}

#[derive(Debug, clap::Args)]
struct StorageArgs {
    /// Directory on the disk to measure (a fresh subdirectory is used and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Bytes written per run.
    #[arg(long, default_value_t = 1024)]
    total_mib: u64,
    /// Size of one record batch.
    #[arg(long, default_value_t = 16384)]
    batch_bytes: usize,
    /// Batches per group-commit cycle in the flushed run.
    #[arg(long, default_value_t = 64)]
    cycle_batches: u64,
}

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / (1 << 20) as f64
}

/// A batch of `batch_bytes` (approximately) made of 1 KiB records.
fn sample_batch(batch_bytes: usize) -> Vec<u8> {
    let value = vec![0x5au8; 1000];
    let records = (batch_bytes / 1024).max(1);
    let kv: Vec<_> = (0..records).map(|_| (None, Some(&value[..]))).collect();
    build_batch(1_700_000_000_000, &kv)
}

fn raw_write(dir: &Path, total: u64, chunk: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5au8; chunk];
    let start = Instant::now();
    let mut written = 0u64;
    while written < total {
        f.write_all(&buf)?;
        written += chunk as u64;
    }
    let buffered = start.elapsed().as_secs_f64();
    f.sync_data()?;
    let synced = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((mib_per_s(written, buffered), mib_per_s(written, synced)))
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        ..LogConfig::default()
    }
}

/// Appends until `total` bytes; with `cycle` set, syncs every `cycle` batches.
fn append_run(
    dir: &Path,
    total: u64,
    template: &[u8],
    cycle: Option<u64>,
) -> anyhow::Result<(f64, f64)> {
    let mut log = PartitionLog::open(dir, log_config())?;
    let mut batch = template.to_vec();
    let start = Instant::now();
    let (mut written, mut n) = (0u64, 0u64);
    while written + batch.len() as u64 <= total {
        log.append(&mut batch, LeaderEpoch(1), 0)?;
        written += batch.len() as u64;
        n += 1;
        if cycle.is_some_and(|c| n % c == 0) {
            log.sync_all()?;
        }
    }
    let buffered = start.elapsed().as_secs_f64();
    log.sync_all()?;
    let synced = start.elapsed().as_secs_f64();
    Ok((mib_per_s(written, buffered), mib_per_s(written, synced)))
}

fn storage(args: StorageArgs) -> anyhow::Result<()> {
    let root = tempfile::Builder::new()
        .prefix("sluice-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory in {}", args.dir.display()))?;
    let total = args.total_mib << 20;
    let template = sample_batch(args.batch_bytes);
    println!(
        "storage bench: {} MiB of {}-byte batches in {}",
        args.total_mib,
        template.len(),
        root.path().display()
    );

    // The raw baseline runs before and after the log runs; the better of the two
    // counts, so page-cache warm-up cannot flatter the log.
    let first = raw_write(root.path(), total, template.len())?;
    let buffered_dir = root.path().join("buffered");
    let (app, app_synced) = append_run(&buffered_dir, total, &template, None)?;
    let flushed_dir = root.path().join("flushed");
    let (_, cyc) = append_run(&flushed_dir, total, &template, Some(args.cycle_batches))?;
    std::fs::remove_dir_all(&flushed_dir)?;
    let second = raw_write(root.path(), total, template.len())?;
    let (raw, raw_synced) = (first.0.max(second.0), first.1.max(second.1));
    println!(
        "raw sequential write:        {raw:8.0} MiB/s buffered, {raw_synced:8.0} MiB/s incl. final fdatasync (best of 2)"
    );
    println!(
        "log append (no flush):       {app:8.0} MiB/s buffered, {app_synced:8.0} MiB/s incl. final fdatasync ({:.0}% of raw buffered)",
        100.0 * app / raw
    );
    println!(
        "log append (flush/{} batches): {cyc:8.0} MiB/s ({:.0}% of raw incl. fdatasync)",
        args.cycle_batches,
        100.0 * cyc / raw_synced
    );

    let start = Instant::now();
    let mut log = PartitionLog::open(&buffered_dir, log_config())?;
    let recovery = start.elapsed().as_secs_f64();
    println!(
        "recovery of a {} MiB active segment (CRC32C scan): {recovery:.2} s",
        log.size_bytes() >> 20
    );

    // Two passes: the first warms the page cache, the second is measured.
    for pass in 0..2 {
        let start = Instant::now();
        let (mut next, mut bytes, mut batches) = (Offset(0), 0u64, 0u64);
        let end = log.log_end_offset();
        while next < end {
            let r = log.read(next, 1 << 20, end, true)?;
            bytes += r.records.len() as u64;
            batches += Batches::new(&r.records).count() as u64;
            next = r.next_offset;
        }
        if pass == 1 {
            let secs = start.elapsed().as_secs_f64();
            println!(
                "read from page cache:        {:8.0} MiB/s ({:.2} GB/s, {batches} batches)",
                mib_per_s(bytes, secs),
                bytes as f64 / secs / 1e9
            );
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Storage(args) => storage(args),
    }
}
