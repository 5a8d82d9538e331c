//! The client listener and clean shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::budget::RateLimit;
use crate::connection;
use crate::Broker;

/// Accepts connections until `shutdown` completes, then stops reading requests,
/// waits (bounded) for in-flight responses, and flushes and closes the logs.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let retention = tokio::spawn(retention_loop(Arc::clone(&broker)));
    let cleaner = tokio::spawn(cleaner_loop(Arc::clone(&broker)));
    let group_timers = tokio::spawn(group_timer_loop(Arc::clone(&broker)));
    let offsets_expiry = tokio::spawn(offsets_expiry_loop(Arc::clone(&broker)));
    let mut connections = JoinSet::new();
    let refused = RateLimit::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admission = match broker.budgets.admit(peer.ip()) {
                        Ok(a) => a,
                        Err(refusal) => {
                            if let Some(held_back) = refused.allow() {
                                warn!(peer = %peer, ?refusal, refused_since_last_warning = held_back,
                                    "connection refused: limit reached");
                            }
                            drop(stream);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection::serve(
                        stream,
                        peer.to_string(),
                        Arc::clone(&broker),
                        stop_rx.clone(),
                        admission,
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    // In a cluster, leadership moves to the peers first: clients retry there.
    crate::controller::leadership::hand_over(&broker).await;
    retention.abort();
    cleaner.abort();
    group_timers.abort();
    offsets_expiry.abort();
    // Requests waiting on a rebalance are answered NOT_COORDINATOR now, so they do
    // not hold the shutdown for a rebalance timeout.
    broker.groups.shutdown();
    info!(
        connections = connections.len(),
        "shutting down: answering in-flight requests"
    );
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(broker.config.shutdown_timeout_s);
    if tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("in-flight requests did not finish in time");
        connections.abort_all();
    }
    let closing = Arc::clone(&broker);
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .map_err(std::io::Error::other)?;
    info!("logs flushed and closed");
    Ok(())
}

/// Runs retention every `retention_check_interval_ms`, off the async threads.
async fn retention_loop(broker: Arc<Broker>) {
    let period = Duration::from_millis(broker.config.log.retention_check_interval_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let b = Arc::clone(&broker);
        if let Err(e) =
            tokio::task::spawn_blocking(move || b.cluster.apply_retention(b.now_ms())).await
        {
            warn!(error = %e, "retention task failed");
        }
        broker
            .cluster
            .apply_replicated_retention(broker.now_ms())
            .await;
    }
}

/// Compacts topics with `cleanup.policy=compact` every `cleaner_backoff_ms`, one
/// pass at a time, off the async threads.
async fn cleaner_loop(broker: Arc<Broker>) {
    let period = Duration::from_millis(broker.config.log.cleaner_backoff_ms);
    loop {
        tokio::time::sleep(period).await;
        let b = Arc::clone(&broker);
        if let Err(e) = tokio::task::spawn_blocking(move || b.cluster.compact(b.now_ms())).await {
            warn!(error = %e, "compaction task failed");
        }
    }
}

/// How often group deadlines (sessions, rebalance and initial delays) are checked.
const GROUP_TICK: Duration = Duration::from_millis(100);

/// Runs the group coordinator's timers.
async fn group_timer_loop(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(GROUP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        broker.groups.tick(broker.now_ms());
    }
}

/// Expires committed offsets every `offsets_retention_check_interval_ms`.
async fn offsets_expiry_loop(broker: Arc<Broker>) {
    let period = Duration::from_millis(
        broker
            .config
            .group_coordinator
            .offsets_retention_check_interval_ms,
    );
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        broker.groups.expire_offsets(broker.now_ms()).await;
    }
}
