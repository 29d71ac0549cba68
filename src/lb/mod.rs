//! The `lb` role: HAProxy-style load balancing for RTMP (L4 or RTMP-aware), HTTP/1.1, HTTP/2
//! and WebSocket, with TLS termination, sticky cookies, health checks and servers discovered
//! from the cluster store.
//!
//! Data flow: [`BoundLbNode::bind`] binds every frontend listener and loads what must be valid
//! before anything is served (certificates, errorfiles); [`BoundLbNode::start`] builds the
//! backends, starts health checks, discovery and the heartbeat, then one accept loop per
//! listener on each of the node's `threads` event-loop threads (`workers`). Each accepted
//! connection gets one task on the thread that accepted it: `l4` (byte pipe), `rtmp` (RTMP-aware
//! routing, then a byte pipe) or `l7` (TLS handshake if any, then HTTP/1.1 or HTTP/2).
//!
//! - `backend`: servers, UP/DOWN state, snapshot of the server list; `select`: algorithms.
//! - `health`: active checks; `discovery`: `servers_from`.
//! - `upstream`: connecting to a server with retries; `pipe`: bidirectional byte copy.
//! - `rtmp`: RTMP-aware routing with the splice filter.
//! - `stats`: the stats listener (HTML page, CSV, and `/metrics`: the node's metrics registry
//!   with the LB's families); `log`: the access log.
//! - `tls`: certificates and SNI; `counters`: stats counters; `error`: error types.
//! - `source_limit`: open connections per client address (`maxconn_per_source`).

pub mod backend;
pub mod counters;
pub mod discovery;
pub mod error;
pub mod health;
pub mod l4;
pub mod l7;
pub mod log;
pub mod pipe;
pub mod placement;
pub mod rtmp;
pub mod select;
pub mod source_limit;
pub mod stats;
pub mod tls;
pub mod upstream;
pub mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use self::backend::Backend;
use self::counters::Counters;
use self::error::LbStartError;
use self::log::AccessLog;
use crate::cluster::NodeContext;
use crate::cluster::heartbeat::{Heartbeat, Idle, NodeIdentity, StoreHealth};
use crate::config::{FrontendConfig, LbConfig, LbTimeouts, Role};
use crate::runtime::listener::{accept_loop, bind_tcp, local_addr};
use crate::runtime::metrics::NodeMetrics;
use crate::runtime::{BindError, ConnLimit};
use streamfleet_proto::http::response::{ErrorFile, error_response, parse_errorfile};

/// Connections the stats listener serves at once (outside `maxconn`).
pub const STATS_MAXCONN: usize = 32;

/// Why an LB node could not be bound or started.
#[derive(Debug, thiserror::Error)]
pub enum LbBindError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A certificate or errorfile is unusable.
    #[error(transparent)]
    Start(#[from] LbStartError),
}

/// The LB's own error responses: operator errorfiles where configured, built-in pages
/// otherwise. Every one closes the connection.
#[derive(Debug, Default)]
pub struct ErrorPages {
    files: HashMap<u16, ErrorFile>,
}

impl ErrorPages {
    /// Reads and validates every configured errorfile.
    pub fn load(
        node: &str,
        files: &[(u16, std::path::PathBuf)],
    ) -> Result<ErrorPages, LbStartError> {
        let mut pages = ErrorPages::default();
        for (code, file) in files {
            let bytes = std::fs::read(file).map_err(|source| LbStartError::ErrorFileRead {
                node: node.into(),
                file: file.clone(),
                source,
            })?;
            let parsed =
                parse_errorfile(&file.display().to_string(), &bytes).map_err(|source| {
                    LbStartError::ErrorFileInvalid {
                        node: node.into(),
                        source,
                    }
                })?;
            if parsed.status != *code {
                return Err(LbStartError::ErrorFileStatus {
                    node: node.into(),
                    file: file.clone(),
                    code: *code,
                    found: parsed.status,
                });
            }
            pages.files.insert(*code, parsed);
        }
        Ok(pages)
    }

    /// The response for `status`.
    pub fn page(&self, status: u16) -> Bytes {
        match self.files.get(&status) {
            Some(f) => f.response.clone(),
            None => Bytes::from_static(
                error_response(status).unwrap_or(error_response(500).unwrap_or_default()),
            ),
        }
    }
}

