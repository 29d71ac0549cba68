//! `balance: stream` for Ant Media's WebSocket signalling (`/{app}/websocket`), whose URL names
//! no stream: the stream id arrives in a message (`{"command":"play","streamId":"..."}`). The
//! LB answers the upgrade itself, reads the client's opening messages until one names the
//! stream, places the session by that stream like its HLS, WHEP and RTMP viewers, then opens
//! the WebSocket on the chosen server with the client's own request and splices the two.
//!
//! Data flow: [`placed_by_message`] (h1's exchange, after the sticky phase: a valid sticky
//! cookie keeps its server, as for any request) -> [`run`]: `101` with the accept key computed
//! from the client's `Sec-WebSocket-Key` (no extension, no subprotocol) -> the client's frames
//! into `websocket::OpeningReader` (pings answered here; other messages without a stream id
//! kept; a message, once begun, and the next message must each come within
//! `timeouts.client`; refusals get a close frame with the reason) -> pick the server by the
//! stream's ring point, connect -> the upgrade request forwarded without
//! `Sec-WebSocket-Extensions` -> the server's `101` checked (same accept key, no extension)
//! -> the kept frames replayed -> the byte pipe both ways under `timeouts.tunnel`, the viewer
//! counted in the server's load while the socket is open.
//!
//! Why here and not on the edges: Ant Media's browser client cannot follow a redirect, and a
//! session on the wrong edge would pull the stream there; reading one small message at the LB
//! costs a few hundred bytes per socket, once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::super::Frontend;
use super::super::backend::{Backend, ServerSet};
use super::super::counters::{Counters, add, inc};
use super::super::error::ProxyError;
use super::super::log::{Cause, Phase, Termination};
use super::super::pipe::{self, PipeTimeouts};
use super::super::placement;
use super::super::upstream::{ConnectPlan, connect};
use super::{
    Exchange, READ_CHUNK, count_viewer, read_response_head, write_downstream, write_upstream,
};
use crate::config::Balance;
use streamfleet_proto::http::{
    RequestEdits, RequestHead, ResponseHead, ResponseParser, write_websocket_request_head,
};
use streamfleet_proto::websocket::{
    Opening, OpeningReader, accept_key, close, write_accept, write_close,
};

/// The application of a WebSocket upgrade that this backend places by the stream its messages
/// name: `balance: stream`, no valid sticky cookie (`preferred`), `/{app}/websocket`, a
/// version 13 key, and no subprotocol asked for (the LB would have to choose it).
pub fn placed_by_message<'h>(
    backend: &Backend,
    head: &'h RequestHead,
    preferred: Option<usize>,
) -> Option<&'h str> {
    if !matches!(backend.balance, Balance::Stream { .. })
        || preferred.is_some()
        || !head.is_websocket_upgrade()
        || head.method() != b"GET"
        || head.header_value(b"sec-websocket-key").is_none()
        || head.header_value(b"sec-websocket-version") != Some(b"13")
        || head.header_value(b"sec-websocket-protocol").is_some()
    {
        return None;
    }
    placement::websocket_app(std::str::from_utf8(head.path_and_query()).ok()?)
}

