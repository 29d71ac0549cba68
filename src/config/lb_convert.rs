//! `role: lb` file structs -> [`LbConfig`]: every value checked, every default applied here.

use std::time::Duration;

use super::diag::Diag;
use super::file::{
    BackendFile, BalanceFile, FrontendFile, HealthKindFile, ListenerFile, ModeFile, NodeFile,
};
use super::lb::*;
use super::{Config, Role, Secret};

pub(super) fn convert_lb(n: &NodeFile, at: &str, threads: usize, d: &mut Diag) -> Option<LbConfig> {
    for (present, key) in [
        (n.advertise.is_some(), "advertise"),
        (n.rtmp.is_some(), "rtmp"),
        (n.http.is_some(), "http"),
        (n.relay.is_some(), "relay"),
        (n.apps.is_some(), "apps"),
        (n.hls.is_some(), "hls"),
        (n.llhls.is_some(), "llhls"),
        (n.transcode.is_some(), "transcode"),
        (n.rest.is_some(), "rest"),
        (n.webrtc.is_some(), "webrtc"),
        (n.max_streams.is_some(), "max_streams"),
    ] {
        if present {
            d.at(
                &n.role,
                format!("{at}.{key}: not a key of role lb (media nodes only)"),
            );
        }
    }
    let maxconn = n.maxconn.as_ref().map_or(DEFAULT_MAXCONN, |m| {
        if m.value == 0 {
            d.at(m, format!("{at}.maxconn: must be at least 1"));
        }
        m.value
    });
    let t = n.timeouts.as_ref();
    let client = d.duration(
        &format!("{at}.timeouts.client"),
        t.and_then(|t| t.client.as_ref()),
        Duration::from_secs(30),
    );
    let timeouts = LbTimeouts {
        connect: d.duration(
            &format!("{at}.timeouts.connect"),
            t.and_then(|t| t.connect.as_ref()),
            Duration::from_secs(5),
        ),
        client,
        server: d.duration(
            &format!("{at}.timeouts.server"),
            t.and_then(|t| t.server.as_ref()),
            Duration::from_secs(30),
        ),
        tunnel: d.duration(
            &format!("{at}.timeouts.tunnel"),
            t.and_then(|t| t.tunnel.as_ref()),
            Duration::from_secs(7200),
        ),
        client_fin: d.duration(
            &format!("{at}.timeouts.client_fin"),
            t.and_then(|t| t.client_fin.as_ref()),
            client,
        ),
        check: t.and_then(|t| t.check.as_ref()).map(|c| {
            d.duration(
                &format!("{at}.timeouts.check"),
                Some(c),
                Duration::from_secs(2),
            )
        }),
    };

    let mut errorfiles = Vec::new();
    for (code, path) in n.errorfiles.iter().flatten() {
        if !ERRORFILE_CODES.contains(code) {
            d.at(path, format!("{at}.errorfiles.{code}: no error response with this status (allowed: {ERRORFILE_CODES:?})"));
        }
        errorfiles.push((*code, Config::resolve(d.file(), &path.value)));
    }

    let stats = n.stats.as_ref().and_then(|s| {
        let bind = d.addr(&format!("{at}.stats.bind"), &s.bind)?;
        let uri = s.uri.as_ref().map_or("/haproxy?stats".to_owned(), |u| {
            if !u.value.starts_with('/') {
                d.at(u, format!("{at}.stats.uri: must start with `/`"));
            }
            u.value.clone()
        });
        if let Some(a) = &s.auth {
            d.secret(
                &format!("{at}.stats.auth.password"),
                &s.bind,
                &a.password,
                0,
            );
        }
        Some(StatsConfig {
            bind,
            uri,
            realm: s
                .realm
                .clone()
                .unwrap_or_else(|| "HAProxy Statistics".into()),
            auth: s
                .auth
                .as_ref()
                .map(|a| (a.user.clone(), Secret::new(a.password.clone()))),
            hide_version: s.hide_version.unwrap_or(false),
            refresh: s.refresh.as_ref().map(|r| {
                d.duration(
                    &format!("{at}.stats.refresh"),
                    Some(r),
                    Duration::from_secs(10),
                )
            }),
        })
    });

    let backend_files = n.backends.as_deref().unwrap_or(&[]);
    let mut backends = Vec::new();
    for (i, b) in backend_files.iter().enumerate() {
        if backend_files[..i]
            .iter()
            .any(|o| o.name.value == b.name.value)
        {
            d.at(
                &b.name,
                format!(
                    "{at}.backends[{i}].name: duplicate backend name `{}`",
                    b.name.value
                ),
            );
        }
        backends.push(convert_backend(
            b,
            &format!("{at}.backends[{i}]"),
            t.and_then(|t| t.check.as_ref())
                .is_some()
                .then_some(timeouts.check)
                .flatten(),
            d,
        ));
    }

    let mut frontends = Vec::new();
    let frontend_files = n.frontends.as_deref().unwrap_or(&[]);
    for (i, f) in frontend_files.iter().enumerate() {
        if frontend_files[..i]
            .iter()
            .any(|o| o.name.value == f.name.value)
        {
            d.at(
                &f.name,
                format!(
                    "{at}.frontends[{i}].name: duplicate frontend name `{}`",
                    f.name.value
                ),
            );
        }
        frontends.push(convert_frontend(
            f,
            &format!("{at}.frontends[{i}]"),
            backend_files,
            d,
        ));
    }
    if frontends.is_empty() {
        d.at(
            &n.name,
            format!("{at}.frontends: an lb node needs at least one frontend"),
        );
    }
    let log = AccessLogConfig {
        enabled: n.log.as_ref().and_then(|l| l.access).unwrap_or(true),
        dontlognull: n.log.as_ref().and_then(|l| l.dontlognull).unwrap_or(false),
    };
    Some(LbConfig {
        name: n.name.value.clone(),
        maxconn: usize::try_from(maxconn).unwrap_or(usize::MAX),
        timeouts,
        errorfiles,
        stats,
        frontends,
        backends,
        log,
        threads,
    })
}