/// What every connection of one frontend shares.
pub struct Frontend {
    /// Settings.
    pub config: FrontendConfig,
    /// Every backend of the node (frontend settings refer to them by index).
    pub backends: Arc<[Arc<Backend>]>,
    /// Traffic counters.
    pub counters: Arc<Counters>,
    /// TLS termination, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Node timeouts.
    pub timeouts: LbTimeouts,
    /// The LB's own error responses.
    pub errors: Arc<ErrorPages>,
    /// Process shutdown.
    pub shutdown: crate::runtime::Shutdown,
    /// The node's access log.
    pub log: AccessLog,
    /// The node's connection limit (its open connections are the log's `actconn`).
    pub limit: Arc<ConnLimit>,
    /// This frontend's own `maxconn`, when it has one.
    pub own_limit: Option<Arc<ConnLimit>>,
    /// Open connections per client address, when `maxconn_per_source` is on.
    pub sources: Option<Arc<source_limit::SourceLimit>>,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("name", &self.config.name)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Frontend {
    /// The backend at `index` (indices come from the validated config).
    pub fn backend(&self, index: usize) -> Option<&Arc<Backend>> {
        self.backends.get(index)
    }
}

/// An LB node whose listeners are bound and whose files are loaded, not yet serving.
pub struct BoundLbNode {
    config: LbConfig,
    /// (frontend index, listener, address).
    listeners: Vec<(usize, TcpListener, SocketAddr)>,
    /// The stats listener, when configured.
    stats: Option<(TcpListener, SocketAddr)>,
    tls: Vec<Option<TlsAcceptor>>,
    /// Re-read the frontends' certificate files on SIGHUP.
    reloaders: Vec<Arc<tls::CertReloader>>,
    errors: Arc<ErrorPages>,
}

impl BoundLbNode {
    /// Loads certificates and errorfiles, then binds every frontend listener.
    pub async fn bind(config: LbConfig) -> Result<Self, LbBindError> {
        let errors = Arc::new(ErrorPages::load(&config.name, &config.errorfiles)?);
        let mut tls = Vec::new();
        let mut reloaders = Vec::new();
        for f in &config.frontends {
            tls.push(match &f.tls {
                Some(t) => {
                    let (acceptor, reloader) = tls::acceptor(&config.name, t)?;
                    reloaders.push(reloader);
                    Some(acceptor)
                }
                None => None,
            });
        }
        let mut listeners = Vec::new();
        for (i, f) in config.frontends.iter().enumerate() {
            let name = format!("frontend:{}", f.name);
            for addr in &f.bind {
                let l = bind_tcp(&config.name, &name, *addr).await?;
                let a = local_addr(&config.name, &name, *addr, &l)?;
                listeners.push((i, l, a));
            }
        }
        let stats = match &config.stats {
            Some(st) => {
                let l = bind_tcp(&config.name, "stats", st.bind).await?;
                let a = local_addr(&config.name, "stats", st.bind, &l)?;
                Some((l, a))
            }
            None => None,
        };
        Ok(BoundLbNode {
            config,
            listeners,
            stats,
            tls,
            reloaders,
            errors,
        })
    }

    /// Listener names (`frontend:<name>`, then `stats`) and their real addresses, in
    /// announcement order.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = self
            .listeners
            .iter()
            .map(|(i, _, a)| (format!("frontend:{}", self.config.frontends[*i].name), *a))
            .collect();
        if let Some((_, a)) = &self.stats {
            out.push(("stats".into(), *a));
        }
        out
    }

