//! `servers_from`: a backend whose servers follow the live nodes of a role in the cluster
//! store, without a restart.
//!
//! Data flow: every heartbeat period -> `store.nodes()` -> the nodes of the role that are
//! alive (`last_seen` younger than `node_timeout`) and `active` (not draining) -> their
//! `http` or `rtmp` address -> a new [`ServerSet`] (static servers first, then discovered ones
//! by node name, cookie = node name) swapped into the backend. A node still present keeps its
//! [`Server`] (state, counters, pooled connections); a new one starts UP with its own health
//! checker; a node that left is retired (checker stops, pool closed). A store outage keeps
//! the last known servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::backend::{Backend, Server, ServerSet};
use super::health::spawn_checker;
use crate::cluster::model::{NodeRecord, NodeState};
use crate::cluster::store::{Store, StoreError};
use crate::config::{NodeListener, ServerConfig, ServersFrom};
use crate::runtime::Shutdown;

/// The discovery loop of one backend.
pub struct Discovery {
    /// The backend whose servers it maintains.
    pub backend: Arc<Backend>,
    /// Which nodes and which of their listeners.
    pub from: ServersFrom,
    /// The cluster store.
    pub store: Arc<dyn Store>,
    /// Poll period (the cluster heartbeat).
    pub interval: Duration,
    /// A node silent this long is dead.
    pub node_timeout: Duration,
    /// Process shutdown.
    pub shutdown: Shutdown,
}

