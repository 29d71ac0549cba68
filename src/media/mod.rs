//! Media nodes (`origin`, `edge`, `standalone`): binding their listeners (and making the QUIC
//! endpoints, which are sockets too), then running the HTTP API, RTMP ingest/playback, the
//! relay and the heartbeat. Everything the config asks for that can fail to start is made in
//! [`BoundMediaNode::bind`] or fails [`BoundMediaNode::start`], both before the process says it
//! is ready: a node never runs without a part it was configured with.
//!
//! Data flow: publisher (RTMP) -> `rtmp` -> `hub` (one per rendition; fan-out, start cache) ->
//! players (`rtmp`), `hls` (packaging, decided on the ingesting node), `transcode` (ladder ->
//! more hubs) and `relay::server` -> QUIC -> `relay::client` on edges -> their hubs -> the same.
//!
//! - `frame`: what flows through a hub; `hub`: the fan-out point and the registry of hubs.
//! - `rtmp`: RTMP connections (publish, play); `leases`: stream ownership in the store.
//! - `ingest`: who may publish (every protocol) and an admitted publisher's media into the hub.
//! - `hls`: segment decisions and packaging; `http`: HLS, REST, health, metrics, console.
//! - `transcode`: decode -> scale -> x264 on a rayon pool; `relay`: origin -> edge over QUIC.
//! - `stats`: node-wide counters for the heartbeat and `/metrics`.
//! - `webhook`: `liveStreamStarted` / `liveStreamEnded` posts for the streams a node owns.
//! - `webrtc`: WHEP playback over one UDP socket (str0m, ICE-lite), H.264 from the hubs.

pub mod access;
pub mod frame;
pub mod hls;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod leases;
pub mod relay;
pub mod rtmp;
pub mod stats;
pub mod transcode;
pub mod webhook;
pub mod webrtc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use std::time::Duration;

use tokio::net::TcpListener;

use self::http::hls::HlsViewers;
use self::hub::{HubMetrics, Hubs};
use self::leases::Leases;
use self::relay::RelayIoError;
use self::stats::MediaStats;
use self::transcode::{TranscodeError, TranscodeMetrics, Transcoder};
use crate::cluster::NodeContext;
use crate::cluster::heartbeat::{Heartbeat, NodeIdentity, StoreHealth};
use crate::config::{HlsConfig, MediaConfig, Role};
use crate::runtime::Shutdown;
use crate::runtime::listener::{accept_loop, bind_tcp, bind_udp, local_addr};
use crate::runtime::metrics::NodeMetrics;
use crate::runtime::{BindError, ConnLimit};

/// Why a media node could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaStartError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The relay listener's QUIC endpoint could not be made.
    #[error("node {node}: `relay` ({addr}): cannot start the QUIC endpoint edges pull from")]
    Relay {
        /// Node name.
        node: String,
        /// The bound address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: RelayIoError,
    },
    /// The client endpoint that pulls streams from origins could not be made (edges and
    /// standalone nodes).
    #[error(
        "node {node}: role {role}: cannot start the relay client that pulls streams from origins"
    )]
    Puller {
        /// Node name.
        node: String,
        /// Its role.
        role: Role,
        /// What failed.
        #[source]
        source: RelayIoError,
    },
    /// The ABR transcoder could not start.
    #[error("node {node}: `transcode`: cannot start the transcoder")]
    Transcoder {
        /// Node name.
        node: String,
        /// What failed.
        #[source]
        source: TranscodeError,
    },
    /// The WebRTC socket could not be set up.
    #[error("node {node}: `webrtc.udp` ({addr}): cannot start WebRTC")]
    WebRtc {
        /// Node name.
        node: String,
        /// The bound address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The apps' webhooks could not start.
    #[error("node {node}: `apps`: cannot start the webhooks")]
    Webhook {
        /// Node name.
        node: String,
        /// What failed.
        #[source]
        source: webhook::WebhookError,
    },
}

/// A media node whose listeners are bound but not yet serving.
pub struct BoundMediaNode {
    config: Arc<MediaConfig>,
    rtmp: Option<(TcpListener, SocketAddr)>,
    http: (TcpListener, SocketAddr),
    /// The relay listener: its QUIC endpoint and address.
    relay: Option<(quinn::Endpoint, SocketAddr)>,
    /// The puller's QUIC client endpoint (edges and standalone nodes).
    puller: Option<quinn::Endpoint>,
    /// The WebRTC UDP socket and its address.
    webrtc: Option<(std::net::UdpSocket, SocketAddr)>,
}

