//! Sticky sessions the HAProxy way: `cookie JSESSIONID prefix`. The upstream's session cookie
//! is prefixed with the name of the server that set it (`JSESSIONID=ams1~abc`) on the way to
//! the client, and the prefix is read and stripped on the way back, so the upstream only ever
//! sees its own value and the proxy needs no session table.
//!
//! Data flow, request side: [`find_server_cookie`] scans every Cookie header for the named
//! cookie and returns the server name plus a [`CookieStrip`] that the request writer applies
//! while copying the header (no allocation). Response side: the response writer asks
//! [`set_cookie_value_offset`] where the value of a matching `Set-Cookie` starts and inserts
//! `<server>~` there, leaving every attribute byte-identical. Names are compared exactly
//! (cookie names are case-sensitive), so `XJSESSIONID` never matches `JSESSIONID`.

use super::head::{Header, trim_ows};

/// The separator between server name and session value.
pub const SERVER_DELIMITER: u8 = b'~';

/// Bytes to cut from one Cookie header's value when forwarding it: the `<server>~` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieStrip {
    /// Index of the Cookie header among the message's headers.
    pub header: usize,
    /// First byte to cut, as an offset into that header's value.
    pub start: usize,
    /// One past the last byte to cut.
    pub end: usize,
}

impl CookieStrip {
    /// `value` with the cut applied.
    pub fn apply(&self, value: &[u8]) -> Vec<u8> {
        let (before, after) = self.split(value);
        [before, after].concat()
    }

    /// The parts of `value` before and after the cut.
    pub(crate) fn split<'v>(&self, value: &'v [u8]) -> (&'v [u8], &'v [u8]) {
        let before = value.get(..self.start).unwrap_or(value);
        let after = value.get(self.end..).unwrap_or_default();
        (before, after)
    }
}

/// A server-prefixed session cookie found in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerCookie<'a> {
    /// The server name before the delimiter (non-empty).
    pub server: &'a [u8],
    /// How to forward the Cookie header without the prefix.
    pub strip: CookieStrip,
    /// The whole value of the Cookie header the cookie was found in.
    pub value: &'a [u8],
}

impl<'a> ServerCookie<'a> {
    /// The Cookie header value as it is forwarded (prefix removed).
    pub fn rewritten_value(&self) -> Vec<u8> {
        self.strip.apply(self.value)
    }

    /// The session value after `<server>~` (up to the end of the cookie or its closing quote):
    /// what identifies one client's session.
    pub fn session(&self) -> &'a [u8] {
        let rest = self.value.get(self.strip.end..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == b';' || b == b'"')
            .unwrap_or(rest.len());
        trim_ows(&rest[..end])
    }
}

/// Looks through every Cookie header for the first cookie called `cookie_name` whose value is
/// `<server>~<rest>` (optionally in double quotes). A value without the delimiter (or with an
/// empty server part) names no server and is left alone.
pub fn find_server_cookie<'a>(
    headers: impl IntoIterator<Item = Header<'a>>,
    cookie_name: &[u8],
) -> Option<ServerCookie<'a>> {
    headers
        .into_iter()
        .enumerate()
        .filter(|(_, h)| h.is(b"cookie"))
        .find_map(|(index, h)| {
            let (server, start, end) = find_in_value(h.value, cookie_name)?;
            Some(ServerCookie {
                server: h.value.get(server)?,
                strip: CookieStrip {
                    header: index,
                    start,
                    end,
                },
                value: h.value,
            })
        })
}

/// Whether one Cookie header value carries a cookie called `cookie_name` (any value).
pub fn has_cookie(value: &[u8], cookie_name: &[u8]) -> bool {
    value
        .split(|&b| b == b';')
        .any(|pair| matching_value(pair, cookie_name).is_some())
}

/// In one Cookie value, the server range and the cut range of the first matching cookie.
fn find_in_value(value: &[u8], name: &[u8]) -> Option<(std::ops::Range<usize>, usize, usize)> {
    let mut pair_start = 0;
    for pair in value.split(|&b| b == b';') {
        let this_start = pair_start;
        pair_start += pair.len() + 1;
        let Some((value_start, cookie_value)) = matching_value(pair, name) else {
            continue;
        };
        let (inner_start, inner) = unquote(this_start + value_start, cookie_value);
        match inner.iter().position(|&b| b == SERVER_DELIMITER) {
            Some(0) | None => continue,
            Some(tilde) => {
                return Some((
                    inner_start..inner_start + tilde,
                    inner_start,
                    inner_start + tilde + 1,
                ));
            }
        }
    }
    None
}

/// If `pair` (`name=value`, whitespace allowed around both) is the cookie `name`, the offset
/// of its trimmed value in `pair` and the value.
fn matching_value<'p>(pair: &'p [u8], name: &[u8]) -> Option<(usize, &'p [u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    if trim_ows(pair.get(..eq)?) != name {
        return None;
    }
    let raw = pair.get(eq + 1..)?;
    let lead = raw.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    Some((eq + 1 + lead, trim_ows(raw)))
}

