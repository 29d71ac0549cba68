//! The media node's HTTP listener: HLS from memory, REST (broadcasts, cluster), health, metrics
//! and the web console, all on one port like Ant Media Server's 5080.
//!
//! One hyper HTTP/1.1 connection per accepted socket; on drain the connection finishes the
//! request in flight and closes. Requests go through [`route`], a match on path segments.
//! `/{app}/websocket` upgrades to Ant Media's WebRTC signalling (`websocket`), which then runs
//! as its own connection task.

mod api;
mod broadcasts;
pub mod guard;
pub mod hls;
mod llhls;
pub mod websocket;
pub mod whep;
pub mod whip;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use self::hls::HlsViewers;
use super::access;
use super::hub::Hubs;
use super::stats::MediaStats;
use crate::cluster::heartbeat::StoreHealth;
use crate::cluster::store::Store;
use crate::config::{MediaConfig, PlayRule};
use crate::runtime::metrics::NodeMetrics;
use crate::runtime::{ConnPermit, Shutdown};
use streamfleet_proto::names;

/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the HTTP handlers read.
pub struct HttpContext {
    /// This node's config.
    pub config: Arc<MediaConfig>,
    /// A node silent this long is dead (for the cluster REST).
    pub node_timeout: Duration,
    /// The cluster store.
    pub store: Arc<dyn Store>,
    /// Store reachability as this node sees it.
    pub health: Arc<StoreHealth>,
    /// `/metrics`.
    pub metrics: NodeMetrics,
    /// Drain state for `/readyz`.
    pub shutdown: Shutdown,
    /// The node's streams.
    pub hubs: Arc<Hubs>,
    /// Node counters.
    pub stats: Arc<MediaStats>,
    /// Recent HLS clients.
    pub hls_viewers: Arc<HlsViewers>,
    /// Pulls streams from origins (edges and standalone nodes).
    pub puller: Option<Arc<super::relay::client::Puller>>,
    /// WebRTC playback (WHEP) and publishing (WHIP), when `webrtc:` is configured.
    pub webrtc: Option<Arc<super::webrtc::WebRtc>>,
    /// Who may publish (WHIP), the same rules as RTMP publishers.
    pub publishing: Arc<super::ingest::Publishing>,
}

