//! The load balancer's own responses, as complete byte strings: HAProxy-style error pages,
//! the Basic-auth challenge and the HTTPS redirect; plus validation of operator-supplied
//! errorfiles (raw HTTP responses that replace the built-in pages).
//!
//! Data flow: the L7 proxy picks a status (often via [`super::error_status`]) -> the static
//! bytes from [`error_response`] (or the configured [`ErrorFile`]) are written to the client,
//! which is then closed. Errorfiles are read by the config loader and handed to
//! [`parse_errorfile`] at startup, so a broken file stops startup with an error naming it.

use bytes::{BufMut, Bytes, BytesMut};

use super::body::BodyFraming;
use super::head::{HeadError, HeadLimits};
use super::response_head::ResponseParser;

/// Defines a static HAProxy-style error page; a test checks each Content-length.
macro_rules! page {
    ($status:literal $reason:literal, $len:literal, $text:literal) => {
        concat!(
            "HTTP/1.1 ",
            $status,
            " ",
            $reason,
            "\r\n",
            "Content-length: ",
            $len,
            "\r\n",
            "Cache-Control: no-cache\r\n",
            "Connection: close\r\n",
            "Content-Type: text/html\r\n",
            "\r\n",
            "<html><body><h1>",
            $status,
            " ",
            $reason,
            "</h1>\n",
            $text,
            "\n</body></html>\n"
        )
        .as_bytes()
    };
}

const BAD_REQUEST: &[u8] =
    page!("400" "Bad request", "90", "Your browser sent an invalid request.");
const FORBIDDEN: &[u8] =
    page!("403" "Forbidden", "93", "Request forbidden by administrative rules.");
const METHOD_NOT_ALLOWED: &[u8] = page!(
    "405" "Method Not Allowed",
    "146",
    "A request was made of a resource using a request method not supported by that resource"
);
const REQUEST_TIMEOUT: &[u8] = page!(
    "408" "Request Time-out",
    "110",
    "Your browser didn't send a complete request in time."
);
const HEADERS_TOO_LARGE: &[u8] = page!(
    "431" "Request Header Fields Too Large",
    "134",
    "Your browser sent a request header section that is too large."
);
const INTERNAL_ERROR: &[u8] =
    page!("500" "Internal Server Error", "97", "An internal server error occurred.");
const BAD_GATEWAY: &[u8] = page!(
    "502" "Bad Gateway",
    "107",
    "The server returned an invalid or incomplete response."
);
const SERVICE_UNAVAILABLE: &[u8] = page!(
    "503" "Service Unavailable",
    "107",
    "No server is available to handle this request."
);
const GATEWAY_TIMEOUT: &[u8] =
    page!("504" "Gateway Time-out", "92", "The server didn't respond in time.");

/// Body of the 401 page (its head carries the realm, so it is built per realm).
const UNAUTHORIZED_BODY: &[u8] = b"<html><body><h1>401 Unauthorized</h1>\n\
You need a valid user and password to access this content.\n</body></html>\n";

/// The built-in page for `status` (400, 403, 405, 408, 431, 500, 502, 503 or 504), ending
/// with `Connection: close`. `None` for other statuses; 401 needs a realm ([`unauthorized`]).
pub fn error_response(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        400 => BAD_REQUEST,
        403 => FORBIDDEN,
        405 => METHOD_NOT_ALLOWED,
        408 => REQUEST_TIMEOUT,
        431 => HEADERS_TOO_LARGE,
        500 => INTERNAL_ERROR,
        502 => BAD_GATEWAY,
        503 => SERVICE_UNAVAILABLE,
        504 => GATEWAY_TIMEOUT,
        _ => return None,
    })
}

/// The 401 challenge for `realm` (`WWW-Authenticate: Basic realm="..."`). Quotes and
/// backslashes in the realm are escaped and control characters dropped, so the result is
/// always a well-formed response.
pub fn unauthorized(realm: &str) -> Bytes {
    const HEAD: &[u8] = b"HTTP/1.1 401 Unauthorized\r\n\
Content-length: 112\r\n\
Cache-Control: no-cache\r\n\
Connection: close\r\n\
Content-Type: text/html\r\n\
WWW-Authenticate: Basic realm=\"";
    let mut out =
        BytesMut::with_capacity(HEAD.len() + realm.len() * 2 + 5 + UNAUTHORIZED_BODY.len());
    out.put_slice(HEAD);
    for &b in realm.as_bytes() {
        match b {
            b'"' | b'\\' => out.put_slice(&[b'\\', b]),
            b if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => out.put_u8(b),
            _ => {}
        }
    }
    out.put_slice(b"\"\r\n\r\n");
    out.put_slice(UNAUTHORIZED_BODY);
    out.freeze()
}

