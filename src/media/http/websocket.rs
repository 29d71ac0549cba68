//! Ant Media Server's WebSocket signalling for playing (and publishing: `publish`), at `/{app}/websocket` (any query, e.g.
//! `?target=edge`), so Ant Media's own browser client (`@antmedia/webrtc_adaptor`) plays from
//! this node unchanged.
//!
//! The upgrade is answered here (hyper keeps the connection, tokio-tungstenite frames it); one
//! task per socket then reads JSON messages (`webrtc::signal`) and answers them: `play` checks
//! the app's `security.play` with the message's `token`, finds (or pulls) the stream and sends
//! the server's offer at once; the viewer's answer starts the session (`WebRtc::accept_answer`);
//! the session's first frame becomes `play_started` and its end `play_finished`, as does the
//! publisher going away. A socket holds a few sessions (one per stream); bad messages get an
//! `error` and the socket stays usable; the node draining sends `server_will_stop` and closes.

mod publish;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::task::AbortOnDropHandle;

use super::{Body, HttpContext, error};
use crate::cluster::model::{StreamKey, StreamStatus};
use crate::media::access;
use crate::media::hub::HubKey;
use crate::media::webrtc::signal::{self, Definition, RenditionInfo, Reply, Request as Msg};
use crate::media::webrtc::{
    CONNECT_TIMEOUT, Control, Notifier, PendingOffer, SessionEvent, WebRtc, WebRtcError,
};

/// Largest message (and frame) read: SDP answers are 3-10 KiB.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Sessions (streams played at once) one socket may hold.
pub const MAX_SESSIONS_PER_SOCKET: usize = 4;
/// Session events waiting for the socket task (each session sends at most two, plus its
/// stream's end).
const EVENTS: usize = 4 * MAX_SESSIONS_PER_SOCKET;