/// The connection's maxconn permit, held by each of its requests too, so that what outlives
/// the HTTP exchange (an upgraded WebSocket) still counts as a connection.
#[derive(Clone)]
pub struct HeldPermit {
    /// Frees the slot when the last holder drops it.
    _permit: Arc<ConnPermit>,
}

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// Serves one connection until it closes, the client idles out, or the node stops.
pub async fn serve_connection(
    ctx: Arc<HttpContext>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnPermit,
) {
    let permit = HeldPermit {
        _permit: Arc::new(permit),
    };
    let shutdown = ctx.shutdown.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let ctx = ctx.clone();
        req.extensions_mut().insert(permit.clone());
        async move { Ok::<_, Infallible>(route(&ctx, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.draining() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.stopped() => Ok(()),
            }
        }
    };
    if let Err(e) = result
        && !e.is_incomplete_message()
    {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

/// Dispatches a request: the REST API, the console and `/metrics` behind [`guard`], the rest
/// (HLS, health) open.
async fn route(ctx: &Arc<HttpContext>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if is_guarded(&segments) {
        let cors = guard::cors_origin(&ctx.config.rest, req.headers());
        let mut response = if req.method() == Method::OPTIONS {
            preflight(
                "GET, HEAD, POST, DELETE, OPTIONS",
                "authorization, content-type",
            )
        } else {
            match guard::rest_access(&ctx.config.rest, peer.ip(), req.headers()) {
                Ok(()) => rest(ctx, req, &segments).await,
                Err(denied) => {
                    tracing::debug!(%peer, %path, ?denied, "REST request refused");
                    match denied {
                        guard::Denied::Address(why) => error(StatusCode::FORBIDDEN, &why),
                        guard::Denied::Token(why) => error(
                            StatusCode::UNAUTHORIZED,
                            &format!(
                                "Authorization: {why} (a REST JWT signed with rest.jwt_secret)"
                            ),
                        ),
                    }
                }
            }
        };
        if let Some(origin) = cors {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        return response;
    }
    let whep = match segments.as_slice() {
        [app, "whep", stream_id] => Some((*app, *stream_id, None)),
        [app, "whep", stream_id, session] => Some((*app, *stream_id, Some(*session))),
        _ => None,
    };
    let whip = match segments.as_slice() {
        [app, "whip", stream_id] => Some((*app, *stream_id, None)),
        [app, "whip", stream_id, session] => Some((*app, *stream_id, Some(*session))),
        _ => None,
    };
    let mut response = if let Some((app, stream_id, session)) = whep {
        whep::serve(ctx, req, app, stream_id, session, peer).await
    } else if let Some((app, stream_id, session)) = whip {
        whip::serve(ctx, req, app, stream_id, session, peer).await
    } else if let [app, "websocket"] = segments.as_slice() {
        websocket::serve(ctx, req, app, peer)
    } else if req.method() == Method::OPTIONS {
        preflight("GET, HEAD, OPTIONS", "*")
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here",
        )
    } else {
        media(ctx, &req, peer, &segments).await
    };
    // Players on any web page may read playlists, segments, WHEP answers and their errors.
    response
        .headers_mut()
        .entry(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .or_insert(HeaderValue::from_static("*"));
    response
}

/// The paths behind `rest:`: the console, `/metrics`, `/rest/...` and `/{app}/rest/...`.
fn is_guarded(segments: &[&str]) -> bool {
    matches!(
        segments,
        [""] | ["metrics"] | ["rest", ..] | [_, "rest", ..]
    )
}

/// The REST API, the console and `/metrics`, for a request [`guard`] let through.
async fn rest(ctx: &HttpContext, req: Request<Incoming>, segments: &[&str]) -> Response<Body> {
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let read = method == Method::GET || method == Method::HEAD;
    match (segments, read) {
        ([app, "rest", "v2", "broadcasts", "create"], _) if method == Method::POST => {
            broadcasts::create(ctx, app, req.into_body()).await
        }
        ([app, "rest", "v2", "broadcasts", id, "stop"], _) if method == Method::POST => {
            broadcasts::stop(ctx, app, id).await
        }
        ([app, "rest", "v2", "broadcasts", id], _) if method == Method::DELETE => {
            broadcasts::delete(ctx, app, id).await
        }
        (_, false) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "not a method this path answers",
        ),
        ([""], _) => api::console(),
        (["metrics"], _) => api::metrics(ctx),
        (["rest", "v2", "cluster", "nodes", offset, size], _) => {
            api::cluster_nodes(ctx, offset, size).await
        }
        (["rest", "v2", "cluster", "node-count"], _) => api::cluster_node_count(ctx).await,
        (["rest", "v2", "cluster", "streams", offset, size], _) => {
            broadcasts::all(ctx, offset, size).await
        }
        ([app, "rest", "v2", "broadcasts", "list", offset, size], _) => {
            broadcasts::list(ctx, app, offset, size).await
        }
        ([app, "rest", "v2", "broadcasts", "count"], _) => broadcasts::count(ctx, app).await,
        ([app, "rest", "v2", "broadcasts", "active-live-stream-count"], _) => {
            broadcasts::active_count(ctx, app).await
        }
        ([app, "rest", "v2", "broadcasts", id, "broadcast-statistics"], _) => {
            broadcasts::statistics(ctx, app, id).await
        }
        ([app, "rest", "v2", "broadcasts", id, "jwt-token"], _) => {
            broadcasts::jwt_token(ctx, app, id, query.as_deref())
        }
        ([app, "rest", "v2", "broadcasts", stream_id], _) => {
            broadcasts::one(ctx, app, stream_id).await
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Health, readiness, HLS and LL-HLS.
async fn media(
    ctx: &HttpContext,
    req: &Request<Incoming>,
    peer: SocketAddr,
    segments: &[&str],
) -> Response<Body> {
    match segments {
        ["healthz"] => api::healthz(ctx),
        ["readyz"] => api::readyz(ctx),
        [app, "streams", file] => {
            let name = names::hls_file_name(file).unwrap_or(file);
            gated(ctx, app, name, req.uri().query(), async {
                hls::serve(ctx, app, file, peer, req.headers()).await
            })
            .await
        }
        [app, "streams", "ll-hls", id, file] => {
            let query = req.uri().query();
            gated(ctx, app, id, query, async {
                llhls::serve(ctx, app, id, file, query, req.headers()).await
            })
            .await
        }
        [app, "ll", file] => llhls::alias(app, file, req.uri().query()),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The answer when the cluster store fails: the driver's text goes to the log, not the client.
pub fn store_unavailable(e: &impl std::fmt::Display) -> Response<Body> {
    tracing::warn!(error = %e, "cluster store request failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the cluster store is not reachable; try again",
    )
}

/// Serves a viewer's request for stream `name` (a player-facing name) of `app` when the app's
/// `security.play` lets it (403 with the reason otherwise). With a play token, a playlist's
/// URIs carry the token, so the player fetches segments, parts and renditions with it.
async fn gated(
    ctx: &HttpContext,
    app: &str,
    name: &str,
    query: Option<&str>,
    serve: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    let Some(config) = ctx.config.app(app) else {
        return serve.await;
    };
    let stream = names::PlayerName::parse(name).stream;
    let token = query.and_then(access::token_in);
    if let Err(why) = access::may_play(&config.security.play, stream, token) {
        tracing::debug!(%app, %stream, reason = %why, "HLS request refused");
        return error(
            StatusCode::FORBIDDEN,
            &format!("not allowed to play {app}/{stream}: {why}"),
        );
    }
    let response = serve.await;
    let Some(token) = token.filter(|_| config.security.play != PlayRule::Open) else {
        return response;
    };
    let is_playlist = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/vnd.apple.mpegurl");
    if !is_playlist {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    let rewritten = access::playlist_with_token(text, token);
    let mut r = Response::from_parts(parts, Full::new(Bytes::from(rewritten)));
    r.headers_mut().remove(header::CONTENT_LENGTH);
    r
}

/// A JSON response (CORS headers are added by [`route`]).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A JSON error body `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// A text response.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The answer to a CORS preflight; [`route`] adds the allowed origin.
fn preflight(methods: &'static str, headers: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(headers),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}