/// Writes HAProxy's `redirect scheme https` answer: `302 Found` to
/// `https://<host><path and query>`, the Host verbatim (empty without one, as HAProxy does),
/// `/` for a `*` target. `close` adds `Connection: close` (HAProxy sends it when the request
/// body has not been read).
pub fn write_https_redirect(
    host: Option<&[u8]>,
    path_and_query: &[u8],
    close: bool,
    dst: &mut BytesMut,
) {
    let host = host.unwrap_or_default();
    let path = if path_and_query == b"*" {
        b"/".as_slice()
    } else {
        path_and_query
    };
    let connection: &[u8] = if close { b"Connection: close\r\n" } else { b"" };
    let parts: [&[u8]; 8] = [
        b"HTTP/1.1 302 Found\r\n",
        connection,
        b"Content-Length: 0\r\nLocation: https://",
        host,
        path,
        b"\r\n",
        b"Cache-Control: no-cache\r\n",
        b"\r\n",
    ];
    dst.reserve(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        dst.put_slice(part);
    }
}

/// An operator-supplied error response, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFile {
    /// Status code on its status line.
    pub status: u16,
    /// The whole response, sent verbatim.
    pub response: Bytes,
    /// True when it has no Content-Length: its body ends where the connection does, so the
    /// connection must be closed after sending it (HAProxy's sample errorfiles are like that).
    pub close_delimited: bool,
}

/// Problems in an errorfile; each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorFileError {
    /// The head does not parse as an HTTP/1.x response.
    #[error("errorfile {file}: invalid response head")]
    Head {
        /// The file, as named in the configuration.
        file: String,
        /// What is wrong with the head.
        #[source]
        source: HeadError,
    },
    /// No empty line ends the head.
    #[error("errorfile {file}: the response head is not terminated by an empty line")]
    Incomplete {
        /// The file, as named in the configuration.
        file: String,
    },
    /// An interim (1xx) status, which cannot end an exchange.
    #[error("errorfile {file}: status {status} is not a final status")]
    InterimStatus {
        /// The file, as named in the configuration.
        file: String,
        /// The status found.
        status: u16,
    },
    /// Transfer-Encoding: the body must be sent as it is.
    #[error("errorfile {file}: Transfer-Encoding is not allowed, use Content-Length")]
    TransferEncoding {
        /// The file, as named in the configuration.
        file: String,
    },
    /// Content-Length does not match the body in the file.
    #[error("errorfile {file}: Content-Length is {declared} but the body has {actual} bytes")]
    LengthMismatch {
        /// The file, as named in the configuration.
        file: String,
        /// The Content-Length value.
        declared: u64,
        /// The body length in the file.
        actual: usize,
    },
}

