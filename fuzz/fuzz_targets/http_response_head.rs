//! Fuzzes the HTTP/1.x response head parser. Properties: no panic; feeding a prefix first
//! gives the same head as feeding everything at once; a parsed head written back out by the
//! proxy's response writer parses again with the same status and framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::http::{
    write_response_head, HeadLimits, ResponseEdits, ResponseParser, SetCookiePrefix, Version,
    MAX_HEADERS_CEILING, MAX_HEAD_BYTES_CEILING,
};

fuzz_target!(|data: &[u8]| {
    let whole = ResponseParser::default().parse(data);

    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut parser = ResponseParser::default();
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
    assert!((100..=599).contains(&head.status()));
    let close = data.len() % 2 == 0;
    let edits = ResponseEdits {
        close,
        client_version: if data.len() % 3 == 0 { Version::Http10 } else { Version::Http11 },
        set_cookie: Some(SetCookiePrefix { cookie_name: b"JSESSIONID", server: b"ams1" }),
    };
    let mut out = Default::default();
    write_response_head(&head, &edits, &mut out);
    let generous =
        HeadLimits { max_head_bytes: MAX_HEAD_BYTES_CEILING, max_headers: MAX_HEADERS_CEILING };
    let again = ResponseParser::new(generous)
        .parse(&out[..])
        .expect("a rewritten head parses")
        .expect("a rewritten head is complete");
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.status(), head.status());
    assert_eq!(again.reason(), head.reason());
    assert_eq!(again.framing(false), head.framing(false));
    assert_eq!(again.framing(true), head.framing(true));
    assert_eq!(again.is_websocket_accept(), head.is_websocket_accept());
    // Interim responses carry no Connection header; the final response decides.
    if close && !head.is_interim() {
        assert!(!again.keep_alive(false));
    }
    let set_cookies = |h: &streamfleet_proto::http::ResponseHead| {
        h.headers().filter(|h| h.is(b"set-cookie")).count()
    };
    assert_eq!(set_cookies(&again), set_cookies(&head));
});
