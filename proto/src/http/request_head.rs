//! HTTP/1.x request heads: [`RequestParser`] turns the bytes a client sent into a validated
//! [`RequestHead`] or a precise [`HeadError`].
//!
//! Data flow: the connection's read buffer -> [`RequestParser::parse`] (returns `Ok(None)`
//! until the empty line has arrived) -> `RequestHead` (one copy of the head bytes plus offsets)
//! whose derived facts (body framing, keep-alive, Host, WebSocket upgrade, `Expect`) drive the
//! proxy. The caller then drops `head.head_len()` bytes from its buffer; what follows is the
//! body, for a [`super::BodyReader`] built from [`RequestHead::framing`]. Everything that could
//! make this proxy and an upstream disagree on where the request ends is refused here.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::BodyFraming;
use super::head::{
    self, Facts, Fields, HeadError, HeadLimits, Header, HeaderIter, LengthHeader,
    MAX_HEADERS_CEILING, Version,
};
use super::scan::{self, HeadScanner};

/// Incremental parser of request heads on one connection. Keep one per connection and call
/// [`Self::parse`] after each read; it remembers how far it has looked.
#[derive(Clone, Debug, Default)]
pub struct RequestParser {
    limits: HeadLimits,
    scanner: HeadScanner,
}

/// A parsed and validated request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The head bytes and the header offsets.
    fields: Fields,
    method: Range<usize>,
    target: Range<usize>,
    /// Origin-form path and query to forward; differs from `target` for absolute-form.
    path: Range<usize>,
    absolute_form: bool,
    version: Version,
    /// Host value: the absolute-form authority, else the Host header's value.
    host: Option<Range<usize>>,
    /// Index of the Host header, which writers replace for absolute-form targets.
    host_header: Option<usize>,
    framing: BodyFraming,
    keep_alive: bool,
    websocket: bool,
    expect_continue: bool,
    /// Connection names other headers, which writers then drop.
    connection_names_headers: bool,
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: HeadLimits) -> Self {
        Self {
            limits,
            scanner: HeadScanner::default(),
        }
    }

    /// Parses the request head at the start of `buf`: `Ok(None)` while it is incomplete.
    /// On success the head is `head.head_len()` bytes long; the rest of `buf` is body or the
    /// next request.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        let limits = self.limits;
        scan::drive(&mut self.scanner, &limits, buf, |b| tokenise(b, &limits))
    }
}

fn tokenise(buf: &[u8], limits: &HeadLimits) -> Result<Option<RequestHead>, HeadError> {
    let max_headers = limits.headers();
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let slots = storage.get_mut(..max_headers).unwrap_or_default();
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(classify(buf, error, max_headers)),
    };
    let head = buf.get(..len).unwrap_or_default();
    // Every line ends with CRLF (empty lines before the request line included).
    let mut previous = 0u8;
    for &b in head {
        if b == b'\n' && previous != b'\r' {
            return Err(HeadError::BareLf);
        }
        previous = b;
    }
    // A complete parse has filled in the request line.
    let method = request.method.unwrap_or_default().as_bytes();
    let target = request.path.unwrap_or_default().as_bytes();
    let version = Version::from_minor(request.version.unwrap_or(1));
    if method == b"CONNECT" {
        return Err(HeadError::ConnectNotSupported);
    }
    let target_range = head::offset_in(head, target);
    let form = classify_target(method, target)?;
    let facts = head::analyse(version, request.headers, true)?;
    let fields = Fields::new(head, request.headers);
    Ok(Some(RequestHead::new(
        fields,
        head::offset_in(head, method),
        target_range,
        form,
        version,
        facts,
    )?))
}

