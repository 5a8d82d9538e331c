//! One handler per Kafka API. Kafka error codes are chosen here and nowhere else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_protocol::codec::{ApiRange, Request};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::budget::{ConnectionBudget, HandlerFailed, Held};
use crate::group::GroupError;
use crate::Broker;

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

const fn range(api_key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { api_key, min, max }
}

/// The APIs and versions this broker handles, as advertised in ApiVersions.
///
/// Produce starts at v0 because old librdkafka turns compression off against a broker
/// without it (v0-v2 are answered with UNSUPPORTED_VERSION). Produce v13 and Fetch
/// v13+ address topics by id and are left out until topic ids work end to end.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    range(ApiKey::Produce, 0, 12),
    range(ApiKey::Fetch, 4, 12),
    range(ApiKey::ListOffsets, 1, 10),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::ApiVersions, 0, 4),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::InitProducerId, 0, 5),
    range(ApiKey::FindCoordinator, 0, 6),
    range(ApiKey::JoinGroup, 0, 9),
    range(ApiKey::SyncGroup, 0, 5),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 5),
    range(ApiKey::OffsetCommit, 2, 9),
    range(ApiKey::OffsetFetch, 1, 9),
    range(ApiKey::OffsetDelete, 0, 0),
    range(ApiKey::DescribeGroups, 0, 6),
    range(ApiKey::ListGroups, 0, 5),
    range(ApiKey::DeleteGroups, 0, 2),
    range(ApiKey::OffsetForLeaderEpoch, 2, 4),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::DescribeCluster, 0, 2),
    range(ApiKey::AlterConfigs, 0, 2),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    range(ApiKey::DeleteRecords, 0, 2),
    range(ApiKey::DescribeLogDirs, 1, 4),
    range(ApiKey::ElectLeaders, 0, 2),
    range(ApiKey::DescribeProducers, 0, 0),
];

/// Who sent a request: JoinGroup records it, DescribeGroups shows it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    /// The peer's address as Kafka shows it (`/127.0.0.1`).
    pub host: String,
}

/// A response body and the budget it holds until it is written.
#[derive(Debug)]
pub struct Answer {
    pub body: ResponseKind,
    pub held: Held,
}

/// The rest of a request's handling; its output `None` means no response is sent
/// (Produce with acks=0).
pub type Handling = Pin<Box<dyn Future<Output = Result<Option<Answer>, HandlerFailed>> + Send>>;

/// How the rest of a started request runs against the connection's later requests.
pub enum Started {
    /// A produce's batches are queued; the rest (their appends, then commit) runs
    /// concurrently with later requests. `settled` fires once the produce took
    /// effect (appended, or committed for acks=all): a later request other than
    /// Produce waits for it, so that it sees the writes sent before it.
    Produce {
        settled: oneshot::Receiver<()>,
        handling: Handling,
    },
    /// The rest waits for data concurrently with later requests (a fetch).
    Concurrent(Handling),
    /// The request must finish before the connection's next request starts, so a
    /// read that follows a write on one connection sees it (Kafka processes one
    /// request per connection at a time).
    InOrder(Handling),
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Started::Produce { .. } => "Produce",
            Started::Concurrent(_) => "Concurrent",
            Started::InOrder(_) => "InOrder",
        })
    }
}

/// Starts a request. Work whose order matters happens before this returns (a
/// produce's queueing, after its validation) or before the connection's next
/// request ([`Started::InOrder`]); fetches, which only read, run concurrently.
/// `frame_budget` (the request budget of a large frame) is held while the
/// request's bytes are: for a produce until its batches are appended.
pub async fn start(
    broker: &Arc<Broker>,
    request: Request,
    peer_host: &str,
    budget: &ConnectionBudget,
    frame_budget: Option<OwnedSemaphorePermit>,
) -> Result<Started, HandlerFailed> {
    let broker = Arc::clone(broker);
    let version = request.version;
    Ok(match request.body {
        RequestKind::Produce(r) => {
            let prepared = if produce::prepares_inline(&broker, &r) {
                produce::prepare(&broker, r, version)
            } else {
                let b = Arc::clone(&broker);
                broker
                    .budgets
                    .io(move || produce::prepare(&b, r, version))
                    .await?
            };
            let pending = produce::enqueue(prepared).await;
            let (settled_tx, settled) = oneshot::channel();
            Started::Produce {
                settled,
                handling: Box::pin(async move {
                    let response = produce::finish(pending, settled_tx, frame_budget).await;
                    Ok(response.map(|r| Answer {
                        body: ResponseKind::Produce(r),
                        held: Held::new(),
                    }))
                }),
            }
        }
        RequestKind::Fetch(r) => {
            let budget = budget.clone();
            Started::Concurrent(Box::pin(async move {
                let (response, held) = fetch::handle(&broker, r, version, &budget).await?;
                Ok(Some(Answer {
                    body: ResponseKind::Fetch(response),
                    held,
                }))
            }))
        }
        body => {
            let client = ClientInfo {
                client_id: request
                    .header
                    .client_id
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                host: format!("/{peer_host}"),
            };
            Started::InOrder(Box::pin(async move {
                let body = handle(&broker, body, version, &client).await?;
                Ok(Some(Answer {
                    body,
                    held: Held::new(),
                }))
            }))
        }
    })
}

