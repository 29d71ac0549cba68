//! HLS over HTTP, from memory: `/{app}/streams/{name}.m3u8` (live playlist, waiting up to
//! `hls.wait` for a new stream's first segment), `/{app}/streams/{name}_adaptive.m3u8` (master
//! playlist of the source and its renditions), `/{app}/streams/{name}-{seq}.ts` (segments).
//!
//! Playlists and segments are the same on every node (the origin decides them, `media::hls`).
//! Segment requests also count HLS viewers: distinct clients (the last `X-Forwarded-For` hop,
//! which our LB appends, else the peer address, plus the User-Agent) seen in the last 30 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::{Body, HttpContext, error};
use crate::cluster::model::{Rendition, StreamKey};
use crate::media::hls::HlsView;
use crate::media::hub::{Hub, HubKey};
use crate::media::relay::client::PullError;
use streamfleet_proto::hls::{Variant, write_master};
use streamfleet_proto::http::cookie;
use streamfleet_proto::names::RenditionId;

/// A client counts as an HLS viewer this long after its last segment request.
const VIEWER_WINDOW: Duration = Duration::from_secs(30);
/// Most distinct viewers tracked per node (bounded memory under a flood).
const MAX_TRACKED_VIEWERS: usize = 100_000;

/// Recent HLS clients per stream. A client is its address and User-Agent, kept as a keyed hash
/// (random keys per process): an entry's size does not depend on what the client sent.
#[derive(Debug, Default)]
pub struct HlsViewers {
    seen: Mutex<HashMap<(HubKey, u64), Instant>>,
    keys: std::hash::RandomState,
}

impl HlsViewers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(HubKey, u64), Instant>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn saw(&self, key: &HubKey, peer: SocketAddr, headers: &HeaderMap) {
        let client = client_key(&self.keys, peer, headers);
        let mut seen = self.lock();
        let entry = (key.clone(), client);
        if seen.len() < MAX_TRACKED_VIEWERS || seen.contains_key(&entry) {
            seen.insert(entry, Instant::now());
        }
    }

    /// Forgets clients not seen within the window; returns the total left.
    pub fn prune(&self) -> usize {
        let mut seen = self.lock();
        seen.retain(|_, t| t.elapsed() < VIEWER_WINDOW);
        seen.len()
    }

    /// Viewers of each stream (all its renditions together).
    pub fn per_stream(&self) -> HashMap<StreamKey, u64> {
        let mut out: HashMap<StreamKey, u64> = HashMap::new();
        for ((k, _), t) in self.lock().iter() {
            if t.elapsed() < VIEWER_WINDOW {
                *out.entry(k.stream.clone()).or_default() += 1;
            }
        }
        out
    }

    /// Viewers of one stream (all its renditions).
    pub fn of(&self, stream: &StreamKey) -> u64 {
        self.lock()
            .iter()
            .filter(|((k, _), t)| k.stream == *stream && t.elapsed() < VIEWER_WINDOW)
            .count() as u64
    }
}

fn client_key(keys: &impl std::hash::BuildHasher, peer: SocketAddr, headers: &HeaderMap) -> u64 {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty());
    let ua = headers
        .get(header::USER_AGENT)
        .map_or(&b""[..], HeaderValue::as_bytes);
    match forwarded {
        Some(ip) => keys.hash_one((ip.as_bytes(), ua)),
        None => keys.hash_one((peer.ip().to_string().as_bytes(), ua)),
    }
}

/// The session cookie HLS responses give, Ant Media's name. A load balancer in front keeps a
/// player on this node only if its backend's `sticky.cookie` is this same name.
const SESSION_COOKIE: &str = "JSESSIONID";

/// Whether the player already has a [`SESSION_COOKIE`].
pub(super) fn has_session(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .any(|v| cookie::has_cookie(v.as_bytes(), SESSION_COOKIE.as_bytes()))
}

/// A [`SESSION_COOKIE`] for a player without one, as Ant Media's servlet sessions give: a load
/// balancer's sticky cookie (`sticky: {cookie: JSESSIONID, mode: prefix}`) then keeps the
/// player on this node. An optimisation only: every node serves the same playlists and
/// segments (the origin decides them), so a player without the cookie plays on any node.
pub(super) fn new_session() -> HeaderValue {
    let mut id = [0u8; 16];
    // Without OS randomness the id stays zero: the LB's prefix still names this node.
    let _ = getrandom::fill(&mut id);
    let hex = hex::encode_upper(id);
    // Hex digits and this ASCII text are valid header bytes: the fallback never applies.
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={hex}; Path=/; HttpOnly"))
        .unwrap_or_else(|_| HeaderValue::from_static("JSESSIONID=0; Path=/"))
}