/// Maps a tokeniser error to a variant, looking at the request line where needed.
fn classify(buf: &[u8], error: httparse::Error, max_headers: usize) -> HeadError {
    let start = scan::start_line_offset(buf);
    let line = scan::line_at(buf, start);
    let line_complete = buf.get(start..).is_some_and(|rest| rest.contains(&b'\n'));
    match error {
        httparse::Error::Token => {
            let mut parts = line.split(|&b| b == b' ');
            let method = parts.next().unwrap_or_default();
            if !head::is_token_str(method) {
                HeadError::InvalidMethod
            } else if line_complete && line.iter().filter(|&&b| b == b' ').count() == 1 {
                HeadError::Http09
            } else {
                HeadError::InvalidTarget
            }
        }
        httparse::Error::NewLine if line_complete && !ends_with_version(line) => {
            HeadError::UnsupportedVersion
        }
        other => head::classify_header_error(buf, other, max_headers),
    }
}

fn ends_with_version(line: &[u8]) -> bool {
    line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")
}

/// The shape of a request target, with ranges relative to the target.
enum TargetForm {
    Origin,
    Absolute {
        authority: Range<usize>,
        path: Range<usize>,
    },
    Asterisk,
}

fn classify_target(method: &[u8], target: &[u8]) -> Result<TargetForm, HeadError> {
    if !target
        .iter()
        .all(|&b| (b'!'..=b'~').contains(&b) && b != b'#')
    {
        return Err(HeadError::InvalidTarget);
    }
    match target.first() {
        Some(b'/') => return Ok(TargetForm::Origin),
        Some(b'*') if target.len() == 1 && method == b"OPTIONS" => return Ok(TargetForm::Asterisk),
        _ => {}
    }
    let scheme_len = if starts_with_ignore_case(target, b"http://") {
        7
    } else if starts_with_ignore_case(target, b"https://") {
        8
    } else {
        return Err(HeadError::InvalidTarget);
    };
    let rest = target.get(scheme_len..).unwrap_or_default();
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = rest.get(..authority_len).unwrap_or_default();
    if authority.is_empty() || !authority.iter().all(|&b| head::is_host_byte(b)) {
        // Empty, or user information (`@`), or bytes no host can have.
        return Err(HeadError::InvalidTarget);
    }
    if rest.get(authority_len) == Some(&b'?') {
        // `http://host?q` has no path to forward in origin-form without inventing bytes.
        return Err(HeadError::InvalidTarget);
    }
    let path_start = scheme_len + authority_len;
    Ok(TargetForm::Absolute {
        authority: scheme_len..path_start,
        path: path_start..target.len(),
    })
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

fn shift(range: Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

impl RequestHead {
    fn new(
        fields: Fields,
        method: Range<usize>,
        target: Range<usize>,
        form: TargetForm,
        version: Version,
        facts: Facts,
    ) -> Result<Self, HeadError> {
        let host_header_value = facts.host.and_then(|i| {
            let header = fields.header(i)?;
            Some(head::offset_in(fields.raw(), header.value))
        });
        let (path, absolute_form, host) = match form {
            TargetForm::Origin | TargetForm::Asterisk => (target.clone(), false, host_header_value),
            TargetForm::Absolute { authority, path } => (
                shift(path, target.start),
                true,
                Some(shift(authority, target.start)),
            ),
        };
        if version == Version::Http11 && host.is_none() {
            return Err(HeadError::MissingHost);
        }
        let framing = match facts.length() {
            LengthHeader::Absent => BodyFraming::None,
            LengthHeader::ContentLength(n) => BodyFraming::ContentLength(n),
            LengthHeader::Chunked => BodyFraming::Chunked,
        };
        let is_get = fields.slice(&method) == b"GET";
        Ok(Self {
            method,
            target,
            path,
            absolute_form,
            version,
            host,
            host_header: facts.host,
            framing,
            keep_alive: !facts.close && (version == Version::Http11 || facts.keep_alive),
            websocket: is_get
                && version == Version::Http11
                && facts.connection_upgrade
                && facts.upgrade_websocket,
            expect_continue: facts.expect_continue && version == Version::Http11,
            connection_names_headers: facts.connection_names_headers,
            fields,
        })
    }

    /// The method, case preserved (methods are case-sensitive).
    pub fn method(&self) -> &[u8] {
        self.fields.slice(&self.method)
    }

    /// Whether this is a HEAD request (its response has no body whatever it declares).
    pub fn is_head_request(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// The request target exactly as received.
    pub fn target(&self) -> &[u8] {
        self.fields.slice(&self.target)
    }

    /// Path and query in origin-form, as forwarded upstream: the target itself, or for an
    /// absolute-form target what follows its authority (`/` when nothing does).
    pub fn path_and_query(&self) -> &[u8] {
        match self.fields.slice(&self.path) {
            b"" => b"/",
            path => path,
        }
    }

    /// Whether the target was absolute-form (`http://host/path`).
    pub fn is_absolute_form(&self) -> bool {
        self.absolute_form
    }

    /// Protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Host, from the absolute-form target or the Host header; `None` only for HTTP/1.0
    /// requests without Host. Validated: only bytes a host and port can hold.
    pub fn host(&self) -> Option<&[u8]> {
        self.host.as_ref().map(|range| self.fields.slice(range))
    }

    /// How the request body is delimited.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the client wants the connection kept open after this exchange (HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether this is a WebSocket upgrade (`GET`, HTTP/1.1, `Connection: upgrade`,
    /// `Upgrade: websocket`).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.websocket
    }

    /// Whether the client sent `Expect: 100-continue` (ignored for HTTP/1.0, as RFC 9110 says).
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// Headers in their original order and case.
    pub fn headers(&self) -> HeaderIter<'_> {
        self.fields.iter()
    }

    /// Value of the first header called `name` (ASCII case ignored).
    pub fn header_value(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers().find(|h| h.is(name)).map(|h| h.value)
    }

    /// The header at `index` in [`Self::headers`] order.
    pub fn header(&self, index: usize) -> Option<Header<'_>> {
        self.fields.header(index)
    }

    /// The head bytes as received (leading empty lines included).
    pub fn raw(&self) -> &[u8] {
        self.fields.raw()
    }

    /// Length of the head in the input buffer: drop this many bytes before the body.
    pub fn head_len(&self) -> usize {
        self.fields.raw().len()
    }

    pub(crate) fn host_header_index(&self) -> Option<usize> {
        self.host_header
    }

    pub(crate) fn connection_names_headers(&self) -> bool {
        self.connection_names_headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        RequestParser::default().parse(bytes)
    }

    fn ok(bytes: &[u8]) -> RequestHead {
        parse(bytes).unwrap().unwrap()
    }

    fn err(bytes: &[u8]) -> HeadError {
        parse(bytes).unwrap_err()
    }

    #[test]
    fn parses_a_typical_request() {
        let bytes = concat!(
            "GET /live/streams/a.m3u8?x=1 HTTP/1.1\r\n", // request line
            "Host: example.com:5080\r\n",                // Host with port
            "User-Agent: curl/8\r\n",
            "X-Dup: one\r\n", // repeated header, both kept
            "x-dup: two\r\n",
            "\r\n", // end of head
            "NEXT", // next bytes are not ours
        );
        let head = ok(bytes.as_bytes());
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target(), b"/live/streams/a.m3u8?x=1");
        assert_eq!(head.path_and_query(), b"/live/streams/a.m3u8?x=1");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.host(), Some(&b"example.com:5080"[..]));
        assert_eq!(head.framing(), BodyFraming::None);
        assert!(head.keep_alive());
        assert!(!head.is_websocket_upgrade() && !head.expects_continue());
        assert_eq!(head.head_len(), bytes.len() - 4);
        let names: Vec<&[u8]> = head.headers().map(|h| h.name).collect();
        assert_eq!(names, [&b"Host"[..], b"User-Agent", b"X-Dup", b"x-dup"]);
        assert_eq!(head.header_value(b"x-dup"), Some(&b"one"[..]));
    }

    #[test]
    fn incomplete_is_none_at_every_prefix() {
        let bytes = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        let mut parser = RequestParser::default();
        for len in 0..bytes.len() {
            assert_eq!(parser.parse(&bytes[..len]), Ok(None), "prefix {len}");
        }
        let head = parser.parse(bytes).unwrap().unwrap();
        assert_eq!(head.framing(), BodyFraming::ContentLength(3));
        // The parser is ready for the next request on the connection.
        assert!(
            parser
                .parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn skips_leading_empty_lines() {
        let head = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.head_len(), 31);
    }

    #[test]
    fn bounds_leading_empty_lines() {
        let mut many = b"\r\n".repeat(9);
        many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(err(&many), HeadError::LeadingEmptyLines { limit: 16 });
        // Even before the start line arrives.
        assert_eq!(
            err(&b"\n".repeat(17)),
            HeadError::LeadingEmptyLines { limit: 16 }
        );
        assert_eq!(parse(&b"\r\n".repeat(8)), Ok(None));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(
            !ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n").keep_alive()
        );
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").host(), None);
    }

    #[test]
    fn websocket_upgrade_and_expect() {
        let ws = ok(concat!(
            "GET /LiveApp/websocket HTTP/1.1\r\n",
            "Host: h\r\n",
            "Connection: keep-alive, Upgrade\r\n",
            "Upgrade: websocket\r\n",
            "Sec-WebSocket-Version: 13\r\n",
            "\r\n"
        )
        .as_bytes());
        assert!(ws.is_websocket_upgrade());
        // Upgrade without the Connection token is not an upgrade.
        let no = ok(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
        assert!(!no.is_websocket_upgrade());
        let h2c = ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
        assert!(!h2c.is_websocket_upgrade());
        let expect =
            ok(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(expect.expects_continue());
        assert!(!ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
    }

    #[test]
    fn absolute_form_takes_host_from_target() {
        let head = ok(b"GET http://Example.com:80/p?q HTTP/1.1\r\nHost: other\r\n\r\n");
        assert!(head.is_absolute_form());
        assert_eq!(head.host(), Some(&b"Example.com:80"[..]));
        assert_eq!(head.path_and_query(), b"/p?q");
        assert_eq!(head.host_header_index(), Some(0));
        let bare = ok(b"GET HTTPS://h HTTP/1.1\r\n\r\n");
        assert_eq!(
            (bare.host(), bare.path_and_query()),
            (Some(&b"h"[..]), &b"/"[..])
        );
        assert_eq!(
            err(b"GET http://user@h/ HTTP/1.1\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET http:///p HTTP/1.1\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET http://h?q HTTP/1.1\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET ftp://h/ HTTP/1.1\r\n\r\n"),
            HeadError::InvalidTarget
        );
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").path_and_query(),
            b"*"
        );
        assert_eq!(
            err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::InvalidTarget
        );
        assert_eq!(
            err(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::ConnectNotSupported
        );
        assert_eq!(err(b"G(T / HTTP/1.1\r\n\r\n"), HeadError::InvalidMethod);
    }

    #[test]
    fn versions() {
        assert_eq!(err(b"GET /index.html\r\n"), HeadError::Http09);
        assert_eq!(err(b"GET /\r\n\r\n"), HeadError::Http09);
        assert_eq!(
            err(b"GET / HTTP/2.0\r\n\r\n"),
            HeadError::UnsupportedVersion
        );
        assert_eq!(
            err(b"GET / HTTP/1.2\r\n\r\n"),
            HeadError::UnsupportedVersion
        );
        assert_eq!(
            err(b"GET / HTTP/1.10\r\n\r\n"),
            HeadError::UnsupportedVersion
        );
        assert_eq!(
            err(b"GET / http/1.1\r\n\r\n"),
            HeadError::UnsupportedVersion
        );
        assert_eq!(
            err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            HeadError::UnsupportedVersion
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HeadError::MissingHost);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            HeadError::DuplicateHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            HeadError::InvalidHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            HeadError::InvalidHost
        );
        assert_eq!(
            ok(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").host(),
            Some(&b"[::1]:80"[..])
        );
    }

    /// Every request-smuggling shape this parser refuses, each with its own variant.
    #[test]
    fn smuggling_variants_are_refused() {
        let cases: &[(&[u8], HeadError)] = &[
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::ContentLengthWithTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                HeadError::ContentLengthWithTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                HeadError::DuplicateContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
                HeadError::ContentLengthList,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
                HeadError::ContentLengthOverflow,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                HeadError::ChunkedNotFinal,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::ChunkedTwice,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
                HeadError::InvalidTransferEncoding,
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncodingInHttp10,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n",
                HeadError::ObsFold,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
                HeadError::WhitespaceBeforeColon,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 5\r\n\r\n",
                HeadError::WhitespaceBeforeColon,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n",
                HeadError::FramingHeaderLookalike,
            ),
            (b"POST / HTTP/1.1\r\nHost: h\r\nX\x01Y: 1\r\n\r\n", HeadError::InvalidHeaderName),
            (b"POST / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", HeadError::InvalidHeaderName),
            (b"POST / HTTP/1.1\r\nHost: h\r\nA: b\x00c\r\n\r\n", HeadError::InvalidHeaderValue),
            (b"POST / HTTP/1.1\r\nHost: h\r\nA: b\x7fc\r\n\r\n", HeadError::InvalidHeaderValue),
            (b"POST / HTTP/1.1\r\nHost: h\r\nA: b\rc: d\r\n\r\n", HeadError::InvalidHeaderValue),
            (b"POST / HTTP/1.1\r\nHost: h\r\n\rX\r\n\r\n", HeadError::InvalidLineEnding),
            (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", HeadError::ObsFold),
        ];
        for (bytes, expected) in cases {
            assert_eq!(&err(bytes), expected, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn size_and_count_limits() {
        let limits = HeadLimits {
            max_head_bytes: 64,
            max_headers: 2,
        };
        let mut parser = RequestParser::new(limits);
        let long = [b"GET /".as_slice(), &[b'a'; 80]].concat();
        assert_eq!(parser.parse(&long), Err(HeadError::TooLarge { limit: 64 }));
        // A complete head over the limit is refused too, not just an endless one.
        let mut parser = RequestParser::new(limits);
        let complete = [b"GET /".as_slice(), &[b'a'; 80], b" HTTP/1.0\r\n\r\n"].concat();
        assert_eq!(
            parser.parse(&complete),
            Err(HeadError::TooLarge { limit: 64 })
        );
        let mut parser = RequestParser::new(limits);
        assert_eq!(
            parser.parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"),
            Err(HeadError::TooManyHeaders { limit: 2 })
        );
        assert!(
            RequestParser::new(limits)
                .parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n")
                .is_ok()
        );
    }

    #[test]
    fn garbage_is_refused_before_the_limit() {
        // A TLS ClientHello sent to the plain-text port.
        assert_eq!(
            err(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            HeadError::InvalidMethod
        );
    }

    /// A proxy that reads bare-LF lines while the server behind it does not (or the reverse)
    /// sees other requests than the server: refused, wherever the LF is.
    #[test]
    fn bare_lf_heads_are_refused() {
        for head in [
            &b"GET / HTTP/1.1\nHost: h\nContent-Length: 2\n\nab"[..],
            b"GET / HTTP/1.1\r\nHost: h\nContent-Length: 2\r\n\r\nab",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        ] {
            assert_eq!(err(head), HeadError::BareLf, "{head:?}");
        }
        assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").head_len(), 27);
    }
}
