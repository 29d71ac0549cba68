//! HTTP/2 downstream connections (ALPN `h2` on TLS frontends), proxied to HTTP/1.1 upstreams.
//!
//! Data flow: the `h2` crate drives the connection in this task (accepting streams, flow
//! control); each request stream gets its own task: route -> sticky -> connect (pooled) ->
//! request head written from the h2 parts (`:authority` -> Host, cookies joined, framing
//! announced) -> body relayed (chunk-encoded when its length is unknown) -> HTTP/1.1
//! response head -> h2 response (hop-by-hop headers and Transfer-Encoding dropped, Set-Cookie
//! prefixed) -> body un-chunked with `feed_decoded` and sent as DATA frames within the
//! stream's flow-control window. The connection closes gracefully after `timeouts.client`
//! without streams, or when the node drains. Each stream leaves one `httplog` line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Frontend;
use super::super::backend::Backend;
use super::super::counters::{add, inc};
use super::super::error::ProxyError;
use super::super::l4::conns;
use super::super::log::{Phase, RequestLine};
use super::super::upstream::{ConnectPlan, connect};
use super::{
    BODY_READ, Exchange, count_abort, count_error, count_server_error, count_viewer,
    read_response_head, read_upstream_up_to, route, sticky, stream_point, write_upstream,
};
use crate::runtime::ConnPermit;
use streamfleet_proto::http::cookie::prefix_set_cookie;
use streamfleet_proto::http::{
    BodyFraming, BodyReader, CHUNK_END, ForwardedProto, HeadLimits, Header, HttpError, LAST_CHUNK,
    PartsBody, RequestEdits, RequestParts, ResponseParser, Side, find_server_cookie,
    write_chunk_head, write_request_from_parts,
};

/// Streams one client may have open at once (advertised in SETTINGS; the `h2` crate refuses
/// streams past it with REFUSED_STREAM). HAProxy's `tune.h2.max-concurrent-streams` is 100.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest header list accepted from a client (the HTTP/1 head limit). It also bounds a
/// CONTINUATION flood: `h2` allows about `MAX_HEADER_LIST / max_frame_size` (at least 5)
/// CONTINUATION frames per header block, then sends GOAWAY(ENHANCE_YOUR_CALM).
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Streams the LB may reset because the client broke the protocol (malformed headers, flow
/// control) before it ends the connection with GOAWAY(ENHANCE_YOUR_CALM); a real client
/// makes none.
const MAX_LOCAL_ERROR_RESETS: usize = 64;
/// Streams reset by the client before this task accepted them that may wait in the accept
/// queue (`h2`'s default; past it, GOAWAY(ENHANCE_YOUR_CALM): the rapid-reset defence).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Reset streams whose late frames are still ignored (state kept per reset stream).
const MAX_RESET_STREAMS: usize = 50;
/// Response bytes buffered per stream beyond what the client's window takes: responses are
/// relayed piece by piece as the window opens, so this only bounds what a slow reader pins.
const MAX_SEND_BUFFER: usize = 64 * 1024;

/// Serves HTTP/2 on a TLS connection until it closes.
pub async fn serve<S>(fe: &Arc<Frontend>, io: S, peer: SocketAddr, accepted: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // SETTINGS and PING floods need no setting: `h2` writes each ACK before it reads the
    // next frame, so a client that does not read stalls its own connection (and is closed by
    // the deadline below); WINDOW_UPDATE past 2^31-1 is a FLOW_CONTROL_ERROR; malformed
    // requests (connection-specific or uppercase header names, bad pseudo-headers) are reset.
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_concurrent_reset_streams(MAX_RESET_STREAMS)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(fe.timeouts.client, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            inc(&fe.counters.request_errors);
            return;
        }
    };
    let active = Arc::new(AtomicUsize::new(0));
    // Set by a graceful shutdown: a client that does not read (so the GOAWAY cannot be
    // written) is dropped at this instant instead of holding the connection for ever.
    let mut closing: Option<tokio::time::Instant> = None;
    let mut first = true;
    loop {
        let idle = active.load(Ordering::Relaxed) == 0;
        tokio::select! {
            r = conn.accept() => match r {
                Some(Ok((request, mut respond))) => {
                    // The connection's own slot covers one stream; each stream opened while
                    // others are in flight takes a slot of its own, so one connection cannot
                    // hold more upstream requests than `maxconn` allows.
                    let slots = if active.load(Ordering::Relaxed) == 0 {
                        Some(None)
                    } else {
                        stream_slots(fe).map(Some)
                    };
                    let Some(slots) = slots else {
                        inc(&fe.counters.denied);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    };
                    active.fetch_add(1, Ordering::Relaxed);
                    let (fe, active) = (fe.clone(), active.clone());
                    // The first stream's request started with the connection (TLS included).
                    let start = if first { accepted } else { Instant::now() };
                    first = false;
                    fe.shutdown.clone().spawn_connection(async move {
                        let _slots = slots;
                        stream(&fe, peer, request, respond, start).await;
                        active.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "HTTP/2 connection error");
                    break;
                }
                None => break,
            },
            () = tokio::time::sleep(fe.timeouts.client), if idle && closing.is_none() => {
                conn.graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + fe.timeouts.client);
            }
            () = fe.shutdown.draining(), if closing.is_none() => {
                conn.graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + fe.timeouts.client);
            }
            () = sleep_until(closing), if idle && closing.is_some() => {
                tracing::debug!(frontend = %fe.config.name, %peer, "HTTP/2 client did not close after GOAWAY; dropped");
                break;
            }
            () = fe.shutdown.stopped() => break,
        }
    }
}

