//! What every handler can reach: configuration, topics, the commit signal, the clock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_replication::{CommitSignal, Commits, Flusher, HighWatermarkSource, ReplicaContext};

use crate::budget::Budgets;
use crate::cluster::{Cluster, TopicError};
use crate::config::BrokerConfig;
use crate::group::Coordinator;

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster: Arc<Cluster>,
    pub flusher: Arc<Flusher>,
    pub commits: Arc<Commits>,
    pub groups: Arc<Coordinator>,
    /// Bounds on request and response bytes, disk work and connections.
    pub budgets: Budgets,
}

impl Broker {
    /// Opens the data directory and recovers every partition.
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>, TopicError> {
        let flusher = Flusher::start();
        let commits = Commits::new();
        // One node: what a replica flushed is what a majority holds.
        let budgets = Budgets::new(&config);
        let context = ReplicaContext {
            flusher: Arc::clone(&flusher),
            commits: Arc::clone(&commits),
            io: budgets.io_permits(),
            high_watermark: HighWatermarkSource::LocalFlush,
        };
        let cluster = Cluster::open(config.clone(), context)?;
        let groups = Coordinator::open(Arc::clone(&cluster), wall_clock_ms())?;
        Ok(Arc::new(Broker {
            budgets,
            config,
            cluster,
            flusher,
            commits,
            groups,
        }))
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        wall_clock_ms()
    }

    pub fn commit_signal(&self) -> CommitSignal {
        self.commits.subscribe()
    }

    /// Makes everything durable and stops the flusher.
    pub fn close(&self) {
        self.cluster.sync_all();
        self.flusher.shutdown();
    }
}