/// The upgraded connection, framed.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Answers `GET /{app}/websocket` with `101 Switching Protocols` and runs the socket's task.
pub fn serve(
    ctx: &Arc<HttpContext>,
    req: Request<Incoming>,
    app: &str,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let Some(webrtc) = ctx.webrtc.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "WebRTC is not enabled on this node (`webrtc:` in its config)",
        );
    };
    if ctx.config.app(app).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no application `{app}` on this node"),
        );
    }
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the WebSocket signalling is a GET with Upgrade: websocket",
        );
    }
    let key = match handshake_key(req.headers()) {
        Ok(key) => key,
        Err(why) => {
            let mut r = error(StatusCode::UPGRADE_REQUIRED, why);
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return r;
        }
    };
    // Sessions count against `webrtc.max_sessions_per_address` of the client behind the LB.
    let client = match super::guard::client_address(
        &ctx.config.rest.trusted_proxies,
        peer.ip(),
        req.headers(),
    ) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key");
    };
    let task_ctx = ctx.clone();
    let app = app.to_owned();
    // The socket counts against `maxconn` until it closes.
    let permit = req.extensions().get::<super::HeldPermit>().cloned();
    ctx.shutdown.spawn_connection(async move {
        let _permit = permit;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_MESSAGE))
                    .max_frame_size(Some(MAX_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                Signalling::new(task_ctx, webrtc, app, client).run(ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// The client's `Sec-WebSocket-Key`, or why the request is not a WebSocket upgrade.
fn handshake_key(headers: &HeaderMap) -> Result<String, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err("this is Ant Media's WebSocket signalling: send Upgrade: websocket");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("only WebSocket version 13 is supported");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_owned)
        .ok_or("Sec-WebSocket-Key is missing")
}

/// One stream a socket plays.
enum Play {
    /// The offer was sent; the viewer's answer is awaited until `deadline`.
    Offered {
        /// The session waiting for the answer (registered: the viewer's checks wait for it).
        pending: Box<PendingOffer>,
        /// Dropped with `play_finished` after this.
        deadline: Instant,
    },
    /// The session runs.
    Started {
        /// Its id (events carry it).
        id: String,
        /// Ends the session when the stream stops being live.
        _watch: AbortOnDropHandle<()>,
    },
}

/// What woke the socket task.
enum Wake {
    /// A message from the viewer, a read error, or the end of the socket.
    Message(Option<Result<Message, tungstenite::Error>>),
    /// A session's event, with the session id.
    Event(String, SessionEvent),
    /// The earliest offer's deadline passed.
    OfferExpired,
    /// The node drains.
    Draining,
}

/// The state of one signalling socket.
struct Signalling {
    /// The node's config, hubs, store and puller.
    ctx: Arc<HttpContext>,
    /// The node's WebRTC endpoint (sessions are made there).
    webrtc: Arc<WebRtc>,
    /// The app of the socket's path: every stream played is in it.
    app: String,
    /// The client's address (sessions per address are limited).
    client: IpAddr,
    /// By stream id.
    plays: HashMap<String, Play>,
    /// Published streams, by stream id.
    publishes: HashMap<String, publish::Publish>,
    /// Given to sessions and stream watchers, to report to this socket.
    events_tx: mpsc::Sender<(String, SessionEvent)>,
    /// Sessions' events (and their streams' ends), tagged with the session id.
    events: mpsc::Receiver<(String, SessionEvent)>,
}

impl Signalling {
    /// A socket of `app` with no session yet.
    fn new(ctx: Arc<HttpContext>, webrtc: Arc<WebRtc>, app: String, client: IpAddr) -> Self {
        let (events_tx, events) = mpsc::channel(EVENTS);
        Signalling {
            ctx,
            webrtc,
            app,
            client,
            plays: HashMap::new(),
            publishes: HashMap::new(),
            events_tx,
            events,
        }
    }

    /// Runs the socket until the viewer closes it or the node drains; its sessions end with it.
    async fn run(mut self, mut ws: Socket) {
        let why = loop {
            let next_deadline = self
                .plays
                .values()
                .filter_map(|p| match p {
                    Play::Offered { deadline, .. } => Some(*deadline),
                    Play::Started { .. } => None,
                })
                .min()
                .into_iter()
                .chain(self.publish_deadline())
                .min();
            let wake = tokio::select! {
                m = ws.next() => Wake::Message(m),
                Some((id, ev)) = self.events.recv() => Wake::Event(id, ev),
                () = sleep_until(next_deadline) => Wake::OfferExpired,
                () = self.ctx.shutdown.draining() => Wake::Draining,
            };
            let replies = match wake {
                Wake::Message(None) => break "closed by the viewer",
                Wake::Message(Some(Err(e))) => {
                    if let tungstenite::Error::Capacity(c) = &e {
                        let frame = CloseFrame {
                            code: CloseCode::Size,
                            reason: format!("{c}").into(),
                        };
                        if let Err(e) = ws.close(Some(frame)).await {
                            tracing::debug!(error = %e, "websocket close failed");
                        }
                    }
                    tracing::debug!(error = %e, "websocket read failed");
                    break "read error";
                }
                Wake::Message(Some(Ok(m))) => match m {
                    Message::Text(t) => self.handle(t.as_str()).await,
                    Message::Binary(_) => vec![Reply::error(
                        Definition::InvalidMessage,
                        None,
                        Some("messages are JSON text".into()),
                    )],
                    Message::Close(_) => break "closed by the viewer",
                    // tungstenite answers pings itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Vec::new(),
                },
                Wake::Event(id, ev) => self.session_event(&id, ev),
                Wake::OfferExpired => {
                    let mut r = self.expire_offers();
                    r.extend(self.expire_publishes());
                    r
                }
                Wake::Draining => {
                    let bye = Reply::notification(Definition::ServerWillStop, None);
                    if let Err(e) = ws.send(Message::text(bye.to_json())).await {
                        tracing::debug!(error = %e, "websocket send failed");
                    }
                    let frame = CloseFrame {
                        code: CloseCode::Away,
                        reason: "server_will_stop".into(),
                    };
                    if let Err(e) = ws.close(Some(frame)).await {
                        tracing::debug!(error = %e, "websocket close failed");
                    }
                    break "node draining";
                }
            };
            for reply in replies {
                if let Err(e) = ws.send(Message::text(reply.to_json())).await {
                    tracing::debug!(error = %e, "websocket send failed");
                    break;
                }
            }
        };
        tracing::debug!(app = %self.app, reason = why, "websocket signalling ended");
        self.end_publishes();
        for (stream_id, play) in self.plays.drain() {
            if let Play::Started { id, .. } = play {
                self.webrtc
                    .close(&HubKey::source(&self.app, &stream_id), &id, false);
            }
        }
    }

    /// Answers one text message.
    async fn handle(&mut self, text: &str) -> Vec<Reply> {
        let msg = match signal::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "websocket message refused");
                return vec![Reply::error(e.definition(), None, Some(e.to_string()))];
            }
        };
        match msg {
            Msg::Ping => vec![Reply::Pong],
            Msg::GetIceServerConfig => vec![Reply::IceServerConfig],
            Msg::Play { stream_id, token } => self.play(stream_id, token.as_deref()).await,
            Msg::Publish { stream_id, token } => self.publish(stream_id, token.as_deref()).await,
            Msg::Stop { stream_id } => match self.stop_publish(&stream_id) {
                Some(r) => r,
                None => self.stop(&stream_id),
            },
            Msg::TakeConfiguration {
                stream_id,
                kind,
                sdp,
                ..
            } if kind == "offer" => self.publish_offer(&stream_id, &sdp),
            Msg::TakeConfiguration {
                stream_id,
                kind,
                sdp,
            } => self.answer(&stream_id, &kind, &sdp),
            Msg::TakeCandidate {
                stream_id,
                candidate,
                ..
            } => {
                if let Some(Play::Offered { pending, .. }) = self.plays.get_mut(&stream_id)
                    && !candidate.is_empty()
                    && let Err(e) = pending.add_candidate(&candidate)
                {
                    // mDNS (`.local`) candidates, for example: the viewer's checks still arrive.
                    tracing::debug!(error = %e, %candidate, "viewer candidate not used");
                }
                // Once the session runs, ICE-lite learns addresses from the viewer's checks.
                Vec::new()
            }
            Msg::GetStreamInfo { stream_id } => vec![self.stream_info(&stream_id).await],
            Msg::ForceStreamQuality { stream_id, height } => self.force(&stream_id, height),
            Msg::Unsupported { command } => vec![Reply::error(
                Definition::UnsupportedCommand,
                None,
                Some(format!(
                    "`{command}` is not supported: this server plays and publishes"
                )),
            )],
        }
    }

    /// `play`: admission, then the server's offer and its host candidate.
    async fn play(&mut self, stream_id: String, token: Option<&str>) -> Vec<Reply> {
        let err = |d: Definition, m: String| vec![Reply::error(d, Some(&stream_id), Some(m))];
        if self.plays.contains_key(&stream_id) {
            return err(
                Definition::AlreadyPlaying,
                "this socket already plays the stream; `stop` it first".into(),
            );
        }
        if self.plays.len() >= MAX_SESSIONS_PER_SOCKET {
            return err(
                Definition::ViewerLimitReached,
                format!("a socket plays at most {MAX_SESSIONS_PER_SOCKET} streams"),
            );
        }
        let Some(config) = self.ctx.config.app(&self.app) else {
            return err(Definition::NotServed, "the app is not served here".into());
        };
        if let Err(why) = access::may_play(&config.security.play, &stream_id, token) {
            tracing::debug!(app = %self.app, stream = %stream_id, reason = %why, "websocket play refused");
            return err(
                Definition::Unauthorized,
                format!("not allowed to play {}/{stream_id}: {why}", self.app),
            );
        }
        let key = HubKey::source(&self.app, &stream_id);
        if let Some(puller) = &self.ctx.puller
            && !self.ctx.hubs.get(&key).is_some_and(|h| h.is_live())
            && let Err(e) = puller.ensure(&key.stream, self.ctx.config.hls.wait).await
        {
            tracing::debug!(stream = %key, "not served: {e}");
        }
        let Some(hub) = self.ctx.hubs.get(&key).filter(|h| h.is_live()) else {
            return err(
                Definition::NoStreamExist,
                format!("stream {}/{stream_id} is not live", self.app),
            );
        };
        match self.webrtc.offer(&hub, self.client) {
            Ok(offer) => {
                let mid = offer.id_mapping.first().map(|(mid, _)| mid.clone());
                let replies = vec![
                    Reply::Offer {
                        stream_id: stream_id.clone(),
                        sdp: offer.sdp,
                        id_mapping: offer.id_mapping,
                    },
                    Reply::Candidate {
                        stream_id: stream_id.clone(),
                        label: 0,
                        mid: mid.unwrap_or_else(|| "0".into()),
                        candidate: offer.candidate,
                    },
                ];
                self.plays.insert(
                    stream_id,
                    Play::Offered {
                        pending: Box::new(offer.pending),
                        deadline: Instant::now() + CONNECT_TIMEOUT,
                    },
                );
                replies
            }
            Err(e) => {
                tracing::debug!(stream = %key, error = %e, "websocket play refused");
                err(definition(&e), super::whep::error_text(&e))
            }
        }
    }

    /// The viewer's `takeConfiguration`: the answer to our offer starts the session.
    fn answer(&mut self, stream_id: &str, kind: &str, sdp: &str) -> Vec<Reply> {
        let err = |d: Definition, m: String| vec![Reply::error(d, Some(stream_id), Some(m))];
        if kind != "answer" {
            return err(
                Definition::UnsupportedCommand,
                format!("a `{kind}` configuration: players answer, publishers offer"),
            );
        }
        let Some(Play::Offered { .. }) = self.plays.get(stream_id) else {
            return err(
                Definition::NoSession,
                "no offer of this stream waits for an answer on this socket".into(),
            );
        };
        let Some(Play::Offered { pending, .. }) = self.plays.remove(stream_id) else {
            return Vec::new();
        };
        let Some(hub) = self.ctx.hubs.get(&HubKey::source(&self.app, stream_id)) else {
            return err(
                Definition::NoStreamExist,
                "the stream ended before the answer".into(),
            );
        };
        let notifier = Notifier::to(self.events_tx.clone());
        match self.webrtc.accept_answer(*pending, sdp, notifier) {
            Ok(id) => {
                let mut live = hub.watch_live();
                let events = self.events_tx.clone();
                let session = id.clone();
                let watch = tokio::spawn(async move {
                    if live.wait_for(|l| !*l).await.is_ok()
                        && events.send((session, SessionEvent::Ended)).await.is_err()
                    {
                        tracing::debug!("the socket ended before its stream");
                    }
                });
                self.plays.insert(
                    stream_id.to_owned(),
                    Play::Started {
                        id,
                        _watch: AbortOnDropHandle::new(watch),
                    },
                );
                Vec::new()
            }
            Err(e) => {
                tracing::debug!(stream = %stream_id, error = %e, "websocket answer refused");
                err(definition(&e), super::whep::error_text(&e))
            }
        }
    }

    /// `forceStreamQuality`: the stream's session sends the rendition of that height from its
    /// next keyframe (0: the server chooses again). Nothing is answered when it is done (Ant
    /// Media answers nothing either); an `error` when there is no such rendition or session.
    fn force(&mut self, stream_id: &str, height: u32) -> Vec<Reply> {
        let err = |d: Definition, m: String| vec![Reply::error(d, Some(stream_id), Some(m))];
        let Some(Play::Started { id, .. }) = self.plays.get(stream_id) else {
            return err(
                Definition::NoSession,
                "this socket does not play the stream (yet)".into(),
            );
        };
        let key = HubKey::source(&self.app, stream_id);
        let rendition = match self.webrtc.rendition_by_height(&key.stream, height) {
            Ok(r) => r,
            Err(heights) => {
                return err(
                    Definition::NoSuchRendition,
                    format!(
                        "no rendition of height {height}; the stream has {heights:?} (0 = auto)"
                    ),
                );
            }
        };
        if !self.webrtc.control(&key, id, Control::Force(rendition)) {
            return err(Definition::NoSession, "the session is not running".into());
        }
        tracing::debug!(stream = %key, height, "forceStreamQuality");
        Vec::new()
    }

    /// `stop`: ends the stream's session (or pending offer) and says `play_finished`.
    fn stop(&mut self, stream_id: &str) -> Vec<Reply> {
        match self.plays.remove(stream_id) {
            Some(play) => {
                if let Play::Started { id, .. } = play {
                    self.webrtc
                        .close(&HubKey::source(&self.app, stream_id), &id, false);
                }
                vec![Reply::notification(
                    Definition::PlayFinished,
                    Some(stream_id),
                )]
            }
            // The adaptor stops before it plays again; nothing to say.
            None => Vec::new(),
        }
    }

    /// A session's event: `play_started`, or `play_finished` (the session or its stream ended).
    fn session_event(&mut self, id: &str, ev: SessionEvent) -> Vec<Reply> {
        if let Some(r) = self.publish_event(id, ev) {
            return r;
        }
        let Some(stream_id) = self.plays.iter().find_map(|(s, p)| match p {
            Play::Started { id: i, .. } if i == id => Some(s.clone()),
            _ => None,
        }) else {
            // A session this socket already stopped.
            return Vec::new();
        };
        match ev {
            SessionEvent::Playing => vec![Reply::notification(
                Definition::PlayStarted,
                Some(&stream_id),
            )],
            SessionEvent::Ended => {
                self.plays.remove(&stream_id);
                self.webrtc
                    .close(&HubKey::source(&self.app, &stream_id), id, false);
                vec![Reply::notification(
                    Definition::PlayFinished,
                    Some(&stream_id),
                )]
            }
        }
    }

    /// Drops offers never answered within [`CONNECT_TIMEOUT`].
    fn expire_offers(&mut self) -> Vec<Reply> {
        let now = Instant::now();
        let expired: Vec<String> = self
            .plays
            .iter()
            .filter(|(_, p)| matches!(p, Play::Offered { deadline, .. } if *deadline <= now))
            .map(|(s, _)| s.clone())
            .collect();
        expired
            .into_iter()
            .map(|s| {
                self.plays.remove(&s);
                Reply::notification(Definition::PlayFinished, Some(&s))
            })
            .collect()
    }

    /// `getStreamInfo`: the renditions the cluster store lists for a broadcasting stream, else
    /// what the local hub knows, else `no_stream_exist`.
    async fn stream_info(&self, stream_id: &str) -> Reply {
        let key = StreamKey::new(&self.app, stream_id);
        match self.ctx.store.stream(&key).await {
            Ok(Some(r))
                if r.effective_status(SystemTime::now()) == StreamStatus::Broadcasting
                    && !r.renditions.is_empty() =>
            {
                return Reply::StreamInformation {
                    stream_id: stream_id.to_owned(),
                    renditions: r
                        .renditions
                        .iter()
                        .map(|r| RenditionInfo {
                            width: r.width,
                            height: r.height,
                            video_bitrate: r.video_bitrate,
                            audio_bitrate: r.audio_bitrate,
                            video_codec: codec_name(&r.video_codec),
                        })
                        .collect(),
                };
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "store unavailable for getStreamInfo"),
        }
        let hub = self
            .ctx
            .hubs
            .get(&HubKey::source(&self.app, stream_id))
            .filter(|h| h.is_live());
        let video = hub.and_then(|h| h.info().video.clone());
        match video {
            Some(v) => Reply::StreamInformation {
                stream_id: stream_id.to_owned(),
                renditions: vec![RenditionInfo {
                    width: v.width,
                    height: v.height,
                    video_bitrate: 0,
                    audio_bitrate: 0,
                    video_codec: codec_name(&v.codec),
                }],
            },
            None => Reply::error(
                Definition::NoStreamExist,
                Some(stream_id),
                Some(format!("stream {}/{stream_id} is not live", self.app)),
            ),
        }
    }
}

