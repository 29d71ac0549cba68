//! Errors of the load balancer: startup errors (certificates, errorfiles) that stop the
//! process naming the file, and per-connection proxy errors that say which side failed and
//! whether another server may be tried, with the one mapping from a proxy error to the status
//! the client gets.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use streamfleet_proto::http::response::ErrorFileError;
use streamfleet_proto::http::{HttpError, Side, error_status};

/// Why an LB node could not start.
#[derive(Debug, thiserror::Error)]
pub enum LbStartError {
    /// A certificate file is missing or unreadable.
    #[error("node {node}: cannot read TLS certificate file {}", file.display())]
    CertRead {
        /// Node name.
        node: String,
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A certificate file holds no usable chain or key, or a key that does not match.
    #[error("node {node}: TLS certificate file {}: {what}", file.display())]
    CertInvalid {
        /// Node name.
        node: String,
        /// The file.
        file: PathBuf,
        /// What is wrong.
        what: &'static str,
        /// What the PEM reader or rustls reported, when it did.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A self-signed certificate could not be generated or written.
    #[error("node {node}: cannot create self-signed certificate {}", file.display())]
    SelfSigned {
        /// Node name.
        node: String,
        /// The file.
        file: PathBuf,
        /// What failed (certificate generation or the file system).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An errorfile is missing or unreadable.
    #[error("node {node}: cannot read errorfile {}", file.display())]
    ErrorFileRead {
        /// Node name.
        node: String,
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An errorfile is not a valid HTTP response.
    #[error("node {node}: invalid errorfile")]
    ErrorFileInvalid {
        /// Node name.
        node: String,
        /// What is wrong (names the file).
        #[source]
        source: ErrorFileError,
    },
    /// A bound frontend listener could not be handed to the event-loop threads.
    #[error("node {node}: listener {listener} cannot be served")]
    Listener {
        /// Node name.
        node: String,
        /// `node/frontend:name@addr`.
        listener: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The event-loop threads (`threads`) could not be started.
    #[error("node {node}: `threads`: cannot start {threads} event-loop threads")]
    Threads {
        /// Node name.
        node: String,
        /// How many were asked for.
        threads: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An errorfile's status line does not match the code it is configured for.
    #[error("node {node}: errorfile {} answers {found} but is configured for {code}", file.display())]
    ErrorFileStatus {
        /// Node name.
        node: String,
        /// The file.
        file: PathBuf,
        /// Configured status.
        code: u16,
        /// Status on the file's status line.
        found: u16,
    },
}

/// Why one proxied exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Reading from or writing to the client failed.
    #[error("downstream i/o")]
    DownstreamIo(#[source] io::Error),
    /// The client closed before sending a whole request.
    #[error("client closed the connection mid-request")]
    DownstreamClosed,
    /// The client sent nothing in time (`timeouts.client`).
    #[error("client timeout")]
    DownstreamTimeout,
    /// The client's or the server's bytes broke HTTP.
    #[error("invalid HTTP from the {}", side_name(*.side))]
    Http {
        /// Who sent the bytes.
        side: Side,
        /// What is wrong.
        #[source]
        source: HttpError,
    },
    /// Connecting to a server failed or timed out (another server may be tried).
    #[error("cannot connect to {addr}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// The OS error (`TimedOut` for `timeouts.connect`).
        #[source]
        source: io::Error,
    },
    /// The server did not answer in time (`timeouts.server`).
    #[error("server timeout")]
    UpstreamTimeout,
    /// Reading from or writing to the server failed, or it closed early.
    #[error("upstream i/o")]
    UpstreamIo(#[source] io::Error),
    /// No server of the backend is UP.
    #[error("no server available")]
    NoServer,
    /// An HTTP/2 protocol error.
    #[error("HTTP/2")]
    H2(#[source] h2::Error),
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Downstream => "client",
        Side::Upstream => "server",
    }
}

impl ProxyError {
    /// Which side failed (`None` when the LB itself had nothing to offer).
    pub fn side(&self) -> Option<Side> {
        match self {
            ProxyError::DownstreamIo(_)
            | ProxyError::DownstreamClosed
            | ProxyError::DownstreamTimeout
            | ProxyError::H2(_) => Some(Side::Downstream),
            ProxyError::Http { side, .. } => Some(*side),
            ProxyError::Connect { .. }
            | ProxyError::UpstreamTimeout
            | ProxyError::UpstreamIo(_) => Some(Side::Upstream),
            ProxyError::NoServer => None,
        }
    }

    /// Whether the request may be sent to another server: only when nothing reached the
    /// first one.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect { .. })
    }

    /// The status the client gets, when it can still get one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::DownstreamTimeout => Some(408),
            ProxyError::Http { side, source } => Some(error_status(*side, source)),
            ProxyError::Connect { .. } | ProxyError::NoServer => Some(503),
            ProxyError::UpstreamTimeout => Some(504),
            ProxyError::UpstreamIo(_) => Some(502),
            ProxyError::DownstreamIo(_) | ProxyError::DownstreamClosed | ProxyError::H2(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_proto::http::HeadError;

    #[test]
    fn statuses_and_sides() {
        let smuggle = ProxyError::Http {
            side: Side::Downstream,
            source: HeadError::ContentLengthWithTransferEncoding.into(),
        };
        assert_eq!(smuggle.status(), Some(400));
        let big = ProxyError::Http {
            side: Side::Downstream,
            source: HeadError::TooLarge { limit: 1 }.into(),
        };
        assert_eq!(big.status(), Some(431));
        assert_eq!(ProxyError::UpstreamTimeout.status(), Some(504));
        assert_eq!(ProxyError::DownstreamTimeout.status(), Some(408));
        assert_eq!(ProxyError::NoServer.status(), Some(503));
        let refused = ProxyError::Connect {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.retry_safe());
        assert_eq!(refused.side(), Some(Side::Upstream));
        assert!(!ProxyError::UpstreamTimeout.retry_safe());
        assert_eq!(ProxyError::DownstreamClosed.status(), None);
    }
}
