//! Typed config of the `lb` role (its conversion from the file structs is `lb_convert`).
//!
//! HAProxy 2.0 semantics, key by key: frontends bind and pick a backend, backends hold servers,
//! health checks and stickiness. Defaults follow HAProxy where it has one and say so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ListenerSpec, Role, Secret};

/// Default global connection limit (HAProxy's `maxconn` default in the seed config).
pub const DEFAULT_MAXCONN: u64 = 2000;
/// Default `maxconn_per_source` of a frontend: generous (players behind one NAT share an
/// address), yet one address cannot take the whole default `maxconn` of 2000.
pub const DEFAULT_MAXCONN_PER_SOURCE: u64 = 500;
/// Default `handshake_timeout` of `mode: rtmp` frontends (the media nodes' own deadline).
pub const DEFAULT_RTMP_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connect attempts after the first failure (HAProxy `retries 3`).
pub const DEFAULT_RETRIES: u64 = 3;

/// A load-balancer node.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Node name.
    pub name: String,
    /// Global connection limit: at the limit the LB stops accepting, and resumes below 90 %.
    pub maxconn: usize,
    /// Timeouts.
    pub timeouts: LbTimeouts,
    /// Replacement bodies for the LB's own error responses, loaded at start.
    pub errorfiles: Vec<(u16, PathBuf)>,
    /// Stats listener.
    pub stats: Option<StatsConfig>,
    /// Frontends.
    pub frontends: Vec<FrontendConfig>,
    /// Backends; frontends refer to them by index.
    pub backends: Vec<BackendConfig>,
    /// Access log.
    pub log: AccessLogConfig,
    /// Event-loop threads of the data path (the process's `threads`).
    pub threads: usize,
}

impl LbConfig {
    /// Every listener this node binds.
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        let mut out = Vec::new();
        for f in &self.frontends {
            for addr in &f.bind {
                out.push(ListenerSpec {
                    name: format!("frontend:{}", f.name),
                    addr: *addr,
                    udp: false,
                });
            }
        }
        if let Some(s) = &self.stats {
            out.push(ListenerSpec {
                name: "stats".into(),
                addr: s.bind,
                udp: false,
            });
        }
        out
    }
}

/// HAProxy `timeout` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbTimeouts {
    /// Connecting to a server (default 5s).
    pub connect: Duration,
    /// Client inactivity, request headers, keep-alive idle, TLS handshake (default 30s).
    pub client: Duration,
    /// Waiting for a server's response (default 30s).
    pub server: Duration,
    /// Idle tunnels: TCP mode, WebSocket (default 2h).
    pub tunnel: Duration,
    /// After the client half-closed (default: `client`).
    pub client_fin: Duration,
    /// Health-check timeout when a backend does not set one (default: the check interval).
    pub check: Option<Duration>,
}

/// The stats listener.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    /// Listener address.
    pub bind: SocketAddr,
    /// URI prefix of the page.
    pub uri: String,
    /// Basic-auth realm.
    pub realm: String,
    /// Credentials (user, password).
    pub auth: Option<(String, Secret)>,
    /// Hide the version on the page.
    pub hide_version: bool,
    /// Auto-refresh period of the HTML page.
    pub refresh: Option<Duration>,
}

/// Access log switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// One line per request (HTTP) or connection (TCP, RTMP).
    pub enabled: bool,
    /// Skip connections that transferred nothing.
    pub dontlognull: bool,
}

/// Proxy mode of a frontend or backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Byte pipe.
    Tcp,
    /// HTTP/1.1 and HTTP/2 with WebSocket.
    Http,
    /// RTMP-aware routing (frontends only).
    Rtmp,
}

/// A frontend.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Name.
    pub name: String,
    /// Mode.
    pub mode: ProxyMode,
    /// Listener addresses.
    pub bind: Vec<SocketAddr>,
    /// Default backend (index into `LbConfig::backends`).
    pub backend: Option<usize>,
    /// `mode: rtmp`: backend for publishers.
    pub publish_backend: Option<usize>,
    /// `mode: rtmp`: backend for players.
    pub play_backend: Option<usize>,
    /// Redirect plain-HTTP requests to HTTPS.
    pub redirect_https: bool,
    /// TLS termination.
    pub tls: Option<TlsConfig>,
    /// Path routes, first match wins.
    pub routes: Vec<RouteConfig>,
    /// This frontend's own connection limit (within the node's `maxconn`).
    pub maxconn: Option<usize>,
    /// Connections one source address may hold on this frontend at once (`None`: no limit),
    /// so one client cannot take the frontend's whole `maxconn`.
    pub maxconn_per_source: Option<usize>,
    /// `mode: rtmp`: deadline from accept to `publish`/`play`; a slow client cannot hold a
    /// connection slot longer than this without being routed.
    pub handshake_timeout: Duration,
}

/// TLS termination of a frontend.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM files (chain then key); the first is the default certificate.
    pub certs: Vec<PathBuf>,
    /// Create a self-signed development certificate where a file is missing.
    pub self_signed: bool,
}

/// A route: requests it matches go to its backend.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// What it matches.
    pub matcher: RouteMatch,
    /// Backend index.
    pub backend: usize,
}

/// What a route matches in a request target (`path?query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The path starts with this.
    PathPrefix(String),
    /// The path starts with these segments, `None` = any one segment (`/*/whip/`); a pattern
    /// ending in `/` wants more after it.
    Path(Vec<Option<String>>, bool),
    /// The query has this `name=value` parameter.
    Query(String),
}

