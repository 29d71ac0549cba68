//! What request and response heads have in common: limits, the header list, the scan for the
//! end of a head, and the checks on the headers that decide framing and connection handling.
//!
//! Data flow: a parser ([`super::RequestParser`], [`super::ResponseParser`]) asks the
//! `scan::HeadScanner` whether the buffer holds a whole head (a cheap incremental search for the
//! empty line, so a slowloris client costs one pass over its bytes, not one parse per read),
//! then tokenises it with `httparse`, copies the head bytes once into a [`Fields`] (offsets, no
//! per-header allocation) and runs [`analyse`] over the headers to derive the validated facts
//! (Content-Length / Transfer-Encoding, Connection tokens, Host, Upgrade, Expect). `httparse`
//! errors are classified into the precise [`HeadError`] variants here.

use std::ops::Range;

use bytes::Bytes;

/// Default limit on the size of a head (start line, headers and the empty line), like
/// HAProxy's `tune.bufsize` budget for headers.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
/// Default limit on the number of header fields in one head (HAProxy's `tune.http.maxhdr` is 101).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Hard ceiling on [`HeadLimits::max_headers`]: the tokeniser's header array lives on the stack.
pub const MAX_HEADERS_CEILING: usize = 256;
/// Hard ceiling on [`HeadLimits::max_head_bytes`].
pub const MAX_HEAD_BYTES_CEILING: usize = 1024 * 1024;

/// Limits applied while parsing a head. Values above the ceilings are clamped to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest accepted head in bytes, empty line included (the error maps to 431 downstream).
    pub max_head_bytes: usize,
    /// Largest accepted number of header fields (the error maps to 431 downstream).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

impl HeadLimits {
    pub(crate) fn head_bytes(&self) -> usize {
        self.max_head_bytes.min(MAX_HEAD_BYTES_CEILING)
    }

    pub(crate) fn headers(&self) -> usize {
        self.max_headers.min(MAX_HEADERS_CEILING)
    }
}

