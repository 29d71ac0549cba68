//! Request heads for requests that arrived over HTTP/2 (via the `h2` crate) and go to an
//! HTTP/1.1 upstream. HTTP/2 has no Host header and no request line: `:method`, `:path` and
//! `:authority` arrive as pseudo-header fields, and cookies may be split over several fields.
//!
//! Data flow: the h2 layer hands over [`RequestParts`] -> checked (the peer's bytes must be
//! writable as HTTP/1.1 without injecting lines) -> written with the same edits and the same
//! measure-then-write pass as [`super::write_request_head`]: `:authority` becomes Host, Cookie
//! fields are joined with `; `, hop-by-hop fields dropped, body framing announced as
//! [`PartsBody`] says (chunked when the length is unknown; the caller then chunk-encodes).

use std::io::Write as _;

use bytes::BytesMut;

use super::cookie::CookieStrip;
use super::head::{DEFAULT_MAX_HEADERS, Header, is_field_value_byte, is_host_byte, is_token_str};
use super::write::{
    Out, RequestEdits, emit_forwarding_and_connection, is_hop_by_hop, write_measured,
};

/// Errors in the parts of an HTTP/2 request that cannot be written as HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// The method is not a token.
    #[error("invalid method")]
    InvalidMethod,
    /// CONNECT (including extended CONNECT) is not proxied.
    #[error("CONNECT requests are not supported")]
    ConnectNotSupported,
    /// The path is not `/...` (or `*` for OPTIONS) of visible ASCII without a fragment.
    #[error("invalid path")]
    InvalidPath,
    /// The authority holds bytes no host can have, or neither `:authority` nor Host was given.
    #[error("invalid or missing authority")]
    InvalidAuthority,
    /// A header name that is not a token.
    #[error("invalid name in header {index}")]
    InvalidHeaderName {
        /// Position of the header in the list.
        index: usize,
    },
    /// More header fields than an HTTP/1 client may send ([`DEFAULT_MAX_HEADERS`]): the HTTP/2
    /// header list limit counts bytes, so many tiny fields fit in it, and the HTTP/1.1 head
    /// they make would be refused by the server (or past the LB's own parser's ceiling).
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// A header value with control characters.
    #[error("invalid value in header {index}")]
    InvalidHeaderValue {
        /// Position of the header in the list.
        index: usize,
    },
}

/// How the body of a request from HTTP/2 is framed towards the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartsBody {
    /// No body (the HEADERS frame ended the stream).
    Empty,
    /// A body of known length (`content-length` from the client, checked by the h2 layer).
    ContentLength(u64),
    /// A body of unknown length, which the caller chunk-encodes
    /// ([`super::write_chunk_head`], [`super::LAST_CHUNK`]).
    Chunked,
}

/// An HTTP/2 request as the h2 layer hands it over, to be sent upstream as HTTP/1.1.
#[derive(Clone, Debug)]
pub struct RequestParts<'a, I> {
    /// `:method`.
    pub method: &'a [u8],
    /// `:path` (path and query).
    pub path: &'a [u8],
    /// `:authority`, which becomes Host.
    pub authority: Option<&'a [u8]>,
    /// Regular header fields, in order. Cookie fields are joined into one Cookie line.
    pub headers: I,
    /// Body framing to announce.
    pub body: PartsBody,
}

/// Writes an HTTP/1.1 request head for a request that arrived over HTTP/2: `:authority`
/// becomes Host, Cookie fields are joined with `; `, hop-by-hop fields are dropped and the
/// body framing is announced as `parts.body` says.
pub fn write_request_from_parts<'a, I>(
    parts: &RequestParts<'a, I>,
    edits: &RequestEdits,
    dst: &mut BytesMut,
) -> Result<(), PartsError>
where
    I: Iterator<Item = Header<'a>> + Clone,
{
    check_parts(parts)?;
    write_measured(dst, |out| emit_parts(parts, edits, out));
    Ok(())
}

