//! Typed config of media nodes (`origin`, `edge`, `standalone`) and its conversion.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::diag::Diag;
use super::file::{
    AppFile, NodeFile, PlayModeFile, PublishModeFile, Raw, RestFile, SecurityFile, WebRtcFile,
    WebhookFile,
};
use super::secret::MIN_SECRET;
use super::values::parse_size;
use super::{ListenerSpec, Role, Secret};
use serde_saphyr::Spanned;

mod sections;
use self::sections::{app_security, app_webhook, default_advertise, rest, webrtc};

/// Default `hls.segment`.
pub const DEFAULT_HLS_SEGMENT: Duration = Duration::from_secs(2);
/// Default `hls.window`.
pub const DEFAULT_HLS_WINDOW: usize = 6;
/// Default `llhls.part`.
pub const DEFAULT_LLHLS_PART: Duration = Duration::from_millis(333);
/// Default `llhls.max_waiting`.
pub const DEFAULT_LLHLS_MAX_WAITING: usize = 10_000;
/// Default `hls.wait`.
pub const DEFAULT_HLS_WAIT: Duration = Duration::from_secs(10);
/// Default `hls.max_memory`: 2 GiB of segments (about 100 streams of a 5 Mbit/s ladder).
pub const DEFAULT_HLS_MAX_MEMORY: usize = 2 << 30;
/// Smallest `hls.max_memory`.
pub const MIN_HLS_MAX_MEMORY: u64 = 64 << 10;
/// Applications a node serves when `apps` is absent.
pub const DEFAULT_APPS: &[&str] = &["live", "LiveApp"];

/// A media node.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Node name.
    pub name: String,
    /// `Origin`, `Edge` or `Standalone`.
    pub role: Role,
    /// Host other nodes use to reach this one (IP or DNS name, no port).
    pub advertise: String,
    /// RTMP listener (origins and standalone always; edges serve RTMP play when set).
    pub rtmp: Option<SocketAddr>,
    /// HTTP listener.
    pub http: SocketAddr,
    /// QUIC relay listener (UDP).
    pub relay: Option<SocketAddr>,
    /// Applications (first URL path segment).
    pub apps: Vec<AppConfig>,
    /// HLS packaging.
    pub hls: HlsConfig,
    /// ABR ladder (origins and standalone).
    pub transcode: Option<TranscodeConfig>,
    /// Connection limit across the node's RTMP and HTTP listeners.
    pub maxconn: usize,
    /// Who may reach the REST API, the console and `/metrics`.
    pub rest: RestConfig,
    /// WebRTC playback (WHEP); `None`: off.
    pub webrtc: Option<WebRtcConfig>,
    /// Streams carried at once: publishers past it are refused (origins, standalone), pulls
    /// past it answered 503 (edges). Bounds the memory of GOP caches and HLS windows.
    pub max_streams: usize,
}

/// Default `max_streams`.
pub const DEFAULT_MAX_STREAMS: usize = 1000;

/// Default `webrtc.max_sessions`.
pub const DEFAULT_WEBRTC_MAX_SESSIONS: usize = 1000;

/// Default `webrtc.max_sessions_per_address`: a household or an office behind one NAT, not a
/// single client opening sessions in a loop.
pub const DEFAULT_WEBRTC_MAX_SESSIONS_PER_ADDRESS: usize = 20;

/// WebRTC playback: one UDP socket for every session of the node (ICE-lite, the host candidate
/// is `advertise` with the bound port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// The UDP socket's address.
    pub udp: SocketAddr,
    /// Sessions held at once; a WHEP offer beyond it is refused (503).
    pub max_sessions: usize,
    /// Sessions held at once for one client address (the peer, or what trusted proxies say
    /// in `X-Forwarded-For`); beyond it: 503 / `viewerLimitReached`.
    pub max_sessions_per_address: usize,
    /// Bandwidth-driven rendition switching (send-side estimation with TWCC).
    pub abr: bool,
}