/// Errors found in a request or response head. Every variant is fatal for the connection;
/// [`super::error_status`] says what to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is larger than [`HeadLimits::max_head_bytes`].
    #[error("message head is larger than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The head has more header fields than [`HeadLimits::max_headers`].
    #[error("message head has more than {limit} header fields")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// More than [`super::MAX_LEADING_EMPTY_LINE_BYTES`] CR/LF bytes before the start line.
    #[error("more than {limit} bytes of empty lines before the start line")]
    LeadingEmptyLines {
        /// The limit in force.
        limit: usize,
    },
    /// An HTTP/0.9 request line (method and target, no version).
    #[error("HTTP/0.9 request (no version on the request line)")]
    Http09,
    /// A version other than HTTP/1.0 and HTTP/1.1.
    #[error("unsupported HTTP version (only HTTP/1.0 and HTTP/1.1 are accepted)")]
    UnsupportedVersion,
    /// The method is not a token.
    #[error("invalid request method")]
    InvalidMethod,
    /// A CONNECT request: this proxy does not open tunnels on request.
    #[error("CONNECT requests are not supported")]
    ConnectNotSupported,
    /// The request target is not origin-form, absolute-form (http/https) or `*` for OPTIONS, or
    /// holds bytes outside visible ASCII, a fragment or user information.
    #[error("invalid request target")]
    InvalidTarget,
    /// The status line of a response is malformed or its code is outside 100..=599.
    #[error("invalid status line")]
    InvalidStatusLine,
    /// A header name holds a byte that is not a token character.
    #[error("invalid header field name")]
    InvalidHeaderName,
    /// A header value holds a control character (other than HTAB) or DEL.
    #[error("invalid header field value")]
    InvalidHeaderValue,
    /// A CR not followed by LF in the head.
    #[error("invalid line ending in message head")]
    InvalidLineEnding,
    /// A line of a request head ends with LF alone: RFC 9112 lets a recipient accept it, but a
    /// server behind that reads lines differently could see other requests than this proxy did.
    #[error("a line of the request head ends with LF alone (CRLF required)")]
    BareLf,
    /// A header line starts with whitespace (obs-fold line folding, or whitespace before the
    /// first header).
    #[error("obsolete line folding in message head")]
    ObsFold,
    /// Whitespace between a header name and its colon.
    #[error("whitespace between header name and colon")]
    WhitespaceBeforeColon,
    /// Both Content-Length and Transfer-Encoding are present.
    #[error("both Content-Length and Transfer-Encoding are present")]
    ContentLengthWithTransferEncoding,
    /// More than one Content-Length header, even with equal values.
    #[error("duplicate Content-Length header")]
    DuplicateContentLength,
    /// A Content-Length value that is a comma-separated list, even of equal values.
    #[error("Content-Length is a list")]
    ContentLengthList,
    /// A Content-Length value that is not plain decimal digits.
    #[error("Content-Length is not a plain decimal number")]
    InvalidContentLength,
    /// A Content-Length value that does not fit in 64 bits.
    #[error("Content-Length does not fit in 64 bits")]
    ContentLengthOverflow,
    /// Transfer-Encoding whose final coding is not `chunked`.
    #[error("Transfer-Encoding does not end with chunked")]
    ChunkedNotFinal,
    /// Transfer-Encoding that lists `chunked` more than once.
    #[error("Transfer-Encoding lists chunked more than once")]
    ChunkedTwice,
    /// A Transfer-Encoding value that is empty or holds something other than coding names.
    #[error("invalid Transfer-Encoding value")]
    InvalidTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message, whose framing is then ambiguous.
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// A header named like Content-Length or Transfer-Encoding with underscores, which some
    /// servers fold into the real thing.
    #[error("header name imitates a framing header with underscores")]
    FramingHeaderLookalike,
    /// An HTTP/1.1 request in origin-form without a Host header.
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    /// More than one Host header.
    #[error("duplicate Host header")]
    DuplicateHost,
    /// A Host value (or absolute-form authority) with bytes that cannot appear in a host.
    #[error("invalid Host")]
    InvalidHost,
}

/// HTTP/1.x protocol version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: connections close after each message unless keep-alive is asked for.
    Http10,
    /// HTTP/1.1: persistent connections by default.
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Http10 => b"HTTP/1.0",
            Self::Http11 => b"HTTP/1.1",
        }
    }

    pub(crate) fn from_minor(minor: u8) -> Self {
        if minor == 0 {
            Self::Http10
        } else {
            Self::Http11
        }
    }
}

/// One header field, borrowed from a head (or built by a caller, e.g. from HTTP/2 fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Name in its original case.
    pub name: &'a [u8],
    /// Value without leading and trailing whitespace.
    pub value: &'a [u8],
}

impl Header<'_> {
    /// Whether the name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &[u8]) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Where one header's name and value sit in [`Fields::raw`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldSpan {
    name: Range<usize>,
    value: Range<usize>,
}

/// The bytes of one head and the position of each header in them: one allocation for the
/// bytes, one for the offsets, none per header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fields {
    raw: Bytes,
    spans: Vec<FieldSpan>,
}

impl Fields {
    /// Copies `head` and records where each of `headers` (sub-slices of `head`) lies.
    pub(crate) fn new(head: &[u8], headers: &[httparse::Header<'_>]) -> Self {
        let spans = headers
            .iter()
            .map(|h| FieldSpan {
                name: offset_in(head, h.name.as_bytes()),
                value: offset_in(head, h.value),
            })
            .collect();
        Self {
            raw: Bytes::copy_from_slice(head),
            spans,
        }
    }

    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Bytes of `range` in the head; empty if the range were ever out of bounds (it is built
    /// from sub-slices of the same bytes, so it is not).
    pub(crate) fn slice(&self, range: &Range<usize>) -> &[u8] {
        self.raw.get(range.clone()).unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn header(&self, index: usize) -> Option<Header<'_>> {
        self.spans.get(index).map(|s| self.header_at(s))
    }

    fn header_at(&self, span: &FieldSpan) -> Header<'_> {
        Header {
            name: self.slice(&span.name),
            value: self.slice(&span.value),
        }
    }

    pub(crate) fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            fields: self,
            next: 0,
        }
    }
}

