//! Fuzzes the LB's HTTP/2 -> HTTP/1.1 request conversion (`write_request_from_parts`), whose
//! input is what a client put in `:method`, `:path`, `:authority` and its header fields.
//! Input layout: fields separated by NUL: method, path, authority (empty = none), then
//! alternating header names and values; the first byte picks the body framing. Properties: no
//! panic; whatever is accepted is written as exactly one HTTP/1.1 request head that the LB's
//! own HTTP/1 parser reads back with the same method and path, one Host (the authority, or the
//! one Host field), no smuggled framing (Content-Length and chunked are the announced ones)
//! and nothing left over (no injected line or second request).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::http::{
    BodyFraming, ForwardedProto, HeadLimits, Header, PartsBody, RequestEdits, RequestParser,
    RequestParts, write_request_from_parts, MAX_HEADERS_CEILING, MAX_HEAD_BYTES_CEILING,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut fields = rest.split(|&b| b == 0);
    let method = fields.next().unwrap_or_default();
    let path = fields.next().unwrap_or_default();
    let authority = fields.next().filter(|a| !a.is_empty());
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        headers.push(Header { name, value });
    }
    let body = match mode % 3 {
        0 => PartsBody::Empty,
        1 => PartsBody::ContentLength(u64::from(mode)),
        _ => PartsBody::Chunked,
    };
    let parts = RequestParts { method, path, authority, headers: headers.iter().copied(), body };
    let edits = RequestEdits {
        forwarded_for: None,
        forwarded_proto: Some(ForwardedProto::Https),
        keep_alive: mode & 0x80 == 0,
        cookie: None,
    };
    let mut out = BytesMut::new();
    if write_request_from_parts(&parts, &edits, &mut out).is_err() {
        assert!(out.is_empty(), "a refused request writes nothing");
        return;
    }
    let generous =
        HeadLimits { max_head_bytes: MAX_HEAD_BYTES_CEILING, max_headers: MAX_HEADERS_CEILING };
    let head = RequestParser::new(generous)
        .parse(&out[..])
        .expect("a converted head parses as HTTP/1.1")
        .expect("a converted head is complete");
    assert_eq!(head.head_len(), out.len(), "nothing after the head");
    assert_eq!(head.method(), method);
    assert_eq!(head.path_and_query(), path);
    let hosts = head.headers().filter(|h| h.is(b"host")).count();
    assert_eq!(hosts, 1, "exactly one Host");
    if let Some(a) = authority {
        assert_eq!(head.host(), Some(a));
    }
    match body {
        // A body-less request may announce `Content-Length: 0`.
        PartsBody::Empty => assert!(matches!(
            head.framing(),
            BodyFraming::None | BodyFraming::ContentLength(0)
        )),
        PartsBody::ContentLength(n) => assert_eq!(head.framing(), BodyFraming::ContentLength(n)),
        PartsBody::Chunked => assert_eq!(head.framing(), BodyFraming::Chunked),
    }
    assert_eq!(head.header_value(b"x-forwarded-proto"), Some(&b"https"[..]));
});
