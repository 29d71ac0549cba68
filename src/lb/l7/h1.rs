//! HTTP/1.1 downstream connections: one loop per connection, one exchange per request, the
//! connection kept alive on both sides when both allow it.
//!
//! Data flow of one exchange: client bytes -> `RequestParser` (408 when the head does not
//! arrive within `timeouts.client`, 400/431 for refused heads: nothing is forwarded) ->
//! `redirect_https` answer, or route -> sticky -> connect (pooled or new, retries) ->
//! request head rewritten into `out` with the first body bytes -> body relayed verbatim by
//! `BodyReader` while watching the upstream for an early answer (`100 Continue` or a final
//! response) -> response head (504 on `timeouts.server`) rewritten with the Set-Cookie prefix
//! -> body relayed verbatim, small pieces coalesced into one write -> upstream connection
//! back to its pool when reusable. A `101` to a WebSocket upgrade turns the connection into a
//! tunnel; on `balance: stream`, Ant Media's signalling socket is answered and placed by the LB
//! itself (`ws_place`). Buffers live as long as the connection and are reused by every request. Each
//! exchange leaves one `httplog` line, filled in as it goes through the phases
//! ([`super::Exchange`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::super::Frontend;
use super::super::backend::Backend;
use super::super::counters::Counters;
use super::super::counters::{add, inc};
use super::super::error::ProxyError;
use super::super::log::{Cause, Phase, Termination};
use super::super::pipe::{self, PipeTimeouts};
use super::super::upstream::{ConnectPlan, Held, Upstream, connect_addr, connect_held};
use super::ws_place::{Placement, placed_by_message};
use super::{
    BODY_READ, Exchange, READ_CHUNK, count_error, count_server_error, count_viewer,
    read_response_head, read_upstream, read_upstream_up_to, route, sticky, stream_point,
    write_downstream, write_downstream_pair, write_upstream,
};
use streamfleet_proto::http::response::write_https_redirect;
use streamfleet_proto::http::{
    BodyFraming, BodyReader, ForwardedProto, HeadLimits, HttpError, RequestEdits, RequestHead,
    RequestParser, ResponseEdits, ResponseHead, ResponseParser, SetCookiePrefix, Side,
    find_server_cookie, write_request_head, write_response_head,
};

/// Bytes of response body gathered before a write to the client.
const COALESCE: usize = 32 * 1024;
/// Largest buffer capacity a connection keeps between exchanges.
const KEEP_BUFFER: usize = 2 * READ_CHUNK;

/// What happens after an exchange.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// One downstream connection.
struct Conn<'a, S> {
    fe: &'a Frontend,
    io: S,
    peer: SocketAddr,
    proto: ForwardedProto,
    /// Bytes from the client not consumed yet (a partial head, body, a pipelined request).
    buf: BytesMut,
    /// Bytes from the upstream not consumed yet.
    ubuf: BytesMut,
    /// Heads being written (and small bodies coalesced with them).
    out: BytesMut,
    parser: RequestParser,
    /// No request has been read yet: an idle timeout is then answered with 408.
    first: bool,
    /// The access-log facts of the current exchange.
    x: Exchange,
    /// The upstream connection of the last exchange, for the next one.
    held: Option<Held>,
}