impl Discovery {
    /// Syncs once (so the backend has servers when the node announces readiness), then keeps
    /// syncing in the background until the process stops.
    pub async fn start(self) {
        let mut failing = false;
        self.sync_logged(&mut failing).await;
        let shutdown = self.shutdown.clone();
        shutdown.spawn_service(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(self.interval) => {}
                    () = self.shutdown.stopped() => return,
                }
                self.sync_logged(&mut failing).await;
            }
        });
    }

    async fn sync_logged(&self, failing: &mut bool) {
        match self.sync().await {
            Ok(()) => {
                if std::mem::replace(failing, false) {
                    tracing::info!(backend = %self.backend.name, "servers_from: cluster store reachable again");
                }
            }
            Err(e) => {
                if !std::mem::replace(failing, true) {
                    tracing::warn!(backend = %self.backend.name, error = %e, "servers_from: cannot read the cluster store; keeping the current servers");
                }
            }
        }
    }

    /// Reads the store once and swaps in the new server set if it changed.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let nodes = match tokio::time::timeout(Duration::from_secs(5), self.store.nodes()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Unavailable {
                    source: "listing nodes timed out".into(),
                });
            }
        };
        let mut wanted = Vec::new();
        for n in nodes.iter().filter(|n| self.follows(n)) {
            match self.address(n).await {
                Some(addr) => wanted.push((n.name.clone(), addr)),
                None => {
                    tracing::debug!(backend = %self.backend.name, node = %n.name, "node has no usable address for this listener")
                }
            }
        }
        let current = self.backend.servers();
        let discovered = |s: &Arc<Server>| {
            !self
                .backend
                .static_servers
                .iter()
                .any(|st| Arc::ptr_eq(st, s))
        };
        let old: Vec<&Arc<Server>> = current.servers.iter().filter(|s| discovered(s)).collect();
        let unchanged = old.len() == wanted.len()
            && old
                .iter()
                .zip(&wanted)
                .all(|(s, (name, addr))| s.name == *name && s.addr == *addr);
        if unchanged {
            return Ok(());
        }
        let mut servers = self.backend.static_servers.clone();
        for (name, addr) in &wanted {
            match old.iter().find(|s| s.name == *name && s.addr == *addr) {
                Some(s) => servers.push((*s).clone()),
                None => {
                    let s = Server::new(&ServerConfig {
                        name: name.clone(),
                        addr: *addr,
                        cookie: Some(name.clone()),
                        weight: 1,
                    });
                    spawn_checker(&self.backend, &s, &self.shutdown);
                    tracing::info!(backend = %self.backend.name, server = %name, %addr, "server joined");
                    servers.push(s);
                }
            }
        }
        for s in old {
            if !servers.iter().any(|n| Arc::ptr_eq(n, s)) {
                tracing::info!(backend = %self.backend.name, server = %s.name, addr = %s.addr, "server left");
                s.retire();
            }
        }
        self.backend.replace_servers(ServerSet::new(servers));
        Ok(())
    }

    fn follows(&self, n: &NodeRecord) -> bool {
        n.role == self.from.role
            && n.state == NodeState::Active
            && n.alive(SystemTime::now(), self.node_timeout)
    }

    async fn address(&self, n: &NodeRecord) -> Option<SocketAddr> {
        let hostport = match self.from.listener {
            NodeListener::Http => n.http.as_deref(),
            NodeListener::Rtmp => n.rtmp.as_deref(),
        }?;
        if let Ok(addr) = hostport.parse() {
            return Some(addr);
        }
        // A host name: resolve it (the first address wins).
        tokio::net::lookup_host(hostport).await.ok()?.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::store::embedded::EmbeddedStore;
    use crate::config::{BackendConfig, Balance, ProxyMode, Role};

    fn record(
        name: &str,
        role: Role,
        http: &str,
        state: NodeState,
        last_seen: SystemTime,
    ) -> NodeRecord {
        NodeRecord {
            stream_viewers: Vec::new(),
            name: name.into(),
            role,
            advertise: "127.0.0.1".into(),
            rtmp: None,
            http: Some(http.into()),
            relay: None,
            version: "0".into(),
            started_at: last_seen,
            last_seen,
            cpu: 0.0,
            mem_used: 0,
            mem_total: 0,
            streams: 0,
            viewers: 0,
            egress_bps: 0,
            state,
        }
    }

    #[tokio::test]
    async fn follows_alive_active_nodes_of_the_role() {
        let store = Arc::new(EmbeddedStore::new());
        let now = SystemTime::now();
        let backend = Arc::new(Backend::new(&BackendConfig {
            name: "edges".into(),
            mode: ProxyMode::Http,
            balance: Balance::RoundRobin,
            health: None,
            sticky_cookie: None,
            servers: vec![ServerConfig {
                name: "static".into(),
                addr: "127.0.0.1:9".parse().unwrap(),
                cookie: None,
                weight: 1,
            }],
            servers_from: None,
            retries: 3,
            http_server_close: false,
        }));
        let d = Discovery {
            backend: backend.clone(),
            from: ServersFrom {
                role: Role::Edge,
                listener: NodeListener::Http,
            },
            store: store.clone(),
            interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(10),
            shutdown: Shutdown::new(),
        };
        store
            .upsert_node(&record(
                "edge-1",
                Role::Edge,
                "127.0.0.1:1001",
                NodeState::Active,
                now,
            ))
            .await
            .unwrap();
        store
            .upsert_node(&record(
                "edge-2",
                Role::Edge,
                "127.0.0.1:1002",
                NodeState::Draining,
                now,
            ))
            .await
            .unwrap();
        store
            .upsert_node(&record(
                "edge-3",
                Role::Edge,
                "127.0.0.1:1003",
                NodeState::Active,
                now - Duration::from_secs(60),
            ))
            .await
            .unwrap();
        store
            .upsert_node(&record(
                "origin-1",
                Role::Origin,
                "127.0.0.1:1004",
                NodeState::Active,
                now,
            ))
            .await
            .unwrap();
        d.sync().await.unwrap();
        let names = |b: &Backend| {
            b.servers()
                .servers
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&backend), ["static", "edge-1"]);
        let edge1 = backend.servers().by_name("edge-1").unwrap().clone();
        assert_eq!(edge1.cookie.as_deref(), Some("edge-1"));

        store
            .upsert_node(&record(
                "edge-2",
                Role::Edge,
                "127.0.0.1:1002",
                NodeState::Active,
                now,
            ))
            .await
            .unwrap();
        d.sync().await.unwrap();
        assert_eq!(names(&backend), ["static", "edge-1", "edge-2"]);
        assert!(
            Arc::ptr_eq(backend.servers().by_name("edge-1").unwrap(), &edge1),
            "a node still there keeps its server"
        );

        store.remove_node("edge-1").await.unwrap();
        d.sync().await.unwrap();
        assert_eq!(names(&backend), ["static", "edge-2"]);
        tokio::time::timeout(Duration::from_secs(1), edge1.retired())
            .await
            .expect("retired");
    }
}
