//! WHEP (draft-ietf-wish-whep): `POST /{app}/whep/{streamId}` with an SDP offer answers `201`
//! with the SDP answer and the session resource in `Location`; `PATCH` on the resource takes
//! trickle ICE fragments, `DELETE` ends the session, `OPTIONS` answers CORS preflights. Viewers
//! follow the app's `security.play` with the token in `Authorization: Bearer` (or `?token=`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{Body, HttpContext, error, preflight};
use crate::media::access;
use crate::media::hub::HubKey;
use crate::media::webrtc::WebRtcError;

/// Largest SDP offer or trickle fragment read (browsers' offers are 3-10 KiB).
pub const MAX_BODY: usize = 64 * 1024;
pub(super) const SDP: &str = "application/sdp";
pub(super) const TRICKLE: &str = "application/trickle-ice-sdpfrag";

/// Answers a request on `/{app}/whep/{streamId}[/{session}]`.
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
        (Method::DELETE, Some(id)) => delete(ctx, req.headers(), app, stream_id, id),
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
        &format!("WHEP answers {allow} here"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The viewer's play token: `Authorization: Bearer <jwt>`, else `?token=`.
pub(super) fn token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| query.and_then(access::token_in))
}

/// Why a WHEP request is refused before it reaches a session.
#[derive(Debug)]
pub(super) enum Refused {
    /// The node does not serve the app.
    NoApp(String),
    /// `security.play` refused the viewer (the message says why).
    Forbidden(String),
    /// No session with that id.
    NoSession,
    /// The body is larger than [`MAX_BODY`].
    TooLarge,
    /// The body could not be read.
    Unreadable,
}

impl Refused {
    /// The HTTP answer.
    pub(super) fn response(self) -> Response<Body> {
        match self {
            Refused::NoApp(app) => error(
                StatusCode::NOT_FOUND,
                &format!("no application `{app}` on this node"),
            ),
            Refused::Forbidden(why) => error(StatusCode::FORBIDDEN, &why),
            Refused::NoSession => error(StatusCode::NOT_FOUND, "no such WHEP session"),
            Refused::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            ),
            Refused::Unreadable => error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ),
        }
    }
}

/// 404 for an app the node does not serve, 403 when `security.play` refuses the viewer.
fn admitted(
    ctx: &HttpContext,
    headers: &HeaderMap,
    query: Option<&str>,
    app: &str,
    stream_id: &str,
) -> Result<(), Refused> {
    let Some(config) = ctx.config.app(app) else {
        return Err(Refused::NoApp(app.to_owned()));
    };
    access::may_play(&config.security.play, stream_id, token(headers, query)).map_err(|why| {
        tracing::debug!(%app, stream = %stream_id, reason = %why, "WHEP request refused");
        Refused::Forbidden(format!("not allowed to play {app}/{stream_id}: {why}"))
    })
}

pub(super) fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// The request body, refused beyond [`MAX_BODY`].
pub(super) async fn body(req: Request<Incoming>) -> Result<Bytes, Refused> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(Refused::TooLarge);
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refused::TooLarge),
        Err(_) => Err(Refused::Unreadable),
    }
}

/// The SDP offer of a WHEP or WHIP `POST` (`what` names the protocol in errors) and the
/// client's address (through `rest.trusted_proxies`): content type, size, UTF-8 and `v=0`
/// checked, each refusal with its reason.
pub(super) async fn read_offer(
    ctx: &HttpContext,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    what: &str,
) -> Result<(std::net::IpAddr, String), Response<Body>> {
    if !content_type_is(req.headers(), SDP) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("a {what} offer is sent as Content-Type: application/sdp"),
        ));
    }
    let client =
        super::guard::client_address(&ctx.config.rest.trusted_proxies, peer.ip(), req.headers())
            .map_err(|why| error(StatusCode::BAD_REQUEST, &why))?;
    let bytes = body(req).await.map_err(|r| r.response())?;
    let Ok(sdp) = String::from_utf8(bytes.to_vec()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "malformed SDP offer: not UTF-8",
        ));
    };
    if !sdp.trim_start().starts_with("v=0") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "malformed SDP offer: it does not start with v=0",
        ));
    }
    Ok((client, sdp))
}