fn backend_ref(
    d: &mut Diag,
    key: &str,
    raw: &super::file::Raw,
    backends: &[BackendFile],
    want: ModeFile,
) -> usize {
    match backends.iter().position(|b| b.name.value == raw.value) {
        Some(i) => {
            let have = backends[i].mode.value;
            if have != want {
                d.at(
                    raw,
                    format!(
                        "{key}: backend `{}` is mode {} but this needs mode {}",
                        raw.value,
                        mode_name(have),
                        mode_name(want)
                    ),
                );
            }
            i
        }
        None => {
            d.at(raw, format!("{key}: no backend named `{}`", raw.value));
            0
        }
    }
}

/// The config spelling of a mode.
fn mode_name(m: ModeFile) -> &'static str {
    match m {
        ModeFile::Tcp => "tcp",
        ModeFile::Http => "http",
        ModeFile::Rtmp => "rtmp",
    }
}

fn convert_frontend(
    f: &FrontendFile,
    at: &str,
    backends: &[BackendFile],
    d: &mut Diag,
) -> FrontendConfig {
    let mode = match f.mode.value {
        ModeFile::Tcp => ProxyMode::Tcp,
        ModeFile::Http => ProxyMode::Http,
        ModeFile::Rtmp => ProxyMode::Rtmp,
    };
    let backend_mode = if mode == ProxyMode::Http {
        ModeFile::Http
    } else {
        ModeFile::Tcp
    };
    let mut bind = Vec::new();
    for (i, b) in f.bind.iter().enumerate() {
        if let Some(a) = d.addr(&format!("{at}.bind[{i}]"), b) {
            bind.push(a);
        }
    }
    if f.bind.is_empty() {
        d.at(
            &f.name,
            format!("{at}.bind: a frontend needs at least one address"),
        );
    }
    let backend = f
        .backend
        .as_ref()
        .map(|b| backend_ref(d, &format!("{at}.backend"), b, backends, backend_mode));
    if mode == ProxyMode::Tcp
        && let Some(raw) = &f.backend
        && backends.iter().any(|b| {
            b.name.value == raw.value
                && b.balance.as_ref().map(|b| b.value) == Some(BalanceFile::Stream)
        })
    {
        d.at(
            raw,
            format!(
                "{at}.backend: `{}` has `balance: stream`, but a mode tcp frontend sees no \
                 stream id (use mode rtmp, which reads the play and publish names)",
                raw.value
            ),
        );
    }
    let mut publish_backend = None;
    let mut play_backend = None;
    if mode == ProxyMode::Rtmp {
        publish_backend = f
            .publish_backend
            .as_ref()
            .map(|b| {
                backend_ref(
                    d,
                    &format!("{at}.publish_backend"),
                    b,
                    backends,
                    ModeFile::Tcp,
                )
            })
            .or(backend);
        play_backend = f
            .play_backend
            .as_ref()
            .map(|b| backend_ref(d, &format!("{at}.play_backend"), b, backends, ModeFile::Tcp))
            .or(backend);
        if publish_backend.is_none() || play_backend.is_none() {
            d.at(
                &f.mode,
                format!(
                    "{at}: mode rtmp needs publish_backend and play_backend (or backend for both)"
                ),
            );
        }
    } else {
        for (raw, key) in [
            (&f.publish_backend, "publish_backend"),
            (&f.play_backend, "play_backend"),
        ] {
            if let Some(r) = raw {
                d.at(
                    r,
                    format!("{at}.{key}: only frontends with mode rtmp have this key"),
                );
            }
        }
        if backend.is_none() && f.routes.as_ref().is_none_or(|r| r.is_empty()) {
            d.at(
                &f.name,
                format!("{at}.backend: missing (a frontend needs a backend)"),
            );
        }
    }
    let mut routes = Vec::new();
    for (i, r) in f.routes.iter().flatten().enumerate() {
        if mode != ProxyMode::Http {
            d.at(
                &r.backend,
                format!("{at}.routes: only frontends with mode http route requests"),
            );
            break;
        }
        let given = [&r.path_prefix, &r.path, &r.query]
            .iter()
            .filter(|m| m.is_some())
            .count();
        if given != 1 {
            d.at(
                &r.backend,
                format!("{at}.routes[{i}]: give exactly one of path_prefix, path, query"),
            );
            continue;
        }
        let matcher = if let Some(p) = &r.path_prefix {
            if !p.value.starts_with('/') {
                d.at(
                    p,
                    format!("{at}.routes[{i}].path_prefix: must start with `/`"),
                );
            }
            RouteMatch::PathPrefix(p.value.clone())
        } else if let Some(p) = &r.path {
            if !p.value.starts_with('/') || p.value.contains("**") || p.value.contains('?') {
                d.at(
                    p,
                    format!("{at}.routes[{i}].path: a path like `/*/whip/` (`*` = one segment)"),
                );
            }
            RouteMatch::path(&p.value)
        } else if let Some(q) = &r.query {
            if !q.value.contains('=') || q.value.contains('&') || q.value.contains('?') {
                d.at(
                    q,
                    format!(
                        "{at}.routes[{i}].query: one parameter as `name=value` (`target=origin`)"
                    ),
                );
            }
            RouteMatch::Query(q.value.clone())
        } else {
            continue;
        };
        let backend = backend_ref(
            d,
            &format!("{at}.routes[{i}].backend"),
            &r.backend,
            backends,
            ModeFile::Http,
        );
        routes.push(RouteConfig { matcher, backend });
    }
    let tls = f.tls.as_ref().map(|t| {
        if mode != ProxyMode::Http {
            d.at(
                &f.mode,
                format!("{at}.tls: TLS termination is only available on mode http frontends"),
            );
        }
        if t.certs.is_empty() {
            d.at(
                &f.name,
                format!("{at}.tls.certs: at least one PEM file is needed"),
            );
        }
        TlsConfig {
            certs: t
                .certs
                .iter()
                .map(|c| Config::resolve(d.file(), &c.value))
                .collect(),
            self_signed: t.self_signed.unwrap_or(false),
        }
    });
    if f.redirect_https == Some(true) && mode != ProxyMode::Http {
        d.at(
            &f.mode,
            format!("{at}.redirect_https: only mode http frontends redirect"),
        );
    }
    let handshake_timeout = d.duration(
        &format!("{at}.handshake_timeout"),
        f.handshake_timeout.as_ref(),
        DEFAULT_RTMP_HANDSHAKE_TIMEOUT,
    );
    if let Some(raw) = &f.handshake_timeout {
        if mode != ProxyMode::Rtmp {
            d.at(
                raw,
                format!(
                    "{at}.handshake_timeout: only frontends with mode rtmp have this key                      (TLS handshakes and HTTP heads follow timeouts.client)"
                ),
            );
        } else if handshake_timeout < Duration::from_millis(100)
            || handshake_timeout > Duration::from_secs(300)
        {
            d.at(raw, format!("{at}.handshake_timeout: between 100ms and 5m"));
        }
    }
    FrontendConfig {
        name: f.name.value.clone(),
        mode,
        bind,
        backend,
        publish_backend,
        play_backend,
        redirect_https: f.redirect_https.unwrap_or(false),
        tls,
        routes,
        maxconn: f.maxconn.as_ref().map(|m| {
            if m.value == 0 {
                d.at(m, format!("{at}.maxconn: must be at least 1"));
            }
            usize::try_from(m.value).unwrap_or(usize::MAX)
        }),
        maxconn_per_source: {
            let n = f
                .maxconn_per_source
                .as_ref()
                .map_or(DEFAULT_MAXCONN_PER_SOURCE, |m| m.value);
            (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX))
        },
        handshake_timeout,
    }
}