/// The inside of a double-quoted value and its offset, or the value itself.
fn unquote(offset: usize, value: &[u8]) -> (usize, &[u8]) {
    match value {
        [b'"', inner @ .., b'"'] => (offset + 1, inner),
        _ => (offset, value),
    }
}

/// What the response writer does to Set-Cookie headers: prefix the value of cookie
/// `cookie_name` with `<server>~`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetCookiePrefix<'a> {
    /// Name of the session cookie (`JSESSIONID`).
    pub cookie_name: &'a [u8],
    /// Cookie name of the server that answered (`ams1`).
    pub server: &'a [u8],
}

/// If this Set-Cookie value sets `cookie_name` to a non-empty value, the offset in `value`
/// where the server prefix goes (inside the quotes of a quoted value). Empty values (cookie
/// deletions) get no prefix.
pub fn set_cookie_value_offset(value: &[u8], cookie_name: &[u8]) -> Option<usize> {
    let pair_end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    let (start, cookie_value) = matching_value(value.get(..pair_end)?, cookie_name)?;
    let (inner_start, inner) = unquote(start, cookie_value);
    if inner.is_empty() {
        return None;
    }
    Some(inner_start)
}

/// The Set-Cookie value with the server prefix inserted, or `None` if it does not set the
/// session cookie.
pub fn prefix_set_cookie(value: &[u8], cookie_name: &[u8], server: &[u8]) -> Option<Vec<u8>> {
    let at = set_cookie_value_offset(value, cookie_name)?;
    let (before, after) = value.split_at_checked(at)?;
    Some([before, server, &[SERVER_DELIMITER], after].concat())
}

