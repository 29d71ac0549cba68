//! Health, readiness, metrics and the cluster REST (`/rest/v2/cluster/...`).

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Body, HttpContext, error, json, store_unavailable, text};
use crate::cluster::model::{NodeRecord, NodeState};

/// Largest page the list endpoints return.
pub const MAX_PAGE: u64 = 1000;

/// The web console: one page, no external assets.
pub(super) fn console() -> Response<Body> {
    let mut r = text(
        StatusCode::OK,
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

pub(super) fn healthz(_ctx: &HttpContext) -> Response<Body> {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

pub(super) fn readyz(ctx: &HttpContext) -> Response<Body> {
    if ctx.shutdown.is_draining() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not ready", "reason": "draining"}),
        );
    }
    let snap = ctx.health.snapshot();
    if !snap.reachable {
        let reason = match snap.error {
            Some(e) => e,
            None => "cluster store not reached yet".to_owned(),
        };
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not ready", "reason": reason}),
        );
    }
    json(StatusCode::OK, &json!({"status": "ready"}))
}

pub(super) fn metrics(ctx: &HttpContext) -> Response<Body> {
    text(
        StatusCode::OK,
        crate::runtime::metrics::CONTENT_TYPE,
        ctx.metrics.render(),
    )
}

/// Parses `{offset}/{size}` path segments; `None` when they are not numbers.
pub fn page(offset: &str, size: &str) -> Option<(u64, u64)> {
    match (offset.parse::<u64>(), size.parse::<u64>()) {
        (Ok(o), Ok(s)) => Some((o, s.min(MAX_PAGE))),
        _ => None,
    }
}

/// The answer to a malformed page request.
pub fn bad_page() -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        "offset and size must be non-negative integers",
    )
}

pub(super) async fn cluster_nodes(ctx: &HttpContext, offset: &str, size: &str) -> Response<Body> {
    let Some((offset, size)) = page(offset, size) else {
        return bad_page();
    };
    match ctx.store.nodes().await {
        Ok(nodes) => {
            let now = SystemTime::now();
            let list: Vec<Value> = nodes
                .iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(size as usize)
                .map(|n| node_json(n, n.alive(now, ctx.node_timeout)))
                .collect();
            json(StatusCode::OK, &Value::Array(list))
        }
        Err(e) => store_unavailable(&e),
    }
}

pub(super) async fn cluster_node_count(ctx: &HttpContext) -> Response<Body> {
    match ctx.store.nodes().await {
        Ok(nodes) => {
            let now = SystemTime::now();
            let alive = nodes
                .iter()
                .filter(|n| n.alive(now, ctx.node_timeout))
                .count();
            json(
                StatusCode::OK,
                &json!({"number": nodes.len(), "alive": alive}),
            )
        }
        Err(e) => store_unavailable(&e),
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node as the REST and the console show it: DESIGN.md §4 fields, plus liveness and the
/// aliases Ant Media's cluster REST uses (`id`, `ip`, `status`, `lastUpdateTime`).
pub fn node_json(n: &NodeRecord, alive: bool) -> Value {
    json!({
        "name": n.name,
        "id": n.name,
        "role": n.role.as_str(),
        "advertise": n.advertise,
        "ip": n.advertise,
        "rtmp": n.rtmp,
        "http": n.http,
        "relay": n.relay,
        "version": n.version,
        "started_at": rfc3339(n.started_at),
        "last_seen": rfc3339(n.last_seen),
        "lastUpdateTime": unix_millis(n.last_seen),
        "cpu": n.cpu,
        "mem_used": n.mem_used,
        "mem_total": n.mem_total,
        "streams": n.streams,
        "viewers": n.viewers,
        "egress_bps": n.egress_bps,
        "state": match n.state { NodeState::Active => "active", NodeState::Draining => "draining" },
        "alive": alive,
        "status": if alive { "alive" } else { "dead" },
    })
}
