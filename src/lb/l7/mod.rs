//! `mode: http` frontends: TLS termination (when configured), then HTTP/1.1 or HTTP/2 by ALPN,
//! proxied to HTTP/1.1 upstreams.
//!
//! Data flow per connection: [`serve`] -> TLS handshake under `timeouts.client` -> `h1` or
//! `h2`. Per request, the fixed phases: route (path prefixes, first match, else the
//! frontend's backend) -> sticky cookie ([`sticky`]) -> pick upstream (`upstream::connect`)
//! -> forward (head rewritten, body verbatim) -> rewrite response (Set-Cookie prefix) ->
//! count. The helpers shared by both protocols live here.

pub mod h1;
pub mod h2;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Frontend;
use super::backend::{Backend, ServerSet};
use super::counters::inc;
use super::error::ProxyError;
use crate::proto::http::{ForwardedProto, HttpError, ResponseHead, ResponseParser, Side};
use crate::runtime::ConnPermit;

/// Read buffers grow by this much at a time.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Serves one connection of an HTTP frontend.
pub async fn serve(fe: Arc<Frontend>, stream: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let _session = fe.counters.open();
    let Some(acceptor) = &fe.tls else {
        h1::serve(&fe, stream, peer, ForwardedProto::Http).await;
        return;
    };
    let tls = match tokio::time::timeout(fe.timeouts.client, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, "TLS handshake timed out");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        h2::serve(&fe, tls, peer).await;
    } else {
        h1::serve(&fe, tls, peer, ForwardedProto::Https).await;
    }
}

/// The route phase: the backend of the first route whose prefix starts the path, else the
/// frontend's backend.
pub fn route<'a>(fe: &'a Frontend, path: &[u8]) -> Option<&'a Arc<Backend>> {
    fe.config
        .routes
        .iter()
        .find(|r| path.starts_with(r.path_prefix.as_bytes()))
        .map(|r| r.backend)
        .or(fe.config.backend)
        .and_then(|i| fe.backend(i))
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
    buf.reserve(READ_CHUNK);
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
