//! Starting the nodes of one process: bind every listener of every node first (a failed bind,
//! like anything else a node is configured with that cannot start, stops the process before
//! anything is served), announce them, start each node, then announce readiness.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::NodeContext;
use crate::cluster::store::embedded::EmbeddedStore;
use crate::cluster::store::mongodb::MongoStore;
use crate::cluster::store::{Store, StoreError};
use crate::config::{Config, NodeConfig, StoreConfig};
use crate::lb::{BoundLbNode, LbBindError};
use crate::media::{BoundMediaNode, MediaStartError};
use crate::runtime::readiness;

/// How long nodes that started get to stop when another node of the process failed to start.
const STOP_AFTER_FAILED_START: Duration = Duration::from_secs(1);

/// Why the process could not start (`main` exits 1 with it).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An LB node could not start (a listener, a certificate, an errorfile, its threads).
    #[error(transparent)]
    Lb(#[from] LbBindError),
    /// A media node could not start (a listener, the relay, the transcoder).
    #[error(transparent)]
    Media(#[from] MediaStartError),
    /// The cluster store could not be set up (`cluster.store`).
    #[error("`cluster.store`: cannot set up the cluster store")]
    Store(#[source] StoreError),
}

/// Boxed: a bound node holds its listeners, endpoints and TLS acceptors.
enum Bound {
    Media(Box<BoundMediaNode>),
    Lb(Box<BoundLbNode>),
}

/// Builds the store, binds and starts every node, prints the readiness lines.
pub async fn start(
    config: &Config,
    shutdown: crate::runtime::Shutdown,
) -> Result<NodeContext, StartError> {
    let store: Arc<dyn Store> = match &config.cluster.store {
        StoreConfig::Embedded => Arc::new(EmbeddedStore::new()),
        StoreConfig::MongoDb { uri } => Arc::new(
            MongoStore::connect(uri, &config.cluster.database)
                .await
                .map_err(StartError::Store)?,
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
            NodeConfig::Media(m) => bound.push(Bound::Media(Box::new(
                BoundMediaNode::bind(m.clone()).await?,
            ))),
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
        let started = match b {
            Bound::Media(m) => m.start(&ctx).await.map_err(StartError::from),
            Bound::Lb(l) => l.start(&ctx).await.map_err(StartError::from),
        };
        if let Err(e) = started {
            // Nodes started before this one have announced themselves in the store: they
            // leave it (heartbeats remove their records) before the process exits.
            ctx.shutdown.shutdown(STOP_AFTER_FAILED_START).await;
            return Err(e);
        }
    }
    readiness::ready();
    Ok(ctx)
}