/// One session being placed.
pub struct Placement<'a, S> {
    /// The frontend.
    pub fe: &'a Frontend,
    /// The client connection.
    pub io: &'a mut S,
    /// Client bytes read and not consumed (what followed the request head).
    pub buf: &'a mut BytesMut,
    /// The client.
    pub peer: SocketAddr,
    /// The routed backend and its servers.
    pub backend: &'a Arc<Backend>,
    /// The backend's servers as of the request.
    pub set: &'a ServerSet,
    /// The access-log record.
    pub x: &'a mut Exchange,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Placement<'_, S> {
    /// Answers the upgrade, reads until a message names the stream, then proxies the socket to
    /// the server of that stream. `responded` turns true with the `101`; errors after it were
    /// answered with a close frame.
    pub async fn run(
        self,
        head: &RequestHead,
        app: &str,
        edits: &RequestEdits,
        responded: &mut bool,
    ) -> Result<(), ProxyError> {
        let Placement {
            fe,
            io,
            buf,
            peer,
            backend,
            set,
            x,
        } = self;
        let key = head.header_value(b"sec-websocket-key").unwrap_or_default();
        let mut out = BytesMut::new();
        write_accept(key, &mut out);
        write_downstream(io, &out, fe.timeouts.client).await?;
        fe.counters.response(101);
        backend.counters.response(101);
        add(&fe.counters.bytes_out, out.len() as u64);
        *responded = true;
        x.status = Some(101);
        x.bytes_out += out.len() as u64;

        let (stream_id, replay) = match read_opening(fe, io, buf, x).await? {
            Some(opened) => opened,
            None => return Ok(()),
        };
        let Some(point) = placement::websocket_stream(app, &stream_id) else {
            return Ok(());
        };
        x.phase = Phase::Connect;
        let plan = ConnectPlan {
            preferred: None,
            client: peer.ip(),
            stream: Some(point),
            timeout: fe.timeouts.connect,
            pooled: false,
        };
        let started = Instant::now();
        let connected = connect(backend, set, plan, &mut x.trace).await;
        x.server = x.trace.server.clone();
        let mut up = match connected {
            Ok(up) => up,
            Err(e) => {
                send_close(
                    fe,
                    io,
                    close::TRY_AGAIN_LATER,
                    "no server can take the stream",
                )
                .await;
                return Err(e);
            }
        };
        x.connected(started, false);
        let server = up.server.clone();
        let _backend_session = backend.counters.open();
        let _server_session = server.counters.open();
        tracing::debug!(frontend = %fe.config.name, %peer, stream = %stream_id, server = %server.name, "websocket placed by stream");

        // The client's upgrade, then the server's 101 for the same key.
        out.clear();
        write_websocket_request_head(head, edits, &mut out);
        let mut ubuf = BytesMut::new();
        let answer = async {
            write_upstream(&mut up.stream, &out, fe.timeouts.server).await?;
            read_response_head(
                &mut up.stream,
                &mut ubuf,
                &mut ResponseParser::default(),
                fe.timeouts.server,
            )
            .await
        }
        .await;
        let refused = match &answer {
            Ok(resp) => refusal(resp, key),
            Err(_) => Some("the server did not answer the WebSocket upgrade".to_owned()),
        };
        if let Some(reason) = refused {
            send_close(fe, io, close::INTERNAL, &reason).await;
            inc(&backend.counters.response_errors);
            inc(&server.counters.response_errors);
            return Err(match answer {
                Err(e) => e,
                Ok(_) => ProxyError::UpstreamIo(std::io::Error::other(reason)),
            });
        }
        x.responded_head();
        server.counters.response(101);
        count_viewer(backend, Some(point), None, peer.ip(), &server);
        x.phase = Phase::Data;

        let tunnel = Arc::new(Counters::default());
        let counters = [&fe.counters, &backend.counters, &server.counters, &tunnel];
        let timeouts = PipeTimeouts {
            idle: fe.timeouts.tunnel,
            client_fin: fe.timeouts.client_fin,
        };
        let mut first = replay;
        first.extend_from_slice(buf);
        buf.clear();
        let pipe = pipe::run(
            &mut *io,
            &mut up.stream,
            &first,
            &ubuf,
            timeouts,
            &counters,
            &fe.shutdown,
        );
        // The viewer counts in the server's load while the socket is open.
        let keep_counted = async {
            if let Balance::Stream { viewer_idle, .. } = backend.balance {
                loop {
                    tokio::time::sleep(viewer_idle / 2).await;
                    count_viewer(backend, Some(point), None, peer.ip(), &server);
                }
            }
            std::future::pending::<()>().await
        };
        let ended = tokio::select! {
            r = pipe => r,
            // `keep_counted` never ends.
            () = keep_counted => Ok(pipe::PipeEnd::Stopped),
        };
        match ended {
            Ok(end) => {
                x.termination = super::super::l4::pipe_termination(&end);
                tracing::debug!(frontend = %fe.config.name, %peer, ?end, "websocket ended");
            }
            Err(e) => {
                x.termination = Termination {
                    cause: Cause::ClientAbort,
                    phase: Phase::Data,
                };
                tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "websocket failed");
            }
        }
        let moved = tunnel.snapshot();
        x.bytes_in += moved.bytes_in;
        x.bytes_out += moved.bytes_out;
        Ok(())
    }
}

