//! Cluster state: the records every node shares (model), where they live (store), and the
//! loops that keep them fresh (heartbeat). [`NodeContext`] is what every node of a process gets
//! from it.

pub mod heartbeat;
pub mod model;
pub mod store;
pub mod sysstat;

use std::sync::Arc;

use crate::config::ClusterConfig;
use crate::runtime::Shutdown;

/// What every node of the process shares.
pub struct NodeContext {
    /// Cluster settings.
    pub cluster: ClusterConfig,
    /// The cluster store.
    pub store: Arc<dyn store::Store>,
    /// Process shutdown.
    pub shutdown: Shutdown,
}
