//! HTTP/1.x response heads from upstreams: [`ResponseParser`] turns the bytes a server sent
//! into a validated [`ResponseHead`] or a [`HeadError`] (answered with 502).
//!
//! Data flow: the upstream read buffer -> [`ResponseParser::parse`] (`Ok(None)` until the head
//! is complete) -> `ResponseHead`. Its framing depends on the request it answers
//! ([`ResponseHead::framing`] takes whether that was a HEAD request): 1xx are interim (another
//! head follows, except after 101, where HTTP ends and the connection becomes a tunnel),
//! 204/304 and answers to HEAD have no body, otherwise Content-Length, chunked, or everything
//! until the upstream closes. The same Content-Length / Transfer-Encoding hardening as for
//! requests applies, because a response whose length is ambiguous would desynchronise the
//! client connection.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::BodyFraming;
use super::head::{
    self, Fields, HeadError, HeadLimits, Header, HeaderIter, LengthHeader, MAX_HEADERS_CEILING,
    Version,
};
use super::scan::{self, HeadScanner};

/// Incremental parser of response heads on one upstream connection.
#[derive(Clone, Debug, Default)]
pub struct ResponseParser {
    limits: HeadLimits,
    scanner: HeadScanner,
}

/// A parsed and validated response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The head bytes and the header offsets.
    fields: Fields,
    version: Version,
    status: u16,
    /// Reason phrase bytes as received (obs-text included).
    reason: Range<usize>,
    length: LengthHeader,
    close: bool,
    keep_alive_token: bool,
    /// `Connection: upgrade` and `Upgrade: websocket`, for a 101 answer to a WebSocket request.
    websocket: bool,
    /// Connection names other headers, which writers then drop.
    connection_names_headers: bool,
}

impl ResponseParser {
    /// A parser with the given limits.
    pub fn new(limits: HeadLimits) -> Self {
        Self {
            limits,
            scanner: HeadScanner::default(),
        }
    }

    /// Parses the response head at the start of `buf`: `Ok(None)` while it is incomplete.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
        let limits = self.limits;
        scan::drive(&mut self.scanner, &limits, buf, |b| tokenise(b, &limits))
    }
}

fn tokenise(buf: &[u8], limits: &HeadLimits) -> Result<Option<ResponseHead>, HeadError> {
    let max_headers = limits.headers();
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let slots = storage.get_mut(..max_headers).unwrap_or_default();
    let mut response = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut response, buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(head::classify_header_error(buf, error, max_headers)),
    };
    let head = buf.get(..len).unwrap_or_default();
    // A complete parse has filled in the status line.
    let status = response.code.unwrap_or_default();
    if !(100..=599).contains(&status) {
        return Err(HeadError::InvalidStatusLine);
    }
    let version = Version::from_minor(response.version.unwrap_or(1));
    let facts = head::analyse(version, response.headers, false)?;
    // The status line is "HTTP/1.x NNN[ reason]"; the reason starts at byte 13 of the line.
    let line_start = scan::start_line_offset(head);
    let line = scan::line_at(head, line_start);
    let reason = match line.get(13..) {
        Some(reason) => head::offset_in(head, reason),
        None => 0..0,
    };
    Ok(Some(ResponseHead {
        fields: Fields::new(head, response.headers),
        version,
        status,
        reason,
        length: facts.length(),
        close: facts.close,
        keep_alive_token: facts.keep_alive,
        websocket: facts.connection_upgrade && facts.upgrade_websocket,
        connection_names_headers: facts.connection_names_headers,
    }))
}

impl ResponseHead {
    /// Status code, 100..=599.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Reason phrase as received (may be empty).
    pub fn reason(&self) -> &[u8] {
        self.fields.slice(&self.reason)
    }

    /// Protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether this is an interim (1xx) response: no body, and another head follows unless it
    /// is 101.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// Whether this is `101 Switching Protocols`: HTTP ends after this head.
    pub fn is_switching_protocols(&self) -> bool {
        self.status == 101
    }

    /// Whether this is a 101 accepting a WebSocket upgrade (`Connection: upgrade`,
    /// `Upgrade: websocket`).
    pub fn is_websocket_accept(&self) -> bool {
        self.status == 101 && self.websocket
    }

    /// How the body is delimited, given whether the request was HEAD.
    pub fn framing(&self, head_request: bool) -> BodyFraming {
        if self.is_interim() || self.status == 204 || self.status == 304 || head_request {
            return BodyFraming::None;
        }
        match self.length {
            LengthHeader::Chunked => BodyFraming::Chunked,
            LengthHeader::ContentLength(n) => BodyFraming::ContentLength(n),
            LengthHeader::Absent => BodyFraming::CloseDelimited,
        }
    }

    /// Whether the upstream connection can carry another request after this response:
    /// not after `Connection: close`, an HTTP/1.0 answer without keep-alive, or a
    /// close-delimited body. For interim responses ask the final one instead.
    pub fn keep_alive(&self, head_request: bool) -> bool {
        !self.close
            && (self.version == Version::Http11 || self.keep_alive_token)
            && self.framing(head_request) != BodyFraming::CloseDelimited
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

    /// Headers an HTTP/2 client may receive: hop-by-hop headers, headers named by Connection
    /// and Transfer-Encoding (the body is un-chunked there) left out.
    pub fn end_to_end_headers(&self) -> impl Iterator<Item = Header<'_>> {
        self.headers().filter(|&h| {
            let names = self.connection_names_headers;
            !(h.is(b"transfer-encoding")
                || super::write::is_connection_specific(h, self.headers(), names))
        })
    }