/// Why the server's answer to the forwarded upgrade cannot be spliced onto the LB's own `101`.
fn refusal(resp: &ResponseHead, key: &[u8]) -> Option<String> {
    if !resp.is_websocket_accept() {
        return Some(format!(
            "the server refused the WebSocket (status {})",
            resp.status()
        ));
    }
    let has = |name: &[u8]| resp.headers().any(|h| h.is(name));
    let accept = resp
        .headers()
        .find(|h| h.is(b"sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(accept_key(key).as_bytes()) {
        return Some("the server's Sec-WebSocket-Accept does not match".into());
    }
    if has(b"sec-websocket-extensions") || has(b"sec-websocket-protocol") {
        return Some("the server chose an extension the client was not offered".into());
    }
    None
}

/// Reads the client's opening frames: the stream id and the frames to replay, or `None` when
/// the opening ended here (the client closed, or was refused with a close frame).
async fn read_opening<S: AsyncRead + AsyncWrite + Unpin>(
    fe: &Frontend,
    io: &mut S,
    buf: &mut BytesMut,
    x: &mut Exchange,
) -> Result<Option<(String, BytesMut)>, ProxyError> {
    let wait = fe.timeouts.client;
    let mut reader = OpeningReader::new();
    let mut deadline = tokio::time::Instant::now() + wait;
    loop {
        let before = buf.len();
        match reader.feed(buf) {
            Ok(Some(Opening::Stream(id))) => return Ok(Some((id, reader.into_replay()))),
            Ok(Some(Opening::Answer(bytes))) => {
                write_downstream(io, &bytes, wait).await?;
                x.bytes_out += bytes.len() as u64;
                deadline = tokio::time::Instant::now() + wait;
                continue;
            }
            Ok(Some(Opening::Closed(bytes))) => {
                // The client may be gone already.
                let _ = write_downstream(io, &bytes, wait).await;
                x.termination = Termination {
                    cause: Cause::ClientAbort,
                    phase: Phase::Request,
                };
                return Ok(None);
            }
            Ok(None) => {
                if buf.len() < before {
                    deadline = tokio::time::Instant::now() + wait;
                }
            }
            Err(e) => {
                inc(&fe.counters.request_errors);
                tracing::debug!(frontend = %fe.config.name, error = %e, "websocket opening refused");
                send_close(fe, io, e.close_code(), &e.to_string()).await;
                x.termination = Termination {
                    cause: Cause::Proxy,
                    phase: Phase::Request,
                };
                return Ok(None);
            }
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            r = io.read_buf(buf) => match r {
                Ok(0) => return Err(ProxyError::DownstreamClosed),
                Ok(_) => {}
                Err(e) => return Err(ProxyError::DownstreamIo(e)),
            },
            () = tokio::time::sleep_until(deadline) => {
                let reason = format!(
                    "no message naming a stream (play with streamId) within {}",
                    humantime::format_duration(wait)
                );
                send_close(fe, io, close::POLICY, &reason).await;
                x.termination = Termination { cause: Cause::ClientTimeout, phase: Phase::Request };
                return Ok(None);
            }
            () = fe.shutdown.draining() => {
                send_close(fe, io, close::GOING_AWAY, "the load balancer is stopping").await;
                return Ok(None);
            }
        }
    }
}

/// Writes a close frame to the client, best effort (it may be gone).
async fn send_close<S: AsyncWrite + Unpin>(fe: &Frontend, io: &mut S, code: u16, reason: &str) {
    let mut out = Vec::new();
    write_close(code, reason, &mut out);
    let _ = write_downstream(io, &out, fe.timeouts.client).await;
}
