//! Fuzzes the HTTP credential parsers fed by the network: Basic credentials of the LB's stats
//! page (`parse_basic`), the REST `Authorization: Bearer <jwt>` token (`bearer_token`) and the
//! stream token of a query string (`query_param(.., "token")`). Properties: no panic; Basic
//! credentials that parse match themselves (and nothing with another password), and encoding
//! them again parses to the same user and password; a bearer token is a non-empty, trimmed
//! substring of the value without spaces when a scheme was given; a query parameter is a
//! substring of the query without `&`.
//!
//! The JWT signature and claims checks are `jsonwebtoken`'s (in the server crate, with ffmpeg
//! and x264): not fuzzed here.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::http::auth::{bearer_token, parse_basic};
use streamfleet_proto::http::query_param;

fuzz_target!(|data: &[u8]| {
    if let Ok(creds) = parse_basic(data) {
        let (user, password) = (creds.user().to_vec(), creds.password().to_vec());
        assert!(!user.contains(&b':'), "the user ends at the first colon");
        assert!(creds.matches(&user, &password));
        let mut other = password.clone();
        other.push(b'x');
        assert!(!creds.matches(&user, &other));
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([&user[..], b":", &password[..]].concat())
        );
        let reparsed = parse_basic(again.as_bytes()).expect("re-encoded credentials parse");
        assert_eq!((reparsed.user(), reparsed.password()), (&user[..], &password[..]));
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(token) = bearer_token(text) {
        assert!(!token.is_empty());
        assert_eq!(token, token.trim());
        assert!(text.contains(token));
    }
    if let Some(value) = query_param(text, "token") {
        assert!(!value.contains('&'));
        assert!(text.contains(value));
    }
});
