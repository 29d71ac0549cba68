//! Media nodes (`origin`, `edge`, `standalone`): binding their listeners, then running the HTTP
//! API, RTMP ingest/playback, the relay and the heartbeat.

pub mod frame;
pub mod http;
pub mod hls;
pub mod hub;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;

use crate::cluster::heartbeat::{Heartbeat, Idle, NodeIdentity, StoreHealth};
use crate::config::MediaConfig;
use crate::node::NodeContext;
use crate::runtime::listener::{accept_loop, bind_tcp, bind_udp, local_addr};
use crate::runtime::metrics::NodeMetrics;
use crate::runtime::{BindError, ConnLimit};

/// A media node whose listeners are bound but not yet serving.
pub struct BoundMediaNode {
    config: Arc<MediaConfig>,
    rtmp: Option<(TcpListener, SocketAddr)>,
    http: (TcpListener, SocketAddr),
    relay: Option<(std::net::UdpSocket, SocketAddr)>,
}

impl BoundMediaNode {
    /// Binds every listener of the node.
    pub async fn bind(config: MediaConfig) -> Result<Self, BindError> {
        let name = config.name.clone();
        let rtmp = match config.rtmp {
            Some(addr) => {
                let l = bind_tcp(&name, "rtmp", addr).await?;
                let a = local_addr(&name, "rtmp", addr, &l)?;
                Some((l, a))
            }
            None => None,
        };
        let l = bind_tcp(&name, "http", config.http).await?;
        let http_addr = local_addr(&name, "http", config.http, &l)?;
        let relay = match config.relay {
            Some(addr) => {
                let s = bind_udp(&name, "relay", addr)?;
                let a = s.local_addr().map_err(|source| BindError { node: name.clone(), listener: "relay".into(), addr, source })?;
                Some((s, a))
            }
            None => None,
        };
        Ok(BoundMediaNode { config: Arc::new(config), rtmp, http: (l, http_addr), relay })
    }

    /// Listener names and their real addresses, in announcement order.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out = Vec::new();
        if let Some((_, a)) = &self.rtmp {
            out.push(("rtmp", *a));
        }
        out.push(("http", self.http.1));
        if let Some((_, a)) = &self.relay {
            out.push(("relay", *a));
        }
        out
    }

    /// Starts serving; returns once the node's first heartbeat has been attempted.
    pub async fn start(self, ctx: &NodeContext) {
        let config = self.config;
        let health = Arc::new(StoreHealth::default());
        let limit = ConnLimit::new(config.maxconn);
        let metrics = NodeMetrics::new(&config.name, config.role.as_str());
        let host = |a: SocketAddr| join_host_port(&config.advertise, a.port());
        let identity = NodeIdentity {
            name: config.name.clone(),
            role: config.role,
            advertise: config.advertise.clone(),
            rtmp: self.rtmp.as_ref().map(|(_, a)| host(*a)),
            http: Some(host(self.http.1)),
            relay: self.relay.as_ref().map(|(_, a)| host(*a)),
            started_at: SystemTime::now(),
        };

        let http_ctx = Arc::new(http::HttpContext {
            config: config.clone(),
            node_timeout: ctx.cluster.node_timeout,
            store: ctx.store.clone(),
            health: health.clone(),
            metrics,
            shutdown: ctx.shutdown.clone(),
        });
        let (http_listener, _) = self.http;
        ctx.shutdown.spawn_service(accept_loop(
            http_listener,
            limit.clone(),
            ctx.shutdown.clone(),
            format!("{}/http", config.name),
            move |stream, peer, permit| http::serve_connection(http_ctx.clone(), stream, peer, permit),
        ));
        if let Some((rtmp_listener, _)) = self.rtmp {
            let node = config.name.clone();
            ctx.shutdown.spawn_service(accept_loop(
                rtmp_listener,
                limit.clone(),
                ctx.shutdown.clone(),
                format!("{}/rtmp", config.name),
                move |_stream, peer, _permit| {
                    let node = node.clone();
                    async move {
                        tracing::warn!(%node, %peer, "RTMP ingest is not built yet; closing connection");
                    }
                },
            ));
        }
        // The relay socket stays bound (its port is announced) until the relay is served.
        let relay_socket = self.relay.map(|(s, _)| s);

        let mut heartbeat = Heartbeat {
            store: ctx.store.clone(),
            identity,
            interval: ctx.cluster.heartbeat,
            health,
            activity: Arc::new(Idle),
            shutdown: ctx.shutdown.clone(),
            sys: Default::default(),
        };
        if let Err(e) = heartbeat.beat().await {
            tracing::warn!(node = %config.name, error = %e, "first heartbeat failed");
        }
        let shutdown = ctx.shutdown.clone();
        ctx.shutdown.spawn_service(async move {
            let _relay_socket = relay_socket;
            heartbeat.run().await;
            drop(shutdown);
        });
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}