    /// Starts health checks, discovery, the heartbeat and the accept loops.
    pub async fn start(self, ctx: &NodeContext) -> Result<(), LbBindError> {
        let config = self.config;
        let shutdown = ctx.shutdown.clone();
        for reloader in self.reloaders {
            shutdown.spawn_service(reloader.on_sighup(shutdown.clone()));
        }
        let backends: Arc<[Arc<Backend>]> = config
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b)))
            .collect();
        for (b, cfg) in backends.iter().zip(&config.backends) {
            for s in &b.static_servers {
                health::spawn_checker(b, s, &shutdown);
            }
            if let Some(from) = cfg.servers_from {
                let d = discovery::Discovery {
                    backend: b.clone(),
                    from,
                    store: ctx.store.clone(),
                    interval: ctx.cluster.heartbeat,
                    node_timeout: ctx.cluster.node_timeout,
                    shutdown: shutdown.clone(),
                };
                d.start().await;
            }
        }
        let limit = ConnLimit::new(config.maxconn);
        let log = AccessLog::start(&config.name, config.log);
        if log.enabled() {
            let (log, shutdown2) = (log.clone(), shutdown.clone());
            // Lines still buffered are written before the process exits.
            shutdown.spawn_service(async move {
                shutdown2.stopped().await;
                if let Err(e) = tokio::task::spawn_blocking(move || log.close()).await {
                    tracing::warn!(error = %e, "access log: final flush failed");
                }
            });
        }
        let frontends: Vec<Arc<Frontend>> = config
            .frontends
            .iter()
            .zip(self.tls)
            .map(|(f, tls)| {
                Arc::new(Frontend {
                    config: f.clone(),
                    backends: backends.clone(),
                    counters: Arc::default(),
                    tls,
                    timeouts: config.timeouts,
                    errors: self.errors.clone(),
                    shutdown: shutdown.clone(),
                    log: log.clone(),
                    limit: limit.clone(),
                    own_limit: f.maxconn.map(ConnLimit::new),
                    sources: f.maxconn_per_source.map(source_limit::SourceLimit::new),
                })
            })
            .collect();
        let health = Arc::new(StoreHealth::default());
        if let (Some((listener, _)), Some(stats_config)) = (self.stats, config.stats.clone()) {
            let objects = stats::model::LbObjects {
                frontends: frontends.clone(),
                backends: backends.clone(),
                limit: limit.clone(),
            };
            let role = Role::Lb.as_str();
            let mut metrics = if stats_config.hide_version {
                NodeMetrics::without_version(&config.name, role)
            } else {
                NodeMetrics::new(&config.name, role)
            };
            metrics
                .registry_mut()
                .register_collector(Box::new(health.clone()));
            stats::prom::LbCollector::register(objects.clone(), metrics.registry_mut());
            let view = Arc::new(stats::LbView {
                node: config.name.clone(),
                config: stats_config,
                objects,
                metrics,
                started: Instant::now(),
                errors: self.errors.clone(),
                timeout: config.timeouts.client,
            });
            // The stats listener has its own small limit: it must answer while traffic is at maxconn.
            shutdown.spawn_service(accept_loop(
                listener,
                ConnLimit::new(STATS_MAXCONN),
                None,
                shutdown.clone(),
                format!("{}/stats", config.name),
                move |s, peer, permit| stats::serve(view.clone(), s, peer, permit),
            ));
        }
        let mut served = Vec::with_capacity(self.listeners.len());
        for (i, listener, addr) in self.listeners {
            // `i` was taken from enumerating `config.frontends`, which `frontends` mirrors.
            let fe = frontends[i].clone();
            let name = format!("{}/frontend:{}@{addr}", config.name, fe.config.name);
            match listener.into_std() {
                Ok(socket) => served.push(workers::Listener {
                    frontend: fe,
                    socket,
                    name,
                }),
                Err(source) => {
                    return Err(LbStartError::Listener {
                        node: config.name.clone(),
                        listener: name,
                        source,
                    }
                    .into());
                }
            }
        }
        workers::start(config.threads, &served, &limit, &shutdown).map_err(|source| {
            LbStartError::Threads {
                node: config.name.clone(),
                threads: config.threads,
                source,
            }
        })?;

        let identity = NodeIdentity {
            name: config.name.clone(),
            role: Role::Lb,
            advertise: advertise_host(&config),
            rtmp: None,
            http: None,
            relay: None,
            started_at: SystemTime::now(),
        };
        Heartbeat {
            store: ctx.store.clone(),
            identity,
            interval: ctx.cluster.heartbeat,
            health,
            activity: Arc::new(Idle),
            shutdown: shutdown.clone(),
            sys: Default::default(),
        }
        .start()
        .await;
        Ok(())
    }
}

/// The host an LB reports to the cluster: the first frontend address that is not a wildcard,
/// else the node name.
fn advertise_host(config: &LbConfig) -> String {
    config
        .frontends
        .iter()
        .flat_map(|f| f.bind.iter())
        .find(|a| !a.ip().is_unspecified())
        .map_or_else(|| config.name.clone(), |a| a.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errorfiles_replace_builtin_pages_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("503.http");
        std::fs::write(
            &good,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
        )
        .unwrap();
        let pages = ErrorPages::load("lb", &[(503, good.clone())]).unwrap();
        assert!(pages.page(503).ends_with(b"busy"));
        assert!(pages.page(504).starts_with(b"HTTP/1.1 504"));

        let e = ErrorPages::load("lb", &[(502, good)]).unwrap_err();
        assert!(
            e.to_string().contains("503.http") && e.to_string().contains("502"),
            "{e}"
        );
        let missing = dir.path().join("nope.http");
        let e = ErrorPages::load("lb", &[(503, missing)]).unwrap_err();
        assert!(e.to_string().contains("nope.http"), "{e}");
        let bad = dir.path().join("bad.http");
        std::fs::write(&bad, "HTTP/1.1 503 X\r\nContent-Length: 9\r\n\r\nshort").unwrap();
        let e = ErrorPages::load("lb", &[(503, bad)]).unwrap_err();
        assert!(
            std::error::Error::source(&e)
                .unwrap()
                .to_string()
                .contains("bad.http"),
            "{e}"
        );
    }
}