fn check_parts<'a, I>(parts: &RequestParts<'a, I>) -> Result<(), PartsError>
where
    I: Iterator<Item = Header<'a>> + Clone,
{
    if !is_token_str(parts.method) {
        return Err(PartsError::InvalidMethod);
    }
    if parts.method == b"CONNECT" {
        return Err(PartsError::ConnectNotSupported);
    }
    let path_ok = match parts.path {
        b"*" => parts.method == b"OPTIONS",
        [b'/', ..] => parts
            .path
            .iter()
            .all(|&b| (b'!'..=b'~').contains(&b) && b != b'#'),
        _ => false,
    };
    if !path_ok {
        return Err(PartsError::InvalidPath);
    }
    // Without `:authority` the Host field names the host, and then only one may be given:
    // two would reach the server, which could pick either (as could a cache on the way).
    let mut hosts = parts.headers.clone().filter(|h| h.is(b"host"));
    let host = match parts.authority {
        Some(a) => Some(a),
        None => {
            let first = hosts.next().map(|h| h.value);
            if hosts.next().is_some() {
                return Err(PartsError::InvalidAuthority);
            }
            first
        }
    };
    if !host.is_some_and(|h| !h.is_empty() && h.iter().all(|&b| is_host_byte(b))) {
        return Err(PartsError::InvalidAuthority);
    }
    if parts.headers.clone().count() > DEFAULT_MAX_HEADERS {
        return Err(PartsError::TooManyHeaders {
            limit: DEFAULT_MAX_HEADERS,
        });
    }
    for (index, header) in parts.headers.clone().enumerate() {
        if !is_token_str(header.name) {
            return Err(PartsError::InvalidHeaderName { index });
        }
        if !header.value.iter().all(|&b| is_field_value_byte(b)) {
            return Err(PartsError::InvalidHeaderValue { index });
        }
    }
    Ok(())
}

fn emit_parts<'a, I>(parts: &RequestParts<'a, I>, edits: &RequestEdits, out: &mut Out<'_>)
where
    I: Iterator<Item = Header<'a>> + Clone,
{
    out.put(parts.method);
    out.put(b" ");
    out.put(parts.path);
    out.put(b" HTTP/1.1\r\n");
    if let Some(authority) = parts.authority {
        out.line(b"Host", authority);
    }
    let mut cookie_written = false;
    for header in parts.headers.clone() {
        if header.is(b"cookie") {
            if !cookie_written {
                emit_joined_cookies(parts.headers.clone(), edits.cookie, out);
                cookie_written = true;
            }
            continue;
        }
        let skip = is_hop_by_hop(header.name)
            || header.is(b"content-length")
            || header.is(b"transfer-encoding")
            || (parts.authority.is_some() && header.is(b"host"))
            || (edits.forwarded_proto.is_some() && header.is(b"x-forwarded-proto"));
        if !skip {
            out.header(header);
        }
    }
    match parts.body {
        PartsBody::Empty => {}
        PartsBody::ContentLength(n) => {
            let mut digits = [0u8; 20];
            let mut cursor = &mut digits[..];
            // A u64 has at most 20 decimal digits.
            let len = match write!(cursor, "{n}") {
                Ok(()) => 20 - cursor.len(),
                Err(_) => 0,
            };
            out.line(b"Content-Length", digits.get(..len).unwrap_or_default());
        }
        PartsBody::Chunked => out.line(b"Transfer-Encoding", b"chunked"),
    }
    emit_forwarding_and_connection(edits, false, out);
}