/// Ant Media's codec name for an RFC 6381 string (`avc1.64001f` -> `h264`).
fn codec_name(rfc6381: &str) -> String {
    if rfc6381.starts_with("avc1") || rfc6381.starts_with("avc3") {
        "h264".into()
    } else {
        rfc6381.to_owned()
    }
}

/// The `error` definition of a WebRTC failure.
fn definition(e: &WebRtcError) -> Definition {
    match e {
        WebRtcError::NoVideo => Definition::NoStreamExist,
        WebRtcError::Full(_) | WebRtcError::AddressFull(..) => Definition::ViewerLimitReached,
        WebRtcError::MalformedOffer(_)
        | WebRtcError::NoH264(_)
        | WebRtcError::PublishNoH264
        | WebRtcError::Answer(_)
        | WebRtcError::MalformedAnswer(_)
        | WebRtcError::Negotiate(_)
        | WebRtcError::VideoRefused
        | WebRtcError::MalformedCandidate => Definition::NotSetRemoteDescription,
        WebRtcError::Candidate(_) | WebRtcError::NoOffer => Definition::ServerError,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_upgrade_request_is_checked() {
        let ok = headers(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(
            handshake_key(&ok).as_deref(),
            Ok("dGhlIHNhbXBsZSBub25jZQ==")
        );
        // RFC 6455 1.3's example.
        assert_eq!(
            tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let plain = headers(&[("connection", "keep-alive")]);
        assert!(handshake_key(&plain).is_err());
        let old = headers(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "x"),
        ]);
        assert!(handshake_key(&old).unwrap_err().contains("13"));
        let no_key = headers(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
        ]);
        assert!(handshake_key(&no_key).is_err());
    }

    #[test]
    fn codec_names() {
        assert_eq!(codec_name("avc1.64001f"), "h264");
        assert_eq!(codec_name("hvc1.1.6.L93.B0"), "hvc1.1.6.L93.B0");
    }
}
