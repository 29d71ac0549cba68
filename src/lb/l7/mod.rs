//! `mode: http` frontends: TLS termination (when configured), then HTTP/1.1 or HTTP/2 by ALPN,
//! proxied to HTTP/1.1 upstreams.
//!
//! Data flow per connection: [`serve`] -> TLS handshake under `timeouts.client` -> `h1` or
//! `h2`. Per request, the fixed phases: route (path prefixes, first match, else the
//! frontend's backend) -> sticky cookie ([`sticky`]) -> pick upstream (`upstream::connect`)
//! -> forward (head rewritten, body verbatim) -> rewrite response (Set-Cookie prefix) ->
//! count -> log (one `httplog` line from the [`Exchange`] record the phases filled in). The
//! helpers shared by both protocols live here. `ws_place`: WebSocket signalling placed by the
//! stream its first messages name (`balance: stream`).

pub mod h1;
pub mod h2;
pub mod pool;
pub mod ws_place;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Frontend;
use super::backend::{Backend, Server, ServerSet};
use super::counters::inc;
use super::error::ProxyError;
use super::l4::conns;
use super::log::{Cause, Conns, HttpEntry, Phase, RequestLine, Termination};
use super::placement;
use super::upstream::ConnectTrace;
use crate::config::Balance;
use crate::runtime::ConnPermit;
use streamfleet_proto::http::cookie::{ServerCookie, set_cookie_value_offset};
use streamfleet_proto::http::{
    ForwardedProto, HttpError, RequestHead, ResponseHead, ResponseParser, Side,
};

/// Read buffers grow by this much at a time.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Room for one read of a response body: large bodies then take a few big reads and writes
/// instead of many 16 KiB ones (each write to a local socket also pays for the receiver's
/// TCP processing and wake-up). HTTP/1 connections release buffers grown past twice
/// [`READ_CHUNK`] after the response, so idle keep-alive connections do not hold them; an
/// HTTP/2 stream hands its buffer to the client connection's send queue, bounded by
/// `MAX_SEND_BUFFER` per stream.
pub(crate) const BODY_READ: usize = 64 * 1024;

/// Serves one connection of an HTTP frontend.
pub async fn serve(fe: Arc<Frontend>, stream: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let accepted = Instant::now();
    let _session = fe.counters.open();
    let Some(acceptor) = &fe.tls else {
        h1::serve(&fe, stream, peer, ForwardedProto::Http, accepted).await;
        return;
    };
    let handshake = tokio::time::timeout(fe.timeouts.client, acceptor.accept(stream)).await;
    let tls = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "TLS handshake failed");
            log_handshake_failure(&fe, peer, accepted, Cause::ClientAbort);
            return;
        }
        Err(_) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, "TLS handshake timed out");
            log_handshake_failure(&fe, peer, accepted, Cause::ClientTimeout);
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        h2::serve(&fe, tls, peer, accepted).await;
    } else {
        h1::serve(&fe, tls, peer, ForwardedProto::Https, accepted).await;
    }
}

/// A failed TLS handshake: a `<BADREQ>` line (`dontlognull` cannot tell how much the client
/// sent, so it skips these lines too: scanners and probes fail handshakes all day).
fn log_handshake_failure(fe: &Frontend, peer: SocketAddr, accepted: Instant, cause: Cause) {
    let mut x = Exchange::new(accepted, true);
    x.termination = Termination {
        cause,
        phase: Phase::Request,
    };
    x.log(fe, peer, None);
}