/// One `Cookie` line joining every cookie field (RFC 9113 section 8.2.3), with the sticky cut
/// applied to the field it refers to (by index among all headers).
fn emit_joined_cookies<'a>(
    headers: impl Iterator<Item = Header<'a>>,
    strip: Option<CookieStrip>,
    out: &mut Out<'_>,
) {
    out.put(b"Cookie: ");
    let mut first = true;
    for (index, header) in headers.enumerate().filter(|(_, h)| h.is(b"cookie")) {
        if !first {
            out.put(b"; ");
        }
        first = false;
        match strip.filter(|s| s.header == index) {
            Some(strip) => {
                let (before, after) = strip.split(header.value);
                out.put(before);
                out.put(after);
            }
            None => out.put(header.value),
        }
    }
    out.put(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::http::{ForwardedProto, find_server_cookie};

    fn edits() -> RequestEdits {
        RequestEdits {
            forwarded_for: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
            forwarded_proto: Some(ForwardedProto::Https),
            keep_alive: true,
            cookie: None,
        }
    }

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name: name.as_bytes(),
            value: value.as_bytes(),
        }
    }

    /// Found by the `http_h2_parts` fuzz target: 300 one-byte header fields fit in the
    /// HTTP/2 header list limit but made a head the HTTP/1 parser refuses (more than 256).
    #[test]
    fn too_many_header_fields_are_refused() {
        let headers: Vec<Header<'_>> = (0..=DEFAULT_MAX_HEADERS)
            .map(|_| Header {
                name: b"a",
                value: b"",
            })
            .collect();
        let parts = RequestParts {
            method: b"GET",
            path: b"/",
            authority: Some(b"a.example"),
            headers: headers.iter().copied(),
            body: PartsBody::Empty,
        };
        let edits = RequestEdits {
            forwarded_for: None,
            forwarded_proto: None,
            keep_alive: true,
            cookie: None,
        };
        let mut out = BytesMut::new();
        assert_eq!(
            write_request_from_parts(&parts, &edits, &mut out),
            Err(PartsError::TooManyHeaders {
                limit: DEFAULT_MAX_HEADERS
            })
        );
        let fewer = RequestParts {
            headers: headers[1..].iter().copied(),
            ..parts
        };
        assert!(write_request_from_parts(&fewer, &edits, &mut out).is_ok());
    }

    #[test]
    fn request_from_http2_parts() {
        let headers = [
            h("user-agent", "h2load"),
            h("cookie", "a=1"),
            h("te", "trailers"),
            h("cookie", "JSESSIONID=ams2~xyz"),
            h("content-length", "5"),
            h("x-forwarded-proto", "spoofed"),
        ];
        let found = find_server_cookie(headers.iter().copied(), b"JSESSIONID").unwrap();
        assert_eq!(found.server, b"ams2");
        let parts = RequestParts {
            method: b"POST",
            path: b"/LiveApp/rest/v2/broadcasts/create",
            authority: Some(b"example.com"),
            headers: headers.iter().copied(),
            body: PartsBody::ContentLength(5),
        };
        let edits = RequestEdits {
            cookie: Some(found.strip),
            ..edits()
        };
        let mut dst = BytesMut::new();
        write_request_from_parts(&parts, &edits, &mut dst).unwrap();
        assert_eq!(dst.capacity(), dst.len());
        assert_eq!(
            std::str::from_utf8(&dst).unwrap(),
            concat!(
                "POST /LiveApp/rest/v2/broadcasts/create HTTP/1.1\r\n",
                "Host: example.com\r\n",
                "user-agent: h2load\r\n",
                "Cookie: a=1; JSESSIONID=xyz\r\n",
                "Content-Length: 5\r\n",
                "X-Forwarded-For: 203.0.113.7\r\n",
                "X-Forwarded-Proto: https\r\n",
                "Connection: keep-alive\r\n",
                "\r\n"
            )
        );
    }

    #[test]
    fn http2_parts_are_validated() {
        let check = |method: &'static [u8],
                     path: &'static [u8],
                     authority: Option<&'static [u8]>,
                     headers: &[Header<'static>]| {
            let parts = RequestParts {
                method,
                path,
                authority,
                headers: headers.iter().copied(),
                body: PartsBody::Chunked,
            };
            write_request_from_parts(&parts, &edits(), &mut BytesMut::new())
        };
        assert_eq!(check(b"GET", b"/", Some(b"h"), &[]), Ok(()));
        assert_eq!(check(b"GET", b"/", None, &[h("host", "h")]), Ok(()));
        assert_eq!(
            check(b"GET", b"/", None, &[h("host", "h"), h("host", "evil")]),
            Err(PartsError::InvalidAuthority),
            "two Host fields and no :authority"
        );
        assert_eq!(
            check(
                b"GET",
                b"/",
                Some(b"h"),
                &[h("host", "h"), h("host", "evil")]
            ),
            Ok(()),
            ":authority wins, the Host fields are dropped"
        );
        assert_eq!(
            check(b"GET", b"/", None, &[]),
            Err(PartsError::InvalidAuthority)
        );
        assert_eq!(
            check(b"GET", b"/", Some(b"a b"), &[]),
            Err(PartsError::InvalidAuthority)
        );
        assert_eq!(
            check(b"G T", b"/", Some(b"h"), &[]),
            Err(PartsError::InvalidMethod)
        );
        assert_eq!(
            check(b"CONNECT", b"/", Some(b"h"), &[]),
            Err(PartsError::ConnectNotSupported)
        );
        assert_eq!(
            check(b"GET", b"x", Some(b"h"), &[]),
            Err(PartsError::InvalidPath)
        );
        assert_eq!(
            check(b"GET", b"/a b", Some(b"h"), &[]),
            Err(PartsError::InvalidPath)
        );
        assert_eq!(
            check(b"GET", b"*", Some(b"h"), &[]),
            Err(PartsError::InvalidPath)
        );
        assert_eq!(check(b"OPTIONS", b"*", Some(b"h"), &[]), Ok(()));
        assert_eq!(
            check(
                b"GET",
                b"/",
                Some(b"h"),
                &[h("ok", "1"), h("bad name", "1")]
            ),
            Err(PartsError::InvalidHeaderName { index: 1 })
        );
        assert_eq!(
            check(b"GET", b"/", Some(b"h"), &[h("x", "a\r\nInjected: 1")]),
            Err(PartsError::InvalidHeaderValue { index: 0 })
        );
    }

    #[test]
    fn chunked_parts_announce_transfer_encoding() {
        let parts = RequestParts {
            method: b"PUT",
            path: b"/x",
            authority: Some(b"h"),
            headers: std::iter::empty(),
            body: PartsBody::Chunked,
        };
        let edits = RequestEdits {
            forwarded_for: None,
            forwarded_proto: None,
            keep_alive: false,
            cookie: None,
        };
        let mut dst = BytesMut::new();
        write_request_from_parts(&parts, &edits, &mut dst).unwrap();
        assert_eq!(&dst[..], b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    }
}