/// Who may reach a media node's REST API, web console and `/metrics` (Ant Media's
/// `remoteAllowedCIDR` and JWT server control). Health and readiness stay open (the LB checks
/// them); playlists and segments follow the apps' `security.play`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// Client addresses served without a token.
    pub allowed: Vec<IpNet>,
    /// Key of the HS256 JWTs (`Authorization` header) that open the REST from anywhere.
    pub jwt: Option<Secret>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins the JSON APIs send CORS headers for.
    pub cors_origins: Vec<String>,
}

/// Default `rest.remote_allowed_cidrs` and `rest.trusted_proxies`: this machine.
pub const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            allowed: loopback(),
            jwt: None,
            trusted_proxies: loopback(),
            cors_origins: Vec::new(),
        }
    }
}

fn loopback() -> Vec<IpNet> {
    LOOPBACK.iter().filter_map(|n| n.parse().ok()).collect()
}

/// Where an app's stream events are posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Key of the `X-Streamfleet-Signature` HMAC-SHA256 header.
    pub secret: Secret,
}

impl MediaConfig {
    /// Every listener this node binds.
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        let mut out = Vec::new();
        if let Some(a) = self.rtmp {
            out.push(ListenerSpec {
                name: "rtmp".into(),
                addr: a,
                udp: false,
            });
        }
        out.push(ListenerSpec {
            name: "http".into(),
            addr: self.http,
            udp: false,
        });
        if let Some(a) = self.relay {
            out.push(ListenerSpec {
                name: "relay".into(),
                addr: a,
                udp: true,
            });
        }
        if let Some(w) = self.webrtc {
            out.push(ListenerSpec {
                name: "webrtc".into(),
                addr: w.udp,
                udp: true,
            });
        }
        out
    }

    /// The app with this name, if the node serves it.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }
}

/// One application.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Name.
    pub name: String,
    /// Who may publish and play.
    pub security: AppSecurity,
    /// Where `liveStreamStarted` / `liveStreamEnded` go.
    pub webhook: Option<WebhookConfig>,
}

/// An app's stream security (Ant Media's JWT stream security, plus the HMAC publish token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSecurity {
    /// Who may publish.
    pub publish: PublishRule,
    /// Who may play.
    pub play: PlayRule,
}

/// Who may publish to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRule {
    /// Anyone.
    Open,
    /// `?token=<hex HMAC-SHA256(secret, streamId)>`.
    Hmac(Secret),
    /// An HS256 JWT signed with this key, `type: publish`, for the stream.
    Jwt(Secret),
}

/// Who may play an app's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayRule {
    /// Anyone.
    Open,
    /// An HS256 JWT signed with this key, `type: play`, for the stream.
    Jwt(Secret),
}

/// The shortest `jwt_secret` accepted (HS256 keys shorter than this are guessable).
pub const MIN_JWT_SECRET: usize = 16;

/// HLS packaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    /// Target segment duration.
    pub segment: Duration,
    /// Segments in the live playlist.
    pub window: usize,
    /// How long a playlist request waits for a stream's first segment.
    pub wait: Duration,
    /// Low-Latency HLS part target (`llhls.part`), `None` when LL-HLS is off.
    pub part: Option<Duration>,
    /// Blocking LL-HLS requests waiting on one rendition at once (`llhls.max_waiting`).
    pub max_waiting: usize,
    /// Bytes of segments (HLS and LL-HLS) the node holds at most (`hls.max_memory`): past
    /// it, streams keep only what their playlists list and new streams are refused.
    pub max_memory: usize,
}

/// ABR transcoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeConfig {
    /// x264 preset.
    pub preset: String,
    /// x264 tune.
    pub tune: Option<String>,
    /// rayon pool size.
    pub threads: usize,
    /// Renditions, highest first.
    pub ladder: Vec<Rung>,
}

/// One rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Height in pixels.
    pub height: u32,
    /// Video bit rate in bits per second.
    pub bitrate: u64,
}