pub(super) fn respond(
    content_type: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

pub(super) fn playlist(body: Bytes) -> Response<Body> {
    respond("application/vnd.apple.mpegurl", "no-cache", body)
}

/// Serves `/{app}/streams/{file}`.
pub(super) async fn serve(
    ctx: &HttpContext,
    app: &str,
    file: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Response<Body> {
    if ctx.config.app(app).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown application");
    }
    if let Some(name) = file.strip_suffix(".m3u8") {
        let mut r = match name.strip_suffix("_adaptive") {
            Some(stream) => master(ctx, app, stream).await,
            None => media_playlist(ctx, app, name).await,
        };
        if r.status() == StatusCode::OK && !has_session(headers) {
            r.headers_mut().insert(header::SET_COOKIE, new_session());
        }
        return r;
    }
    if let Some(stem) = file.strip_suffix(".ts")
        && let Some((name, seq)) = stem.rsplit_once('-')
        && let Ok(seq) = seq.parse::<u64>()
    {
        let key = HubKey::from_player_name(app, name);
        let segment = ctx.hubs.get(&key).and_then(|hub| {
            hub.touch();
            let view = hub.hls_view()?;
            view.segments
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, b)| b.clone())
        });
        return match segment {
            Some(bytes) => {
                ctx.hls_viewers.saw(&key, peer, headers);
                ctx.stats.egress_bytes.inc_by(bytes.len() as u64);
                ctx.stats.hls_segments.inc();
                // A name is one segment's for good (the origin numbers a stream's segments on
                // across republishes and origins), and the same on every node: cacheable.
                respond("video/mp2t", "public, max-age=3600", bytes)
            }
            None => error(StatusCode::NOT_FOUND, "no such segment"),
        };
    }
    error(StatusCode::NOT_FOUND, "not found")
}

/// On an edge, pulls the stream of `key` from its origin when it is not here (the source, with
/// every rendition), waiting up to `hls.wait` for one about to start. `Some` is the answer to
/// give at once: 503 when the edge refuses look-ups of unknown streams (a flood of made-up
/// names must not reach the store) or carries its `max_streams`.
pub(super) async fn pull_if_missing(ctx: &HttpContext, key: &HubKey) -> Option<Response<Body>> {
    let puller = ctx.puller.as_ref()?;
    if ctx.hubs.get(key).is_some_and(|h| h.is_live()) {
        return None;
    }
    match puller
        .ensure_starting(&key.stream, ctx.config.hls.wait)
        .await
    {
        Ok(_) => None,
        Err(e @ (PullError::Busy | PullError::Full(_) | PullError::MemoryFull(_))) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(r)
        }
        Err(e) => {
            tracing::debug!(stream = %key, "not served: {e}");
            None
        }
    }
}

