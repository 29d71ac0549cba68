//! The serde mirror of the YAML config file (DESIGN.md §2). Key names here are a contract with
//! operators: add keys freely, rename none.
//!
//! Every struct denies unknown keys. Values that need more than a YAML type check (durations,
//! sizes, addresses, names that refer to other items) are kept as [`Spanned`] raw values so that
//! `config::convert` can check all of them and report every error with its file position.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// A raw scalar with its position in the file.
pub type Raw = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Settings every node of the cluster shares.
    pub cluster: Option<ClusterFile>,
    /// How long SIGTERM waits for open connections to finish (default 10s).
    pub shutdown_grace: Option<Raw>,
    /// Worker threads of the process (the async runtime, and each LB node's data path, one
    /// single-threaded event loop per thread like HAProxy's `nbthread`); default: CPU cores.
    pub threads: Option<Spanned<u64>>,
    /// The nodes this process runs.
    pub nodes: Option<Vec<NodeFile>>,
    /// This file is a local demo (one box, loopback): `check` lets short and placeholder
    /// secrets pass.
    pub local_demo: Option<Spanned<bool>>,
}

/// `cluster:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `embedded` or a `mongodb://` URI.
    pub store: Option<Raw>,
    /// MongoDB database name.
    pub database: Option<Raw>,
    /// Shared secret that authenticates nodes to each other.
    pub secret: Option<Raw>,
    /// Node and lease refresh period.
    pub heartbeat: Option<Raw>,
    /// Silence after which a node is dead and its leases expire.
    pub node_timeout: Option<Raw>,
}

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleFile {
    /// Load balancer.
    Lb,
    /// Ingest + transcode + package + relay server.
    Origin,
    /// Pulls from origins, serves viewers.
    Edge,
    /// Origin and edge at once.
    Standalone,
}

/// One entry of `nodes:`. All roles share this struct (so every key keeps its position for
/// errors); `config::convert` checks which keys a role may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// `lb`, `origin`, `edge` or `standalone`.
    pub role: Spanned<RoleFile>,
    /// Unique node name; the node's `_id` in the cluster store.
    pub name: Raw,

    // ---- media nodes (origin, edge, standalone) ----
    /// Address other nodes use to reach this one.
    pub advertise: Option<Raw>,
    /// RTMP listener.
    pub rtmp: Option<Raw>,
    /// HTTP listener (HLS, REST, health, metrics, console).
    pub http: Option<Raw>,
    /// QUIC relay listener (UDP), origins only.
    pub relay: Option<Raw>,
    /// Application names (`live`) or `{name, publish_token_secret}` maps.
    pub apps: Option<Vec<Spanned<AppFile>>>,
    /// HLS packaging.
    pub hls: Option<HlsFile>,
    /// Low-Latency HLS (fMP4 parts).
    pub llhls: Option<LlHlsFile>,
    /// ABR transcoding (origins).
    pub transcode: Option<TranscodeFile>,
    /// Who may reach the REST API, the console and `/metrics`.
    pub rest: Option<RestFile>,
    /// WebRTC playback (WHEP): its UDP port.
    pub webrtc: Option<WebRtcFile>,
    /// Streams a media node carries at once: published here (origins, standalone) or pulled
    /// (edges).
    pub max_streams: Option<Spanned<u64>>,

    // ---- load balancers ----
    /// Global connection limit.
    pub maxconn: Option<Spanned<u64>>,
    /// HAProxy-style timeouts.
    pub timeouts: Option<TimeoutsFile>,
    /// Raw HTTP responses replacing the LB's own error responses, by status code.
    pub errorfiles: Option<BTreeMap<u16, Raw>>,
    /// Stats listener.
    pub stats: Option<StatsFile>,
    /// Listening sides.
    pub frontends: Option<Vec<FrontendFile>>,
    /// Server groups.
    pub backends: Option<Vec<BackendFile>>,
    /// Access log settings.
    pub log: Option<LogFile>,
}

/// An `apps:` entry: a bare name or a map with settings.
#[derive(Debug)]
pub enum AppFile {
    /// `- live`
    Name(String),
    /// `- {name: live, security: ..., publish_token_secret: ...}`
    Full(Box<AppFullFile>),
}

/// The map form of an `apps:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppFullFile {
    /// Application name, the first path segment of RTMP and HLS URLs.
    pub name: String,
    /// When set, publishing needs `?token=<hex HMAC-SHA256(secret, streamId)>`.
    pub publish_token_secret: Option<String>,
    /// Who may publish and play (Ant Media's stream security).
    pub security: Option<SecurityFile>,
    /// Where `liveStreamStarted` / `liveStreamEnded` are posted.
    pub webhook: Option<WebhookFile>,
}

/// `webhook:` of an app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    /// `http://` or `https://` URL the events are posted to.
    pub url: Raw,
    /// Key of the HMAC-SHA256 signature header.
    pub secret: Raw,
}