/// The access-log facts of one HTTP exchange, filled in as it goes through its phases.
#[derive(Debug)]
pub struct Exchange {
    /// When the request started: the accept for a connection's first request, else its
    /// first byte.
    pub start: Instant,
    /// Whether the client came over TLS.
    pub tls: bool,
    /// `Tq`.
    pub t_request: Option<Duration>,
    /// The routed backend.
    pub backend: Option<Arc<Backend>>,
    /// The server tried last (or used).
    pub server: Option<Arc<Server>>,
    /// `Tc`.
    pub t_connect: Option<Duration>,
    /// When the server connection was ready (the start of `Tr`).
    pub connected_at: Option<Instant>,
    /// `Tr`.
    pub t_response: Option<Duration>,
    /// Status sent to the client.
    pub status: Option<u16>,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Bytes received from the client.
    pub bytes_in: u64,
    /// The phase reached (for the termination state of an error).
    pub phase: Phase,
    /// How it ended.
    pub termination: Termination,
    /// Persistence cookie states (`-` without persistence).
    pub cookie_request: u8,
    /// See [`HttpEntry::cookie_response`].
    pub cookie_response: u8,
    /// Retries and redispatch of the connect.
    pub trace: ConnectTrace,
    /// Connection counts taken while this exchange's sessions were open.
    pub conns: Option<Conns>,
}

impl Exchange {
    /// A fresh record for a request starting at `start`.
    pub fn new(start: Instant, tls: bool) -> Exchange {
        Exchange {
            start,
            tls,
            t_request: None,
            backend: None,
            server: None,
            t_connect: None,
            connected_at: None,
            t_response: None,
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            phase: Phase::Request,
            termination: Termination::NORMAL,
            cookie_request: b'-',
            cookie_response: b'-',
            trace: ConnectTrace::default(),
            conns: None,
        }
    }

    /// Starts over for the next request on the connection.
    pub fn reset(&mut self, start: Instant) {
        *self = Exchange::new(start, self.tls);
    }

    /// A server connection is ready: `Tc` (0 for a pooled one) and the start of `Tr`.
    pub fn connected(&mut self, started: Instant, reused: bool) {
        let now = Instant::now();
        self.t_connect = Some(if reused {
            Duration::ZERO
        } else {
            now.saturating_duration_since(started)
        });
        self.connected_at = Some(now);
        self.phase = Phase::Headers;
    }

    /// The server's response head arrived: `Tr`.
    pub fn responded_head(&mut self) {
        self.t_response = self.connected_at.map(|at| at.elapsed());
    }

    /// Takes the connection counts while the exchange's sessions are open.
    pub fn snapshot_conns(
        &mut self,
        fe: &Frontend,
        backend: Option<&Backend>,
        server: Option<&Server>,
    ) {
        self.conns = Some(conns(fe, backend, server, &self.trace));
    }

    /// Records how a failed exchange ended (the first failure wins).
    pub fn failed(&mut self, e: &ProxyError) {
        if self.termination != Termination::NORMAL {
            return;
        }
        self.termination = termination(e, self.phase);
    }

    /// Writes the line; `head` is the request (`None`: `<BADREQ>`).
    pub fn log(&mut self, fe: &Frontend, peer: SocketAddr, head: Option<&RequestHead>) {
        if !fe.log.enabled() {
            return;
        }
        let conns = match self.conns {
            Some(c) => c,
            None => conns(fe, self.backend.as_deref(), None, &self.trace),
        };
        let request = head.map(|h| RequestLine {
            method: h.method(),
            target: h.target(),
            version: std::str::from_utf8(h.version().as_bytes()).unwrap_or("HTTP/1.1"),
        });
        self.write(fe, peer, conns, request);
    }

    /// Writes the line with an explicit request line (HTTP/2 streams).
    pub fn write(
        &self,
        fe: &Frontend,
        peer: SocketAddr,
        conns: Conns,
        request: Option<RequestLine<'_>>,
    ) {
        let entry = HttpEntry {
            client: peer,
            start: self.start,
            frontend: &fe.config.name,
            tls: self.tls,
            backend: self.backend.as_deref().map(|b| b.name.as_str()),
            server: self.server.as_deref().map(|s| s.name.as_str()),
            t_request: self.t_request,
            t_connect: self.t_connect,
            t_response: self.t_response,
            status: self.status,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
            termination: self.termination,
            cookie_request: self.cookie_request,
            cookie_response: self.cookie_response,
            conns,
            request,
        };
        fe.log.http(&entry, Instant::now());
    }
}

