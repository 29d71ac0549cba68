//! Ant Media's broadcast REST: `/{app}/rest/v2/broadcasts/list/{offset}/{size}`,
//! `/{app}/rest/v2/broadcasts/{streamId}`, `/{app}/rest/v2/broadcasts/count`, from the cluster
//! store (so every node answers for the whole cluster), and the write calls operators script
//! against (`create`, delete, `stop`, `broadcast-statistics`, `active-live-stream-count`,
//! `jwt-token`). Writes go through the store, so every node agrees; a stop or delete reaches
//! the stream's owner as a lost lease at its next renewal, and it drops the publisher.

use std::collections::HashMap;
use std::time::SystemTime;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use hyper::body::Incoming;

use super::api::{bad_page, page, rfc3339, unix_millis};
use super::{Body, HttpContext, error, json, store_unavailable};
use crate::cluster::model::{StreamKey, StreamRecord};
use crate::config::{PlayRule, PublishRule};
use crate::media::access::{self, Want};

/// `/{app}/rest/v2/broadcasts/list/{offset}/{size}`.
pub(super) async fn list(ctx: &HttpContext, app: &str, offset: &str, size: &str) -> Response<Body> {
    list_page(ctx, Some(app), offset, size).await
}

/// `/rest/v2/cluster/streams/{offset}/{size}`: every app's streams (the console's list).
pub(super) async fn all(ctx: &HttpContext, offset: &str, size: &str) -> Response<Body> {
    list_page(ctx, None, offset, size).await
}

async fn list_page(
    ctx: &HttpContext,
    app: Option<&str>,
    offset: &str,
    size: &str,
) -> Response<Body> {
    let Some((offset, size)) = page(offset, size) else {
        return bad_page();
    };
    match ctx.store.streams(app, offset, size).await {
        Ok(records) => {
            let view = cluster_view(ctx).await;
            json(
                StatusCode::OK,
                &Value::Array(
                    records
                        .iter()
                        .map(|r| broadcast_json(ctx, r, &view))
                        .collect(),
                ),
            )
        }
        Err(e) => store_unavailable(&e),
    }
}

pub(super) async fn count(ctx: &HttpContext, app: &str) -> Response<Body> {
    match ctx.store.stream_count(Some(app)).await {
        Ok(n) => json(StatusCode::OK, &json!({ "number": n })),
        Err(e) => store_unavailable(&e),
    }
}

pub(super) async fn one(ctx: &HttpContext, app: &str, stream_id: &str) -> Response<Body> {
    match ctx.store.stream(&StreamKey::new(app, stream_id)).await {
        Ok(Some(r)) => {
            let view = cluster_view(ctx).await;
            json(StatusCode::OK, &broadcast_json(ctx, &r, &view))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such broadcast"),
        Err(e) => store_unavailable(&e),
    }
}

/// What the node records say, for broadcast JSON: each node's advertised host (Ant Media's
/// `originAdress`) and the viewers the live nodes report per stream.
#[derive(Default)]
struct ClusterView {
    /// Node name -> advertised host.
    origins: Vec<(String, String)>,
    /// Stream -> (HLS, RTMP, WebRTC) viewers summed over live nodes.
    viewers: HashMap<StreamKey, (u64, u64, u64)>,
}

async fn cluster_view(ctx: &HttpContext) -> ClusterView {
    let Ok(nodes) = ctx.store.nodes().await else {
        return ClusterView::default();
    };
    let now = SystemTime::now();
    let mut view = ClusterView::default();
    for n in nodes {
        if n.alive(now, ctx.node_timeout) {
            for v in &n.stream_viewers {
                let e = view
                    .viewers
                    .entry(StreamKey::new(&v.app, &v.stream_id))
                    .or_default();
                e.0 += v.hls;
                e.1 += v.rtmp;
                e.2 += v.webrtc;
            }
        }
        view.origins.push((n.name, n.advertise));
    }
    view
}

/// A stream record with Ant Media's field names where they exist (`streamId`, `status`,
/// `originAdress` in their spelling) and ours beside them.
fn broadcast_json(ctx: &HttpContext, r: &StreamRecord, view: &ClusterView) -> Value {
    let status = r.effective_status(SystemTime::now()).as_str();
    let (hls, rtmp, webrtc) = view.viewers.get(&r.key).copied().unwrap_or_default();
    let address = view
        .origins
        .iter()
        .find(|(n, _)| *n == r.origin)
        .map_or("", |(_, a)| a.as_str());
    let local_hls = ctx.hls_viewers.of(&r.key);
    json!({
        "streamId": r.key.stream_id,
        "name": r.key.stream_id,
        "app": r.key.app,
        "type": "liveStream",
        "status": status,
        "origin": r.origin,
        "originAdress": address,
        "originRelay": r.origin_relay,
        "epoch": r.epoch,
        "date": unix_millis(r.started_at),
        "startTime": unix_millis(r.started_at),
        "updateTime": unix_millis(r.updated_at),
        "started_at": rfc3339(r.started_at),
        "updated_at": rfc3339(r.updated_at),
        "lease_until": rfc3339(r.lease_until),
        "hlsViewerCount": r.viewers.hls.max(hls).max(local_hls),
        "rtmpViewerCount": r.viewers.rtmp.max(rtmp),
        "webRTCViewerCount": webrtc,
        "edgeCount": r.viewers.edges,
        "renditions": r.renditions,
    })
}

/// Largest request body the write API reads.
const MAX_BODY: usize = 64 * 1024;

/// Ant Media's `{"success": .., "message": ..}` result, with our `error` beside it on failure.
fn result(status: StatusCode, message: &str) -> Response<Body> {
    if status.is_success() {
        json(status, &json!({ "success": true, "message": message }))
    } else {
        json(
            status,
            &json!({ "success": false, "message": message, "error": message }),
        )
    }
}

/// Stream ids the write API accepts: what RTMP names and HLS file names can carry.
fn valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !id.starts_with('.')
}

