//! Head writers: the request head sent upstream and the response head sent to the client,
//! each written from a parsed head plus the proxy's edits (HTTP/2 requests are written by
//! `h2_parts`, which reuses the pieces here).
//!
//! Data flow: parsed head + edits -> one pass that measures the output -> one `reserve` ->
//! the same pass again with `put_slice`s into the caller's `BytesMut` (both passes run the
//! same code, so the measurement cannot drift from the output). Edits: hop-by-hop headers
//! (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and every header named in
//! Connection) are dropped, except that a WebSocket upgrade keeps `Upgrade` and gets
//! `Connection: Upgrade`; Transfer-Encoding stays (chunked bodies are forwarded as they are);
//! `X-Forwarded-For` is appended after the client's own, `X-Forwarded-Proto` replaces the
//! client's; the proxy's own `Connection` header goes last; the sticky layer's cookie edits
//! are applied while copying.

use std::io::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use super::cookie::{CookieStrip, SetCookiePrefix, set_cookie_value_offset};
use super::head::{Header, Version, list_elements};
use super::request_head::RequestHead;
use super::response_head::ResponseHead;

/// Scheme the client used, for `X-Forwarded-Proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedProto {
    /// Plain-text listener.
    Http,
    /// TLS listener.
    Https,
}

impl ForwardedProto {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Http => b"http",
            Self::Https => b"https",
        }
    }
}

/// What the proxy changes in a request on its way upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestEdits {
    /// Client address to append as a new `X-Forwarded-For` line (the client's own lines stay).
    pub forwarded_for: Option<IpAddr>,
    /// Scheme to set as `X-Forwarded-Proto`, replacing any the client sent.
    pub forwarded_proto: Option<ForwardedProto>,
    /// Whether to ask the upstream to keep the connection open (`Connection: keep-alive`) or
    /// not (`Connection: close`). Ignored for WebSocket upgrades, which send
    /// `Connection: Upgrade`.
    pub keep_alive: bool,
    /// Server prefix to cut out of a Cookie header (from [`super::find_server_cookie`]).
    pub cookie: Option<CookieStrip>,
}

/// What the proxy changes in a response on its way to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseEdits<'a> {
    /// Whether the client connection will be closed after this response (`Connection: close`).
    /// Interim (1xx other than 101) responses get no Connection header either way.
    pub close: bool,
    /// Version the client spoke: an HTTP/1.0 client kept alive is told `Connection: keep-alive`.
    pub client_version: Version,
    /// Prefix the session cookie in Set-Cookie headers with the server's name.
    pub set_cookie: Option<SetCookiePrefix<'a>>,
}

/// Hop-by-hop headers by name (RFC 9110 section 7.6.1, plus Proxy-Connection). Not
/// Proxy-Authorization, which this proxy passes on.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP_BY_HOP: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a Connection header among `headers` names `name`. Framing headers and Host are
/// never considered named: dropping them would change how the message is read.
pub(crate) fn named_by_connection<'a>(
    mut headers: impl Iterator<Item = Header<'a>>,
    name: &[u8],
) -> bool {
    const PROTECTED: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return false;
    }
    headers.any(|h| {
        h.is(b"connection") && list_elements(h.value).any(|t| t.eq_ignore_ascii_case(name))
    })
}

/// Whether a header is hop-by-hop for this message: listed in [`is_hop_by_hop`], or named by
/// a Connection header (checked only when the parser saw such names).
pub(crate) fn is_connection_specific<'a>(
    header: Header<'_>,
    headers: impl Iterator<Item = Header<'a>>,
    connection_names_headers: bool,
) -> bool {
    is_hop_by_hop(header.name)
        || (connection_names_headers && named_by_connection(headers, header.name))
}

/// Writes the request head to send upstream.
pub fn write_request_head(head: &RequestHead, edits: &RequestEdits, dst: &mut BytesMut) {
    write_measured(dst, |out| emit_request(head, edits, false, out));
}