/// The termination state of a failed exchange that had reached `phase`.
pub fn termination(e: &ProxyError, phase: Phase) -> Termination {
    let (cause, phase) = match e {
        ProxyError::DownstreamIo(_) | ProxyError::DownstreamClosed | ProxyError::H2(_) => {
            (Cause::ClientAbort, phase)
        }
        ProxyError::DownstreamTimeout => (Cause::ClientTimeout, phase),
        ProxyError::Http {
            side: Side::Downstream,
            ..
        } => (Cause::Proxy, Phase::Request),
        ProxyError::Connect { .. } | ProxyError::NoServer => (Cause::ServerAbort, Phase::Connect),
        ProxyError::UpstreamTimeout => (Cause::ServerTimeout, phase),
        ProxyError::Http { .. } | ProxyError::UpstreamIo(_) => (Cause::ServerAbort, phase),
    };
    Termination { cause, phase }
}

/// Counts an aborted transfer on the backend and server it was going through: the client
/// leaving (`cli_abrt`) or the server breaking off a response it had started (`srv_abrt`).
pub(crate) fn count_abort(backend: &Backend, server: &Server, e: &ProxyError, phase: Phase) {
    match termination(e, phase).cause {
        Cause::ClientAbort | Cause::ClientTimeout => {
            inc(&backend.counters.client_aborts);
            inc(&server.counters.client_aborts);
        }
        Cause::ServerAbort if phase == Phase::Data => {
            inc(&backend.counters.server_aborts);
            inc(&server.counters.server_aborts);
        }
        _ => {}
    }
}

/// The request-side persistence state: `N` no cookie, `I` unknown server, `D` its server is
/// DOWN, `V` valid.
pub fn cookie_request_state(
    set: &ServerSet,
    server_cookie: Option<&[u8]>,
    preferred: Option<usize>,
) -> u8 {
    match (server_cookie, preferred) {
        (None, _) => b'N',
        (Some(_), Some(_)) => b'V',
        (Some(c), None) if set.by_cookie(c).is_some() => b'D',
        (Some(_), None) => b'I',
    }
}

/// The response-side persistence state: `R` when the server's `Set-Cookie` for the sticky
/// cookie was prefixed, else `N`.
pub fn cookie_response_state(
    resp: &ResponseHead,
    cookie_name: &str,
    server_has_cookie: bool,
) -> u8 {
    let sets = resp
        .headers()
        .filter(|h| h.is(b"set-cookie"))
        .any(|h| set_cookie_value_offset(h.value, cookie_name.as_bytes()).is_some());
    if sets && server_has_cookie {
        b'R'
    } else {
        b'N'
    }
}

/// The route phase: the backend of the first route that matches the target (`path?query`),
/// else the frontend's backend.
pub fn route<'a>(fe: &'a Frontend, path: &[u8]) -> Option<&'a Arc<Backend>> {
    fe.config
        .routes
        .iter()
        .find(|r| r.matcher.matches(path))
        .map(|r| r.backend)
        .or(fe.config.backend)
        .and_then(|i| fe.backend(i))
}

/// `balance: stream`: the stream point of a request for `path` (None for other balances, or a
/// request that names no stream).
pub fn stream_point(backend: &Backend, path: &[u8]) -> Option<u64> {
    if !matches!(backend.balance, Balance::Stream { .. }) {
        return None;
    }
    placement::http_stream(std::str::from_utf8(path).ok()?)
}

/// `balance: stream` on mode http: counts the viewer whose request for a stream went to
/// `server`: by its sticky session when its cookie named that server, else by its address.
pub fn count_viewer(
    backend: &Backend,
    stream: Option<u64>,
    cookie: Option<&ServerCookie<'_>>,
    client: std::net::IpAddr,
    server: &Arc<Server>,
) {
    let (Some(sessions), Some(stream)) = (&backend.sessions, stream) else {
        return;
    };
    let session = cookie
        .filter(|c| server.cookie.as_deref().map(str::as_bytes) == Some(c.server))
        .map(|c| c.session());
    sessions.record(
        placement::Viewer {
            session,
            client,
            stream,
        },
        server,
    );
}