    /// The head bytes as received.
    pub fn raw(&self) -> &[u8] {
        self.fields.raw()
    }

    /// Length of the head in the input buffer: drop this many bytes before the body.
    pub fn head_len(&self) -> usize {
        self.fields.raw().len()
    }

    pub(crate) fn connection_names_headers(&self) -> bool {
        self.connection_names_headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
        ResponseParser::default().parse(bytes)
    }

    fn ok(bytes: &[u8]) -> ResponseHead {
        parse(bytes).unwrap().unwrap()
    }

    #[test]
    fn parses_status_reason_and_headers() {
        let bytes = concat!(
            "HTTP/1.1 200 OK\r\n", // status line
            "Content-Type: video/mp2t\r\n",
            "Content-Length: 4\r\n", // framing
            "\r\n",
            "abcd", // body, not part of the head
        );
        let head = ok(bytes.as_bytes());
        assert_eq!((head.status(), head.reason()), (200, &b"OK"[..]));
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.head_len(), bytes.len() - 4);
        assert_eq!(head.framing(false), BodyFraming::ContentLength(4));
        assert_eq!(head.header_value(b"content-type"), Some(&b"video/mp2t"[..]));
        assert!(head.keep_alive(false));
    }

    #[test]
    fn reason_may_be_empty_missing_or_obs_text() {
        assert_eq!(ok(b"HTTP/1.1 204\r\n\r\n").reason(), b"");
        assert_eq!(ok(b"HTTP/1.1 204 \r\n\r\n").reason(), b"");
        assert_eq!(
            ok(b"HTTP/1.1 200 Tr\xe8s bien\r\n\r\n").reason(),
            b"Tr\xe8s bien"
        );
    }

    #[test]
    fn framing_by_status_and_method() {
        let cl = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(
            cl.framing(true),
            BodyFraming::None,
            "HEAD responses have no body"
        );
        let chunked = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.framing(false), BodyFraming::Chunked);
        let close = ok(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(close.framing(false), BodyFraming::CloseDelimited);
        assert!(
            !close.keep_alive(false),
            "a close-delimited body ends the connection"
        );
        assert!(
            close.keep_alive(true),
            "but an answer to HEAD has no body to delimit"
        );
        for status in [b"204", b"304"] {
            let bytes = [
                b"HTTP/1.1 ".as_slice(),
                status,
                b" X\r\nContent-Length: 5\r\n\r\n",
            ]
            .concat();
            assert_eq!(ok(&bytes).framing(false), BodyFraming::None);
        }
    }

    #[test]
    fn interim_responses() {
        let cont = ok(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n");
        assert!(cont.is_interim() && !cont.is_switching_protocols());
        assert_eq!(cont.framing(false), BodyFraming::None);
        assert_eq!(cont.head_len(), 25);
        let early = ok(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
        assert!(early.is_interim());
        let ws = ok(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(ws.is_switching_protocols() && ws.is_websocket_accept());
        assert_eq!(ws.framing(false), BodyFraming::None);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive(false));
        assert!(
            ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive(false)
        );
        assert!(
            !ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .keep_alive(false)
        );
    }

    #[test]
    fn hardening_matches_requests() {
        let cases: &[(&[u8], HeadError)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::ContentLengthWithTransferEncoding,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                HeadError::DuplicateContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n",
                HeadError::ContentLengthList,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                HeadError::ChunkedNotFinal,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,chunked\r\n\r\n",
                HeadError::ChunkedTwice,
            ),
            (
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncodingInHttp10,
            ),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", HeadError::ObsFold),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
                HeadError::WhitespaceBeforeColon,
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n",
                HeadError::InvalidHeaderValue,
            ),
            (b"HTTP/2.0 200 OK\r\n\r\n", HeadError::UnsupportedVersion),
            (b"HTTP/1.1 2000 OK\r\n\r\n", HeadError::InvalidStatusLine),
            (b"HTTP/1.1 099 Low\r\n\r\n", HeadError::InvalidStatusLine),
            (b"HTTP/1.1 600 High\r\n\r\n", HeadError::InvalidStatusLine),
            (b"HTTP/1.1 20X OK\r\n\r\n", HeadError::InvalidStatusLine),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                &parse(bytes).unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn end_to_end_headers_for_http2() {
        let head = ok(concat!(
            "HTTP/1.1 200 OK\r\n",
            "Connection: keep-alive, X-Hop\r\n",
            "Keep-Alive: timeout=5\r\n",
            "X-Hop: 1\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Content-Type: text/plain\r\n",
            "\r\n"
        )
        .as_bytes());
        let names: Vec<&[u8]> = head.end_to_end_headers().map(|h| h.name).collect();
        assert_eq!(names, [&b"Content-Type"[..]]);
    }

    #[test]
    fn incomplete_is_none_at_every_prefix() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut parser = ResponseParser::default();
        for len in 0..bytes.len() {
            assert_eq!(parser.parse(&bytes[..len]), Ok(None), "prefix {len}");
        }
        assert!(parser.parse(bytes).unwrap().is_some());
    }
}