fn convert_backend(
    b: &BackendFile,
    at: &str,
    default_check: Option<Duration>,
    d: &mut Diag,
) -> BackendConfig {
    let mode = match b.mode.value {
        ModeFile::Tcp => ProxyMode::Tcp,
        ModeFile::Http => ProxyMode::Http,
        ModeFile::Rtmp => {
            d.at(
                &b.mode,
                format!("{at}.mode: backends are tcp or http (rtmp is a frontend mode)"),
            );
            ProxyMode::Tcp
        }
    };
    let balance = match b.balance.as_ref().map(|b| b.value) {
        None | Some(BalanceFile::Roundrobin) => Balance::RoundRobin,
        Some(BalanceFile::Leastconn) => Balance::LeastConn,
        Some(BalanceFile::Source) => Balance::Source,
        Some(BalanceFile::Stream) => {
            let factor_percent =
                b.hash_balance_factor
                    .as_ref()
                    .map_or(DEFAULT_HASH_BALANCE_FACTOR, |f| {
                        if !(101..=1000).contains(&f.value) {
                            d.at(
                                f,
                                format!(
                                    "{at}.hash_balance_factor: a percentage of the average load \
                                 between 101 and 1000 (125: no server above 1.25 x average)"
                                ),
                            );
                        }
                        f.value.clamp(101, 1000) as u32
                    });
            let viewer_idle = d.duration(
                &format!("{at}.viewer_idle"),
                b.viewer_idle.as_ref(),
                DEFAULT_VIEWER_IDLE,
            );
            if mode != ProxyMode::Http && b.viewer_idle.is_some() {
                d.at(
                    b.viewer_idle.as_ref().unwrap_or(&b.name),
                    format!(
                        "{at}.viewer_idle: only mode http backends count viewers by session \
                         (mode tcp counts connections)"
                    ),
                );
            }
            if viewer_idle < Duration::from_secs(1) || viewer_idle > Duration::from_secs(3600) {
                d.at(
                    b.viewer_idle.as_ref().unwrap_or(&b.name),
                    format!("{at}.viewer_idle: between 1s and 1h"),
                );
            }
            Balance::Stream {
                factor_percent,
                viewer_idle,
            }
        }
    };
    if !matches!(balance, Balance::Stream { .. }) {
        for (set, key) in [
            (b.hash_balance_factor.is_some(), "hash_balance_factor"),
            (b.viewer_idle.is_some(), "viewer_idle"),
        ] {
            if set {
                d.at(
                    &b.name,
                    format!("{at}.{key}: only backends with `balance: stream` have this key"),
                );
            }
        }
    }
    let health = b.health.as_ref().map(|h| {
        let interval = d.duration(
            &format!("{at}.health.interval"),
            h.interval.as_ref(),
            Duration::from_secs(2),
        );
        let kind = match h.kind.value {
            HealthKindFile::Tcp => HealthKind::Tcp,
            HealthKindFile::Http => {
                let path = h.path.as_ref().map_or("/".to_owned(), |p| p.value.clone());
                if !path.starts_with('/') {
                    d.at(
                        h.path.as_ref().unwrap_or(&b.name),
                        format!("{at}.health.path: must start with `/`"),
                    );
                }
                HealthKind::Http { path }
            }
        };
        let count =
            |d: &mut Diag, v: &Option<serde_saphyr::Spanned<u64>>, key: &str, default: u32| match v
            {
                None => default,
                Some(s) if s.value == 0 || s.value > 1000 => {
                    d.at(s, format!("{at}.health.{key}: must be between 1 and 1000"));
                    default
                }
                Some(s) => s.value as u32,
            };
        HealthConfig {
            kind,
            rise: count(d, &h.rise, "rise", 2),
            fall: count(d, &h.fall, "fall", 3),
            timeout: h
                .timeout
                .as_ref()
                .map_or(default_check.unwrap_or(interval), |t| {
                    d.duration(&format!("{at}.health.timeout"), Some(t), interval)
                }),
            interval,
        }
    });
    let sticky_cookie = b.sticky.as_ref().map(|s| {
        if mode != ProxyMode::Http {
            d.at(
                &s.cookie,
                format!("{at}.sticky: cookie stickiness needs mode http"),
            );
        }
        if s.cookie.value.is_empty() || s.cookie.value.contains([';', '=', ' ', ',']) {
            d.at(
                &s.cookie,
                format!(
                    "{at}.sticky.cookie: `{}` is not a valid cookie name",
                    s.cookie.value
                ),
            );
        }
        s.cookie.value.clone()
    });
    let mut servers: Vec<ServerConfig> = Vec::new();
    for (i, s) in b.servers.iter().flatten().enumerate() {
        if servers.iter().any(|o| o.name == s.name.value) {
            d.at(
                &s.name,
                format!(
                    "{at}.servers[{i}].name: duplicate server name `{}`",
                    s.name.value
                ),
            );
        }
        let weight = match &s.weight {
            None => 1,
            Some(w) if w.value > 256 => {
                d.at(
                    w,
                    format!("{at}.servers[{i}].weight: must be between 0 and 256"),
                );
                1
            }
            Some(w) => w.value as u32,
        };
        if let Some(c) = &s.cookie
            && (c.value.is_empty() || c.value.contains(['~', ';', ' ', ',']))
        {
            d.at(
                c,
                format!(
                    "{at}.servers[{i}].cookie: `{}` cannot be a cookie prefix",
                    c.value
                ),
            );
        }
        if let Some(addr) = d.addr(&format!("{at}.servers[{i}].addr"), &s.addr) {
            servers.push(ServerConfig {
                name: s.name.value.clone(),
                addr,
                cookie: s.cookie.as_ref().map(|c| c.value.clone()),
                weight,
            });
        }
    }
    let servers_from = b.servers_from.as_ref().map(|s| ServersFrom {
        role: match Role::from(s.role.value) {
            Role::Lb => {
                d.at(
                    &s.role,
                    format!("{at}.servers_from.role: must be origin, edge or standalone"),
                );
                Role::Lb
            }
            media => media,
        },
        listener: match s.listener.value {
            ListenerFile::Http => NodeListener::Http,
            ListenerFile::Rtmp => NodeListener::Rtmp,
        },
    });
    if b.servers.as_ref().is_none_or(|s| s.is_empty()) && servers_from.is_none() {
        d.at(
            &b.name,
            format!("{at}: a backend needs servers or servers_from"),
        );
    }
    let retries = b.retries.as_ref().map_or(DEFAULT_RETRIES, |r| {
        if r.value > 100 {
            d.at(r, format!("{at}.retries: at most 100"));
        }
        r.value.min(100)
    });
    BackendConfig {
        name: b.name.value.clone(),
        mode,
        balance,
        health,
        sticky_cookie,
        servers,
        servers_from,
        retries: retries as u32,
        http_server_close: b.http_server_close.unwrap_or(false),
    }
}
