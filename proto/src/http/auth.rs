//! HTTP Basic authentication (the stats page): parse an `Authorization: Basic ...` value and
//! compare the credentials with the configured ones in constant time.
//!
//! Data flow: Authorization header value -> [`parse_basic`] (bounded, base64 via the `base64`
//! crate) -> [`BasicCredentials`] -> [`BasicCredentials::matches`] against the configuration.
//! Credentials never appear in `Debug` output, so they cannot leak into logs.

use std::fmt;

use base64::Engine as _;
use subtle::{Choice, ConstantTimeEq};

/// Longest Authorization value accepted (the scheme, a space and the base64 text).
pub const MAX_AUTHORIZATION_BYTES: usize = 1024;

/// Why an Authorization value is not usable Basic credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The value is longer than [`MAX_AUTHORIZATION_BYTES`].
    #[error("Authorization value longer than {limit} bytes")]
    TooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A scheme other than Basic.
    #[error("not Basic authentication")]
    NotBasic,
    /// No credentials after the scheme.
    #[error("Basic authentication without credentials")]
    Missing,
    /// The credentials are not valid base64.
    #[error("Basic credentials are not valid base64")]
    Base64(#[source] base64::DecodeError),
    /// The decoded credentials have no `:` between user and password.
    #[error("Basic credentials without a colon")]
    MissingColon,
}

/// Decoded `user:password`.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    decoded: Vec<u8>,
    /// Position of the first colon, which separates user from password.
    colon: usize,
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicCredentials(<redacted>)")
    }
}

impl BasicCredentials {
    /// The user name.
    pub fn user(&self) -> &[u8] {
        self.decoded.get(..self.colon).unwrap_or_default()
    }

    /// The password.
    pub fn password(&self) -> &[u8] {
        self.decoded.get(self.colon + 1..).unwrap_or_default()
    }

    /// Whether these are `user` and `password`. Takes the same time whatever the given
    /// credentials are, for given expected values.
    pub fn matches(&self, user: &[u8], password: &[u8]) -> bool {
        let user_ok = constant_time_eq(self.user(), user);
        let password_ok = constant_time_eq(self.password(), password);
        bool::from(user_ok & password_ok)
    }
}

/// Compares `given` with `expected` in time that depends only on `expected.len()`.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> Choice {
    let mut equal = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (index, expected_byte) in expected.iter().enumerate() {
        let given_byte = given.get(index).copied().unwrap_or(0);
        equal &= given_byte.ct_eq(expected_byte);
    }
    equal
}

/// Parses an Authorization header value as Basic credentials.
pub fn parse_basic(value: &[u8]) -> Result<BasicCredentials, AuthError> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(AuthError::TooLong {
            limit: MAX_AUTHORIZATION_BYTES,
        });
    }
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(AuthError::NotBasic);
    }
    let token = super::head::trim_ows(rest);
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(AuthError::Base64)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::MissingColon)?;
    Ok(BasicCredentials { decoded, colon })
}

/// The token of an `Authorization: Bearer <token>` value, or of a bare `<token>` (Ant Media's
/// clients send the REST JWT both ways); `None` for another scheme or an empty token. The
/// token is not checked here (the JWT verification does that).
pub fn bearer_token(value: &str) -> Option<&str> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let value = value.trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        Some(_) => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_with_or_without_the_scheme() {
        assert_eq!(bearer_token("Bearer abc.def"), Some("abc.def"));
        assert_eq!(bearer_token("  bearer   abc  "), Some("abc"));
        assert_eq!(bearer_token("abc.def"), Some("abc.def"));
        assert_eq!(bearer_token("Basic YWRtaW46YWRtaW4="), None);
        // The value is trimmed first: "Bearer " is the bare word, taken as a token (which the
        // JWT check then refuses as malformed), as the REST guard always did.
        assert_eq!(bearer_token("Bearer "), Some("Bearer"));
        assert_eq!(bearer_token("Bearer  x  "), Some("x"));
        assert_eq!(bearer_token(""), None);
        assert_eq!(bearer_token(&"a".repeat(MAX_AUTHORIZATION_BYTES + 1)), None);
    }

    #[test]
    fn parses_basic_credentials() {
        // "admin:admin" in base64.
        let creds = parse_basic(b"Basic YWRtaW46YWRtaW4=").unwrap();
        assert_eq!(
            (creds.user(), creds.password()),
            (&b"admin"[..], &b"admin"[..])
        );
        assert!(creds.matches(b"admin", b"admin"));
        assert!(!creds.matches(b"admin", b"admin2"));
        assert!(!creds.matches(b"admin", b"admi"));
        assert!(!creds.matches(b"root", b"admin"));
        // The scheme is case-insensitive; a password may contain colons.
        let creds = parse_basic(b"basic  dTpwOmFzczo=").unwrap();
        assert_eq!(
            (creds.user(), creds.password()),
            (&b"u"[..], &b"p:ass:"[..])
        );
        // Empty user and password are representable ("Og==" is ":").
        let empty = parse_basic(b"Basic Og==").unwrap();
        assert!(empty.matches(b"", b""));
    }

    #[test]
    fn refuses_other_inputs() {
        assert_eq!(parse_basic(b"Bearer abc"), Err(AuthError::NotBasic));
        assert_eq!(
            parse_basic(b"Basicx YWRtaW46YWRtaW4="),
            Err(AuthError::NotBasic)
        );
        assert_eq!(parse_basic(b"Basic"), Err(AuthError::Missing));
        assert_eq!(parse_basic(b"Basic   "), Err(AuthError::Missing));
        assert!(matches!(
            parse_basic(b"Basic !!!"),
            Err(AuthError::Base64(_))
        ));
        // "adminadmin" has no colon.
        assert_eq!(
            parse_basic(b"Basic YWRtaW5hZG1pbg=="),
            Err(AuthError::MissingColon)
        );
        let long = [b"Basic ".as_slice(), &[b'A'; MAX_AUTHORIZATION_BYTES]].concat();
        assert_eq!(
            parse_basic(&long),
            Err(AuthError::TooLong {
                limit: MAX_AUTHORIZATION_BYTES
            })
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let creds = parse_basic(b"Basic YWRtaW46aHVudGVyMg==").unwrap();
        assert_eq!(creds.password(), b"hunter2");
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
