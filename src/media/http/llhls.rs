//! Low-Latency HLS over HTTP, where Ant Media's web player looks for it:
//! `/{app}/streams/ll-hls/{id}/{id}__master.m3u8` (and `{id}__master_adaptive.m3u8`, its first
//! probe) is the multivariant playlist; beside it `{name}.m3u8` (each rendition's playlist),
//! `{name}-init-{hash}.mp4`, `{name}-{sequence}.m4s` (segments) and
//! `{name}-{sequence}.{part}.m4s` (parts). `/{app}/ll/{id}.m3u8` redirects to the master.
//!
//! Blocking requests (RFC 8216bis 6.2.5): a playlist asked with `_HLS_msn` (and `_HLS_part`)
//! waits until it contains that part, a part asked before it exists (the preload hint) waits
//! until it does. Both wait on the packager's watch channel (no thread, no polling), at most
//! [`HOLD_TARGETS`] target durations, and at most `llhls.max_waiting` requests per rendition
//! wait at once. `_HLS_skip=YES|v2` gets a delta update.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use streamfleet_proto::hls::{RenditionReport, write_master};

use super::hls::{
    complete_family, has_session, new_session, playlist, pull_if_missing, recorded, respond,
    variants,
};
use super::{Body, HttpContext, error};
use crate::media::hls::ll::LlView;
use crate::media::hub::{Hub, HubKey};

/// How long a blocking request may wait, in target durations.
const HOLD_TARGETS: u32 = 3;

/// A request's blocking and delta directives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Directives {
    msn: Option<u64>,
    part: Option<u64>,
    skip: bool,
}

/// Reads `_HLS_msn`, `_HLS_part`, `_HLS_skip` (others are ignored; malformed ones are errors).
fn directives(query: Option<&str>) -> Result<Directives, &'static str> {
    let mut d = Directives::default();
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| "_HLS_msn is not a number")?),
            "_HLS_part" => d.part = Some(v.parse().map_err(|_| "_HLS_part is not a number")?),
            "_HLS_skip" => d.skip = v == "YES" || v == "v2",
            _ => {}
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err("_HLS_part without _HLS_msn");
    }
    Ok(d)
}

/// Serves `/{app}/streams/ll-hls/{id}/{file}`.
pub(super) async fn serve(
    ctx: &HttpContext,
    app: &str,
    id: &str,
    file: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    if ctx.config.app(app).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown application");
    }
    if ctx.config.hls.part.is_none() {
        return error(StatusCode::NOT_FOUND, "LL-HLS is off on this node");
    }
    if let Some(name) = file.strip_suffix(".m3u8") {
        let mut r = if name == format!("{id}__master") || name == format!("{id}__master_adaptive") {
            master(ctx, app, id).await
        } else {
            match directives(query) {
                Ok(d) => media_playlist(ctx, app, name, d).await,
                Err(why) => error(StatusCode::BAD_REQUEST, why),
            }
        };
        if r.status() == StatusCode::OK && !has_session(headers) {
            r.headers_mut().insert(header::SET_COOKIE, new_session());
        }
        return r;
    }
    if let Some(stem) = file.strip_suffix(".m4s") {
        return media(ctx, app, stem).await;
    }
    if let Some(stem) = file.strip_suffix(".mp4")
        && let Some((name, _)) = stem.rsplit_once("-init-")
    {
        let init = hub(ctx, app, name)
            .and_then(|h| h.watch_ll())
            .and_then(|v| v.borrow().init.clone())
            .filter(|(n, _)| n == file);
        return match init {
            Some((_, bytes)) => respond("video/mp4", "public, max-age=3600", bytes),
            None => error(StatusCode::NOT_FOUND, "no such initialization segment"),
        };
    }
    error(StatusCode::NOT_FOUND, "not found")
}

