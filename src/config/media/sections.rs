//! The sub-sections of a media node's config: `webrtc:`, `rest:`, an app's `webhook:` and
//! `security:`, and the default `advertise` address.

use super::*;

/// `webrtc:`.
pub(super) fn webrtc(
    at: &str,
    w: &WebRtcFile,
    advertise: &str,
    d: &mut Diag,
) -> Option<WebRtcConfig> {
    let udp = d.addr(&format!("{at}.udp"), &w.udp)?;
    // The host candidate is an address: `advertise`, or the socket's own IP.
    if udp.ip().is_unspecified() && advertise.parse::<std::net::IpAddr>().is_err() {
        d.at(
            &w.udp,
            format!(
                "{at}.udp: bound to every address and `advertise: {advertise}` is not an IP \
                 address; browsers need the IP they reach this node at (ICE candidates carry no \
                 names): set `advertise` to it, or bind `udp` to it"
            ),
        );
        return None;
    }
    let max_sessions = match &w.max_sessions {
        None => DEFAULT_WEBRTC_MAX_SESSIONS,
        Some(m) if m.value == 0 => {
            d.at(m, format!("{at}.max_sessions: must be at least 1"));
            return None;
        }
        Some(m) => usize::try_from(m.value).unwrap_or(usize::MAX),
    };
    let max_sessions_per_address = match &w.max_sessions_per_address {
        None => DEFAULT_WEBRTC_MAX_SESSIONS_PER_ADDRESS.min(max_sessions),
        Some(m) if m.value == 0 => {
            d.at(
                m,
                format!("{at}.max_sessions_per_address: must be at least 1"),
            );
            return None;
        }
        Some(m) => usize::try_from(m.value).unwrap_or(usize::MAX),
    };
    Some(WebRtcConfig {
        udp,
        max_sessions,
        max_sessions_per_address,
        abr: w.abr.unwrap_or(true),
    })
}

/// `rest:`.
pub(super) fn rest(at: &str, r: &RestFile, d: &mut Diag) -> RestConfig {
    let nets = |d: &mut Diag, key: &str, list: Option<&Vec<Raw>>| match list {
        None => loopback(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, raw)| {
                let v = raw.value.trim();
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        d.at(
                            raw,
                            format!(
                                "{at}.{key}[{i}]: `{v}` is not an IP address or CIDR \
                                 (10.0.0.0/8, ::1)"
                            ),
                        );
                    })
                    .ok()
                    .map(|n| n.trunc())
            })
            .collect(),
    };
    let allowed = nets(d, "remote_allowed_cidrs", r.remote_allowed_cidrs.as_ref());
    let trusted_proxies = nets(d, "trusted_proxies", r.trusted_proxies.as_ref());
    let jwt = r.jwt_secret.as_ref().map(|raw| {
        if raw.value.chars().count() < MIN_JWT_SECRET {
            d.at(
                raw,
                format!("{at}.jwt_secret: at least {MIN_JWT_SECRET} characters"),
            );
        } else {
            d.secret(&format!("{at}.jwt_secret"), raw, &raw.value, 0);
        }
        Secret::new(raw.value.clone())
    });
    let cors_origins = r
        .cors_origins
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, raw)| {
            let v = raw.value.trim().trim_end_matches('/');
            let ok = v.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
            });
            if !ok {
                d.at(
                    raw,
                    format!(
                        "{at}.cors_origins[{i}]: `{v}` is not an origin like \
                         https://console.example.com (`*` is not allowed for the JSON APIs)"
                    ),
                );
            }
            v.to_ascii_lowercase()
        })
        .collect();
    RestConfig {
        allowed,
        jwt,
        trusted_proxies,
        cors_origins,
    }
}

/// An app's `webhook:`.
pub(super) fn app_webhook(at: &str, w: &WebhookFile, d: &mut Diag) -> WebhookConfig {
    let url = w.url.value.trim();
    let parsed = url.parse::<http::Uri>().ok().filter(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    });
    if parsed.is_none() {
        d.at(
            &w.url,
            format!("{at}.webhook.url: `{url}` is not an http:// or https:// URL"),
        );
    }
    d.secret(
        &format!("{at}.webhook.secret"),
        &w.secret,
        &w.secret.value,
        MIN_SECRET,
    );
    WebhookConfig {
        url: url.to_owned(),
        secret: Secret::new(w.secret.value.clone()),
    }
}

/// Without `advertise`, other nodes reach this one at its HTTP bind IP, or loopback when that IP
/// is a wildcard (fine on one box; multi-machine role files set `advertise`).
pub(super) fn default_advertise(http: Option<SocketAddr>) -> String {
    match http {
        Some(a) if !a.ip().is_unspecified() => a.ip().to_string(),
        Some(a) if a.is_ipv6() => "::1".into(),
        _ => "127.0.0.1".into(),
    }
}

/// An app's `security:` (with the older `publish_token_secret`, which means `publish: hmac`).
pub(super) fn app_security(
    at: &str,
    app: &Spanned<AppFile>,
    hmac_secret: Option<Secret>,
    security: Option<&SecurityFile>,
    d: &mut Diag,
) -> AppSecurity {
    let jwt = security.and_then(|s| s.jwt_secret.as_ref()).map(|raw| {
        if raw.value.chars().count() < MIN_JWT_SECRET {
            d.at(
                raw,
                format!(
                    "{at}.security.jwt_secret: at least {MIN_JWT_SECRET} characters (an HS256 key \
                     shorter than that can be guessed)"
                ),
            );
        } else {
            d.secret(&format!("{at}.security.jwt_secret"), raw, &raw.value, 0);
        }
        Secret::new(raw.value.clone())
    });
    let need_jwt = |d: &mut Diag, key: &str| match &jwt {
        Some(s) => s.clone(),
        None => {
            d.at(
                app,
                format!("{at}.security.jwt_secret: required by `{key}: jwt`"),
            );
            Secret::new("")
        }
    };
    let publish = match security.and_then(|s| s.publish.as_ref()).map(|p| p.value) {
        Some(PublishModeFile::Jwt) => {
            if hmac_secret.is_some() {
                d.at(
                    app,
                    format!(
                        "{at}.publish_token_secret: only with `security.publish: hmac` (this app \
                         says jwt)"
                    ),
                );
            }
            PublishRule::Jwt(need_jwt(d, "publish"))
        }
        Some(PublishModeFile::Open) if hmac_secret.is_some() => {
            d.at(
                app,
                format!("{at}.publish_token_secret: only with `security.publish: hmac` (this app says open)"),
            );
            PublishRule::Open
        }
        Some(PublishModeFile::Open) => PublishRule::Open,
        Some(PublishModeFile::Hmac) | None => match hmac_secret {
            Some(s) => PublishRule::Hmac(s),
            None if security.is_some_and(|s| s.publish.is_some()) => {
                d.at(
                    app,
                    format!("{at}.publish_token_secret: required by `security.publish: hmac`"),
                );
                PublishRule::Open
            }
            None => PublishRule::Open,
        },
    };
    let play = match security.and_then(|s| s.play.as_ref()).map(|p| p.value) {
        Some(PlayModeFile::Jwt) => PlayRule::Jwt(need_jwt(d, "play")),
        Some(PlayModeFile::Open) | None => PlayRule::Open,
    };
    AppSecurity { publish, play }
}
