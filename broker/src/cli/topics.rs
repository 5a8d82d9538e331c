//! `sluice topics list | describe | create | delete | alter-config | add-partitions`.

use clap::Subcommand;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use serde_json::{json, Value};

use super::output::{print, Format, Table};
use super::{str_bytes, CliError, Client};

const RESOURCE_TOPIC: i8 = 2;
const SOURCE_TOPIC: i8 = 1;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// How long the broker may take over a topic change.
const CHANGE_TIMEOUT_MS: i32 = 30_000;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Every topic with its partition count and replication factor.
    List {
        /// Internal topics too (`__consumer_offsets`).
        #[arg(long)]
        all: bool,
    },
    /// A topic's partitions (leader, replicas, in-sync replicas) and the configs
    /// set on it.
    Describe { topic: String },
    /// Creates a topic.
    Create {
        topic: String,
        /// Partitions (-1: the broker's num.partitions).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replicas of each partition (-1: the broker's default).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
    },
    /// Deletes a topic and its data.
    Delete { topic: String },
    /// Sets and deletes configs of a topic.
    AlterConfig {
        topic: String,
        /// Sets KEY to VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
        set: Vec<(String, String)>,
        /// Removes KEY's value from the topic: it takes the broker's default
        /// again (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Raises a topic's partition count.
    AddPartitions {
        topic: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
    },
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub async fn run(
    client: &mut Client,
    command: TopicsCommand,
    format: Format,
) -> Result<(), CliError> {
    match command {
        TopicsCommand::List { all } => list(client, all, format).await,
        TopicsCommand::Describe { topic } => describe(client, &topic, format).await,
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            create(
                client,
                &topic,
                partitions,
                replication_factor,
                configs,
                format,
            )
            .await
        }
        TopicsCommand::Delete { topic } => delete(client, &topic, format).await,
        TopicsCommand::AlterConfig { topic, set, delete } => {
            alter_config(client, &topic, set, delete, format).await
        }
        TopicsCommand::AddPartitions { topic, count } => {
            add_partitions(client, &topic, count, format).await
        }
    }
}

fn replication_factor(t: &MetadataResponseTopic) -> usize {
    t.partitions.first().map_or(0, |p| p.replica_nodes.len())
}

async fn list(client: &mut Client, all: bool, format: Format) -> Result<(), CliError> {
    let md = client.metadata(None).await?;
    let mut topics: Vec<&MetadataResponseTopic> =
        md.topics.iter().filter(|t| all || !t.is_internal).collect();
    topics.sort_by_key(|t| t.name.as_ref().map(|n| n.to_string()));
    let json = Value::Array(
        topics
            .iter()
            .map(|t| {
                json!({
                    "name": t.name.as_ref().map(|n| n.to_string()),
                    "partitions": t.partitions.len(),
                    "replication_factor": replication_factor(t),
                    "internal": t.is_internal,
                })
            })
            .collect(),
    );
    print(format, &json, || {
        let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION"]);
        for t in &topics {
            table.row(vec![
                t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                t.partitions.len().to_string(),
                replication_factor(t).to_string(),
            ]);
        }
        table.render()
    });
    Ok(())
}

/// The configs set on a topic itself.
pub async fn topic_overrides(
    client: &mut Client,
    topic: &str,
) -> Result<Vec<(String, String)>, CliError> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(topic))
            .with_configuration_keys(None)]);
    let response = client.send(None, request).await?;
    let mut out = Vec::new();
    for r in response.results {
        CliError::check(r.error_code, r.error_message.as_ref(), || {
            format!("describe configs of {topic}")
        })?;
        for c in r
            .configs
            .into_iter()
            .filter(|c| c.config_source == SOURCE_TOPIC)
        {
            out.push((
                c.name.to_string(),
                c.value.map(|v| v.to_string()).unwrap_or_default(),
            ));
        }
    }
    Ok(out)
}