const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];
const X264_TUNES: &[&str] = &[
    "film",
    "animation",
    "grain",
    "stillimage",
    "psnr",
    "ssim",
    "fastdecode",
    "zerolatency",
];

pub(super) fn convert_media(n: &NodeFile, at: &str, d: &mut Diag) -> Option<MediaConfig> {
    let role = match Role::from(n.role.value) {
        Role::Lb => return None,
        media => media,
    };
    for (present, key) in [
        (n.timeouts.is_some(), "timeouts"),
        (n.errorfiles.is_some(), "errorfiles"),
        (n.stats.is_some(), "stats"),
        (n.frontends.is_some(), "frontends"),
        (n.backends.is_some(), "backends"),
        (n.log.is_some(), "log"),
    ] {
        if present {
            d.at(
                &n.role,
                format!("{at}.{key}: not a key of role {role} (lb nodes only)"),
            );
        }
    }
    if role == Role::Edge {
        if let Some(r) = &n.relay {
            d.at(
                r,
                format!("{at}.relay: edges have no relay listener (they pull from origins)"),
            );
        }
        if n.transcode.is_some() {
            d.at(&n.role, format!("{at}.transcode: edges never transcode"));
        }
    }
    let rtmp = n
        .rtmp
        .as_ref()
        .and_then(|r| d.addr(&format!("{at}.rtmp"), r));
    if n.rtmp.is_none() && role != Role::Edge {
        d.at(
            &n.name,
            format!("{at}.rtmp: missing (a {role} node ingests RTMP)"),
        );
    }
    let http = match &n.http {
        Some(h) => d.addr(&format!("{at}.http"), h),
        None => {
            d.at(
                &n.name,
                format!("{at}.http: missing (every media node serves HTTP)"),
            );
            None
        }
    };
    let relay = n
        .relay
        .as_ref()
        .filter(|_| role != Role::Edge)
        .and_then(|r| d.addr(&format!("{at}.relay"), r));
    if n.relay.is_none() && role == Role::Origin {
        d.at(
            &n.name,
            format!("{at}.relay: missing (edges pull from an origin over its relay)"),
        );
    }
    let advertise = match &n.advertise {
        Some(a) => {
            let v = a.value.trim();
            if v.is_empty()
                || v.contains([' ', '/'])
                || (v.contains(':') && v.parse::<std::net::Ipv6Addr>().is_err())
            {
                d.at(
                    a,
                    format!(
                        "{at}.advertise: `{}` is not a host name or IP address (no port)",
                        a.value
                    ),
                );
            }
            v.to_owned()
        }
        None => default_advertise(http),
    };

    // Publishers reach origins and standalone nodes: each app must say who may publish.
    let ingests = role != Role::Edge;
    let mut apps: Vec<AppConfig> = Vec::new();
    match &n.apps {
        None => {
            if ingests {
                d.at(
                    &n.name,
                    format!(
                        "{at}.apps: missing; a {role} node takes publishers, so list its apps \
                         with `security:` (e.g. `apps: [{{name: live, security: {{publish: jwt, \
                         jwt_secret: ...}}}}]`), or say `security: {{publish: open}}` to let anyone \
                         publish"
                    ),
                );
            }
            apps.extend(DEFAULT_APPS.iter().map(|a| AppConfig {
                name: (*a).into(),
                security: AppSecurity {
                    publish: PublishRule::Open,
                    play: PlayRule::Open,
                },
                webhook: None,
            }));
        }
        Some(list) => {
            for (i, a) in list.iter().enumerate() {
                let (name, secret, security, webhook) = match &a.value {
                    AppFile::Name(n) => (n.clone(), None, None, None),
                    AppFile::Full(f) => (
                        f.name.clone(),
                        f.publish_token_secret.clone(),
                        f.security.as_ref(),
                        f.webhook.as_ref(),
                    ),
                };
                if ingests && secret.is_none() && security.is_none_or(|s| s.publish.is_none()) {
                    d.at(
                        a,
                        format!(
                            "{at}.apps[{i}].security.publish: missing; a {role} node takes \
                             publishers, so app `{name}` must say who may publish (`jwt` with \
                             `jwt_secret`, `hmac` with `publish_token_secret`), or `publish: open` \
                             to let anyone publish any stream id"
                        ),
                    );
                }
                if secret.as_deref() == Some("") {
                    d.at(a, format!("{at}.apps[{i}].publish_token_secret: empty"));
                } else if let Some(s) = &secret {
                    d.secret(
                        &format!("{at}.apps[{i}].publish_token_secret"),
                        a,
                        s,
                        MIN_SECRET,
                    );
                }
                let webhook = webhook.map(|w| app_webhook(&format!("{at}.apps[{i}]"), w, d));
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    d.at(a, format!("{at}.apps[{i}]: `{name}` is not a valid app name (letters, digits, _ and -)"));
                } else if name == "rest" || apps.iter().any(|o| o.name == name) {
                    d.at(
                        a,
                        format!("{at}.apps[{i}]: app name `{name}` is reserved or listed twice"),
                    );
                }

                let security = app_security(
                    &format!("{at}.apps[{i}]"),
                    a,
                    secret.map(Secret::new),
                    security,
                    d,
                );
                apps.push(AppConfig {
                    name,
                    security,
                    webhook,
                });
            }
            if list.is_empty() {
                d.at(
                    &n.name,
                    format!("{at}.apps: empty (a media node needs at least one app)"),
                );
            }
        }
    }

    let h = n.hls.as_ref();
    let segment = d.duration(
        &format!("{at}.hls.segment"),
        h.and_then(|h| h.segment.as_ref()),
        DEFAULT_HLS_SEGMENT,
    );
    if segment < Duration::from_millis(100)
        && let Some(s) = h.and_then(|h| h.segment.as_ref())
    {
        d.at(s, format!("{at}.hls.segment: at least 100ms"));
    }
    let window = match h.and_then(|h| h.window.as_ref()) {
        None => DEFAULT_HLS_WINDOW,
        Some(w) if w.value < 2 || w.value > 1000 => {
            d.at(w, format!("{at}.hls.window: between 2 and 1000 segments"));
            DEFAULT_HLS_WINDOW
        }
        Some(w) => w.value as usize,
    };
    let wait = d.duration(
        &format!("{at}.hls.wait"),
        h.and_then(|h| h.wait.as_ref()),
        DEFAULT_HLS_WAIT,
    );
    let max_memory = match h.and_then(|h| h.max_memory.as_ref()) {
        None => DEFAULT_HLS_MAX_MEMORY,
        Some(raw) => match parse_size(&raw.value) {
            Ok(v) if v >= MIN_HLS_MAX_MEMORY => usize::try_from(v).unwrap_or(usize::MAX),
            Ok(_) => {
                d.at(raw, format!("{at}.hls.max_memory: at least 64Ki"));
                DEFAULT_HLS_MAX_MEMORY
            }
            Err(e) => {
                d.at(raw, format!("{at}.hls.max_memory: {e}"));
                DEFAULT_HLS_MAX_MEMORY
            }
        },
    };
    let ll = n.llhls.as_ref();
    let part = d.duration(
        &format!("{at}.llhls.part"),
        ll.and_then(|l| l.part.as_ref()),
        DEFAULT_LLHLS_PART,
    );
    if let Some(p) = ll.and_then(|l| l.part.as_ref())
        && (part < Duration::from_millis(100) || part > segment)
    {
        d.at(p, format!("{at}.llhls.part: between 100ms and hls.segment"));
    }
    let max_waiting =
        ll.and_then(|l| l.max_waiting.as_ref())
            .map_or(DEFAULT_LLHLS_MAX_WAITING, |m| {
                if m.value == 0 {
                    d.at(m, format!("{at}.llhls.max_waiting: must be at least 1"));
                }
                usize::try_from(m.value).unwrap_or(usize::MAX)
            });
    let part = ll
        .and_then(|l| l.enabled.as_ref())
        .is_none_or(|e| e.value)
        .then_some(part.min(segment));

    let transcode = n
        .transcode
        .as_ref()
        .filter(|_| role != Role::Edge)
        .map(|t| {
            let preset = t.preset.as_ref().map_or("veryfast".to_owned(), |p| {
                if !X264_PRESETS.contains(&p.value.as_str()) {
                    d.at(
                        p,
                        format!(
                            "{at}.transcode.preset: `{}` is not an x264 preset ({})",
                            p.value,
                            X264_PRESETS.join(", ")
                        ),
                    );
                }
                p.value.clone()
            });
            let tune = t.tune.as_ref().map(|p| {
                if !X264_TUNES.contains(&p.value.as_str()) {
                    d.at(
                        p,
                        format!(
                            "{at}.transcode.tune: `{}` is not an x264 tune ({})",
                            p.value,
                            X264_TUNES.join(", ")
                        ),
                    );
                }
                p.value.clone()
            });
            let threads = match &t.threads {
                None => super::default_threads(),
                Some(n) if n.value == 0 || n.value > 256 => {
                    d.at(n, format!("{at}.transcode.threads: between 1 and 256"));
                    1
                }
                Some(n) => n.value as usize,
            };
            let mut ladder: Vec<Rung> = Vec::new();
            for (i, r) in t.ladder.iter().flatten().enumerate() {
                let key = format!("{at}.transcode.ladder[{i}]");
                if r.height.value < 16 || r.height.value > 4320 || r.height.value % 2 != 0 {
                    d.at(
                        &r.height,
                        format!("{key}.height: an even number of pixels between 16 and 4320"),
                    );
                }
                let bitrate = match parse_size(&r.bitrate.value) {
                    Ok(b) if (10_000..=100_000_000).contains(&b) => b,
                    Ok(_) => {
                        d.at(&r.bitrate, format!("{key}.bitrate: between 10k and 100M"));
                        1
                    }
                    Err(e) => {
                        d.at(&r.bitrate, format!("{key}.bitrate: {e}"));
                        1
                    }
                };
                if ladder.iter().any(|o| o.height == r.height.value as u32) {
                    d.at(
                        &r.height,
                        format!("{key}.height: two rungs with height {}", r.height.value),
                    );
                }
                ladder.push(Rung {
                    height: r.height.value as u32,
                    bitrate,
                });
            }
            if ladder.is_empty() {
                d.at(&n.name, format!("{at}.transcode.ladder: at least one rung"));
            }
            ladder.sort_by_key(|r| std::cmp::Reverse(r.height));
            TranscodeConfig {
                preset,
                tune,
                threads,
                ladder,
            }
        });

    let maxconn = n.maxconn.as_ref().map_or(10_000, |m| {
        if m.value == 0 {
            d.at(m, format!("{at}.maxconn: must be at least 1"));
        }
        m.value
    });

    let max_streams = n
        .max_streams
        .as_ref()
        .map_or(DEFAULT_MAX_STREAMS as u64, |m| {
            if m.value == 0 {
                d.at(m, format!("{at}.max_streams: must be at least 1"));
            }
            m.value
        });

    let webrtc = match &n.webrtc {
        Some(w) => Some(webrtc(&format!("{at}.webrtc"), w, &advertise, d)?),
        None => None,
    };
    Some(MediaConfig {
        name: n.name.value.clone(),
        role,
        advertise,
        rtmp,
        http: http?,
        relay,
        apps,
        hls: HlsConfig {
            segment,
            window,
            wait,
            part,
            max_waiting,
            max_memory,
        },
        transcode,
        maxconn: usize::try_from(maxconn).unwrap_or(usize::MAX),
        rest: n
            .rest
            .as_ref()
            .map_or_else(RestConfig::default, |r| rest(&format!("{at}.rest"), r, d)),
        webrtc,
        max_streams: usize::try_from(max_streams).unwrap_or(usize::MAX),
    })
}
