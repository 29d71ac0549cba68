//! Media nodes (`origin`, `edge`, `standalone`): binding their listeners, then running the HTTP
//! API, RTMP ingest/playback, the relay and the heartbeat.

pub mod frame;
pub mod hls;
pub mod http;
pub mod hub;
pub mod leases;
pub mod relay;
pub mod rtmp;
pub mod stats;
pub mod transcode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;

use std::time::Duration;

use self::http::hls::HlsViewers;
use self::hub::{HubMetrics, Hubs};
use self::leases::Leases;
use self::stats::MediaStats;
use self::transcode::{TranscodeMetrics, Transcoder};
use crate::cluster::heartbeat::{Heartbeat, NodeIdentity, StoreHealth};
use crate::config::{HlsConfig, MediaConfig, Role};
use crate::node::NodeContext;
use crate::runtime::Shutdown;
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
                let a = s.local_addr().map_err(|source| BindError {
                    node: name.clone(),
                    listener: "relay".into(),
                    addr,
                    source,
                })?;
                Some((s, a))
            }
            None => None,
        };
        Ok(BoundMediaNode {
            config: Arc::new(config),
            rtmp,
            http: (l, http_addr),
            relay,
        })
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
        let mut metrics = NodeMetrics::new(&config.name, config.role.as_str());
        let hub_metrics = HubMetrics::default();
        hub_metrics.register(metrics.registry_mut());
        let stats = Arc::new(MediaStats::default());
        stats.register(metrics.registry_mut());
        let hubs = Arc::new(Hubs::new(hub_metrics, Some(config.hls)));
        // One rayon pool for every transcoded stream of the node.
        let transcoder = config.transcode.clone().and_then(|t| {
            let transcode_metrics = TranscodeMetrics::default();
            transcode_metrics.register(metrics.registry_mut());
            match Transcoder::new(t, hubs.clone(), transcode_metrics, ctx.shutdown.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(node = %config.name, error = %e, "transcoding disabled");
                    None
                }
            }
        });
        stats.attach(hubs.clone());
        let hls_viewers = Arc::new(HlsViewers::default());
        let relay_server_metrics = relay::server::ServerMetrics::default();
        relay_server_metrics.register(metrics.registry_mut());
        let relay_client_metrics = relay::client::ClientMetrics::default();
        relay_client_metrics.register(metrics.registry_mut());
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
        // Origins own the streams published to them: a lease each.
        let leases = (config.role != Role::Edge).then(|| {
            Leases::new(
                ctx.store.clone(),
                config.name.clone(),
                identity.relay.clone(),
                ctx.cluster.node_timeout,
                health.clone(),
            )
        });
        if let Some(leases) = &leases {
            ctx.shutdown.spawn_service(
                leases
                    .clone()
                    .run(ctx.cluster.heartbeat, ctx.shutdown.clone()),
            );
        }

        // Edges (and standalone nodes, for streams other origins own) pull on demand.
        let puller = if config.role == Role::Origin {
            None
        } else {
            let grace =
                (config.hls.segment * (config.hls.window as u32 + 2)).max(Duration::from_secs(10));
            let setup = relay::client::PullerSetup {
                bind_ip: if config.http.ip().is_ipv6() {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                },
                secret: ctx.cluster.secret.clone(),
                store: ctx.store.clone(),
                hubs: hubs.clone(),
                poll: ctx.cluster.heartbeat,
                grace,
                metrics: relay_client_metrics,
                shutdown: ctx.shutdown.clone(),
            };
            match relay::client::Puller::new(setup) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(node = %config.name, "relay client unavailable, this node cannot pull streams: {e}");
                    None
                }
            }
        };
        let http_ctx = Arc::new(http::HttpContext {
            config: config.clone(),
            node_timeout: ctx.cluster.node_timeout,
            store: ctx.store.clone(),
            health: health.clone(),
            metrics,
            shutdown: ctx.shutdown.clone(),
            hubs: hubs.clone(),
            stats: stats.clone(),
            hls_viewers: hls_viewers.clone(),
            puller: puller.clone(),
        });
        let (http_listener, _) = self.http;
        ctx.shutdown.spawn_service(accept_loop(
            http_listener,
            limit.clone(),
            ctx.shutdown.clone(),
            format!("{}/http", config.name),
            move |stream, peer, permit| {
                http::serve_connection(http_ctx.clone(), stream, peer, permit)
            },
        ));
        if let Some((rtmp_listener, _)) = self.rtmp {
            let rtmp_ctx = Arc::new(rtmp::RtmpContext {
                config: config.clone(),
                hubs: hubs.clone(),
                leases: leases.clone(),
                stats: stats.clone(),
                shutdown: ctx.shutdown.clone(),
                puller: puller.clone(),
                transcoder,
            });
            ctx.shutdown.spawn_service(accept_loop(
                rtmp_listener,
                limit.clone(),
                ctx.shutdown.clone(),
                format!("{}/rtmp", config.name),
                move |stream, peer, permit| rtmp::serve(rtmp_ctx.clone(), stream, peer, permit),
            ));
        }
        ctx.shutdown.spawn_service(housekeeping(
            hubs.clone(),
            hls_viewers,
            stats.clone(),
            config.hls,
            ctx.shutdown.clone(),
        ));
        if let Some((socket, addr)) = self.relay {
            match relay::server::start(
                socket,
                hubs.clone(),
                ctx.cluster.secret.clone(),
                relay_server_metrics,
                ctx.shutdown.clone(),
            ) {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(node = %config.name, %addr, "relay listener failed; edges cannot pull from this node: {e}")
                }
            }
        }

        let mut heartbeat = Heartbeat {
            store: ctx.store.clone(),
            identity,
            interval: ctx.cluster.heartbeat,
            health,
            activity: stats,
            shutdown: ctx.shutdown.clone(),
            sys: Default::default(),
        };
        if let Err(e) = heartbeat.beat().await {
            tracing::warn!(node = %config.name, error = %e, "first heartbeat failed");
        }
        ctx.shutdown.spawn_service(heartbeat.run());
    }
}

/// Periodic chores: forget idle hubs (after players had time to fetch the last segments),
/// refresh the HLS viewer count.
async fn housekeeping(
    hubs: Arc<Hubs>,
    viewers: Arc<HlsViewers>,
    stats: Arc<MediaStats>,
    hls: HlsConfig,
    shutdown: Shutdown,
) {
    let linger = (hls.segment * (hls.window as u32 + 3)).max(Duration::from_secs(30));
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = shutdown.stopped() => break,
        }
        for key in hubs.reap(linger) {
            tracing::debug!(stream = %key, "idle stream forgotten");
        }
        stats.hls_viewers.set(viewers.prune() as i64);
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