/// `POST /{app}/rest/v2/broadcasts/create` with `{"streamId": .., "name": ..}` (both optional;
/// without a `streamId` one is made up): registers the stream in the store, `created`.
pub(super) async fn create(ctx: &HttpContext, app: &str, body: Incoming) -> Response<Body> {
    if ctx.config.app(app).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown application");
    }
    let bytes = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_BODY))
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return result(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body must be JSON of at most {MAX_BODY} bytes"),
            );
        }
    };
    let request: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => return result(StatusCode::BAD_REQUEST, "the body is not a JSON object"),
        }
    };
    let stream_id = match request.get("streamId") {
        None | Some(Value::Null) => match made_up_id() {
            Some(id) => id,
            None => return result(StatusCode::INTERNAL_SERVER_ERROR, "no randomness for an id"),
        },
        Some(Value::String(s)) if valid_stream_id(s) => s.clone(),
        Some(_) => {
            return result(
                StatusCode::BAD_REQUEST,
                "streamId: 1-128 letters, digits, `_`, `-` or `.`",
            );
        }
    };
    let key = StreamKey::new(app, &stream_id);
    match ctx.store.create_stream(&key, SystemTime::now()).await {
        Ok(true) => match ctx.store.stream(&key).await {
            Ok(Some(r)) => {
                tracing::info!(stream = %key, "broadcast created through the REST");
                let view = cluster_view(ctx).await;
                json(StatusCode::OK, &broadcast_json(ctx, &r, &view))
            }
            Ok(None) => result(StatusCode::CONFLICT, "the broadcast was deleted meanwhile"),
            Err(e) => store_unavailable(&e),
        },
        Ok(false) => result(
            StatusCode::CONFLICT,
            &format!("stream id `{stream_id}` already exists"),
        ),
        Err(e) => store_unavailable(&e),
    }
}

/// A stream id for `create` without one: 18 random digits and letters, like Ant Media's.
fn made_up_id() -> Option<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 18];
    getrandom::fill(&mut raw).ok()?;
    Some(
        raw.iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect(),
    )
}

/// `DELETE /{app}/rest/v2/broadcasts/{id}`: the record goes; a live owner drops its publisher
/// at its next renewal.
pub(super) async fn delete(ctx: &HttpContext, app: &str, stream_id: &str) -> Response<Body> {
    let key = StreamKey::new(app, stream_id);
    match ctx.store.delete_stream(&key).await {
        Ok(true) => {
            tracing::info!(stream = %key, "broadcast deleted through the REST");
            result(StatusCode::OK, "deleted")
        }
        Ok(false) => result(StatusCode::NOT_FOUND, "no such broadcast"),
        Err(e) => store_unavailable(&e),
    }
}