/// Sleeps until `deadline` (for ever without one).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The slots an extra in-flight stream takes: one of the frontend's own `maxconn` (when it
/// has one) and one of the node's; `None` when either is full.
fn stream_slots(fe: &Frontend) -> Option<(Option<ConnPermit>, ConnPermit)> {
    let own = match &fe.own_limit {
        Some(limit) => Some(limit.try_acquire()?),
        None => None,
    };
    let node = fe.limit.try_acquire()?;
    Some((own, node))
}

/// Proxies one request stream, answering with the LB's error page when that is still possible.
async fn stream(
    fe: &Arc<Frontend>,
    peer: SocketAddr,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    start: Instant,
) {
    if let Err(refusal) = check_request(&request) {
        inc(&fe.counters.request_errors);
        tracing::debug!(frontend = %fe.config.name, %peer, ?refusal, "HTTP/2 request refused");
        match refusal {
            Refusal::Reset(reason) => respond.send_reset(reason),
            Refusal::Status(status) => {
                fe.counters.response(status);
                send_error_page(fe, &mut respond, status);
            }
        }
        return;
    }
    let mut responded = false;
    let mut x = Exchange::new(start, true);
    x.t_request = Some(start.elapsed());
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let result = proxy(fe, peer, request, &mut respond, &mut responded, &mut x).await;
    if let Err((e, backend)) = result {
        count_error(fe, backend.as_deref(), &e);
        x.failed(&e);
        tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "HTTP/2 exchange failed");
        match e.status().filter(|_| !responded) {
            Some(status) => {
                fe.counters.response(status);
                if let Some(b) = &backend {
                    b.counters.response(status);
                }
                x.status = Some(status);
                x.bytes_out += send_error_page(fe, &mut respond, status);
            }
            None => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        }
    }
    if fe.log.enabled() {
        let counts = x
            .conns
            .unwrap_or_else(|| conns(fe, x.backend.as_deref(), None, &x.trace));
        let line = RequestLine {
            method: method.as_str().as_bytes(),
            target: target.as_bytes(),
            version: "HTTP/2.0",
        };
        x.write(fe, peer, counts, Some(line));
    }
}

/// What `h2` lets through but an HTTP/1 upstream must not see: a request without `:path`
/// (RFC 9113 §8.3.1 makes it malformed; without `:authority` but with a Host field it reached
/// the server as `GET /`): RST_STREAM
/// (PROTOCOL_ERROR); and CONNECT (this LB tunnels nothing over HTTP/2): 405. Both end the
/// stream alone.
fn check_request<B>(request: &http::Request<B>) -> Result<(), Refusal> {
    if request.method() == http::Method::CONNECT {
        return Err(Refusal::Status(405));
    }
    // `Uri::path_and_query` shows `/` for an empty path; the parts tell it was absent.
    if http::uri::Parts::from(request.uri().clone())
        .path_and_query
        .is_none()
    {
        return Err(Refusal::Reset(h2::Reason::PROTOCOL_ERROR));
    }
    Ok(())
}