/// Whether `server` can be used as a server cookie prefix: non-empty RFC 6265 cookie-octets
/// without the delimiter.
pub fn is_valid_server_cookie(server: &[u8]) -> bool {
    !server.is_empty()
        && server.iter().all(|&b| {
            matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
                && b != SERVER_DELIMITER
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(value: &[u8]) -> Header<'_> {
        Header {
            name: b"Cookie",
            value,
        }
    }

    fn find<'a>(headers: &[Header<'a>]) -> Option<(&'a [u8], Vec<u8>)> {
        let found = find_server_cookie(headers.iter().copied(), b"JSESSIONID")?;
        Some((found.server, found.rewritten_value()))
    }

    #[test]
    fn strips_the_server_prefix() {
        assert_eq!(
            find(&[cookie(b"JSESSIONID=ams1~abc; other=1")]),
            Some((&b"ams1"[..], b"JSESSIONID=abc; other=1".to_vec()))
        );
        assert_eq!(
            find(&[cookie(b"a=1; JSESSIONID=ams2~x~y")]),
            Some((&b"ams2"[..], b"a=1; JSESSIONID=x~y".to_vec())),
            "only the first delimiter separates the server"
        );
    }

    #[test]
    fn the_session_value_is_what_follows_the_prefix() {
        let session = |v: &'static [u8]| {
            find_server_cookie([cookie(v)], b"JSESSIONID").map(|f| f.session().to_vec())
        };
        assert_eq!(
            session(b"JSESSIONID=ams1~abc; other=1"),
            Some(b"abc".to_vec())
        );
        assert_eq!(session(b"a=1;JSESSIONID=ams1~x~y"), Some(b"x~y".to_vec()));
        assert_eq!(session(b"JSESSIONID=\"ams1~abc\""), Some(b"abc".to_vec()));
        assert_eq!(
            session(b"JSESSIONID = ams1~abc ;x=2"),
            Some(b"abc".to_vec())
        );
        assert_eq!(session(b"JSESSIONID=ams1~"), Some(Vec::new()));
    }

    #[test]
    fn no_delimiter_or_empty_server_names_no_server() {
        assert_eq!(find(&[cookie(b"JSESSIONID=abc")]), None);
        assert_eq!(find(&[cookie(b"JSESSIONID=")]), None);
        assert_eq!(find(&[cookie(b"JSESSIONID=~abc")]), None);
        assert_eq!(find(&[cookie(b"JSESSIONID")]), None);
        assert_eq!(find(&[]), None);
    }

    #[test]
    fn whitespace_and_quotes() {
        assert_eq!(
            find(&[cookie(b"other=1 ;  JSESSIONID = ams1~abc ;x=2")]),
            Some((&b"ams1"[..], b"other=1 ;  JSESSIONID = abc ;x=2".to_vec()))
        );
        assert_eq!(
            find(&[cookie(b"JSESSIONID=\"ams1~abc\"")]),
            Some((&b"ams1"[..], b"JSESSIONID=\"abc\"".to_vec()))
        );
        assert_eq!(find(&[cookie(b"JSESSIONID=\"\"")]), None);
    }

    #[test]
    fn names_must_match_exactly() {
        assert_eq!(find(&[cookie(b"XJSESSIONID=ams1~abc")]), None);
        assert_eq!(find(&[cookie(b"JSESSIONIDX=ams1~abc")]), None);
        assert_eq!(find(&[cookie(b"jsessionid=ams1~abc")]), None);
        assert_eq!(
            find(&[cookie(b"XJSESSIONID=bad~1; JSESSIONID=ams2~2")]),
            Some((&b"ams2"[..], b"XJSESSIONID=bad~1; JSESSIONID=2".to_vec()))
        );
        // The name appearing inside another cookie's value is not a cookie.
        assert_eq!(find(&[cookie(b"a=JSESSIONID=ams1~x")]), None);
    }

    #[test]
    fn has_cookie_matches_names_exactly() {
        assert!(has_cookie(b"JSESSIONID=abc", b"JSESSIONID"));
        assert!(has_cookie(b"a=1;  JSESSIONID = x", b"JSESSIONID"));
        assert!(has_cookie(b"JSESSIONID=", b"JSESSIONID"));
        assert!(!has_cookie(
            b"XJSESSIONID=abc; a=JSESSIONID=1",
            b"JSESSIONID"
        ));
        assert!(!has_cookie(b"JSESSIONID", b"JSESSIONID"));
        assert!(!has_cookie(b"", b"JSESSIONID"));
    }

    #[test]
    fn searches_every_cookie_header() {
        let headers = [
            Header {
                name: b"Host",
                value: b"h",
            },
            cookie(b"a=1"),
            Header {
                name: b"cookie",
                value: b"JSESSIONID=ams1~abc",
            },
        ];
        let found = find_server_cookie(headers.iter().copied(), b"JSESSIONID").unwrap();
        assert_eq!(found.server, b"ams1");
        assert_eq!(
            found.strip,
            CookieStrip {
                header: 2,
                start: 11,
                end: 16
            }
        );
        // The first JSESSIONID without a server does not hide a later one with a server.
        assert_eq!(
            find(&[cookie(b"JSESSIONID=plain"), cookie(b"JSESSIONID=ams1~abc")]),
            Some((&b"ams1"[..], b"JSESSIONID=abc".to_vec()))
        );
    }

    #[test]
    fn prefixes_set_cookie_keeping_attributes() {
        let prefixed = |v: &[u8]| prefix_set_cookie(v, b"JSESSIONID", b"ams1");
        assert_eq!(
            prefixed(b"JSESSIONID=abc; Path=/"),
            Some(b"JSESSIONID=ams1~abc; Path=/".to_vec())
        );
        assert_eq!(
            prefixed(b"JSESSIONID=abc;Path=/;HttpOnly; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(
                b"JSESSIONID=ams1~abc;Path=/;HttpOnly; Expires=Wed, 21 Oct 2015 07:28:00 GMT"
                    .to_vec()
            )
        );
        assert_eq!(
            prefixed(b"JSESSIONID = abc"),
            Some(b"JSESSIONID = ams1~abc".to_vec())
        );
        assert_eq!(
            prefixed(b"JSESSIONID=\"abc\"; Secure"),
            Some(b"JSESSIONID=\"ams1~abc\"; Secure".to_vec())
        );
        assert_eq!(
            prefixed(b"JSESSIONID=abc"),
            Some(b"JSESSIONID=ams1~abc".to_vec())
        );
    }

    #[test]
    fn other_and_empty_set_cookies_are_untouched() {
        let prefixed = |v: &[u8]| prefix_set_cookie(v, b"JSESSIONID", b"ams1");
        assert_eq!(prefixed(b"other=abc; Path=/"), None);
        assert_eq!(prefixed(b"XJSESSIONID=abc"), None);
        assert_eq!(prefixed(b"JSESSIONID=; Max-Age=0"), None);
        assert_eq!(prefixed(b"JSESSIONID=\"\""), None);
        assert_eq!(
            prefixed(b"Path=/; JSESSIONID=abc"),
            None,
            "attributes are not cookies"
        );
    }

    #[test]
    fn round_trip() {
        let set = prefix_set_cookie(b"JSESSIONID=s3cr3t; Path=/", b"JSESSIONID", b"ams2").unwrap();
        // The browser sends back name=value only.
        let sent = &set[..set.iter().position(|&b| b == b';').unwrap()];
        assert_eq!(
            find(&[cookie(sent)]),
            Some((&b"ams2"[..], b"JSESSIONID=s3cr3t".to_vec()))
        );
    }

    #[test]
    fn server_cookie_validation() {
        assert!(is_valid_server_cookie(b"ams1"));
        for bad in [
            &b""[..],
            b"a~b",
            b"a b",
            b"a;b",
            b"a,b",
            b"a\"b",
            b"a\\b",
            b"\xff",
        ] {
            assert!(!is_valid_server_cookie(bad), "{bad:?}");
        }
    }
}
