//! Fuzzes the sticky-cookie helpers. Input layout: `name NUL server NUL value`. Properties: no
//! panic; the request-side cut is exactly `<server>~`; the response-side prefix inserts exactly
//! `<server>~` and nothing else changes; with a valid name and server, what the browser sends
//! back names the same server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::http::cookie::{
    find_server_cookie, is_valid_server_cookie, prefix_set_cookie, set_cookie_value_offset,
};
use streamfleet_proto::http::Header;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let name = parts.next().unwrap_or_default();
    let server = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    if name.is_empty() {
        return;
    }

    let header = Header { name: b"Cookie", value };
    if let Some(found) = find_server_cookie([header], name) {
        assert!(!found.server.is_empty());
        assert!(!found.server.contains(&b'~'));
        let cut = &value[found.strip.start..found.strip.end];
        assert_eq!(cut, [found.server, b"~"].concat());
        assert_eq!(found.rewritten_value().len() + cut.len(), value.len());
    }

    if let Some(prefixed) = prefix_set_cookie(value, name, server) {
        let at = set_cookie_value_offset(value, name).expect("prefixed, so it has an offset");
        assert_eq!(prefixed.len(), value.len() + server.len() + 1);
        assert_eq!(&prefixed[..at], &value[..at]);
        assert_eq!(&prefixed[at..at + server.len()], server);
        assert_eq!(&prefixed[at + server.len() + 1..], &value[at..]);
        if is_valid_server_cookie(server) && is_valid_server_cookie(name) {
            let pair_end = prefixed.iter().position(|&b| b == b';').unwrap_or(prefixed.len());
            let sent = Header { name: b"Cookie", value: &prefixed[..pair_end] };
            let found = find_server_cookie([sent], name).expect("the server is found again");
            assert_eq!(found.server, server);
        }
    }
});