/// How [`check_request`] refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A malformed request: RST_STREAM with this code.
    Reset(h2::Reason),
    /// A well-formed request the LB does not serve: this error page.
    Status(u16),
}

/// Sends the LB's error page (an HTTP/1 response, builtin or errorfile) as an h2 response;
/// returns the body bytes sent.
fn send_error_page(fe: &Frontend, respond: &mut SendResponse<Bytes>, status: u16) -> u64 {
    let page = fe.errors.page(status);
    let Ok(Some(head)) = ResponseParser::default().parse(&page) else {
        return 0;
    };
    let mut builder = http::Response::builder().status(head.status());
    for h in head
        .end_to_end_headers()
        .filter(|h| !h.is(b"content-length"))
    {
        builder = builder.header(h.name, h.value);
    }
    let body = page.slice(head.head_len()..);
    let Ok(response) = builder.body(()) else {
        return 0;
    };
    let Ok(mut send) = respond.send_response(response, body.is_empty()) else {
        return 0;
    };
    let len = body.len() as u64;
    add(&fe.counters.bytes_out, len);
    // A small page fits in the initial window; a refused send only means the client left.
    let _ = send.send_data(body, true);
    len
}

async fn proxy(
    fe: &Frontend,
    peer: SocketAddr,
    request: http::Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    responded: &mut bool,
    x: &mut Exchange,
) -> Result<(), (ProxyError, Option<Arc<Backend>>)> {
    inc(&fe.counters.requests);
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Some(backend) = route(fe, path.as_bytes()).cloned() else {
        return Err((ProxyError::NoServer, None));
    };
    let fail = |e| (e, Some(backend.clone()));
    inc(&backend.counters.requests);
    x.backend = Some(backend.clone());
    let headers: Vec<Header<'_>> = parts
        .headers
        .iter()
        .map(|(n, v)| Header {
            name: n.as_str().as_bytes(),
            value: v.as_bytes(),
        })
        .collect();
    let framing = if body.is_end_stream() {
        PartsBody::Empty
    } else {
        // h2 has checked content-length against the DATA frames it announces.
        match parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            Some(n) => PartsBody::ContentLength(n),
            None => PartsBody::Chunked,
        }
    };
    let set = backend.servers();
    let found = backend
        .sticky_cookie
        .as_deref()
        .and_then(|name| find_server_cookie(headers.iter().copied(), name.as_bytes()));
    let edits = RequestEdits {
        forwarded_for: Some(peer.ip()),
        forwarded_proto: Some(ForwardedProto::Https),
        keep_alive: !backend.http_server_close,
        cookie: found.map(|f| f.strip),
    };
    let request_parts = RequestParts {
        method: parts.method.as_str().as_bytes(),
        path: path.as_bytes(),
        authority: parts.uri.authority().map(|a| a.as_str().as_bytes()),
        headers: headers.iter().copied(),
        body: framing,
    };
    let mut out = BytesMut::new();
    write_request_from_parts(&request_parts, &edits, &mut out).map_err(|e| {
        fail(ProxyError::Http {
            side: Side::Downstream,
            source: HttpError::Parts(e),
        })
    })?;
    let preferred = sticky(&set, found.map(|f| f.server));
    if backend.sticky_cookie.is_some() {
        x.cookie_request = super::cookie_request_state(&set, found.map(|f| f.server), preferred);
    }
    let stream = stream_point(&backend, path.as_bytes());
    let plan = ConnectPlan {
        preferred,
        client: peer.ip(),
        stream,
        timeout: fe.timeouts.connect,
        pooled: !backend.http_server_close,
    };
    x.phase = Phase::Connect;
    let connect_started = Instant::now();
    let connected = connect(&backend, &set, plan, &mut x.trace).await;
    x.server = x.trace.server.clone();
    let mut up = connected.map_err(fail)?;
    x.connected(connect_started, up.reused);
    let server = up.server.clone();
    count_viewer(&backend, stream, found.as_ref(), peer.ip(), &server);
    let _backend_session = backend.counters.open();
    let _server_session = server.counters.open();
    x.snapshot_conns(fe, Some(&backend), Some(&server));
    let counters = [&fe.counters, &backend.counters, &server.counters];
    let (client_timeout, server_timeout) = (fe.timeouts.client, fe.timeouts.server);
    let result: Result<(), ProxyError> = async {
        // Until the response head arrives the stream may be reset by the client (a cancelled
        // request, or a rapid-reset attack): the upstream exchange stops then, instead of
        // running on for nobody and holding a server connection.
        let exchange = async {
            write_upstream(&mut up.stream, &out, server_timeout).await?;
            let mut sent = out.len() as u64;
            while let Some(chunk) = tokio::time::timeout(client_timeout, body.data())
                .await
                .map_err(|_| ProxyError::DownstreamTimeout)?
            {
                let chunk = chunk.map_err(ProxyError::H2)?;
                // The data is copied out at once, so the window can reopen at once.
                let _ = body.flow_control().release_capacity(chunk.len());
                out.clear();
                if framing == PartsBody::Chunked {
                    if chunk.is_empty() {
                        continue;
                    }
                    write_chunk_head(chunk.len(), &mut out);
                    out.extend_from_slice(&chunk);
                    out.extend_from_slice(CHUNK_END);
                } else {
                    out.extend_from_slice(&chunk);
                }
                write_upstream(&mut up.stream, &out, server_timeout).await?;
                sent += out.len() as u64;
            }
            if framing == PartsBody::Chunked {
                write_upstream(&mut up.stream, LAST_CHUNK, server_timeout).await?;
            }
            counters.iter().for_each(|c| add(&c.bytes_in, sent));
            x.bytes_in = sent;

            let mut ubuf = BytesMut::new();
            let mut rparser = ResponseParser::new(HeadLimits::default());
            let mut resp =
                read_response_head(&mut up.stream, &mut ubuf, &mut rparser, server_timeout).await?;
            while resp.is_interim() {
                // 100/103 mean nothing to this client; 101 cannot happen (no upgrade is
                // forwarded).
                if resp.is_switching_protocols() {
                    return Err(ProxyError::UpstreamIo(std::io::Error::other(
                        "unexpected 101 Switching Protocols",
                    )));
                }
                resp = read_response_head(&mut up.stream, &mut ubuf, &mut rparser, server_timeout)
                    .await?;
            }
            Ok((resp, ubuf))
        };
        let (resp, mut ubuf) = tokio::select! {
            r = exchange => r?,
            _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                *responded = true;
                return Err(ProxyError::DownstreamClosed);
            }
        };
        x.responded_head();
        let status = resp.status();
        x.status = Some(status);
        if let Some(name) = backend.sticky_cookie.as_deref() {
            x.cookie_response = super::cookie_response_state(&resp, name, server.cookie.is_some());
        }
        let head_request = parts.method == http::Method::HEAD;
        let response_framing = resp.framing(head_request);
        let mut builder = http::Response::builder().status(status);
        let prefix = backend
            .sticky_cookie
            .as_deref()
            .zip(server.cookie.as_deref());
        for h in resp.end_to_end_headers() {
            match prefix
                .filter(|_| h.is(b"set-cookie"))
                .and_then(|(name, srv)| prefix_set_cookie(h.value, name.as_bytes(), srv.as_bytes()))
            {
                Some(v) => builder = builder.header(h.name, v),
                None => builder = builder.header(h.name, h.value),
            }
        }
        let response = builder
            .body(())
            .map_err(|e| ProxyError::UpstreamIo(std::io::Error::other(e)))?;
        for c in counters {
            c.response(status);
        }
        let empty = response_framing == BodyFraming::None;
        let mut send = respond
            .send_response(response, empty)
            .map_err(ProxyError::H2)?;
        *responded = true;
        x.phase = Phase::Data;
        if empty {
            if resp.keep_alive(head_request) && edits.keep_alive && ubuf.is_empty() {
                server.pool.put(up.stream);
            }
            return Ok(());
        }
        let mut reader = BodyReader::new(response_framing);
        let mut ranges = Vec::new();
        let mut delivered: u64 = 0;
        let reusable = resp.keep_alive(head_request) && edits.keep_alive;
        let mut up_stream = Some(up.stream);
        // Whether the last DATA frame carried END_STREAM.
        let mut ended = false;
        loop {
            if !ubuf.is_empty() {
                ranges.clear();
                let p = reader
                    .feed_decoded(&ubuf, |r| ranges.push(r))
                    .map_err(|e| ProxyError::Http {
                        side: Side::Upstream,
                        source: HttpError::Body(e),
                    })?;
                let consumed = ubuf.split_to(p.consumed).freeze();
                let complete = reader.is_complete();
                if complete {
                    // The upstream has sent the whole response: its connection can serve
                    // another stream while this one's last bytes go to the client.
                    if let Some(s) = up_stream.take().filter(|_| reusable && ubuf.is_empty()) {
                        server.pool.put(s);
                    }
                }
                let last = ranges.len();
                for (i, r) in ranges.drain(..).enumerate() {
                    let data = consumed.slice(r);
                    delivered += data.len() as u64;
                    x.bytes_out += data.len() as u64;
                    // The last piece ends the stream: no separate empty DATA frame.
                    let end = complete && i + 1 == last && !data.is_empty();
                    send_all(&mut send, data, end, client_timeout).await?;
                    ended |= end;
                }
                if complete {
                    break;
                }
            }
            if reader.is_complete() {
                break;
            }
            let Some(stream) = up_stream.as_mut() else {
                break;
            };
            match read_upstream_up_to(stream, &mut ubuf, BODY_READ, server_timeout).await {
                Ok(_) => {}
                Err(ProxyError::UpstreamIo(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    reader.finish().map_err(|e| ProxyError::Http {
                        side: Side::Upstream,
                        source: HttpError::Body(e),
                    })?;
                    up_stream = None;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !ended {
            send.send_data(Bytes::new(), true).map_err(ProxyError::H2)?;
        }
        counters.iter().for_each(|c| add(&c.bytes_out, delivered));
        if let Some(s) = up_stream.filter(|_| reusable && ubuf.is_empty()) {
            server.pool.put(s);
        }
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        count_server_error(&server, e);
        count_abort(&backend, &server, e, x.phase);
    }
    result.map_err(fail)
}

/// Sends `data` as the flow-control window allows; `end` sets END_STREAM on its last frame.
async fn send_all(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    client_timeout: Duration,
) -> Result<(), ProxyError> {
    while data.has_remaining() {
        send.reserve_capacity(data.len());
        // A client that stops opening its window is a stalled reader: `timeouts.client`.
        let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx));
        let granted = match tokio::time::timeout(client_timeout, capacity).await {
            Err(_) => return Err(ProxyError::DownstreamTimeout),
            Ok(Some(Ok(n))) => n,
            Ok(Some(Err(e))) => return Err(ProxyError::H2(e)),
            Ok(None) => return Err(ProxyError::DownstreamClosed),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        let last = end && data.is_empty();
        send.send_data(piece, last).map_err(ProxyError::H2)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: http::Uri) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
    }

    #[test]
    fn requests_without_path_and_connect_are_refused() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(
            check_request(&request("GET", uri("https://a.example/x?y"))),
            Ok(())
        );
        assert_eq!(check_request(&request("GET", uri("/"))), Ok(()));
        // What `h2` builds from HEADERS without `:path` (nor `:authority`): an empty URI,
        // which `path_and_query()` would show as `/`.
        let empty = http::Uri::from_parts(http::uri::Parts::default()).unwrap();
        assert_eq!(empty.path_and_query().map(|p| p.as_str()), Some("/"));
        assert_eq!(
            check_request(&request("GET", empty)),
            Err(Refusal::Reset(h2::Reason::PROTOCOL_ERROR))
        );
        assert_eq!(
            check_request(&request("CONNECT", uri("a.example:443"))),
            Err(Refusal::Status(405))
        );
    }
}