async fn media_playlist(ctx: &HttpContext, app: &str, name: &str) -> Response<Body> {
    let key = HubKey::from_player_name(app, name);
    if let Some(refused) = pull_if_missing(ctx, &key).await {
        return refused;
    }
    let Some(hub) = ctx.hubs.get(&key) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    hub.touch();
    let Some(mut views) = hub.watch_hls() else {
        return error(StatusCode::NOT_FOUND, "no HLS for this stream");
    };
    drop(hub);
    // A stream that just started has no segment yet: wait for it instead of a 404 that
    // players would give up on.
    let ready = tokio::time::timeout(
        ctx.config.hls.wait,
        views.wait_for(|v| v.playlist.is_some()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .and_then(|view| view.playlist.clone());
    match ready {
        Some(text) => playlist(text),
        None => error(StatusCode::NOT_FOUND, "stream has no segment yet"),
    }
}

/// A stream's hubs once a master playlist can list them all: the source first, then the
/// renditions from the highest down, waiting (within `hls.wait`) until each has its first
/// segment and every rendition the stream record announces is there. An early viewer gets the
/// whole ladder from the first answer (players do not reload a master playlist).
pub(super) async fn complete_family(
    ctx: &HttpContext,
    app: &str,
    stream: &str,
) -> Result<Vec<Arc<Hub>>, Response<Body>> {
    let key = HubKey::source(app, stream);
    if let Some(refused) = pull_if_missing(ctx, &key).await {
        return Err(refused);
    }
    // How many renditions the record announces; no store read for a stream not here at all
    // (made-up names must not reach the store).
    let announced = match ctx.hubs.get(&key) {
        None => 0,
        Some(_) => {
            match tokio::time::timeout(Duration::from_secs(1), ctx.store.stream(&key.stream)).await
            {
                Ok(Ok(Some(record))) => record.renditions.len(),
                _ => 0,
            }
        }
    };
    let deadline = tokio::time::Instant::now() + ctx.config.hls.wait;
    loop {
        let family = ctx.hubs.family(&key.stream);
        let listed = |h: &Arc<Hub>| h.hls_view().is_some_and(|v| v.playlist.is_some());
        let source_first = family
            .first()
            .is_some_and(|h| h.key().rendition == RenditionId::Source);
        if source_first && family.len() >= announced && family.iter().all(listed) {
            return Ok(family);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(family.into_iter().filter(listed).collect());
        }
        // Renditions appear as the transcoder (or the relay) starts them: look again at the
        // next segment of any of them, or shortly.
        let mut changes: Vec<_> = family.iter().filter_map(|h| h.watch_hls()).collect();
        tokio::select! {
            () = any_changed(&mut changes) => {}
            () = tokio::time::sleep(FAMILY_RECHECK) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// How often a master playlist request looks for renditions that have not appeared yet.
const FAMILY_RECHECK: Duration = Duration::from_millis(100);

/// Resolves when any of `views` changes (never when there are none).
async fn any_changed(views: &mut [tokio::sync::watch::Receiver<Arc<HlsView>>]) {
    if views.is_empty() {
        return std::future::pending().await;
    }
    let _ = futures_util::future::select_all(views.iter_mut().map(|v| Box::pin(v.changed()))).await;
}

/// The variants of a master playlist: one per hub, with the size, codecs and frame rate it
/// has, and the bit rates of the stream record (the origin's measure of the source, the
/// configured rate of a rung: the same on every node), or, where the record has none yet, the
/// bit rate of the hub's own segments (`uri` names each rendition's playlist).
pub(super) fn variants(
    family: &[Arc<Hub>],
    recorded: &[Rendition],
    uri: impl Fn(&HubKey) -> String,
) -> Vec<Variant> {
    family
        .iter()
        .filter_map(|hub| {
            let info = hub.info();
            let video = info.video.as_ref()?;
            let view = hub.hls_view()?;
            let codecs = match &info.audio {
                Some(a) => format!("{},{}", video.codec, a.codec),
                None => video.codec.clone(),
            };
            let record = recorded
                .iter()
                .find(|r| r.name == hub.key().rendition)
                .map(|r| r.video_bitrate + r.audio_bitrate)
                .filter(|b| *b > 0);
            let (bandwidth, average) = match record {
                // Peak allowance over the average, as players budget for it.
                Some(b) => (b + b / 10, b),
                None => {
                    let average = view.average_bps.max(1);
                    (view.peak_bps.max(average), average)
                }
            };
            Some(Variant {
                uri: uri(hub.key()),
                bandwidth,
                average_bandwidth: Some(average),
                resolution: Some((video.width, video.height)),
                codecs,
                frame_rate: video.frame_rate,
            })
        })
        .collect()
}

/// The renditions the stream record lists (empty when the store does not answer quickly).
pub(super) async fn recorded(ctx: &HttpContext, app: &str, stream: &str) -> Vec<Rendition> {
    match tokio::time::timeout(
        Duration::from_secs(1),
        ctx.store.stream(&StreamKey::new(app, stream)),
    )
    .await
    {
        Ok(Ok(Some(record))) => record.renditions,
        _ => Vec::new(),
    }
}

/// `{stream}_adaptive.m3u8`: the source and every rendition, complete from the first answer.
async fn master(ctx: &HttpContext, app: &str, stream: &str) -> Response<Body> {
    let family = match complete_family(ctx, app, stream).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let recorded = recorded(ctx, app, stream).await;
    let variants = variants(&family, &recorded, |k| format!("{}.m3u8", k.player_name()));
    if variants.is_empty() {
        return error(StatusCode::NOT_FOUND, "no such stream");
    }
    match write_master(&variants) {
        Ok(text) => playlist(Bytes::from(text)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_are_an_address_and_user_agent_kept_as_a_hash() {
        let viewers = HlsViewers::default();
        let key = HubKey::source("live", "s");
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_static("player/1"));
        viewers.saw(&key, peer, &h);
        viewers.saw(&key, peer, &h);
        assert_eq!(viewers.of(&key.stream), 1, "one client, counted once");
        // A huge User-Agent is another client, and costs an entry like any other.
        let long = "x".repeat(8000);
        h.insert(header::USER_AGENT, HeaderValue::from_str(&long).unwrap());
        viewers.saw(&key, peer, &h);
        assert_eq!(viewers.of(&key.stream), 2);
        // Behind the LB, the forwarded address is the client.
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.9"));
        viewers.saw(&key, "127.0.0.1:1".parse().unwrap(), &h);
        viewers.saw(&key, "127.0.0.1:2".parse().unwrap(), &h);
        assert_eq!(viewers.of(&key.stream), 3);
        assert_eq!(viewers.per_stream().get(&key.stream), Some(&3));
    }
}
