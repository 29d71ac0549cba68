//! Fuzzes the HTTP/1.x request head parser. Properties: no panic; feeding a prefix first gives
//! the same head as feeding everything at once; a parsed head written back out by the proxy's
//! request writer parses again with the same method, path, Host, framing and upgrade facts.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::http::{
    find_server_cookie, write_request_head, ForwardedProto, HeadLimits, RequestEdits,
    RequestParser, MAX_HEADERS_CEILING, MAX_HEAD_BYTES_CEILING,
};

fuzz_target!(|data: &[u8]| {
    let whole = RequestParser::default().parse(data);

    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut parser = RequestParser::default();
    match parser.parse(&data[..split]) {
        Ok(Some(early)) => assert_eq!(whole.as_ref().ok(), Some(&Some(early))),
        Err(_) => assert!(whole.is_err(), "an error in a prefix is an error in the whole"),
        Ok(None) => {
            let late = parser.parse(data);
            if let Ok(Some(head)) = &whole {
                assert_eq!(late.as_ref().ok(), Some(&Some(head.clone())));
            }
            if let Ok(Some(head)) = &late {
                assert_eq!(whole.as_ref().ok(), Some(&Some(head.clone())));
            }
        }
    }

    let Ok(Some(head)) = whole else { return };
    assert!(head.head_len() <= data.len());
    let keep_alive = data.len() % 2 == 0;
    let edits = RequestEdits {
        forwarded_for: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
        forwarded_proto: Some(ForwardedProto::Http),
        keep_alive,
        cookie: find_server_cookie(head.headers(), b"JSESSIONID").map(|c| c.strip),
    };
    let mut out = Default::default();
    write_request_head(&head, &edits, &mut out);
    let generous =
        HeadLimits { max_head_bytes: MAX_HEAD_BYTES_CEILING, max_headers: MAX_HEADERS_CEILING };
    let again = RequestParser::new(generous)
        .parse(&out[..])
        .expect("a rewritten head parses")
        .expect("a rewritten head is complete");
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.method(), head.method());
    assert_eq!(again.path_and_query(), head.path_and_query());
    assert_eq!(again.version(), head.version());
    assert_eq!(again.host(), head.host());
    assert_eq!(again.framing(), head.framing());
    assert_eq!(again.is_websocket_upgrade(), head.is_websocket_upgrade());
    assert_eq!(again.expects_continue(), head.expects_continue());
    assert_eq!(again.header_value(b"x-forwarded-proto"), Some(&b"http"[..]));
    if !head.is_websocket_upgrade() {
        assert_eq!(again.keep_alive(), keep_alive);
    }
    if let Some(found) = find_server_cookie(head.headers(), b"JSESSIONID") {
        let stripped = found.rewritten_value();
        assert!(again.headers().any(|h| h.is(b"cookie") && h.value == &stripped[..]));
    }
});