/// `rest:` of a media node (Ant Media's `remoteAllowedCIDR` and JWT server control).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestFile {
    /// Client addresses (CIDRs or IPs) served without a token (default loopback).
    pub remote_allowed_cidrs: Option<Vec<Raw>>,
    /// HS256 key of the JWTs that open the REST from anywhere (`Authorization` header).
    pub jwt_secret: Option<Raw>,
    /// Proxies whose `X-Forwarded-For` is believed (default loopback).
    pub trusted_proxies: Option<Vec<Raw>>,
    /// Browser origins the JSON APIs answer CORS for (default none).
    pub cors_origins: Option<Vec<Raw>>,
}

/// `webrtc:` of a media node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcFile {
    /// The one UDP socket every WebRTC session of the node shares (`0.0.0.0:5000`).
    pub udp: Raw,
    /// WebRTC sessions the node holds at once (default 1000).
    pub max_sessions: Option<Spanned<u64>>,
    /// WebRTC sessions one client address may hold at once (default 20).
    pub max_sessions_per_address: Option<Spanned<u64>>,
    /// Bandwidth-driven rendition switching (default on).
    pub abr: Option<bool>,
}

/// `security:` of an app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    /// `jwt`, `hmac` (with `publish_token_secret`) or `open`.
    pub publish: Option<Spanned<PublishModeFile>>,
    /// `jwt` or `open`.
    pub play: Option<Spanned<PlayModeFile>>,
    /// The HS256 key of publish and play JWTs.
    pub jwt_secret: Option<Raw>,
}

/// `security.publish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModeFile {
    /// An HS256 JWT with `type: publish`.
    Jwt,
    /// `?token=<hex HMAC-SHA256(publish_token_secret, streamId)>`.
    Hmac,
    /// Anyone.
    Open,
}

/// `security.play`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayModeFile {
    /// An HS256 JWT with `type: play`.
    Jwt,
    /// Anyone.
    Open,
}

impl<'de> Deserialize<'de> for AppFile {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AppVisitor;
        impl<'de> Visitor<'de> for AppVisitor {
            type Value = AppFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an app name or a map {name, security, publish_token_secret}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AppFile, E> {
                Ok(AppFile::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AppFile, A::Error> {
                AppFullFile::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|f| AppFile::Full(Box::new(f)))
            }
        }
        deserializer.deserialize_any(AppVisitor)
    }
}

/// `hls:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsFile {
    /// Target segment duration; segments are cut on the first keyframe after it.
    pub segment: Option<Raw>,
    /// Segments listed in the live playlist.
    pub window: Option<Spanned<u64>>,
    /// How long a playlist request on an edge waits for the first segment.
    pub wait: Option<Raw>,
    /// Bytes of HLS and LL-HLS segments the node holds for all its streams at most.
    pub max_memory: Option<Raw>,
}

/// `llhls:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlHlsFile {
    /// Serve LL-HLS (default true).
    pub enabled: Option<Spanned<bool>>,
    /// Target duration of a partial segment (default 333ms).
    pub part: Option<Raw>,
    /// Blocking requests (playlist reloads, preload-hint parts) waiting on one rendition at
    /// once; more get 503 (default 10000).
    pub max_waiting: Option<Spanned<u64>>,
}

/// `transcode:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeFile {
    /// x264 preset (`ultrafast` .. `placebo`).
    pub preset: Option<Raw>,
    /// x264 tune (`zerolatency`, `film`, ...).
    pub tune: Option<Raw>,
    /// Size of the rayon pool doing decode/scale/encode (default: number of cores).
    pub threads: Option<Spanned<u64>>,
    /// Renditions to produce.
    pub ladder: Option<Vec<RungFile>>,
}

/// One rendition of the ladder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungFile {
    /// Output height in pixels; width follows the source aspect ratio.
    pub height: Spanned<u64>,
    /// Video bit rate (`2500k`).
    pub bitrate: Raw,
}

/// `timeouts:` (HAProxy's `timeout` keywords).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// Connecting to a server.
    pub connect: Option<Raw>,
    /// Client inactivity: waiting for request headers, keep-alive idle, TLS handshake.
    pub client: Option<Raw>,
    /// Server inactivity: waiting for the response.
    pub server: Option<Raw>,
    /// Idle timeout of tunnels (TCP mode, WebSocket).
    pub tunnel: Option<Raw>,
    /// Inactivity once the client has half-closed.
    pub client_fin: Option<Raw>,
    /// Health-check timeout when a backend's health section does not set one.
    pub check: Option<Raw>,
}

/// `stats:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsFile {
    /// Listener address.
    pub bind: Raw,
    /// URI prefix of the stats page.
    pub uri: Option<Raw>,
    /// Basic-auth realm.
    pub realm: Option<String>,
    /// Credentials; without them the page is open.
    pub auth: Option<AuthFile>,
    /// Hide the version on the page.
    pub hide_version: Option<bool>,
    /// Page auto-refresh period.
    pub refresh: Option<Raw>,
}

/// Basic-auth credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

/// `log:` (access log).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// Write one line per request / connection (default true).
    pub access: Option<bool>,
    /// Skip connections that sent no data (HAProxy `option dontlognull`).
    pub dontlognull: Option<bool>,
}

/// Proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeFile {
    /// Byte pipe.
    Tcp,
    /// HTTP/1.1, HTTP/2, WebSocket.
    Http,
    /// RTMP-aware: publishers and players to different backends.
    Rtmp,
}

/// A frontend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendFile {
    /// Name (stats, logs).
    pub name: Raw,
    /// `tcp`, `http` or `rtmp`.
    pub mode: Spanned<ModeFile>,
    /// Listener addresses.
    pub bind: Vec<Raw>,
    /// Default backend.
    pub backend: Option<Raw>,
    /// `mode: rtmp`: where publishers go.
    pub publish_backend: Option<Raw>,
    /// `mode: rtmp`: where players go.
    pub play_backend: Option<Raw>,
    /// Redirect plain HTTP to HTTPS.
    pub redirect_https: Option<bool>,
    /// TLS termination.
    pub tls: Option<TlsFile>,
    /// Path routing, first match wins.
    pub routes: Option<Vec<RouteFile>>,
    /// Connections this frontend holds at once (HAProxy's frontend `maxconn`): at the limit its
    /// listeners stop accepting, so one flooded frontend cannot take the node's whole `maxconn`.
    pub maxconn: Option<Spanned<u64>>,
    /// Connections one client address may hold on this frontend at once (HAProxy's
    /// `src_conn_cur` stick-table idiom); past it, new ones are closed at accept. `0` = off.
    pub maxconn_per_source: Option<Spanned<u64>>,
    /// `mode: rtmp`: time a client has from accept to `publish` or `play` (handshake,
    /// `connect`, `createStream` included) before the LB closes it.
    pub handshake_timeout: Option<Raw>,
}

/// `tls:` of a frontend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM files: full chain then private key. First = default; others chosen by SNI.
    pub certs: Vec<Raw>,
    /// Generate a self-signed development certificate if a file is missing (one-box runs).
    pub self_signed: Option<bool>,
}

/// A route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Request path prefix.
    pub path_prefix: Option<Raw>,
    /// Path pattern, a prefix where `*` is any one segment (`/*/whip/`: WHIP of every app).
    pub path: Option<Raw>,
    /// A query parameter, `name=value` (`target=origin`: Ant Media's publishing WebSocket).
    pub query: Option<Raw>,
    /// Backend for matching requests.
    pub backend: Raw,
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalanceFile {
    /// Rotate.
    Roundrobin,
    /// Fewest active connections.
    Leastconn,
    /// Client IP hash.
    Source,
    /// Stream-id hash, consistent with bounded loads.
    Stream,
}

/// A backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    /// Name.
    pub name: Raw,
    /// `tcp` or `http`.
    pub mode: Spanned<ModeFile>,
    /// Algorithm.
    pub balance: Option<Spanned<BalanceFile>>,
    /// `balance: stream`: no server above this percentage of the average load (HAProxy's
    /// `hash-balance-factor`).
    pub hash_balance_factor: Option<Spanned<u64>>,
    /// `balance: stream` on mode http: a sticky session unseen this long stops counting as a
    /// viewer of its server.
    pub viewer_idle: Option<Raw>,
    /// Active health checks.
    pub health: Option<HealthFile>,
    /// Cookie stickiness.
    pub sticky: Option<StickyFile>,
    /// Static servers.
    pub servers: Option<Vec<ServerFile>>,
    /// Servers discovered from the cluster store.
    pub servers_from: Option<ServersFromFile>,
    /// Connect attempts after a failure.
    pub retries: Option<Spanned<u64>>,
    /// Close the upstream connection after each response (HAProxy `http-server-close`).
    pub http_server_close: Option<bool>,
}

/// Health-check kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKindFile {
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http,
}

/// `health:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// `tcp` or `http`.
    pub kind: Spanned<HealthKindFile>,
    /// Path for `http` checks.
    pub path: Option<Raw>,
    /// Period between checks.
    pub interval: Option<Raw>,
    /// Successes to go UP.
    pub rise: Option<Spanned<u64>>,
    /// Failures to go DOWN.
    pub fall: Option<Spanned<u64>>,
    /// Check timeout (default: interval).
    pub timeout: Option<Raw>,
}

/// Sticky mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StickyModeFile {
    /// HAProxy `cookie NAME prefix`.
    Prefix,
}

/// `sticky:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyFile {
    /// Cookie name.
    pub cookie: Raw,
    /// Only `prefix`.
    pub mode: Spanned<StickyModeFile>,
    /// Accepted for HAProxy parity; changes nothing in prefix mode.
    pub nocache: Option<bool>,
}

/// A static server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Name.
    pub name: Raw,
    /// `IP:PORT`.
    pub addr: Raw,
    /// Sticky-cookie value.
    pub cookie: Option<Raw>,
    /// Weight for round robin (default 1).
    pub weight: Option<Spanned<u64>>,
}

/// Which node listener `servers_from` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerFile {
    /// The node's HTTP listener.
    Http,
    /// The node's RTMP listener.
    Rtmp,
}

/// `servers_from:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServersFromFile {
    /// Node role to follow.
    pub role: Spanned<RoleFile>,
    /// Listener of those nodes.
    pub listener: Spanned<ListenerFile>,
}