impl BoundMediaNode {
    /// Binds every listener of the node and makes its QUIC endpoints.
    pub async fn bind(config: MediaConfig) -> Result<Self, MediaStartError> {
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
                let endpoint =
                    relay::server::endpoint(s).map_err(|source| MediaStartError::Relay {
                        node: name.clone(),
                        addr: a,
                        source,
                    })?;
                Some((endpoint, a))
            }
            None => None,
        };
        // Edges (and standalone nodes, for streams other origins own) pull on demand.
        let puller = if config.role == Role::Origin {
            None
        } else {
            let bind_ip = if config.http.ip().is_ipv6() {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            Some(
                relay::client::endpoint(bind_ip).map_err(|source| MediaStartError::Puller {
                    node: name.clone(),
                    role: config.role,
                    source,
                })?,
            )
        };
        let webrtc = match config.webrtc {
            Some(w) => {
                let s = bind_udp(&name, "webrtc", w.udp)?;
                let a = s.local_addr().map_err(|source| BindError {
                    node: name.clone(),
                    listener: "webrtc".into(),
                    addr: w.udp,
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
            puller,
            webrtc,
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
        if let Some((_, a)) = &self.webrtc {
            out.push(("webrtc", *a));
        }
        out
    }

    /// Starts serving; returns once the node's first heartbeat has been attempted.
    pub async fn start(self, ctx: &NodeContext) -> Result<(), MediaStartError> {
        let config = self.config;
        let health = Arc::new(StoreHealth::default());
        let limit = ConnLimit::new(config.maxconn);
        let mut metrics = NodeMetrics::new(&config.name, config.role.as_str());
        metrics
            .registry_mut()
            .register_collector(Box::new(health.clone()));
        let hub_metrics = HubMetrics::default();
        hub_metrics.register(metrics.registry_mut());
        let stats = Arc::new(MediaStats::default());
        stats.register(metrics.registry_mut());
        let hubs = Arc::new(Hubs::new(hub_metrics, Some(config.hls)));
        // One rayon pool for every transcoded stream of the node.
        let transcoder = match config.transcode.clone() {
            Some(t) => {
                let transcode_metrics = TranscodeMetrics::default();
                transcode_metrics.register(metrics.registry_mut());
                let t = Transcoder::new(t, hubs.clone(), transcode_metrics, ctx.shutdown.clone())
                    .map_err(|source| MediaStartError::Transcoder {
                    node: config.name.clone(),
                    source,
                })?;
                Some(t)
            }
            None => None,
        };
        stats.attach(hubs.clone());
        let hls_viewers = Arc::new(HlsViewers::default());
        stats.attach_hls(hls_viewers.clone());
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
        // Origins own the streams published to them: a lease each; the owner sends webhooks.
        let leases = if config.role == Role::Edge {
            None
        } else {
            let webhook_error = |source| MediaStartError::Webhook {
                node: config.name.clone(),
                source,
            };
            let (webhooks, outbox) = webhook::Webhooks::new(&config.apps).map_err(webhook_error)?;
            outbox
                .start(&config.name, &ctx.shutdown)
                .map_err(webhook_error)?;
            Some(Leases::new(
                ctx.store.clone(),
                config.name.clone(),
                identity.relay.clone(),
                ctx.cluster.node_timeout,
                health.clone(),
                webhooks,
            ))
        };
        if let Some(leases) = &leases {
            ctx.shutdown.spawn_service(
                leases
                    .clone()
                    .run(ctx.cluster.heartbeat, ctx.shutdown.clone()),
            );
        }

        let puller = self.puller.map(|endpoint| {
            let grace =
                (config.hls.segment * (config.hls.window as u32 + 2)).max(Duration::from_secs(10));
            relay::client::Puller::new(relay::client::PullerSetup {
                endpoint,
                secret: ctx.cluster.secret.clone(),
                store: ctx.store.clone(),
                hubs: hubs.clone(),
                poll: ctx.cluster.heartbeat,
                grace,
                max_streams: config.max_streams,
                metrics: relay_client_metrics,
                shutdown: ctx.shutdown.clone(),
            })
        });
        let publishing = Arc::new(ingest::Publishing {
            config: config.clone(),
            hubs: hubs.clone(),
            leases: leases.clone(),
            transcoder,
            stats: stats.clone(),
        });
        let webrtc = match (self.webrtc, config.webrtc) {
            (Some((socket, addr)), Some(webrtc_config)) => {
                let webrtc_error = |source| MediaStartError::WebRtc {
                    node: config.name.clone(),
                    addr,
                    source,
                };
                // `check` made sure one of them is an IP address.
                let advertise = webrtc_host(&config.advertise, addr).ok_or_else(|| {
                    webrtc_error(std::io::Error::other(
                        "`advertise` is not an IP address and the socket is bound to every address",
                    ))
                })?;
                let webrtc_metrics = webrtc::WebRtcMetrics::default();
                webrtc_metrics.register(metrics.registry_mut());
                let w = webrtc::WebRtc::new(
                    socket,
                    webrtc_config,
                    advertise,
                    hubs.clone(),
                    webrtc_metrics,
                    ctx.shutdown.clone(),
                )
                .map_err(webrtc_error)?;
                ctx.shutdown.spawn_service(w.clone().serve());
                Some(w)
            }
            _ => None,
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
            webrtc,
            publishing: publishing.clone(),
        });
        let (http_listener, _) = self.http;
        ctx.shutdown.spawn_service(accept_loop(
            http_listener,
            limit.clone(),
            None,
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
                publishing: publishing.clone(),
                stats: stats.clone(),
                shutdown: ctx.shutdown.clone(),
                puller: puller.clone(),
            });
            ctx.shutdown.spawn_service(accept_loop(
                rtmp_listener,
                limit.clone(),
                None,
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
        if let Some((endpoint, _)) = self.relay {
            relay::server::serve(
                endpoint,
                hubs.clone(),
                ctx.cluster.secret.clone(),
                relay_server_metrics,
                ctx.shutdown.clone(),
            );
        }
        Heartbeat {
            store: ctx.store.clone(),
            identity,
            interval: ctx.cluster.heartbeat,
            health,
            activity: stats,
            shutdown: ctx.shutdown.clone(),
            sys: Default::default(),
        }
        .start()
        .await;
        Ok(())
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

/// The IP address of the WebRTC host candidate: `advertise` when it is an IP address, else the
/// socket's own address when it is bound to one (ICE candidates carry addresses, not names).
fn webrtc_host(advertise: &str, bound: SocketAddr) -> Option<std::net::IpAddr> {
    match advertise.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if !bound.ip().is_unspecified() => Some(bound.ip()),
        Err(_) => None,
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
