//! Starting the nodes of one process: bind every listener of every node first (a failed bind
//! stops the process before anything is served), announce them, start each node, then announce
//! readiness.

use std::sync::Arc;

use crate::cluster::store::Store;
use crate::cluster::store::embedded::EmbeddedStore;
use crate::cluster::store::mongodb::MongoStore;
use crate::config::{ClusterConfig, Config, NodeConfig, StoreConfig};
use crate::lb::{BoundLbNode, LbBindError};
use crate::media::BoundMediaNode;
use crate::runtime::{BindError, Shutdown, readiness};

/// What every node of the process shares.
pub struct NodeContext {
    /// Cluster settings.
    pub cluster: ClusterConfig,
    /// The cluster store.
    pub store: Arc<dyn Store>,
    /// Process shutdown.
    pub shutdown: Shutdown,
}

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// An LB node could not be set up (a listener, a certificate, an errorfile).
    #[error(transparent)]
    Lb(#[from] LbBindError),
    /// The cluster store could not be set up.
    #[error("cluster store: {0}")]
    Store(String),
}

enum Bound {
    Media(BoundMediaNode),
    /// Boxed: it holds listeners and TLS acceptors for every frontend.
    Lb(Box<BoundLbNode>),
}

/// Builds the store, binds and starts every node, prints the readiness lines.
pub async fn start(config: &Config, shutdown: Shutdown) -> Result<NodeContext, StartError> {
    let store: Arc<dyn Store> = match &config.cluster.store {
        StoreConfig::Embedded => Arc::new(EmbeddedStore::new()),
        StoreConfig::MongoDb { uri } => Arc::new(
            MongoStore::connect(uri, &config.cluster.database)
                .await
                .map_err(|e| StartError::Store(e.to_string()))?,
        ),
    };
    let ctx = NodeContext {
        cluster: config.cluster.clone(),
        store,
        shutdown,
    };

    let mut bound = Vec::new();
    for node in &config.nodes {
        match node {
            NodeConfig::Media(m) => {
                bound.push(Bound::Media(BoundMediaNode::bind(m.clone()).await?))
            }
            NodeConfig::Lb(l) => {
                bound.push(Bound::Lb(Box::new(BoundLbNode::bind(l.clone()).await?)))
            }
        }
    }
    for (node, b) in config.nodes.iter().zip(&bound) {
        match b {
            Bound::Media(m) => {
                for (listener, addr) in m.listeners() {
                    readiness::listening(node.name(), listener, addr);
                }
            }
            Bound::Lb(l) => {
                for (listener, addr) in l.listeners() {
                    readiness::listening(node.name(), &listener, addr);
                }
            }
        }
    }
    // Media nodes first: their first heartbeat is in the store before an LB in the same
    // process reads it for `servers_from`.
    let (media, lbs): (Vec<_>, Vec<_>) = bound
        .into_iter()
        .partition(|b| matches!(b, Bound::Media(_)));
    for b in media.into_iter().chain(lbs) {
        match b {
            Bound::Media(m) => m.start(&ctx).await,
            Bound::Lb(l) => l.start(&ctx).await,
        }
    }
    readiness::ready();
    Ok(ctx)
}
