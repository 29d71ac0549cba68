//! Sans-IO HTTP/1.x for the load balancer: heads are parsed into validated facts, bodies are
//! tracked (never re-encoded) so they can be forwarded byte for byte, and heads are written
//! back out with the proxy's edits.
//!
//! Data flow for one proxied exchange:
//! client bytes -> [`RequestParser`] -> [`RequestHead`] -> [`find_server_cookie`] (sticky)
//! -> [`write_request_head`] upstream -> [`BodyReader`] forwards the request body verbatim
//! -> upstream bytes -> [`ResponseParser`] -> [`ResponseHead`] -> [`write_response_head`]
//! (Set-Cookie prefix) to the client -> [`BodyReader`] forwards the response body.
//! Errors map to the answer through [`error_status`]; the answers the LB makes itself are in
//! [`response`] and Basic auth for the stats page is in [`auth`].
//!
//! - `head`: limits, header list, shared header checks (`HeadError`); `scan`: finding the
//!   end of a head in linear time.
//! - `request_head` / `response_head`: the two parsers.
//! - `body`: [`BodyReader`] and chunk writing helpers.
//! - `write`: head writers; `h2_parts`: request heads for requests from HTTP/2.
//! - [`cookie`]: HAProxy `cookie ... prefix` sticky sessions.
//! - [`response`]: the LB's own responses and errorfile validation.
//! - [`auth`]: Basic authentication.

pub mod auth;
mod body;
pub mod cookie;
mod h2_parts;
mod head;
mod request_head;
pub mod response;
mod response_head;
mod scan;
mod write;

pub use body::{
    BodyError, BodyFraming, BodyLimits, BodyProgress, BodyReader, CHUNK_END,
    DEFAULT_MAX_CHUNK_EXTENSION, DEFAULT_MAX_TRAILER_BYTES, LAST_CHUNK, MAX_CHUNK_SIZE_DIGITS,
    write_chunk_head,
};
pub use cookie::{CookieStrip, ServerCookie, SetCookiePrefix, find_server_cookie};
pub use h2_parts::{PartsBody, PartsError, RequestParts, write_request_from_parts};
pub use head::{
    DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADERS, HeadError, HeadLimits, Header, HeaderIter,
    MAX_HEAD_BYTES_CEILING, MAX_HEADERS_CEILING, Version,
};
pub use request_head::{RequestHead, RequestParser};
pub use response_head::{ResponseHead, ResponseParser};
pub use scan::MAX_LEADING_EMPTY_LINE_BYTES;
pub use write::{
    ForwardedProto, RequestEdits, ResponseEdits, is_hop_by_hop, write_request_head,
    write_response_head, write_websocket_request_head,
};

/// Which peer produced the bytes that failed to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: its mistakes are answered with a 4xx.
    Downstream,
    /// The upstream server: its mistakes are answered to the client with 502.
    Upstream,
}

/// Any error from this module's parsers, for [`error_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// A request or response head was refused.
    #[error("invalid message head")]
    Head(
        #[from]
        #[source]
        HeadError,
    ),
    /// A message body's framing was refused.
    #[error("invalid message body")]
    Body(
        #[from]
        #[source]
        BodyError,
    ),
    /// An HTTP/2 request could not be expressed as HTTP/1.1.
    #[error("invalid HTTP/2 request")]
    Parts(
        #[from]
        #[source]
        PartsError,
    ),
}

/// The status to answer the client with after `error` from `side`: 502 for anything an
/// upstream got wrong; for clients 431 for oversized heads, 405 for CONNECT, 400 otherwise
/// (every smuggling attempt included).
pub fn error_status(side: Side, error: &HttpError) -> u16 {
    if side == Side::Upstream {
        return 502;
    }
    match error {
        HttpError::Head(HeadError::TooLarge { .. } | HeadError::TooManyHeaders { .. })
        | HttpError::Parts(PartsError::TooManyHeaders { .. }) => 431,
        HttpError::Head(HeadError::ConnectNotSupported)
        | HttpError::Parts(PartsError::ConnectNotSupported) => 405,
        HttpError::Head(_) | HttpError::Body(_) | HttpError::Parts(_) => 400,
    }
}

/// The value of the first `name=value` pair of a query string (`a=1&token=xyz`), as written
/// (not percent-decoded).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_by_name() {
        assert_eq!(query_param("a=1&token=xyz&tok=2", "token"), Some("xyz"));
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(query_param("token=", "token"), Some(""));
        assert_eq!(query_param("", "token"), None);
    }

    #[test]
    fn maps_errors_to_statuses() {
        let down = |e: HttpError| error_status(Side::Downstream, &e);
        assert_eq!(down(HeadError::TooLarge { limit: 1 }.into()), 431);
        assert_eq!(down(HeadError::TooManyHeaders { limit: 1 }.into()), 431);
        assert_eq!(down(HeadError::ConnectNotSupported.into()), 405);
        assert_eq!(down(PartsError::ConnectNotSupported.into()), 405);
        assert_eq!(
            down(HeadError::ContentLengthWithTransferEncoding.into()),
            400
        );
        assert_eq!(down(HeadError::ObsFold.into()), 400);
        assert_eq!(down(BodyError::InvalidChunkSize.into()), 400);
        assert_eq!(down(PartsError::InvalidPath.into()), 400);
        let up = HttpError::from(HeadError::TooLarge { limit: 1 });
        assert_eq!(error_status(Side::Upstream, &up), 502);
        assert_eq!(
            error_status(Side::Upstream, &BodyError::Truncated.into()),
            502
        );
        // Every status mapped here has a built-in page.
        for status in [400, 405, 431, 502] {
            assert!(response::error_response(status).is_some());
        }
    }

    #[test]
    fn errors_keep_their_cause() {
        let error = HttpError::from(HeadError::DuplicateContentLength);
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("duplicate Content-Length header"));
    }
}