/// The sticky phase: the server a prefixed session cookie names, if it is UP. A DOWN or
/// unknown server means normal balancing (the prefix is still stripped by the caller).
pub fn sticky(set: &ServerSet, server_cookie: Option<&[u8]>) -> Option<usize> {
    let (index, server) = set.by_cookie(server_cookie?)?;
    server.is_up().then_some(index)
}

/// Reads a response head from an upstream, each read bounded by `timeout`.
pub(crate) async fn read_response_head(
    up: &mut TcpStream,
    buf: &mut BytesMut,
    parser: &mut ResponseParser,
    timeout: Duration,
) -> Result<ResponseHead, ProxyError> {
    loop {
        if !buf.is_empty() {
            match parser.parse(buf) {
                Ok(Some(head)) => {
                    buf.advance(head.head_len());
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ProxyError::Http {
                        side: Side::Upstream,
                        source: HttpError::Head(e),
                    });
                }
            }
        }
        read_upstream(up, buf, timeout).await?;
    }
}

/// One read from an upstream into `buf`; EOF is an error (a response was still expected).
pub(crate) async fn read_upstream(
    up: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<usize, ProxyError> {
    read_upstream_up_to(up, buf, READ_CHUNK, timeout).await
}

/// [`read_upstream`] with room for at least `chunk` bytes.
pub(crate) async fn read_upstream_up_to(
    up: &mut TcpStream,
    buf: &mut BytesMut,
    chunk: usize,
    timeout: Duration,
) -> Result<usize, ProxyError> {
    buf.reserve(chunk);
    match tokio::time::timeout(timeout, up.read_buf(buf)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => Err(ProxyError::UpstreamIo(e)),
        Ok(Ok(0)) => Err(ProxyError::UpstreamIo(
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Writes all of `bytes` to an upstream within `timeout`.
pub(crate) async fn write_upstream(
    up: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), ProxyError> {
    match tokio::time::timeout(timeout, up.write_all(bytes)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => Err(ProxyError::UpstreamIo(e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// Writes all of `bytes` to the client within `timeout`.
pub(crate) async fn write_downstream<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), ProxyError> {
    match tokio::time::timeout(timeout, io.write_all(bytes)).await {
        Err(_) => Err(ProxyError::DownstreamTimeout),
        Ok(Err(e)) => Err(ProxyError::DownstreamIo(e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// Writes `head` then `body` to the client with vectored writes (no copy into one buffer).
pub(crate) async fn write_downstream_pair<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> Result<(), ProxyError> {
    match tokio::time::timeout(timeout, write_all_pair(io, head, body)).await {
        Err(_) => Err(ProxyError::DownstreamTimeout),
        Ok(Err(e)) => Err(ProxyError::DownstreamIo(e)),
        Ok(Ok(())) => Ok(()),
    }
}

async fn write_all_pair<S: AsyncWrite + Unpin>(
    io: &mut S,
    mut a: &[u8],
    mut b: &[u8],
) -> std::io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            io.write(b).await?
        } else {
            io.write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// Counts a failed exchange on the frontend or backend, by the side that failed (connect
/// failures are counted where they happen).
pub(crate) fn count_error(fe: &Frontend, backend: Option<&Backend>, e: &ProxyError) {
    match e.side() {
        Some(Side::Downstream) => inc(&fe.counters.request_errors),
        Some(Side::Upstream) if !matches!(e, ProxyError::Connect { .. }) => {
            if let Some(b) = backend {
                inc(&b.counters.response_errors);
            }
        }
        _ => {}
    }
}

/// Counts a failed exchange on the server it was sent to (its response errors only).
pub(crate) fn count_server_error(server: &super::backend::Server, e: &ProxyError) {
    if e.side() == Some(Side::Upstream) && !matches!(e, ProxyError::Connect { .. }) {
        inc(&server.counters.response_errors);
    }
}
