//! `sluice dev --nodes N`: a local cluster of N brokers in one terminal, for
//! development. Each broker is a `sluice serve` child process on 127.0.0.1 with
//! its own data directory; Ctrl-C (or SIGTERM) stops them all cleanly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Client port of broker `i` (from 1) is `base + i - 1`; its inter-broker port is
/// `base + 100 + i - 1`.
const RAFT_PORT_OFFSET: u16 = 100;

pub async fn run(nodes: u16, base_port: u16, data_dir: &Path) -> anyhow::Result<()> {
    if !(1..=9).contains(&nodes) {
        bail!("--nodes must be between 1 and 9, got {nodes}");
    }
    let exe = std::env::current_exe().context("locating the sluice binary")?;
    let port = |i: u16, offset: u16| {
        base_port
            .checked_add(offset + i - 1)
            .context("--base-port is too high for this many nodes")
    };
    let mut peers = Vec::new();
    for i in 1..=nodes {
        peers.push(format!("{i}@127.0.0.1:{}", port(i, RAFT_PORT_OFFSET)?));
    }
    let peers = peers.join(",");
    let mut children: Vec<(u16, Child)> = Vec::new();
    let mut bootstrap = Vec::new();
    for i in 1..=nodes {
        let dir: PathBuf = data_dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let listen = format!("127.0.0.1:{}", port(i, 0)?);
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .args(["--node-id", &i.to_string(), "--listen", &listen])
            .arg("--data-dir")
            .arg(&dir)
            .stdin(Stdio::null());
        if nodes > 1 {
            cmd.args([
                "--raft-listen",
                &format!("127.0.0.1:{}", port(i, RAFT_PORT_OFFSET)?),
                "--peers",
                &peers,
            ]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting broker {i}"))?;
        children.push((i, child));
        bootstrap.push(listen);
    }
    println!(
        "sluice dev: {nodes} broker(s), data under {}",
        data_dir.display()
    );
    println!("bootstrap servers: {}", bootstrap.join(","));
    println!("press Ctrl-C to stop them all");
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    let first_exit = async {
        loop {
            for (i, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return (*i, status);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let exited = tokio::select! {
        () = stop => None,
        exited = first_exit => Some(exited),
    };
    if let Some((i, status)) = exited {
        eprintln!("sluice dev: broker {i} exited ({status}); stopping the others");
    }
    // The terminal sent Ctrl-C to every broker too; SIGTERM covers the rest.
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for (i, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("sluice dev: broker {i} exited with {status}"),
            _ => {
                eprintln!("sluice dev: broker {i} did not stop; killing it");
                let _ = child.kill().await;
            }
        }
    }
    Ok(())
}