/// `POST /{app}/rest/v2/broadcasts/{id}/stop`: ends the live stream's lease; its owner drops
/// the publisher at its next renewal (within one heartbeat).
pub(super) async fn stop(ctx: &HttpContext, app: &str, stream_id: &str) -> Response<Body> {
    let key = StreamKey::new(app, stream_id);
    match ctx.store.stop_stream(&key, SystemTime::now()).await {
        Ok(true) => {
            tracing::info!(stream = %key, "broadcast stopped through the REST");
            result(StatusCode::OK, "stopped")
        }
        Ok(false) => match ctx.store.stream(&key).await {
            Ok(Some(_)) => result(StatusCode::CONFLICT, "the broadcast is not live"),
            Ok(None) => result(StatusCode::NOT_FOUND, "no such broadcast"),
            Err(e) => store_unavailable(&e),
        },
        Err(e) => store_unavailable(&e),
    }
}

/// `GET /{app}/rest/v2/broadcasts/{id}/broadcast-statistics`: viewers summed over every live
/// node of the cluster (each node reports its own in its record every heartbeat).
pub(super) async fn statistics(ctx: &HttpContext, app: &str, stream_id: &str) -> Response<Body> {
    let nodes = match ctx.store.nodes().await {
        Ok(n) => n,
        Err(e) => return store_unavailable(&e),
    };
    let now = SystemTime::now();
    let (mut hls, mut rtmp, mut webrtc) = (0u64, 0u64, 0u64);
    for node in nodes.iter().filter(|n| n.alive(now, ctx.node_timeout)) {
        for v in &node.stream_viewers {
            if v.app == app && v.stream_id == stream_id {
                hls += v.hls;
                rtmp += v.rtmp;
                webrtc += v.webrtc;
            }
        }
    }
    json(
        StatusCode::OK,
        &json!({
            "totalRTMPWatchersCount": rtmp,
            "totalHLSWatchersCount": hls,
            "totalWebRTCWatchersCount": webrtc,
            "totalDASHWatchersCount": 0,
        }),
    )
}

/// `GET /{app}/rest/v2/broadcasts/active-live-stream-count`.
pub(super) async fn active_count(ctx: &HttpContext, app: &str) -> Response<Body> {
    match ctx
        .store
        .live_stream_count(Some(app), SystemTime::now())
        .await
    {
        Ok(n) => json(StatusCode::OK, &json!({ "number": n })),
        Err(e) => store_unavailable(&e),
    }
}

/// Longest lifetime of a token minted by `jwt-token`.
const MAX_TOKEN_LIFETIME: u64 = 366 * 24 * 3600;

/// `GET /{app}/rest/v2/broadcasts/{id}/jwt-token?expireDate={unix seconds}&type={publish|play}`:
/// mints a stream token with the app's `security.jwt_secret` (Ant Media's answer shape).
pub(super) fn jwt_token(
    ctx: &HttpContext,
    app: &str,
    stream_id: &str,
    query: Option<&str>,
) -> Response<Body> {
    let Some(config) = ctx.config.app(app) else {
        return error(StatusCode::NOT_FOUND, "unknown application");
    };
    let param = |name: &str| query.and_then(|q| streamfleet_proto::http::query_param(q, name));
    let want = match param("type") {
        Some("publish") => Want::Publish,
        Some("play") => Want::Play,
        _ => return result(StatusCode::BAD_REQUEST, "type: publish or play"),
    };
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = match param("expireDate").and_then(|e| e.parse::<u64>().ok()) {
        Some(e) if e > now && e - now <= MAX_TOKEN_LIFETIME => e,
        _ => {
            return result(
                StatusCode::BAD_REQUEST,
                "expireDate: a time in the next 366 days, in seconds since the Unix epoch",
            );
        }
    };
    // One key per app signs both kinds (`security.jwt_secret`), whichever rule uses it here:
    // an edge checks play tokens only, yet mints publish tokens for the origins as well.
    let secret = match (&config.security.publish, &config.security.play) {
        (PublishRule::Jwt(s), _) | (_, PlayRule::Jwt(s)) => s,
        _ => {
            return result(
                StatusCode::BAD_REQUEST,
                &format!("app `{app}` has no security.jwt_secret to sign tokens with"),
            );
        }
    };
    let Some(token) = access::mint(secret.expose(), stream_id, want, exp) else {
        return result(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the token could not be made",
        );
    };
    json(
        StatusCode::OK,
        &json!({
            "tokenId": token,
            "streamId": stream_id,
            "expireDate": exp,
            "type": if want == Want::Publish { "publish" } else { "play" },
            "roomId": null,
        }),
    )
}