/// Validates the raw bytes of errorfile `file` (as named in the configuration).
pub fn parse_errorfile(file: &str, bytes: &[u8]) -> Result<ErrorFile, ErrorFileError> {
    let mut parser = ResponseParser::new(HeadLimits::default());
    let head = match parser.parse(bytes) {
        Ok(Some(head)) => head,
        Ok(None) => {
            return Err(ErrorFileError::Incomplete {
                file: file.to_owned(),
            });
        }
        Err(source) => {
            return Err(ErrorFileError::Head {
                file: file.to_owned(),
                source,
            });
        }
    };
    if head.is_interim() {
        return Err(ErrorFileError::InterimStatus {
            file: file.to_owned(),
            status: head.status(),
        });
    }
    let body_len = bytes.len() - head.head_len();
    let close_delimited = match head.framing(false) {
        BodyFraming::Chunked => {
            return Err(ErrorFileError::TransferEncoding {
                file: file.to_owned(),
            });
        }
        BodyFraming::ContentLength(declared) if declared != body_len as u64 => {
            return Err(ErrorFileError::LengthMismatch {
                file: file.to_owned(),
                declared,
                actual: body_len,
            });
        }
        BodyFraming::CloseDelimited => true,
        BodyFraming::ContentLength(_) | BodyFraming::None => false,
    };
    Ok(ErrorFile {
        status: head.status(),
        response: Bytes::copy_from_slice(bytes),
        close_delimited,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseParser;

    #[test]
    fn built_in_pages_are_well_formed_with_exact_lengths() {
        for status in [400, 403, 405, 408, 431, 500, 502, 503, 504] {
            let bytes = error_response(status).unwrap();
            let head = ResponseParser::default().parse(bytes).unwrap().unwrap();
            assert_eq!(head.status(), status);
            let body = bytes.len() - head.head_len();
            assert_eq!(
                head.framing(false),
                BodyFraming::ContentLength(body as u64),
                "{status}"
            );
            assert!(!head.keep_alive(false), "{status} closes");
        }
        assert_eq!(error_response(404), None);
        assert_eq!(error_response(401), None);
    }

    #[test]
    fn bad_request_is_byte_identical_to_haproxy() {
        assert_eq!(
            error_response(400).unwrap(),
            b"HTTP/1.1 400 Bad request\r\n\
Content-length: 90\r\n\
Cache-Control: no-cache\r\n\
Connection: close\r\n\
Content-Type: text/html\r\n\
\r\n\
<html><body><h1>400 Bad request</h1>\n\
Your browser sent an invalid request.\n\
</body></html>\n"
        );
    }

    #[test]
    fn unauthorized_carries_the_realm() {
        let bytes = unauthorized("Haproxy Statistics");
        let head = ResponseParser::default().parse(&bytes).unwrap().unwrap();
        assert_eq!(head.status(), 401);
        assert_eq!(
            head.header_value(b"www-authenticate"),
            Some(&b"Basic realm=\"Haproxy Statistics\""[..])
        );
        let body = bytes.len() - head.head_len();
        assert_eq!(head.framing(false), BodyFraming::ContentLength(body as u64));
        let odd = unauthorized("a\"b\\c\r\nX: y");
        let head = ResponseParser::default().parse(&odd).unwrap().unwrap();
        assert_eq!(
            head.header_value(b"www-authenticate"),
            Some(&b"Basic realm=\"a\\\"b\\\\cX: y\""[..])
        );
        assert_eq!(head.headers().count(), 5, "no header injected");
    }

    #[test]
    fn https_redirect_like_haproxy() {
        let mut dst = BytesMut::new();
        write_https_redirect(
            Some(b"example.com:80"),
            b"/live/a.m3u8?t=1",
            false,
            &mut dst,
        );
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 302 Found\r\n\
Content-Length: 0\r\n\
Location: https://example.com:80/live/a.m3u8?t=1\r\n\
Cache-Control: no-cache\r\n\
\r\n"
        );
        let mut dst = BytesMut::new();
        write_https_redirect(None, b"*", true, &mut dst);
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 302 Found\r\n\
Connection: close\r\n\
Content-Length: 0\r\n\
Location: https:///\r\n\
Cache-Control: no-cache\r\n\
\r\n"
        );
    }

    #[test]
    fn errorfiles_are_validated() {
        // HAProxy's sample errorfile: HTTP/1.0, no Content-Length.
        let sample = b"HTTP/1.0 503 Service Unavailable\r\n\
Cache-Control: no-cache\r\n\
Connection: close\r\n\
Content-Type: text/html\r\n\
\r\n\
<html><body><h1>503 Service Unavailable</h1>\n\
No server is available to handle this request.\n\
</body></html>\n";
        let parsed = parse_errorfile("errors/503.http", sample).unwrap();
        assert_eq!((parsed.status, parsed.close_delimited), (503, true));
        assert_eq!(&parsed.response[..], sample);

        let exact = b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy";
        assert!(!parse_errorfile("ok.http", exact).unwrap().close_delimited);
        assert_eq!(
            parse_errorfile(
                "short.http",
                b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nbusy"
            ),
            Err(ErrorFileError::LengthMismatch {
                file: "short.http".into(),
                declared: 5,
                actual: 4
            })
        );
        assert_eq!(
            parse_errorfile("cut.http", b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n"),
            Err(ErrorFileError::Incomplete {
                file: "cut.http".into()
            })
        );
        assert_eq!(
            parse_errorfile(
                "te.http",
                b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            Err(ErrorFileError::TransferEncoding {
                file: "te.http".into()
            })
        );
        assert_eq!(
            parse_errorfile("1xx.http", b"HTTP/1.1 100 Continue\r\n\r\n"),
            Err(ErrorFileError::InterimStatus {
                file: "1xx.http".into(),
                status: 100
            })
        );
        let error = parse_errorfile("bad.http", b"<html>oops</html>\r\n\r\n").unwrap_err();
        assert!(error.to_string().contains("bad.http"), "{error}");
    }
}