/// Iterator over the headers of a head, in their original order.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    fields: &'a Fields,
    next: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let header = self.fields.header(self.next)?;
        self.next += 1;
        Some(header)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.fields.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

/// Position of `part` inside `whole`. `httparse` hands out sub-slices of its input, so the
/// subtraction cannot underflow; if it ever did, the span is empty rather than a panic.
pub(crate) fn offset_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    if start <= end && end <= whole.len() {
        start..end
    } else {
        0..0
    }
}

/// Maps an `httparse` error inside the header section to a precise variant by looking at the
/// offending line.
pub(crate) fn classify_header_error(buf: &[u8], error: httparse::Error, limit: usize) -> HeadError {
    match error {
        httparse::Error::HeaderName => classify_header_name(buf),
        httparse::Error::HeaderValue => HeadError::InvalidHeaderValue,
        httparse::Error::NewLine => HeadError::InvalidLineEnding,
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders { limit },
        httparse::Error::Version => HeadError::UnsupportedVersion,
        httparse::Error::Status => HeadError::InvalidStatusLine,
        httparse::Error::Token => HeadError::InvalidTarget,
    }
}

/// Finds the first header line that `httparse` refused for its name, and says why.
fn classify_header_name(buf: &[u8]) -> HeadError {
    let start = super::scan::start_line_offset(buf);
    let mut lines = buf
        .get(start..)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .skip(1);
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return HeadError::ObsFold;
        }
        let name_end = line
            .iter()
            .position(|&b| !is_token(b))
            .unwrap_or(line.len());
        let rest = line.get(name_end..).unwrap_or_default();
        match rest.first() {
            Some(b':') if name_end > 0 => continue,
            Some(b' ' | b'\t') if name_end > 0 => {
                let after_ws = rest.iter().position(|&b| b != b' ' && b != b'\t');
                if after_ws.and_then(|i| rest.get(i)) == Some(&b':') {
                    return HeadError::WhitespaceBeforeColon;
                }
                return HeadError::InvalidHeaderName;
            }
            _ => return HeadError::InvalidHeaderName,
        }
    }
    HeadError::InvalidHeaderName
}

/// RFC 9110 `tchar`.
pub(crate) fn is_token(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

/// Whether `name` is a non-empty token.
pub(crate) fn is_token_str(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_token(b))
}

/// RFC 9110 field-vchar, SP or HTAB: what a header value may hold.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Whether `b` may appear in a Host value or authority (reg-name, IP literal, port).
pub(crate) fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%[]".contains(&b)
}

/// Elements of a comma-separated list header value, trimmed, empty elements skipped.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// How a message declares its body length (before status and method rules apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LengthHeader {
    /// Neither Content-Length nor Transfer-Encoding.
    Absent,
    /// One valid Content-Length.
    ContentLength(u64),
    /// Transfer-Encoding ending with `chunked`.
    Chunked,
}

/// Facts derived from the headers that both requests and responses need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) length: Option<LengthHeader>,
    /// `close` among the Connection tokens.
    pub(crate) close: bool,
    /// `keep-alive` among the Connection tokens.
    pub(crate) keep_alive: bool,
    /// `upgrade` among the Connection tokens.
    pub(crate) connection_upgrade: bool,
    /// A Connection token other than close / keep-alive / upgrade, naming a hop-by-hop header.
    pub(crate) connection_names_headers: bool,
    /// `websocket` among the Upgrade tokens.
    pub(crate) upgrade_websocket: bool,
    /// Index of the Host header, if any.
    pub(crate) host: Option<usize>,
    /// An `Expect: 100-continue` header.
    pub(crate) expect_continue: bool,
}

