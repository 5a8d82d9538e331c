//! What every handler can reach: configuration, topics, the commit signal, the clock,
//! and in a cluster the controller and the Raft groups running here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_replication::quiet;
use sluice_replication::transport::Transport;
use sluice_replication::{
    CommitSignal, Commits, Flusher, HighWatermarkSource, Replica, ReplicaContext,
};
use sluice_storage::LogConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::budget::Budgets;
use crate::cluster::{Cluster, TopicError};
use crate::config::BrokerConfig;
use crate::controller::groups::RaftGroups;
use crate::controller::image::PRODUCER_ID_BLOCK;
use crate::controller::{
    reconciler, Applied, Command, Controller, ControllerError, CONTROLLER_GROUP, METADATA_PARTITION,
};
use crate::group::{Coordinator, TopicCreator, OFFSETS_TOPIC};

pub(crate) fn wall_clock_ms() -> i64 {
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
    /// In a cluster: the controller, once started.
    controller: OnceLock<Arc<Controller>>,
    /// In a cluster: the Raft groups running on this broker.
    pub raft_groups: Arc<RaftGroups>,
    /// In a cluster: (next, end) of the producer id block the controller gave us.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    context: ReplicaContext,
}

impl Broker {
    /// Opens the data directory and recovers every partition. In a cluster the
    /// partitions come from the controller once [`Broker::start_cluster`] runs.
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>, TopicError> {
        let flusher = Flusher::start();
        let commits = Commits::new();
        let budgets = Budgets::new(&config);
        let context = ReplicaContext {
            flusher: Arc::clone(&flusher),
            commits: Arc::clone(&commits),
            io: budgets.io_permits(),
            // One node: what a replica flushed is what a majority holds. A
            // cluster: the partition's Raft group commits.
            high_watermark: if config.is_clustered() {
                HighWatermarkSource::Owner
            } else {
                HighWatermarkSource::LocalFlush
            },
        };
        let cluster = Cluster::open(config.clone(), context.clone())?;
        let groups = Coordinator::open(Arc::clone(&cluster), wall_clock_ms())?;
        Ok(Arc::new(Broker {
            budgets,
            config,
            cluster,
            flusher,
            commits,
            groups,
            controller: OnceLock::new(),
            raft_groups: RaftGroups::new(),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            context,
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

    /// The controller, in a cluster that has started it.
    pub fn controller(&self) -> Option<&Arc<Controller>> {
        self.controller.get()
    }

    /// Joins the cluster: starts the inter-broker transport on `raft_listener`, the
    /// controller group (the metadata log replays into the image), the reconciler
    /// that opens this broker's partitions, and this broker's registration.
    pub async fn start_cluster(self: &Arc<Self>, raft_listener: TcpListener) -> Result<(), String> {
        let peers: BTreeMap<u64, String> = self
            .config
            .cluster
            .peer_list()?
            .into_iter()
            .map(|(id, addr)| (id as u64, addr))
            .collect();
        let transport = Transport::new(self.node_id() as u64, &self.config.cluster_id, peers);
        transport.set_handler(self.raft_groups.handler());
        let dir = self.config.data_dir.join(METADATA_PARTITION);
        let context = self.context.clone();
        let replica = tokio::task::spawn_blocking(move || {
            Replica::open(
                METADATA_PARTITION.into(),
                dir,
                LogConfig::default(),
                context,
            )
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Some(reason) = replica.offline_reason() {
            return Err(format!(
                "the cluster metadata log cannot be opened: {reason}"
            ));
        }
        let controller = Controller::start(&self.config, Arc::clone(&transport), replica).await?;
        self.raft_groups
            .insert(CONTROLLER_GROUP, controller.replica());
        self.raft_groups.set_controller(&controller);
        let _ = self.controller.set(Arc::clone(&controller));
        transport.start(raft_listener);
        let heartbeat = Duration::from_millis(self.config.cluster.raft_heartbeat_interval_ms);
        transport.keep_alive(heartbeat);
        let groups = Arc::clone(&self.raft_groups);
        tokio::spawn(quiet::run(
            move || groups.quiet_groups(),
            heartbeat,
            quiet::QuietTimes::default(),
        ));
        tokio::spawn(reset_backoff_on_reconnect(
            Arc::clone(self),
            transport.connections(),
        ));
        tokio::spawn(reconciler::run(Arc::clone(self), Arc::clone(&controller)));
        self.groups.set_topic_creator(offsets_topic_creator(self));
        tokio::spawn(crate::controller::coordination::run(Arc::clone(self)));
        tokio::spawn(crate::controller::leadership::publish_loop(Arc::clone(
            self,
        )));
        tokio::spawn(crate::controller::leadership::rebalance_loop(Arc::clone(
            self,
        )));
        tokio::spawn(register(Arc::clone(self), controller));
        Ok(())
    }

    /// The client address of broker `node`.
    pub fn address_of(&self, node: i32) -> Option<(i32, String, i32)> {
        match self.controller() {
            None if node == self.node_id() => {
                let (host, port) = self.config.advertised();
                Some((node, host, port))
            }
            None => None,
            Some(c) => c.with_image(|image| {
                image
                    .brokers
                    .get(&node)
                    .map(|b| (node, b.host.clone(), b.port))
            }),
        }
    }

    /// A producer id unique in the cluster and across restarts.
    pub async fn next_producer_id(&self) -> Result<i64, TopicError> {
        let Some(controller) = self.controller() else {
            return self.cluster.next_producer_id();
        };
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let command = Command::AllocateProducerIds {
                broker: self.node_id(),
            };
            match controller.submit(&command).await {
                Ok(Applied::ProducerIds { start, .. }) => *ids = (start, start + PRODUCER_ID_BLOCK),
                Ok(other) => {
                    return Err(TopicError::Storage(format!(
                        "unexpected answer to a producer id request: {other:?}"
                    )))
                }
                Err(e) => return Err(TopicError::Storage(e.to_string())),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Makes everything durable and stops the flusher.
    pub fn close(&self) {
        self.cluster.sync_all();
        self.flusher.shutdown();
    }
}

/// A peer came (back): every group retries it now instead of waiting out the
/// backoff its replication entered while the peer was unreachable (quiet
/// leaders wake in their next watch).
async fn reset_backoff_on_reconnect(broker: Arc<Broker>, mut connections: watch::Receiver<u64>) {
    while connections.changed().await.is_ok() {
        for raft in broker.raft_groups.all() {
            let _ = raft.trigger().reset_backoff(std::iter::empty()).await;
        }
    }
}

/// Creates `__consumer_offsets` through the controller, one attempt at a time.
fn offsets_topic_creator(broker: &Arc<Broker>) -> TopicCreator {
    let weak = Arc::downgrade(broker);
    let busy = Arc::new(AtomicBool::new(false));
    TopicCreator(Box::new(move || {
        let Some(broker) = weak.upgrade() else {
            return;
        };
        if busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let busy = Arc::clone(&busy);
        tokio::spawn(async move {
            let configs = broker.groups.offsets_topic_configs();
            let partitions = broker.groups.offsets_topic_partitions();
            let rf = broker.groups.offsets_topic_replication_factor();
            let created = crate::handlers::create_topics::create(
                &broker,
                OFFSETS_TOPIC,
                partitions,
                rf,
                &configs,
            )
            .await;
            match created {
                Ok(_) | Err(TopicError::AlreadyExists(_)) => {}
                Err(e) => warn!(error = %e, "cannot create {OFFSETS_TOPIC}"),
            }
            busy.store(false, Ordering::Release);
        });
    }))
}

/// Registers this broker's client address with the controller, retrying until
/// a controller answers.
async fn register(broker: Arc<Broker>, controller: Arc<Controller>) {
    let (host, port) = broker.config.advertised();
    let command = Command::RegisterBroker {
        id: broker.node_id(),
        host,
        port,
    };
    loop {
        match controller.submit(&command).await {
            Ok(_) => {
                info!(
                    node_id = broker.node_id(),
                    "broker registered with the controller"
                );
                return;
            }
            Err(ControllerError::Refused(reason)) => {
                warn!(%reason, "broker registration refused");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