/// Writes a WebSocket upgrade whose opening the LB answered itself: as
/// [`write_request_head`], without `Sec-WebSocket-Extensions` (the client was told no extension,
/// so the server must not choose one).
pub fn write_websocket_request_head(head: &RequestHead, edits: &RequestEdits, dst: &mut BytesMut) {
    write_measured(dst, |out| emit_request(head, edits, true, out));
}

/// Writes the response head to send to the client.
pub fn write_response_head(head: &ResponseHead, edits: &ResponseEdits<'_>, dst: &mut BytesMut) {
    write_measured(dst, |out| emit_response(head, edits, out));
}

/// Destination of one emitting pass: either a byte count or the buffer.
pub(crate) enum Out<'a> {
    Measure(usize),
    Write(&'a mut BytesMut),
}

impl Out<'_> {
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        match self {
            Self::Measure(len) => *len += bytes.len(),
            Self::Write(dst) => dst.put_slice(bytes),
        }
    }

    pub(crate) fn line(&mut self, name: &[u8], value: &[u8]) {
        self.put(name);
        self.put(b": ");
        self.put(value);
        self.put(b"\r\n");
    }

    pub(crate) fn header(&mut self, header: Header<'_>) {
        self.line(header.name, header.value);
    }
}

pub(crate) fn write_measured(dst: &mut BytesMut, mut emit: impl FnMut(&mut Out<'_>)) {
    let mut measure = Out::Measure(0);
    emit(&mut measure);
    if let Out::Measure(len) = measure {
        dst.reserve(len);
    }
    emit(&mut Out::Write(dst));
}

fn emit_request(
    head: &RequestHead,
    edits: &RequestEdits,
    without_extensions: bool,
    out: &mut Out<'_>,
) {
    out.put(head.method());
    out.put(b" ");
    out.put(if head.is_absolute_form() {
        head.path_and_query()
    } else {
        head.target()
    });
    out.put(b" ");
    out.put(head.version().as_bytes());
    out.put(b"\r\n");
    let websocket = head.is_websocket_upgrade();
    let absolute_host = head.host().filter(|_| head.is_absolute_form());
    if let (Some(host), None) = (absolute_host, head.host_header_index()) {
        out.line(b"Host", host);
    }
    for (index, header) in head.headers().enumerate() {
        if websocket && header.is(b"upgrade") {
            out.header(header);
            continue;
        }
        let connection_names = head.connection_names_headers();
        if is_connection_specific(header, head.headers(), connection_names)
            || (edits.forwarded_proto.is_some() && header.is(b"x-forwarded-proto"))
            || (without_extensions && header.is(b"sec-websocket-extensions"))
        {
            continue;
        }
        match (absolute_host, edits.cookie) {
            (Some(host), _) if Some(index) == head.host_header_index() => {
                out.line(header.name, host);
            }
            (_, Some(strip)) if strip.header == index => {
                let (before, after) = strip.split(header.value);
                out.put(header.name);
                out.put(b": ");
                out.put(before);
                out.put(after);
                out.put(b"\r\n");
            }
            _ => out.header(header),
        }
    }
    emit_forwarding_and_connection(edits, websocket, out);
}

/// The proxy's own trailing request headers.
pub(crate) fn emit_forwarding_and_connection(
    edits: &RequestEdits,
    websocket: bool,
    out: &mut Out<'_>,
) {
    if let Some(ip) = edits.forwarded_for {
        let mut text = [0u8; 64];
        let len = format_ip(ip, &mut text);
        out.line(b"X-Forwarded-For", text.get(..len).unwrap_or_default());
    }
    if let Some(proto) = edits.forwarded_proto {
        out.line(b"X-Forwarded-Proto", proto.as_bytes());
    }
    out.put(match (websocket, edits.keep_alive) {
        (true, _) => b"Connection: Upgrade\r\n\r\n".as_slice(),
        (false, true) => b"Connection: keep-alive\r\n\r\n",
        (false, false) => b"Connection: close\r\n\r\n",
    });
}

/// Writes `ip` (IPv4-mapped IPv6 shown as IPv4) into `buf`, returning its length.
fn format_ip(ip: IpAddr, buf: &mut [u8; 64]) -> usize {
    let mut cursor = &mut buf[..];
    // The longest textual IP address is 45 bytes, so 64 always suffice.
    match write!(cursor, "{}", ip.to_canonical()) {
        Ok(()) => 64 - cursor.len(),
        Err(_) => 0,
    }
}

fn emit_response(head: &ResponseHead, edits: &ResponseEdits<'_>, out: &mut Out<'_>) {
    out.put(head.version().as_bytes());
    out.put(b" ");
    let mut status = [0u8; 3];
    for (digit, place) in status.iter_mut().zip([100, 10, 1]) {
        // The status is 100..=599, so each digit is 0..=9.
        *digit = b'0' + ((head.status() / place) % 10) as u8;
    }
    out.put(&status);
    out.put(b" ");
    out.put(head.reason());
    out.put(b"\r\n");
    let websocket = head.is_websocket_accept();
    for header in head.headers() {
        if websocket && header.is(b"upgrade") {
            out.header(header);
            continue;
        }
        if is_connection_specific(header, head.headers(), head.connection_names_headers()) {
            continue;
        }
        let prefix_at = edits
            .set_cookie
            .filter(|_| header.is(b"set-cookie"))
            .and_then(|p| {
                Some((
                    p.server,
                    set_cookie_value_offset(header.value, p.cookie_name)?,
                ))
            });
        match prefix_at.and_then(|(server, at)| Some((server, header.value.split_at_checked(at)?)))
        {
            Some((server, (before, after))) => {
                out.put(header.name);
                out.put(b": ");
                out.put(before);
                out.put(server);
                out.put(b"~");
                out.put(after);
                out.put(b"\r\n");
            }
            None => out.header(header),
        }
    }
    let old_client = edits.client_version == Version::Http10 || head.version() == Version::Http10;
    // An interim response says nothing about the connection; the final one will.
    let interim = head.is_interim() && !websocket;
    out.put(match (websocket, interim, edits.close, old_client) {
        (true, _, _, _) => b"Connection: Upgrade\r\n\r\n".as_slice(),
        (false, true, _, _) => b"\r\n",
        (false, false, true, _) => b"Connection: close\r\n\r\n",
        (false, false, false, true) => b"Connection: keep-alive\r\n\r\n",
        (false, false, false, false) => b"\r\n",
    });
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::http::{RequestParser, ResponseParser, find_server_cookie};

    fn request(bytes: &str) -> RequestHead {
        RequestParser::default()
            .parse(bytes.as_bytes())
            .unwrap()
            .unwrap()
    }

    fn response(bytes: &str) -> ResponseHead {
        ResponseParser::default()
            .parse(bytes.as_bytes())
            .unwrap()
            .unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    fn edits() -> RequestEdits {
        RequestEdits {
            forwarded_for: Some(CLIENT),
            forwarded_proto: Some(ForwardedProto::Https),
            keep_alive: true,
            cookie: None,
        }
    }

    fn written_request(head: &RequestHead, edits: &RequestEdits) -> String {
        let mut dst = BytesMut::new();
        write_request_head(head, edits, &mut dst);
        assert_eq!(
            dst.capacity(),
            dst.len(),
            "reserved exactly once, exactly enough"
        );
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn request_hop_by_hop_headers_are_dropped() {
        let head = request(concat!(
            "GET /a?b HTTP/1.1\r\n",
            "Host: example.com\r\n",
            "Connection: keep-alive, X-Private, Content-Length\r\n",
            "Keep-Alive: timeout=5\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "TE: trailers\r\n",
            "Trailer: X-Sum\r\n",
            "Upgrade: h2c\r\n",
            "X-Private: secret\r\n",
            "Proxy-Authorization: Basic eDp5\r\n",
            "X-Forwarded-For: 10.0.0.1\r\n",
            "X-Forwarded-Proto: http\r\n",
            "Accept: */*\r\n",
            "\r\n"
        ));
        assert_eq!(
            written_request(&head, &edits()),
            concat!(
                "GET /a?b HTTP/1.1\r\n",
                "Host: example.com\r\n",
                "Proxy-Authorization: Basic eDp5\r\n", // not hop-by-hop here
                "X-Forwarded-For: 10.0.0.1\r\n",       // the client's line stays...
                "Accept: */*\r\n",
                "X-Forwarded-For: 203.0.113.7\r\n", // ...and ours follows it
                "X-Forwarded-Proto: https\r\n",     // ours replaces the client's
                "Connection: keep-alive\r\n",
                "\r\n"
            )
        );
    }

    #[test]
    fn request_keeps_chunked_framing_and_content_length_named_by_connection() {
        let head = request(concat!(
            "POST /up HTTP/1.1\r\n",
            "Host: h\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Connection: Transfer-Encoding\r\n",
            "\r\n"
        ));
        let edits = RequestEdits {
            keep_alive: false,
            forwarded_proto: None,
            forwarded_for: None,
            cookie: None,
        };
        assert_eq!(
            written_request(&head, &edits),
            "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn websocket_upgrade_keeps_upgrade() {
        let head = request(concat!(
            "GET /LiveApp/websocket HTTP/1.1\r\n",
            "Host: h\r\n",
            "Connection: Upgrade\r\n",
            "Upgrade: websocket\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "\r\n"
        ));
        let mut edits = edits();
        edits.forwarded_proto = None;
        assert_eq!(
            written_request(&head, &edits),
            concat!(
                "GET /LiveApp/websocket HTTP/1.1\r\n",
                "Host: h\r\n",
                "Upgrade: websocket\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "X-Forwarded-For: 203.0.113.7\r\n",
                "Connection: Upgrade\r\n",
                "\r\n"
            )
        );
    }

    #[test]
    fn an_upgrade_the_lb_answered_goes_without_extensions() {
        let head = request(concat!(
            "GET /live/websocket HTTP/1.1\r\n",
            "Host: h\r\n",
            "Connection: Upgrade\r\n",
            "Upgrade: websocket\r\n",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "\r\n"
        ));
        let mut edits = edits();
        edits.forwarded_proto = None;
        let mut out = BytesMut::new();
        write_websocket_request_head(&head, &edits, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            concat!(
                "GET /live/websocket HTTP/1.1\r\n",
                "Host: h\r\n",
                "Upgrade: websocket\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "X-Forwarded-For: 203.0.113.7\r\n",
                "Connection: Upgrade\r\n",
                "\r\n"
            )
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let head =
            request("GET http://a.example:8080/p?q HTTP/1.1\r\nHost: ignored\r\nX: 1\r\n\r\n");
        let edits = RequestEdits {
            forwarded_for: None,
            forwarded_proto: None,
            keep_alive: true,
            cookie: None,
        };
        assert_eq!(
            written_request(&head, &edits),
            "GET /p?q HTTP/1.1\r\nHost: a.example:8080\r\nX: 1\r\nConnection: keep-alive\r\n\r\n"
        );
        let no_host = request("GET http://a.example HTTP/1.1\r\nX: 1\r\n\r\n");
        assert_eq!(
            written_request(&no_host, &edits),
            "GET / HTTP/1.1\r\nHost: a.example\r\nX: 1\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn cookie_prefix_is_stripped_in_place() {
        let head = request(concat!(
            "GET / HTTP/1.1\r\n",
            "Host: h\r\n",
            "Cookie: a=1\r\n",
            "Cookie: JSESSIONID=ams1~abc; other=1\r\n",
            "\r\n"
        ));
        let found = find_server_cookie(head.headers(), b"JSESSIONID").unwrap();
        assert_eq!(found.server, b"ams1");
        let edits = RequestEdits {
            cookie: Some(found.strip),
            forwarded_for: None,
            forwarded_proto: None,
            keep_alive: true,
        };
        assert_eq!(
            written_request(&head, &edits),
            concat!(
                "GET / HTTP/1.1\r\n",
                "Host: h\r\n",
                "Cookie: a=1\r\n",
                "Cookie: JSESSIONID=abc; other=1\r\n",
                "Connection: keep-alive\r\n",
                "\r\n"
            )
        );
    }

    #[test]
    fn ipv6_and_mapped_client_addresses() {
        let mut buf = [0u8; 64];
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let len = format_ip(v6, &mut buf);
        assert_eq!(&buf[..len], b"2001:db8::1");
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        let len = format_ip(mapped, &mut buf);
        assert_eq!(&buf[..len], b"192.0.2.1");
        let longest = IpAddr::V6(Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ));
        assert_eq!(format_ip(longest, &mut buf), 39);
    }

    fn written_response(head: &ResponseHead, edits: &ResponseEdits<'_>) -> String {
        let mut dst = BytesMut::new();
        write_response_head(head, edits, &mut dst);
        assert_eq!(
            dst.capacity(),
            dst.len(),
            "reserved exactly once, exactly enough"
        );
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn response_rewrites() {
        let head = response(concat!(
            "HTTP/1.1 200 OK\r\n",
            "Connection: keep-alive, X-Hop\r\n",
            "Keep-Alive: timeout=5\r\n",
            "X-Hop: 1\r\n",
            "Set-Cookie: JSESSIONID=abc; Path=/; HttpOnly\r\n",
            "Set-Cookie: lang=en; Path=/\r\n",
            "Transfer-Encoding: chunked\r\n",
            "\r\n"
        ));
        let sticky = SetCookiePrefix {
            cookie_name: b"JSESSIONID",
            server: b"ams1",
        };
        let edits = ResponseEdits {
            close: false,
            client_version: Version::Http11,
            set_cookie: Some(sticky),
        };
        assert_eq!(
            written_response(&head, &edits),
            concat!(
                "HTTP/1.1 200 OK\r\n",
                "Set-Cookie: JSESSIONID=ams1~abc; Path=/; HttpOnly\r\n",
                "Set-Cookie: lang=en; Path=/\r\n",
                "Transfer-Encoding: chunked\r\n",
                "\r\n"
            )
        );
        let closing = ResponseEdits {
            close: true,
            client_version: Version::Http11,
            set_cookie: None,
        };
        assert!(written_response(&head, &closing).ends_with("Connection: close\r\n\r\n"));
        let old = ResponseEdits {
            close: false,
            client_version: Version::Http10,
            set_cookie: None,
        };
        assert!(written_response(&head, &old).ends_with("Connection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn response_status_line_and_websocket_accept() {
        let head = response(concat!(
            "HTTP/1.1 101 Switching Protocols\r\n",
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
            "\r\n"
        ));
        let edits = ResponseEdits {
            close: false,
            client_version: Version::Http11,
            set_cookie: None,
        };
        assert_eq!(
            written_response(&head, &edits),
            concat!(
                "HTTP/1.1 101 Switching Protocols\r\n",
                "Upgrade: websocket\r\n",
                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
                "Connection: Upgrade\r\n",
                "\r\n"
            )
        );
        let interim = response("HTTP/1.1 100 Continue\r\n\r\n");
        let closing = ResponseEdits {
            close: true,
            ..edits
        };
        assert_eq!(
            written_response(&interim, &closing),
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
        let odd = response("HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            written_response(&odd, &edits),
            "HTTP/1.0 404 \r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}