impl Facts {
    pub(crate) fn length(&self) -> LengthHeader {
        self.length.unwrap_or(LengthHeader::Absent)
    }
}

/// Checks the headers that decide framing and connection handling and derives [`Facts`].
pub(crate) fn analyse(
    version: Version,
    headers: &[httparse::Header<'_>],
    is_request: bool,
) -> Result<Facts, HeadError> {
    let mut facts = Facts::default();
    let mut content_length: Option<u64> = None;
    let mut te = TransferCodings::default();
    for (index, header) in headers.iter().enumerate() {
        let name = header.name.as_bytes();
        let value = header.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(HeadError::DuplicateContentLength);
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te.add(value)?;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in list_elements(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    facts.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    facts.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    facts.connection_upgrade = true;
                } else {
                    facts.connection_names_headers = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            facts.upgrade_websocket |= list_elements(value).any(|protocol| {
                let name = protocol.split(|&b| b == b'/').next().unwrap_or_default();
                name.eq_ignore_ascii_case(b"websocket")
            });
        } else if is_request && name.eq_ignore_ascii_case(b"host") {
            if facts.host.is_some() {
                return Err(HeadError::DuplicateHost);
            }
            if !value.iter().all(|&b| is_host_byte(b)) {
                return Err(HeadError::InvalidHost);
            }
            facts.host = Some(index);
        } else if is_request && name.eq_ignore_ascii_case(b"expect") {
            facts.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if is_framing_lookalike(name) {
            return Err(HeadError::FramingHeaderLookalike);
        }
    }
    facts.length = Some(match (content_length, te.present) {
        (Some(_), true) => return Err(HeadError::ContentLengthWithTransferEncoding),
        (None, true) if version == Version::Http10 => {
            return Err(HeadError::TransferEncodingInHttp10);
        }
        (None, true) => {
            te.finish()?;
            LengthHeader::Chunked
        }
        (Some(n), false) => LengthHeader::ContentLength(n),
        (None, false) => LengthHeader::Absent,
    });
    Ok(facts)
}

/// Strict Content-Length: one plain decimal number that fits in a u64.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.contains(&b',') {
        return Err(HeadError::ContentLengthList);
    }
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::InvalidContentLength);
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(HeadError::ContentLengthOverflow)
    })
}

/// Transfer-Encoding codings seen so far, across every Transfer-Encoding header.
#[derive(Default)]
struct TransferCodings {
    present: bool,
    /// Whether the last coding seen was `chunked`.
    last_chunked: bool,
    /// Whether `chunked` was seen at all.
    seen_chunked: bool,
    /// Whether at least one coding was seen.
    any: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) -> Result<(), HeadError> {
        self.present = true;
        for coding in list_elements(value) {
            if !is_token_str(coding) {
                return Err(HeadError::InvalidTransferEncoding);
            }
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            if chunked && self.seen_chunked {
                return Err(HeadError::ChunkedTwice);
            }
            if self.seen_chunked {
                return Err(HeadError::ChunkedNotFinal);
            }
            self.seen_chunked |= chunked;
            self.last_chunked = chunked;
            self.any = true;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), HeadError> {
        match (self.any, self.last_chunked) {
            (false, _) => Err(HeadError::InvalidTransferEncoding),
            (true, false) => Err(HeadError::ChunkedNotFinal),
            (true, true) => Ok(()),
        }
    }
}