async fn describe(client: &mut Client, topic: &str, format: Format) -> Result<(), CliError> {
    let t = client.topic(topic).await?;
    let configs = topic_overrides(client, topic).await?;
    let mut partitions: Vec<_> = t.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    let ids =
        |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    let json = json!({
        "name": topic,
        "id": t.topic_id.to_string(),
        "partitions": partitions.iter().map(|p| json!({
            "partition": p.partition_index,
            "leader": p.leader_id.0,
            "leader_epoch": p.leader_epoch,
            "replicas": ids(&p.replica_nodes),
            "isr": ids(&p.isr_nodes),
        })).collect::<Vec<_>>(),
        "configs": configs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<String, Value>>(),
    });
    print(format, &json, || {
        let list = |v: Vec<i32>| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let configs = configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut table = Table::new(&["PARTITION", "LEADER", "REPLICAS", "ISR"]);
        for p in &partitions {
            table.row(vec![
                p.partition_index.to_string(),
                p.leader_id.0.to_string(),
                list(ids(&p.replica_nodes)),
                list(ids(&p.isr_nodes)),
            ]);
        }
        format!(
            "Topic: {topic}\tPartitions: {}\tReplicationFactor: {}\tConfigs: {configs}\n{}",
            partitions.len(),
            replication_factor(&t),
            table.render()
        )
    });
    Ok(())
}

async fn create(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: Vec<(String, String)>,
    format: Format,
) -> Result<(), CliError> {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            )])
        .with_timeout_ms(CHANGE_TIMEOUT_MS);
    let response = client.send(None, request).await?;
    let t = response
        .topics
        .first()
        .ok_or_else(|| CliError::Protocol("CreateTopics answered no topic".into()))?;
    CliError::check(t.error_code, t.error_message.as_ref(), || {
        format!("create {topic}")
    })?;
    let json = json!({
        "created": topic,
        "partitions": t.num_partitions,
        "replication_factor": t.replication_factor,
    });
    print(format, &json, || {
        format!(
            "Created topic {topic} ({} partitions, replication factor {}).",
            t.num_partitions, t.replication_factor
        )
    });
    Ok(())
}

async fn delete(client: &mut Client, topic: &str, format: Format) -> Result<(), CliError> {
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(topic)))
        ])
        .with_timeout_ms(CHANGE_TIMEOUT_MS);
    let response = client.send(None, request).await?;
    let r = response
        .responses
        .first()
        .ok_or_else(|| CliError::Protocol("DeleteTopics answered no topic".into()))?;
    CliError::check(r.error_code, r.error_message.as_ref(), || {
        format!("delete {topic}")
    })?;
    print(format, &json!({ "deleted": topic }), || {
        format!("Deleted topic {topic}.")
    });
    Ok(())
}

async fn alter_config(
    client: &mut Client,
    topic: &str,
    set: Vec<(String, String)>,
    delete: Vec<String>,
    format: Format,
) -> Result<(), CliError> {
    if set.is_empty() && delete.is_empty() {
        return Err(CliError::Usage(
            "alter-config needs --set KEY=VALUE or --delete KEY".into(),
        ));
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(OP_SET)
                .with_value(Some(str_bytes(v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(str_bytes(k))
            .with_config_operation(OP_DELETE)
    }));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(topic))
            .with_configs(configs),
    ]);
    let response = client.send(None, request).await?;
    for r in &response.responses {
        CliError::check(r.error_code, r.error_message.as_ref(), || {
            format!("alter configs of {topic}")
        })?;
    }
    let json = json!({
        "topic": topic,
        "set": set.iter().cloned().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
        "deleted": delete,
    });
    print(format, &json, || format!("Updated the configs of {topic}."));
    Ok(())
}

async fn add_partitions(
    client: &mut Client,
    topic: &str,
    count: i32,
    format: Format,
) -> Result<(), CliError> {
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(count)
            .with_assignments(None)])
        .with_timeout_ms(CHANGE_TIMEOUT_MS);
    let response = client.send(None, request).await?;
    for r in &response.results {
        CliError::check(r.error_code, r.error_message.as_ref(), || {
            format!("add partitions to {topic}")
        })?;
    }
    print(
        format,
        &json!({ "topic": topic, "partitions": count }),
        || format!("Topic {topic} now has {count} partitions."),
    );
    Ok(())
}
