//! Config changes at runtime: a topic's overrides and the dynamic broker
//! configs. Each change installs a new [`Topic`] (requests read the configs of
//! the topic they look up, so produce checks and retention follow at once) and
//! hands the new log settings to the topic's logs.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;

use super::{Cluster, Topic, TopicError};
use crate::config::LogDefaults;
use crate::dynamic_config::{self, BrokerOverrides, BrokerView};
use crate::topic_config::TopicConfigs;

impl Cluster {
    /// The log defaults in force on this broker (its config file under the
    /// dynamic broker configs).
    pub fn log_defaults(&self) -> LogDefaults {
        self.dynamic.read().1
    }

    pub fn broker_overrides(&self) -> BrokerOverrides {
        self.dynamic.read().0.clone()
    }

    /// Runs `f` over the broker-level layers this broker sees.
    pub fn with_broker_view<T>(&self, f: impl FnOnce(&BrokerView<'_>) -> T) -> T {
        let dynamic = self.dynamic.read();
        f(&dynamic.0.view(&self.config.log, self.config.node_id))
    }

    /// Takes a new set of dynamic broker configs; when the defaults in force
    /// change, every hosted log gets its new settings.
    pub fn set_broker_overrides(&self, overrides: BrokerOverrides) {
        let changed = {
            let mut dynamic = self.dynamic.write();
            if dynamic.0 == overrides {
                return;
            }
            let defaults = overrides
                .view(&self.config.log, self.config.node_id)
                .log_defaults();
            let changed = defaults != dynamic.1;
            *dynamic = (overrides, defaults);
            changed
        };
        if changed {
            for topic in self.topics() {
                self.refresh_log_configs(&topic);
            }
        }
    }

    /// Replaces the dynamic configs of one broker resource (`""`: the cluster
    /// default) on a single broker, and persists them.
    pub fn alter_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        dynamic_config::validate(&configs).map_err(TopicError::InvalidConfig)?;
        let _guard = self.changes.lock();
        let old = self.broker_overrides();
        let mut new = old.clone();
        new.set(resource, configs);
        self.set_broker_overrides(new);
        if let Err(e) = self.persist() {
            self.set_broker_overrides(old);
            return Err(e);
        }
        info!(resource, "dynamic broker configs changed");
        Ok(())
    }

    /// Replaces a topic's config overrides on a single broker, and persists them.
    pub fn alter_topic_configs(&self, name: &str, configs: TopicConfigs) -> Result<(), TopicError> {
        let _guard = self.changes.lock();
        let old = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.reconfigure_topic(&old, configs);
        if let Err(e) = self.persist() {
            self.reconfigure_topic(&old, old.configs.clone());
            return Err(e);
        }
        Ok(())
    }

    /// Installs `topic` with new configs and hands its logs their settings.
    pub fn reconfigure_topic(&self, topic: &Topic, configs: TopicConfigs) {
        if topic.configs == configs {
            return;
        }
        let changed: Vec<&String> = {
            let (old, new) = (topic.configs.overrides(), configs.overrides());
            old.keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k))
                .collect()
        };
        info!(topic = %topic.name, keys = ?changed, "topic configs changed");
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            replicas: topic.replicas.clone(),
            configs,
        });
        self.refresh_log_configs(&updated);
        self.topics.write().insert(updated.name.clone(), updated);
    }

    /// Hands every hosted log of `topic` the settings its configs ask for now.
    pub(super) fn refresh_log_configs(&self, topic: &Topic) {
        let config = self.log_config(&topic.configs);
        for replica in topic.hosted_replicas() {
            replica.set_log_config(config);
        }
    }
}