/// `content_length` / `transfer_encoding` spelled with at least one underscore.
fn is_framing_lookalike(name: &[u8]) -> bool {
    fn same(name: &[u8], canonical: &[u8]) -> bool {
        name.len() == canonical.len()
            && name
                .iter()
                .zip(canonical)
                .all(|(&n, &c)| n.eq_ignore_ascii_case(&c) || (c == b'-' && n == b'_'))
    }
    name.contains(&b'_') && (same(name, b"content-length") || same(name, b"transfer-encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn content_length_must_be_plain_digits() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"00042"), Ok(42));
        assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_content_length(b"18446744073709551616"),
            Err(HeadError::ContentLengthOverflow)
        );
        for bad in [&b"+1"[..], b"-1", b"1 2", b"0x10", b"", b"1.0", b"\xd9\xa1"] {
            assert_eq!(
                parse_content_length(bad),
                Err(HeadError::InvalidContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_content_length(b"5, 5"),
            Err(HeadError::ContentLengthList)
        );
    }

    #[test]
    fn transfer_codings_are_checked_across_headers() {
        let v11 = Version::Http11;
        let chunked = |hs: &[httparse::Header<'_>]| analyse(v11, hs, true).map(|f| f.length());
        assert_eq!(
            chunked(&[h("Transfer-Encoding", b"gzip, chunked")]),
            Ok(LengthHeader::Chunked)
        );
        assert_eq!(
            chunked(&[
                h("Transfer-Encoding", b"gzip"),
                h("transfer-encoding", b"Chunked")
            ]),
            Ok(LengthHeader::Chunked)
        );
        assert_eq!(
            chunked(&[
                h("Transfer-Encoding", b"chunked"),
                h("Transfer-Encoding", b"gzip")
            ]),
            Err(HeadError::ChunkedNotFinal)
        );
        assert_eq!(
            chunked(&[h("Transfer-Encoding", b"chunked, chunked")]),
            Err(HeadError::ChunkedTwice)
        );
        assert_eq!(
            chunked(&[h("Transfer-Encoding", b"gzip")]),
            Err(HeadError::ChunkedNotFinal)
        );
        assert_eq!(
            chunked(&[h("Transfer-Encoding", b"")]),
            Err(HeadError::InvalidTransferEncoding)
        );
        assert_eq!(
            chunked(&[h("Transfer-Encoding", b"chunked;x=1")]),
            Err(HeadError::InvalidTransferEncoding)
        );
        assert_eq!(
            analyse(Version::Http10, &[h("Transfer-Encoding", b"chunked")], true),
            Err(HeadError::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn connection_and_upgrade_tokens() {
        let facts = analyse(
            Version::Http11,
            &[
                h("Connection", b"keep-alive, Upgrade, X-Secret"),
                h("Upgrade", b"WebSocket/13"),
            ],
            true,
        )
        .unwrap();
        assert!(facts.keep_alive && facts.connection_upgrade && facts.connection_names_headers);
        assert!(!facts.close);
        assert!(facts.upgrade_websocket);
    }

    #[test]
    fn framing_lookalikes_are_refused() {
        for name in ["Content_Length", "transfer_encoding", "Transfer-Encoding_"] {
            let result = analyse(Version::Http11, &[h(name, b"5")], true);
            if name.len() == 17 || name.len() == 14 {
                assert_eq!(result, Err(HeadError::FramingHeaderLookalike), "{name}");
            } else {
                assert!(result.is_ok(), "{name}");
            }
        }
    }

    #[test]
    fn classifies_header_name_errors_by_line() {
        let fold = b"GET / HTTP/1.1\r\nA: b\r\n  c\r\n\r\n";
        assert_eq!(classify_header_name(fold), HeadError::ObsFold);
        let ws = b"GET / HTTP/1.1\r\nA: b\r\nContent-Length : 5\r\n\r\n";
        assert_eq!(classify_header_name(ws), HeadError::WhitespaceBeforeColon);
        let bad = b"GET / HTTP/1.1\r\nA(b: c\r\n\r\n";
        assert_eq!(classify_header_name(bad), HeadError::InvalidHeaderName);
    }

    #[test]
    fn trims_and_splits_lists() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let items: Vec<&[u8]> = list_elements(b" a ,, b,").collect();
        assert_eq!(items, [&b"a"[..], b"b"]);
    }
}