/// Runs a handler that touches the disk on the I/O pool.
async fn on_io<T, F>(broker: &Arc<Broker>, handler: F) -> Result<T, HandlerFailed>
where
    F: FnOnce(&Arc<Broker>) -> T + Send + 'static,
    T: Send + 'static,
{
    let b = Arc::clone(broker);
    broker.budgets.io(move || handler(&b)).await
}

async fn handle(
    broker: &Arc<Broker>,
    body: RequestKind,
    version: i16,
    client: &ClientInfo,
) -> Result<ResponseKind, HandlerFailed> {
    let response = match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(broker, r, version))
        }
        // Auto-creating a topic creates directories and files.
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(on_io(broker, move |b| metadata::handle(b, r, version)).await?)
        }
        // Reads index entries and, by timestamp, one batch.
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(
            on_io(broker, move |b| list_offsets::handle(b, r, version)).await?,
        ),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, r, version).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, r, version))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, r, version))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(broker, r, version).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::handle_incremental(broker, r, version).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r, version).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, r, version))
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(broker, r, version))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group::handle(broker, r, version, client).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, r, version)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, r, version).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, r, version))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, r, version).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(list_groups::handle(broker, r, version))
        }
        // Reads index entries of the log.
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            on_io(broker, move |b| {
                offset_for_leader_epoch::handle(b, r, version)
            })
            .await?,
        ),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, r, version).await)
        }
        // The codec decodes only advertised APIs: this is a missing handler.
        _ => {
            return Err(HandlerFailed(format!(
                "no handler for a decoded v{version} request"
            )))
        }
    };
    Ok(response)
}

/// This broker's replica of partition `index` of `topic`, or the error for a
/// client that asked for it: UNKNOWN_TOPIC_OR_PARTITION when there is no such
/// partition, NOT_LEADER_OR_FOLLOWER when only other brokers host it.
pub(crate) fn partition_of(
    topic: Option<&Arc<crate::cluster::Topic>>,
    index: i32,
) -> Result<&Arc<sluice_replication::Replica>, ResponseError> {
    let topic = topic.ok_or(ResponseError::UnknownTopicOrPartition)?;
    topic.replica(index).map_err(|e| match e {
        crate::cluster::NotHere::Unknown => ResponseError::UnknownTopicOrPartition,
        crate::cluster::NotHere::Elsewhere => ResponseError::NotLeaderOrFollower,
    })
}

/// Why a partition request that names `current_leader_epoch` (-1: none) cannot be
/// served here: the epoch is older (FENCED_LEADER_EPOCH) or newer
/// (UNKNOWN_LEADER_EPOCH) than this replica's, or this broker does not lead.
pub(crate) fn leader_check(
    replica: &sluice_replication::Replica,
    current_leader_epoch: i32,
) -> Option<ResponseError> {
    let epoch = replica.leader_epoch().0;
    if current_leader_epoch >= 0 && current_leader_epoch != epoch {
        return Some(if current_leader_epoch > epoch {
            ResponseError::UnknownLeaderEpoch
        } else {
            ResponseError::FencedLeaderEpoch
        });
    }
    (!replica.is_leader()).then_some(ResponseError::NotLeaderOrFollower)
}

pub(crate) fn code(error: ResponseError) -> i16 {
    error.code()
}

/// The Kafka error code of a group request's outcome.
pub(crate) fn group_code(error: Option<GroupError>) -> i16 {
    let Some(error) = error else {
        return 0;
    };
    code(match error {
        GroupError::CoordinatorNotAvailable | GroupError::Storage => {
            ResponseError::CoordinatorNotAvailable
        }
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
    })
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