/// Serves HTTP/1.x on a (possibly TLS) client connection until it closes.
pub async fn serve<S>(
    fe: &Frontend,
    io: S,
    peer: SocketAddr,
    proto: ForwardedProto,
    accepted: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Conn {
        fe,
        io,
        peer,
        proto,
        buf: BytesMut::with_capacity(READ_CHUNK),
        ubuf: BytesMut::new(),
        out: BytesMut::new(),
        parser: RequestParser::new(HeadLimits::default()),
        first: true,
        x: Exchange::new(accepted, proto == ForwardedProto::Https),
        held: None,
    };
    loop {
        let head = match c.read_head().await {
            Ok(Some(h)) => h,
            Ok(None) => {
                if c.first {
                    // Connected, sent nothing, left: logged as HAProxy does (dontlognull
                    // skips it).
                    c.x.termination = Termination {
                        cause: Cause::ClientAbort,
                        phase: Phase::Request,
                    };
                    c.x.log(fe, peer, None);
                }
                break;
            }
            Err(e) => {
                c.x.bytes_in = c.buf.len() as u64;
                c.fail(e, false, None).await;
                c.x.log(fe, peer, None);
                break;
            }
        };
        c.first = false;
        c.x.t_request = Some(c.x.start.elapsed());
        c.x.bytes_in = head.head_len() as u64;
        let mut responded = false;
        let result = c.exchange(&head, &mut responded).await;
        let next = match result {
            Ok(next) => next,
            Err((e, backend)) => {
                c.fail(e, responded, backend).await;
                Next::Close
            }
        };
        c.x.log(fe, peer, Some(&head));
        if next == Next::Close || fe.shutdown.is_draining() {
            break;
        }
        c.x.reset(Instant::now());
    }
    if let Some(h) = c.held.take() {
        h.release();
    }
    // Best effort: sends FIN (and TLS close_notify); the client may already be gone.
    let _ = tokio::time::timeout(fe.timeouts.client, c.io.shutdown()).await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    /// Waits for a whole request head. `Ok(None)`: the client left (or idled out) between
    /// requests, or the node is draining.
    async fn read_head(&mut self) -> Result<Option<RequestHead>, ProxyError> {
        let deadline = tokio::time::Instant::now() + self.fe.timeouts.client;
        loop {
            if !self.buf.is_empty() {
                match self.parser.parse(&self.buf) {
                    Ok(Some(head)) => {
                        self.buf.advance(head.head_len());
                        return Ok(Some(head));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(ProxyError::Http {
                            side: Side::Downstream,
                            source: HttpError::Head(e),
                        });
                    }
                }
            }
            self.buf.reserve(READ_CHUNK);
            let idle = self.buf.is_empty();
            tokio::select! {
                r = self.io.read_buf(&mut self.buf) => match r {
                    Ok(0) if idle => return Ok(None),
                    Ok(0) => return Err(ProxyError::DownstreamClosed),
                    Ok(_) => {
                        // A kept-alive connection's next request starts with its first byte.
                        if idle && !self.first {
                            self.x.start = Instant::now();
                        }
                    }
                    Err(e) => return Err(ProxyError::DownstreamIo(e)),
                },
                () = tokio::time::sleep_until(deadline) => {
                    // A keep-alive connection idling out is closed quietly; a request that
                    // does not arrive in time gets 408.
                    return if idle && !self.first { Ok(None) } else { Err(ProxyError::DownstreamTimeout) };
                }
                () = self.fe.shutdown.draining(), if idle => return Ok(None),
            }
        }
    }

    /// Answers a failed exchange with the LB's error page when nothing was sent yet.
    async fn fail(&mut self, e: ProxyError, responded: bool, backend: Option<Arc<Backend>>) {
        count_error(self.fe, backend.as_deref(), &e);
        self.x.failed(&e);
        tracing::debug!(frontend = %self.fe.config.name, peer = %self.peer, error = %e, source = ?std::error::Error::source(&e), "exchange failed");
        if responded {
            return;
        }
        let Some(status) = e.status() else { return };
        let page = self.fe.errors.page(status);
        self.fe.counters.response(status);
        if let Some(b) = &backend {
            b.counters.response(status);
        }
        add(&self.fe.counters.bytes_out, page.len() as u64);
        self.x.status = Some(status);
        self.x.bytes_out += page.len() as u64;
        // The client may be gone; nothing more to do then.
        let _ = write_downstream(&mut self.io, &page, self.fe.timeouts.client).await;
    }

    /// Proxies one request and its response.
    async fn exchange(
        &mut self,
        head: &RequestHead,
        responded: &mut bool,
    ) -> Result<Next, (ProxyError, Option<Arc<Backend>>)> {
        let fe = self.fe;
        inc(&fe.counters.requests);
        add(&fe.counters.bytes_in, head.head_len() as u64);
        if fe.config.redirect_https && self.proto == ForwardedProto::Http {
            // The body (if any) is not read, so the connection cannot carry another request.
            let close = !head.keep_alive() || head.framing() != BodyFraming::None;
            self.out.clear();
            write_https_redirect(head.host(), head.path_and_query(), close, &mut self.out);
            fe.counters.response(302);
            add(&fe.counters.bytes_out, self.out.len() as u64);
            *responded = true;
            self.x.status = Some(302);
            self.x.bytes_out = self.out.len() as u64;
            self.x.termination = Termination {
                cause: Cause::Local,
                phase: Phase::Request,
            };
            write_downstream(&mut self.io, &self.out, fe.timeouts.client)
                .await
                .map_err(|e| (e, None))?;
            return Ok(if close { Next::Close } else { Next::KeepAlive });
        }
        let Some(backend) = route(fe, head.path_and_query()).cloned() else {
            return Err((ProxyError::NoServer, None));
        };
        inc(&backend.counters.requests);
        self.x.backend = Some(backend.clone());
        let set = backend.servers();
        let found = backend
            .sticky_cookie
            .as_deref()
            .and_then(|name| find_server_cookie(head.headers(), name.as_bytes()));
        let preferred = sticky(&set, found.map(|f| f.server));
        if backend.sticky_cookie.is_some() {
            self.x.cookie_request =
                super::cookie_request_state(&set, found.map(|f| f.server), preferred);
        }
        let edits = RequestEdits {
            forwarded_for: Some(self.peer.ip()),
            forwarded_proto: Some(self.proto),
            keep_alive: !backend.http_server_close,
            cookie: found.map(|f| f.strip),
        };
        if let Some(app) = placed_by_message(&backend, head, preferred) {
            let placement = Placement {
                fe,
                io: &mut self.io,
                buf: &mut self.buf,
                peer: self.peer,
                backend: &backend,
                set: &set,
                x: &mut self.x,
            };
            let result = placement.run(head, app, &edits, responded).await;
            let server = self.x.server.clone();
            self.x.snapshot_conns(fe, Some(&backend), server.as_deref());
            return result
                .map(|()| Next::Close)
                .map_err(|e| (e, Some(backend.clone())));
        }
        let stream = stream_point(&backend, head.path_and_query());
        let plan = ConnectPlan {
            preferred,
            client: self.peer.ip(),
            stream,
            timeout: fe.timeouts.connect,
            pooled: !backend.http_server_close,
        };
        self.x.phase = Phase::Connect;
        let connect_started = Instant::now();
        // A held connection is used unchecked only when a failure can be replayed (see
        // `forward`).
        let probe = head.framing() != BodyFraming::None;
        let connected = connect_held(
            &backend,
            &set,
            plan,
            &mut self.x.trace,
            &mut self.held,
            probe,
        )
        .await;
        self.x.server = self.x.trace.server.clone();
        let up = connected.map_err(|e| (e, Some(backend.clone())))?;
        self.x.connected(connect_started, up.reused);
        let server = up.server.clone();
        count_viewer(&backend, stream, found.as_ref(), self.peer.ip(), &server);
        let _backend_session = backend.counters.open();
        let _server_session = server.counters.open();
        let result = self.forward(head, &edits, up, &backend, responded).await;
        // The sessions are still open while the line is written.
        self.x.snapshot_conns(fe, Some(&backend), Some(&server));
        if let Err(e) = &result {
            count_server_error(&server, e);
            super::count_abort(&backend, &server, e, self.x.phase);
        }
        result.map_err(|e| (e, Some(backend.clone())))
    }

    /// Sends the request on `up` and relays the response.
    async fn forward(
        &mut self,
        head: &RequestHead,
        edits: &RequestEdits,
        mut up: Upstream,
        backend: &Backend,
        responded: &mut bool,
    ) -> Result<Next, ProxyError> {
        let fe = self.fe;
        let server = up.server.clone();
        let counters = [&fe.counters, &backend.counters, &server.counters];
        for c in &counters[1..] {
            add(&c.bytes_in, head.head_len() as u64);
        }
        let server_timeout = fe.timeouts.server;
        let mut body = BodyReader::new(head.framing());
        let bodiless = body.is_complete();
        // A pooled connection the server closed meanwhile fails before any answer; a bodiless
        // request is then replayed once on a new connection.
        let mut may_replay = up.reused && bodiless;
        let mut rparser = ResponseParser::default();
        let (resp, body_unread) = loop {
            self.ubuf.clear();
            self.out.clear();
            write_request_head(head, edits, &mut self.out);
            let attempt = async {
                let early = self
                    .send_body(&mut up.stream, &mut body, &mut rparser, &counters)
                    .await?;
                let resp = match early {
                    Some(r) => r,
                    None => {
                        read_response_head(
                            &mut up.stream,
                            &mut self.ubuf,
                            &mut rparser,
                            server_timeout,
                        )
                        .await?
                    }
                };
                Ok::<_, ProxyError>((resp, !body.is_complete()))
            };
            match attempt.await {
                Err(ProxyError::UpstreamIo(_)) if may_replay && self.ubuf.is_empty() => {
                    may_replay = false;
                    inc(&backend.counters.connects);
                    inc(&server.counters.connects);
                    up.stream = connect_addr(&up.server, fe.timeouts.connect).await?;
                    up.reused = false;
                    rparser = ResponseParser::default();
                }
                other => break other?,
            }
        };
        self.x.responded_head();
        let mut resp = resp;
        // Interim responses (100 Continue after the body was sent, 103) are passed on.
        while resp.is_interim() && !resp.is_switching_protocols() {
            self.out.clear();
            write_response_head(
                &resp,
                &ResponseEdits {
                    close: false,
                    client_version: head.version(),
                    set_cookie: None,
                },
                &mut self.out,
            );
            write_downstream(&mut self.io, &self.out, fe.timeouts.client).await?;
            resp = read_response_head(&mut up.stream, &mut self.ubuf, &mut rparser, server_timeout)
                .await?;
        }
        if resp.is_switching_protocols() {
            return self.tunnel(head, &resp, &mut up, backend, responded).await;
        }
        let status = resp.status();
        self.x.status = Some(status);
        if let Some(name) = backend.sticky_cookie.as_deref() {
            self.x.cookie_response =
                super::cookie_response_state(&resp, name, up.server.cookie.is_some());
        }
        let framing = resp.framing(head.is_head_request());
        let close = !head.keep_alive()
            || body_unread
            || framing == BodyFraming::CloseDelimited
            || fe.shutdown.is_draining();
        let cookie_name = backend.sticky_cookie.as_deref();
        let set_cookie = cookie_name
            .zip(up.server.cookie.as_deref())
            .map(|(name, server)| SetCookiePrefix {
                cookie_name: name.as_bytes(),
                server: server.as_bytes(),
            });
        self.out.clear();
        write_response_head(
            &resp,
            &ResponseEdits {
                close,
                client_version: head.version(),
                set_cookie,
            },
            &mut self.out,
        );
        for c in counters {
            c.response(status);
        }
        *responded = true;
        self.x.phase = Phase::Data;
        let (mut sent, last) = self.relay_response_body(&mut up.stream, framing).await?;
        // The upstream connection is kept for this client's next request (on close it goes
        // back to the pool, to other clients).
        if edits.keep_alive
            && resp.keep_alive(head.is_head_request())
            && !body_unread
            && self.ubuf.len() == last
        {
            let held = Held {
                server: server.clone(),
                stream: up.stream,
                since: Instant::now(),
            };
            if close {
                held.release();
            } else {
                self.held = Some(held);
            }
        }
        sent += self.flush_with(last).await?;
        if self.out.capacity() > KEEP_BUFFER {
            self.out = BytesMut::new();
        }
        if self.ubuf.is_empty() && self.ubuf.capacity() > KEEP_BUFFER {
            self.ubuf = BytesMut::new();
        }
        for c in counters {
            add(&c.bytes_out, sent);
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// Writes `out` (the request head) with the buffered start of the body, then relays the
    /// rest of the body. Returns a final response the upstream sent before the body was
    /// complete (the client connection is then closed after it).
    async fn send_body(
        &mut self,
        up: &mut tokio::net::TcpStream,
        body: &mut BodyReader,
        rparser: &mut ResponseParser,
        counters: &[&Arc<Counters>; 3],
    ) -> Result<Option<ResponseHead>, ProxyError> {
        let fe = self.fe;
        let (client_timeout, server_timeout) = (fe.timeouts.client, fe.timeouts.server);
        let mut sent: u64 = 0;
        loop {
            if !self.buf.is_empty() && !body.is_complete() {
                let p = body.feed(&self.buf).map_err(|e| ProxyError::Http {
                    side: Side::Downstream,
                    source: HttpError::Body(e),
                })?;
                self.out.extend_from_slice(&self.buf[..p.consumed]);
                self.buf.advance(p.consumed);
                sent += p.consumed as u64;
            }
            if !self.out.is_empty() {
                write_upstream(up, &self.out, server_timeout).await?;
                self.out.clear();
            }
            if body.is_complete() {
                counters.iter().for_each(|c| add(&c.bytes_in, sent));
                self.x.bytes_in += sent;
                return Ok(None);
            }
            self.buf.reserve(READ_CHUNK);
            tokio::select! {
                r = tokio::time::timeout(client_timeout, self.io.read_buf(&mut self.buf)) => match r {
                    Err(_) => return Err(ProxyError::DownstreamTimeout),
                    Ok(Err(e)) => return Err(ProxyError::DownstreamIo(e)),
                    Ok(Ok(0)) => return Err(ProxyError::DownstreamClosed),
                    Ok(Ok(_)) => {}
                },
                r = read_upstream(up, &mut self.ubuf, server_timeout) => {
                    r?;
                    // The upstream answers before the body is complete: `100 Continue`, or a
                    // final response (say 413) that ends the exchange.
                    match rparser.parse(&self.ubuf) {
                        Ok(Some(resp)) if resp.is_interim() && !resp.is_switching_protocols() => {
                            self.ubuf.advance(resp.head_len());
                            let mut interim = BytesMut::new();
                            write_response_head(&resp, &ResponseEdits { close: false, client_version: streamfleet_proto::http::Version::Http11, set_cookie: None }, &mut interim);
                            write_downstream(&mut self.io, &interim, client_timeout).await?;
                        }
                        Ok(Some(resp)) => {
                            self.ubuf.advance(resp.head_len());
                            counters.iter().for_each(|c| add(&c.bytes_in, sent));
                            self.x.bytes_in += sent;
                            return Ok(Some(resp));
                        }
                        Ok(None) => {}
                        Err(e) => return Err(ProxyError::Http { side: Side::Upstream, source: HttpError::Head(e) }),
                    }
                }
            }
        }
    }

    /// Relays the response body after the head in `out`, writing the upstream's bytes straight
    /// from `ubuf` (no copy). Returns the bytes sent and the length of the body's last piece,
    /// left at the front of `ubuf` (with the head, if not yet sent, in `out`) once the upstream
    /// has sent the whole body, for [`Self::flush_with`].
    async fn relay_response_body(
        &mut self,
        up: &mut tokio::net::TcpStream,
        framing: BodyFraming,
    ) -> Result<(u64, usize), ProxyError> {
        let fe = self.fe;
        let mut body = BodyReader::new(framing);
        let mut sent: u64 = 0;
        // Body bytes at the front of `ubuf` already fed to `body` but not yet written.
        let mut pending = 0usize;
        loop {
            if !body.is_complete() && self.ubuf.len() > pending {
                let p = body
                    .feed(&self.ubuf[pending..])
                    .map_err(|e| ProxyError::Http {
                        side: Side::Upstream,
                        source: HttpError::Body(e),
                    })?;
                pending += p.consumed;
            }
            if body.is_complete() {
                return Ok((sent, pending));
            }
            // Small pieces wait for more (fewer, larger writes) while input is incomplete.
            if pending > 0 && (self.out.len() + pending >= COALESCE || self.ubuf.len() == pending) {
                sent += self.flush_with(pending).await?;
                pending = 0;
            }
            match read_upstream_up_to(up, &mut self.ubuf, BODY_READ, fe.timeouts.server).await {
                Ok(_) => {}
                Err(ProxyError::UpstreamIo(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    // The end of a close-delimited body; truncation for any other framing.
                    return match body.finish() {
                        Ok(()) => Ok((sent, pending)),
                        Err(e) => Err(ProxyError::Http {
                            side: Side::Upstream,
                            source: HttpError::Body(e),
                        }),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `out` and the first `n` bytes of `ubuf` to the client, consuming both; returns
    /// how many bytes that was.
    async fn flush_with(&mut self, n: usize) -> Result<u64, ProxyError> {
        write_downstream_pair(
            &mut self.io,
            &self.out,
            &self.ubuf[..n],
            self.fe.timeouts.client,
        )
        .await?;
        let total = (self.out.len() + n) as u64;
        self.x.bytes_out += total;
        self.out.clear();
        self.ubuf.advance(n);
        Ok(total)
    }

    /// After `101`: relays the upgrade answer, then pipes both ways under `timeouts.tunnel`.
    async fn tunnel(
        &mut self,
        head: &RequestHead,
        resp: &ResponseHead,
        up: &mut Upstream,
        backend: &Backend,
        responded: &mut bool,
    ) -> Result<Next, ProxyError> {
        let fe = self.fe;
        if !(head.is_websocket_upgrade() && resp.is_websocket_accept()) {
            // Only WebSocket upgrades are forwarded, so no other 101 can be legitimate.
            return Err(ProxyError::UpstreamIo(std::io::Error::other(
                "unexpected 101 Switching Protocols",
            )));
        }
        let cookie_name = backend.sticky_cookie.as_deref();
        let set_cookie = cookie_name
            .zip(up.server.cookie.as_deref())
            .map(|(name, server)| SetCookiePrefix {
                cookie_name: name.as_bytes(),
                server: server.as_bytes(),
            });
        self.out.clear();
        write_response_head(
            resp,
            &ResponseEdits {
                close: false,
                client_version: head.version(),
                set_cookie,
            },
            &mut self.out,
        );
        for c in [&fe.counters, &backend.counters, &up.server.counters] {
            c.response(101);
        }
        *responded = true;
        self.x.status = Some(101);
        self.x.phase = Phase::Data;
        self.x.bytes_out += self.out.len() as u64;
        write_downstream(&mut self.io, &self.out, fe.timeouts.client).await?;
        let timeouts = PipeTimeouts {
            idle: fe.timeouts.tunnel,
            client_fin: fe.timeouts.client_fin,
        };
        let tunnel = Arc::new(Counters::default());
        let counters = [
            &fe.counters,
            &backend.counters,
            &up.server.counters,
            &tunnel,
        ];
        let client_pending = std::mem::take(&mut self.buf);
        let server_pending = std::mem::take(&mut self.ubuf);
        match pipe::run(
            &mut self.io,
            &mut up.stream,
            &client_pending,
            &server_pending,
            timeouts,
            &counters,
            &fe.shutdown,
        )
        .await
        {
            Ok(end) => {
                self.x.termination = super::super::l4::pipe_termination(&end);
                tracing::debug!(frontend = %fe.config.name, peer = %self.peer, ?end, "websocket tunnel ended")
            }
            Err(e) => {
                self.x.termination = Termination {
                    cause: Cause::ClientAbort,
                    phase: Phase::Data,
                };
                tracing::debug!(frontend = %fe.config.name, peer = %self.peer, error = %e, "websocket tunnel failed")
            }
        }
        let moved = tunnel.snapshot();
        self.x.bytes_in += moved.bytes_in;
        self.x.bytes_out += moved.bytes_out;
        Ok(Next::Close)
    }
}