/// `POST`: an SDP offer -> `201` with the answer.
async fn offer(
    ctx: &HttpContext,
    req: Request<Incoming>,
    app: &str,
    stream_id: &str,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let Some(webrtc) = ctx.webrtc.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "WebRTC is not enabled on this node (`webrtc:` in its config)",
        );
    };
    if let Err(r) = admitted(ctx, req.headers(), req.uri().query(), app, stream_id) {
        return r.response();
    }
    let (client, sdp) = match read_offer(ctx, req, peer, "WHEP").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let sdp = sdp.as_str();
    let key = HubKey::source(app, stream_id);
    if let Some(puller) = &ctx.puller
        && !ctx.hubs.get(&key).is_some_and(|h| h.is_live())
        && let Err(e) = puller.ensure(&key.stream, ctx.config.hls.wait).await
    {
        tracing::debug!(stream = %key, "not served: {e}");
    }
    let Some(hub) = ctx.hubs.get(&key).filter(|h| h.is_live()) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("stream {app}/{stream_id} is not live"),
        );
    };
    match webrtc.open(sdp, &hub, client) {
        Ok(answer) => {
            let location = format!("/{app}/whep/{stream_id}/{}", answer.id);
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
            tracing::debug!(stream = %key, error = %e, "WHEP offer refused");
            let status = match &e {
                WebRtcError::MalformedOffer(_) => StatusCode::BAD_REQUEST,
                WebRtcError::NoH264(_) | WebRtcError::PublishNoH264 => StatusCode::NOT_ACCEPTABLE,
                WebRtcError::NoVideo => StatusCode::NOT_FOUND,
                WebRtcError::Full(_) | WebRtcError::AddressFull(..) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                WebRtcError::Answer(_) => StatusCode::NOT_ACCEPTABLE,
                WebRtcError::Candidate(_) | WebRtcError::NoOffer => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                // Errors of the server-offer mode (Ant Media's signalling), not of WHEP.
                WebRtcError::MalformedAnswer(_)
                | WebRtcError::Negotiate(_)
                | WebRtcError::VideoRefused
                | WebRtcError::MalformedCandidate => StatusCode::BAD_REQUEST,
            };
            error(status, &error_text(&e))
        }
    }
}

/// The error and its cause, for the response body.
pub(super) fn error_text(e: &WebRtcError) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The session resource's entity tag (the ICE session does not change: no restarts).
pub(super) fn etag(id: &str) -> String {
    format!("\"{id}\"")
}

/// The session of a resource path, or 404.
fn session(
    ctx: &HttpContext,
    app: &str,
    stream_id: &str,
    id: &str,
) -> Result<Arc<crate::media::webrtc::WebRtc>, Refused> {
    match &ctx.webrtc {
        Some(w) if w.exists(&HubKey::source(app, stream_id), id, false) => Ok(w.clone()),
        _ => Err(Refused::NoSession),
    }
}

/// `PATCH`: trickle ICE. This node is ICE-lite: it learns the viewer's addresses from the
/// viewer's own connectivity checks, so candidates are accepted and need no action; an ICE
/// restart (new credentials) is not supported.
async fn patch(
    ctx: &HttpContext,
    req: Request<Incoming>,
    app: &str,
    stream_id: &str,
    id: &str,
) -> Response<Body> {
    if let Err(r) = admitted(ctx, req.headers(), req.uri().query(), app, stream_id) {
        return r.response();
    }
    if let Err(r) = session(ctx, app, stream_id, id) {
        return r.response();
    }
    trickle(req, id).await
}

/// A trickle ICE `PATCH` on session `id` (WHEP and WHIP): the fragment is checked (content
/// type, `If-Match`, size) and accepted; one with new credentials (an ICE restart) is refused.
pub(super) async fn trickle(req: Request<Incoming>, id: &str) -> Response<Body> {
    if !content_type_is(req.headers(), TRICKLE) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "trickle ICE is sent as Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    if let Some(m) = req.headers().get(header::IF_MATCH)
        && m.as_bytes() != b"*"
        && m.as_bytes() != etag(id).as_bytes()
    {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not name this session's ETag",
        );
    }
    let bytes = match body(req).await {
        Ok(b) => b,
        Err(r) => return r.response(),
    };
    let restart = std::str::from_utf8(&bytes)
        .map(|f| f.lines().any(|l| l.starts_with("a=ice-pwd:")))
        .unwrap_or(false);
    if restart {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "ICE restarts are not supported; start a new session",
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("PATCH, DELETE, OPTIONS"),
        );
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// `DELETE`: ends the session.
fn delete(
    ctx: &HttpContext,
    headers: &HeaderMap,
    app: &str,
    stream_id: &str,
    id: &str,
) -> Response<Body> {
    if let Err(r) = admitted(ctx, headers, None, app, stream_id) {
        return r.response();
    }
    match session(ctx, app, stream_id, id) {
        Ok(w) if w.close(&HubKey::source(app, stream_id), id, false) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::OK;
            r
        }
        Ok(_) => Refused::NoSession.response(),
        Err(r) => r.response(),
    }
}