impl RouteMatch {
    /// Parses `path:` (`/*/whip/`).
    pub fn path(pattern: &str) -> Self {
        let open = pattern.ends_with('/');
        let segments = pattern
            .trim_matches('/')
            .split('/')
            .map(|s| (s != "*").then(|| s.to_owned()))
            .collect();
        RouteMatch::Path(segments, open)
    }

    /// Whether the request target (`path?query`) matches.
    pub fn matches(&self, target: &[u8]) -> bool {
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(i) => (
                target.get(..i).unwrap_or_default(),
                target.get(i + 1..).unwrap_or_default(),
            ),
            None => (target, &[][..]),
        };
        match self {
            RouteMatch::PathPrefix(prefix) => target.starts_with(prefix.as_bytes()),
            RouteMatch::Path(segments, open) => {
                let mut parts = path
                    .strip_prefix(b"/")
                    .unwrap_or(path)
                    .split(|&b| b == b'/');
                for want in segments {
                    let Some(got) = parts.next() else {
                        return false;
                    };
                    let ok = match want {
                        Some(w) => got == w.as_bytes(),
                        None => !got.is_empty(),
                    };
                    if !ok {
                        return false;
                    }
                }
                // `/*/whip/` wants something after `whip/`; `/*/whip` also matches `/live/whip`.
                !*open || parts.next().is_some_and(|rest| !rest.is_empty())
            }
            RouteMatch::Query(param) => query.split(|&b| b == b'&').any(|p| p == param.as_bytes()),
        }
    }
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Weighted rotation.
    RoundRobin,
    /// Fewest active connections.
    LeastConn,
    /// Hash of the client IP.
    Source,
    /// Hash of the stream id onto a consistent-hash ring, with bounded loads: a stream's
    /// viewers share the first servers on its ring position that are under
    /// `factor_percent` of the average load.
    Stream {
        /// No server takes a new viewer above this percentage of the average load.
        factor_percent: u32,
        /// Mode http: a sticky session unseen this long no longer counts.
        viewer_idle: Duration,
    },
}

/// Default `hash_balance_factor` of `balance: stream`: no server above 1.25 x the average.
pub const DEFAULT_HASH_BALANCE_FACTOR: u32 = 125;
/// Default `viewer_idle` of `balance: stream` (several HLS playlist reloads).
pub const DEFAULT_VIEWER_IDLE: Duration = Duration::from_secs(10);

/// A backend.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Name.
    pub name: String,
    /// `Tcp` or `Http`.
    pub mode: ProxyMode,
    /// Algorithm.
    pub balance: Balance,
    /// Active health checks.
    pub health: Option<HealthConfig>,
    /// Cookie name for prefix stickiness.
    pub sticky_cookie: Option<String>,
    /// Static servers.
    pub servers: Vec<ServerConfig>,
    /// Servers that follow the cluster store.
    pub servers_from: Option<ServersFrom>,
    /// Connect attempts after the first failure.
    pub retries: u32,
    /// Close upstream connections after each response (no pooling).
    pub http_server_close: bool,
}

/// Health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// What a check does.
    pub kind: HealthKind,
    /// Period.
    pub interval: Duration,
    /// Consecutive successes to go UP.
    pub rise: u32,
    /// Consecutive failures to go DOWN.
    pub fall: u32,
    /// Per-check timeout.
    pub timeout: Duration,
}

/// Health-check kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    /// Connect.
    Tcp,
    /// `GET path`, 2xx/3xx pass.
    Http {
        /// Request path.
        path: String,
    },
}

/// A static server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// Sticky-cookie value.
    pub cookie: Option<String>,
    /// Round-robin weight.
    pub weight: u32,
}

/// Which listener of discovered nodes a backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeListener {
    /// HTTP.
    Http,
    /// RTMP.
    Rtmp,
}

/// `servers_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServersFrom {
    /// Role followed.
    pub role: Role,
    /// Listener used.
    pub listener: NodeListener,
}

/// Status codes an errorfile may replace.
pub const ERRORFILE_CODES: &[u16] = &[400, 401, 403, 408, 431, 500, 502, 503, 504];

#[cfg(test)]
mod route_tests {
    use super::RouteMatch;

    #[test]
    fn routes_match_a_path_pattern_or_a_query_parameter() {
        let whip = RouteMatch::path("/*/whip/");
        assert!(whip.matches(b"/live/whip/cam"));
        assert!(whip.matches(b"/LiveApp/whip/cam/abc?token=x"));
        assert!(!whip.matches(b"/live/whep/cam"));
        assert!(!whip.matches(b"/live/whip/"));
        assert!(!whip.matches(b"//whip/cam"));
        assert!(!whip.matches(b"/whip/cam"));
        let origin = RouteMatch::Query("target=origin".into());
        assert!(origin.matches(b"/live/websocket?target=origin"));
        assert!(origin.matches(b"/live/websocket?a=1&target=origin"));
        assert!(!origin.matches(b"/live/websocket?target=edge"));
        assert!(!origin.matches(b"/live/websocket?target=originx"));
        assert!(!origin.matches(b"/target=origin"));
        let prefix = RouteMatch::PathPrefix("/rest/".into());
        assert!(prefix.matches(b"/rest/v2"));
        assert!(!prefix.matches(b"/live/rest/v2"));
    }
}