/// `/{app}/ll/{id}.m3u8`: a short address for the master playlist.
pub(super) fn alias(app: &str, file: &str, query: Option<&str>) -> Response<Body> {
    let Some(id) = file.strip_suffix(".m3u8") else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let mut r = Response::new(Body::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    // The query (a play token) goes along.
    let query = query.map_or(String::new(), |q| format!("?{q}"));
    match HeaderValue::from_str(&format!(
        "/{app}/streams/ll-hls/{id}/{id}__master.m3u8{query}"
    )) {
        Ok(location) => {
            r.headers_mut().insert(header::LOCATION, location);
            r.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            r
        }
        Err(_) => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn hub(ctx: &HttpContext, app: &str, name: &str) -> Option<Arc<Hub>> {
    let hub = ctx.hubs.get(&HubKey::from_player_name(app, name))?;
    hub.touch();
    Some(hub)
}

/// The multivariant playlist: every rendition, muxed audio and video in each, complete from
/// the first answer.
async fn master(ctx: &HttpContext, app: &str, id: &str) -> Response<Body> {
    let family = match complete_family(ctx, app, id).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let family: Vec<Arc<Hub>> = family
        .into_iter()
        .filter(|h| h.watch_ll().is_some_and(|v| v.borrow().init.is_some()))
        .collect();
    let recorded = recorded(ctx, app, id).await;
    let variants = variants(&family, &recorded, |k| format!("{}.m3u8", k.player_name()));
    if variants.is_empty() {
        return error(StatusCode::NOT_FOUND, "no such stream");
    }
    match write_master(&variants) {
        Ok(text) => playlist(Bytes::from(text)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// One rendition's LL-HLS playlist, once it has the part asked for.
async fn media_playlist(ctx: &HttpContext, app: &str, name: &str, d: Directives) -> Response<Body> {
    let key = HubKey::from_player_name(app, name);
    if let Some(refused) = pull_if_missing(ctx, &key).await {
        return refused;
    }
    let Some(hub) = hub(ctx, app, name) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    let Some(mut views) = hub.watch_ll() else {
        return error(StatusCode::NOT_FOUND, "no LL-HLS for this stream");
    };
    // A stream that just started has no segment yet: wait for one.
    let first = tokio::time::timeout(
        ctx.config.hls.wait,
        views.wait_for(|v| v.playlist.is_some()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !first {
        return error(StatusCode::NOT_FOUND, "stream has no segment yet");
    }
    if let Some(msn) = d.msn {
        let view = views.borrow().clone();
        // RFC 8216bis 6.2.5.2: a request more than two segments ahead is a client error.
        if view
            .last()
            .is_some_and(|(last, _)| msn > last.saturating_add(2))
        {
            return error(StatusCode::BAD_REQUEST, "_HLS_msn is too far ahead");
        }
        if !contains(&view, msn, d.part) {
            let Some(_waiting) = hub.ll_waiter(ctx.config.hls.max_waiting) else {
                return error(StatusCode::SERVICE_UNAVAILABLE, "too many waiting requests");
            };
            let hold = hold(&view);
            let got =
                tokio::time::timeout(hold, views.wait_for(|v| contains(v, msn, d.part))).await;
            if !matches!(got, Ok(Ok(_))) {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the part asked for did not come",
                );
            }
        }
    }
    let view = views.borrow().clone();
    let Some(pl) = &view.playlist else {
        return error(StatusCode::NOT_FOUND, "stream has no segment yet");
    };
    let reports = reports(ctx, &hub);
    playlist(Bytes::from(pl.render(d.skip, &reports)))
}

fn contains(view: &LlView, msn: u64, part: Option<u64>) -> bool {
    view.playlist.as_ref().is_some_and(|p| p.has(msn, part))
}

/// How long a blocking request waits at most.
fn hold(view: &LlView) -> Duration {
    let target = view.playlist.as_ref().map_or(1, |p| p.target_duration());
    Duration::from_secs(target) * HOLD_TARGETS
}

/// The live edge of the stream's other renditions.
fn reports(ctx: &HttpContext, hub: &Arc<Hub>) -> Vec<RenditionReport> {
    ctx.hubs
        .family(&hub.key().stream)
        .iter()
        .filter(|h| h.key() != hub.key())
        .filter_map(|h| {
            let (last_msn, last_part) = h.watch_ll()?.borrow().last()?;
            Some(RenditionReport {
                uri: format!("{}.m3u8", h.key().player_name()),
                last_msn,
                last_part,
            })
        })
        .collect()
}

/// `{name}-{sequence}.m4s` or `{name}-{sequence}.{part}.m4s`; a part asked for before it exists
/// (the next one, which the playlist hints) is waited for.
async fn media(ctx: &HttpContext, app: &str, stem: &str) -> Response<Body> {
    let Some((name, numbers)) = stem.rsplit_once('-') else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let (sequence, part) = match numbers.split_once('.') {
        Some((s, p)) => (s.parse::<u64>().ok(), p.parse::<u64>().ok().map(Some)),
        None => (numbers.parse::<u64>().ok(), Some(None)),
    };
    let (Some(sequence), Some(part)) = (sequence, part) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Some(hub) = hub(ctx, app, name) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    let Some(mut views) = hub.watch_ll() else {
        return error(StatusCode::NOT_FOUND, "no LL-HLS for this stream");
    };
    let find = |v: &LlView| -> Option<Bytes> {
        match part {
            Some(p) => v
                .parts
                .iter()
                .find(|(s, i, _)| *s == sequence && *i == p)
                .map(|(.., b)| b.clone()),
            None => v
                .segments
                .iter()
                .find(|(s, _)| *s == sequence)
                .map(|(_, b)| b.clone()),
        }
    };
    let view = views.borrow().clone();
    let bytes = match find(&view) {
        Some(b) => Some(b),
        // The next part (or the first of the next segment): it comes within a part target.
        None if part.is_some() && upcoming(&view, sequence, part.unwrap_or(0)) => {
            let Some(_waiting) = hub.ll_waiter(ctx.config.hls.max_waiting) else {
                return error(StatusCode::SERVICE_UNAVAILABLE, "too many waiting requests");
            };
            let got =
                tokio::time::timeout(hold(&view), views.wait_for(|v| find(v).is_some())).await;
            match got {
                Ok(Ok(v)) => find(&v),
                _ => None,
            }
        }
        None => None,
    };
    match bytes {
        Some(b) => {
            ctx.stats.egress_bytes.inc_by(b.len() as u64);
            respond("video/mp4", "public, max-age=3600", b)
        }
        None => error(StatusCode::NOT_FOUND, "no such part"),
    }
}

/// Whether part `part` of segment `sequence` is the next one to come.
fn upcoming(view: &LlView, sequence: u64, part: u64) -> bool {
    match view.last() {
        Some((s, p)) => {
            (sequence == s && part == p + 1) || (sequence == s.saturating_add(1) && part == 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_directives() {
        assert_eq!(directives(None), Ok(Directives::default()));
        assert_eq!(
            directives(Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES&token=x")),
            Ok(Directives {
                msn: Some(12),
                part: Some(3),
                skip: true
            })
        );
        assert_eq!(directives(Some("_HLS_skip=v2")).map(|d| d.skip), Ok(true));
        assert!(directives(Some("_HLS_msn=x")).is_err());
        assert!(directives(Some("_HLS_part=1")).is_err());
    }
}
