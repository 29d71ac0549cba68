//! Ant Media's broadcast REST: `/{app}/rest/v2/broadcasts/list/{offset}/{size}`,
//! `/{app}/rest/v2/broadcasts/{streamId}`, `/{app}/rest/v2/broadcasts/count`, from the cluster
//! store (so every node answers for the whole cluster).

use std::time::SystemTime;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::api::{bad_page, page, rfc3339, unix_millis};
use super::{Body, HttpContext, error, json, store_unavailable};
use crate::cluster::model::{StreamKey, StreamRecord, StreamStatus};

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
            let origins = origin_addresses(ctx).await;
            json(
                StatusCode::OK,
                &Value::Array(
                    records
                        .iter()
                        .map(|r| broadcast_json(ctx, r, &origins))
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
            let origins = origin_addresses(ctx).await;
            json(StatusCode::OK, &broadcast_json(ctx, &r, &origins))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such broadcast"),
        Err(e) => store_unavailable(&e),
    }
}

/// Node name -> advertised host, for Ant Media's `originAdress`.
async fn origin_addresses(ctx: &HttpContext) -> Vec<(String, String)> {
    ctx.store
        .nodes()
        .await
        .map(|nodes| nodes.into_iter().map(|n| (n.name, n.advertise)).collect())
        .unwrap_or_default()
}

/// A stream record with Ant Media's field names where they exist (`streamId`, `status`,
/// `originAdress` in their spelling) and ours beside them.
fn broadcast_json(ctx: &HttpContext, r: &StreamRecord, origins: &[(String, String)]) -> Value {
    let status = match r.effective_status(SystemTime::now()) {
        StreamStatus::Broadcasting => "broadcasting",
        StreamStatus::Finished => "finished",
    };
    let address = origins
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
        "hlsViewerCount": r.viewers.hls.max(local_hls),
        "rtmpViewerCount": r.viewers.rtmp,
        "edgeCount": r.viewers.edges,
        "renditions": r.renditions,
    })
}
