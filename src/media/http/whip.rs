//! WHIP (RFC 9725): `POST /{app}/whip/{streamId}` with the publisher's SDP offer answers `201`
//! with the SDP answer and the session resource in `Location` (and `ETag`); `PATCH` on the
//! resource takes trickle ICE fragments, `DELETE` ends the publication, `OPTIONS` answers CORS
//! preflights. The publisher is admitted by the app's `security.publish` with the token in
//! `Authorization: Bearer` (or `?token=`), like an RTMP publisher's `?token=`, and by the same
//! rules (edges refuse, one publisher per stream in the cluster, `max_streams`).
//!
//! The offer is read before the stream is claimed: a malformed one costs no lease.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::whep::{SDP, error_text, etag, token};
use super::{Body, HttpContext, error, preflight};
use crate::media::access;
use crate::media::hub::HubKey;
use crate::media::ingest::{Ingest, PublishRefused};
use crate::media::webrtc::WebRtcError;
use crate::media::webrtc::publish::PublishOffer;

/// Answers a request on `/{app}/whip/{streamId}[/{session}]`.
pub async fn serve(
    ctx: &HttpContext,
    req: Request<Incoming>,
    app: &str,
    stream_id: &str,
    session: Option<&str>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let mut response = match (req.method().clone(), session) {
        (Method::OPTIONS, None) => preflight("POST, OPTIONS", "authorization, content-type"),
        (Method::OPTIONS, Some(_)) => preflight(
            "PATCH, DELETE, OPTIONS",
            "authorization, content-type, if-match",
        ),
        (Method::POST, None) => offer(ctx, req, app, stream_id, peer).await,
        (Method::PATCH, Some(id)) => patch(ctx, req, app, stream_id, id).await,
        (Method::DELETE, Some(id)) => delete(ctx, &req, app, stream_id, id),
        (_, None) => not_allowed("POST, OPTIONS"),
        (_, Some(_)) => not_allowed("PATCH, DELETE, OPTIONS"),
    };
    response.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag"),
    );
    response
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("WHIP answers {allow} here"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The HTTP answer to a refused publisher.
fn refused(r: &PublishRefused) -> Response<Body> {
    let status = match r {
        PublishRefused::Edge => StatusCode::FORBIDDEN,
        PublishRefused::NoApp(_) => StatusCode::NOT_FOUND,
        PublishRefused::BadName(_) => StatusCode::BAD_REQUEST,
        PublishRefused::Forbidden { .. } => StatusCode::UNAUTHORIZED,
        PublishRefused::Full(_) | PublishRefused::MemoryFull(_) => StatusCode::SERVICE_UNAVAILABLE,
        PublishRefused::InUse(_) | PublishRefused::Elsewhere { .. } => StatusCode::CONFLICT,
    };
    error(status, &r.to_string())
}

/// The HTTP status of a refused offer.
fn offer_status(e: &WebRtcError) -> StatusCode {
    match e {
        WebRtcError::MalformedOffer(_) => StatusCode::BAD_REQUEST,
        WebRtcError::PublishNoH264 | WebRtcError::NoH264(_) | WebRtcError::Answer(_) => {
            StatusCode::NOT_ACCEPTABLE
        }
        WebRtcError::Full(_) | WebRtcError::AddressFull(..) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST`: an SDP offer -> `201` with the answer.
async fn offer(
    ctx: &HttpContext,
    req: Request<Incoming>,
    app: &str,
    stream_id: &str,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    // Edges refuse publishers whether or not they serve WebRTC viewers.
    if ctx.config.role == crate::config::Role::Edge {
        return refused(&PublishRefused::Edge);
    }
    let Some(webrtc) = ctx.webrtc.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "WebRTC is not enabled on this node (`webrtc:` in its config)",
        );
    };
    if ctx.config.app(app).is_none() {
        return refused(&PublishRefused::NoApp(app.to_owned()));
    }
    let bearer = token(req.headers(), req.uri().query()).map(str::to_owned);
    let (client, sdp) = match super::whep::read_offer(ctx, req, peer, "WHIP").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let sdp = sdp.as_str();
    let offer = match PublishOffer::parse(sdp) {
        Ok(o) => o,
        Err(e) => return error(offer_status(&e), &error_text(&e)),
    };
    let admitted = match ctx
        .publishing
        .admit(app, stream_id, bearer.as_deref())
        .await
    {
        Ok(a) => a,
        Err(r) => return refused(&r),
    };
    let ingest = Ingest::new(0, admitted);
    match webrtc.publish(
        offer,
        ingest,
        client,
        ctx.config.hls.segment,
        crate::media::webrtc::Notifier::default(),
    ) {
        Ok(answer) => {
            tracing::info!(%peer, stream = %format!("{app}/{stream_id}"), "publishing over WHIP");
            let location = format!("/{app}/whip/{stream_id}/{}", answer.id);
            let mut r = super::text(StatusCode::CREATED, SDP, answer.sdp);
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&etag(&answer.id)) {
                h.insert(header::ETAG, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::info!(%peer, stream = %format!("{app}/{stream_id}"), error = %e, "WHIP offer refused");
            error(offer_status(&e), &error_text(&e))
        }
    }
}

/// The publisher's session of a resource, or 404; a token the app's `security.publish` refuses
/// is 401 (the resource id is a capability too, but the token is what RFC 9725 asks for).
fn publisher_session(
    ctx: &HttpContext,
    req: &Request<Incoming>,
    app: &str,
    stream_id: &str,
    id: &str,
) -> Result<std::sync::Arc<crate::media::webrtc::WebRtc>, Box<Response<Body>>> {
    let Some(a) = ctx.config.app(app) else {
        return Err(Box::new(refused(&PublishRefused::NoApp(app.to_owned()))));
    };
    if let Err(why) = access::may_publish(
        &a.security.publish,
        stream_id,
        token(req.headers(), req.uri().query()),
    ) {
        return Err(Box::new(refused(&PublishRefused::Forbidden {
            stream: format!("{app}/{stream_id}"),
            why,
        })));
    }
    match &ctx.webrtc {
        Some(w) if w.exists(&HubKey::source(app, stream_id), id, true) => Ok(w.clone()),
        _ => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "no such WHIP session",
        ))),
    }
}

/// `PATCH`: trickle ICE. This node is ICE-lite and learns the publisher's addresses from its
/// connectivity checks: candidates need no action; an ICE restart is not supported.
async fn patch(
    ctx: &HttpContext,
    req: Request<Incoming>,
    app: &str,
    stream_id: &str,
    id: &str,
) -> Response<Body> {
    if let Err(r) = publisher_session(ctx, &req, app, stream_id, id) {
        return *r;
    }
    super::whep::trickle(req, id).await
}

/// `DELETE`: ends the publication (the stream ends as when an RTMP publisher leaves).
fn delete(
    ctx: &HttpContext,
    req: &Request<Incoming>,
    app: &str,
    stream_id: &str,
    id: &str,
) -> Response<Body> {
    match publisher_session(ctx, req, app, stream_id, id) {
        Ok(w) if w.close(&HubKey::source(app, stream_id), id, true) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::OK;
            r
        }
        Ok(_) => error(StatusCode::NOT_FOUND, "no such WHIP session"),
        Err(r) => *r,
    }
}
