//! One webhook attempt over HTTP/1.1: a connection per attempt (plain TCP, or rustls with the
//! system roots for `https://`), the request, the head of the answer and a bounded excerpt of
//! a failed answer's body.

use super::*;

/// Bound on one attempt: connect, TLS handshake, request and the response's head.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a failed response's body read for the log line; the rest is never read.
pub(super) const RESPONSE_EXCERPT: usize = 512;
/// Read buffer for a response's head: longer heads fail the attempt (hyper's minimum is 8 KiB).
pub(super) const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Headers accepted in a response.
pub(super) const MAX_RESPONSE_HEADERS: usize = 64;

/// Up to [`RESPONSE_EXCERPT`] bytes of a response body as one printable line, for a log.
pub(super) fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// The receiver could not be resolved or reached.
    #[error("cannot connect: {source}")]
    Connect {
        /// What the socket reported.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS handshake: {source}")]
    Tls {
        /// What rustls reported.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (closed early, malformed or oversized response).
    #[error("HTTP: {source}")]
    Http {
        /// What hyper reported.
        #[source]
        source: hyper::Error,
    },
    /// No answer within [`ATTEMPT_TIMEOUT`].
    #[error("no answer within {ATTEMPT_TIMEOUT:?}")]
    Timeout,
    /// An `https://` target without a TLS client (cannot happen: the client is made with TLS
    /// when any target needs it).
    #[error("no TLS client")]
    NoTls,
}

/// What the receiver answered.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    /// The start of a non-2xx body, printable.
    pub(super) excerpt: String,
}

/// One connection per attempt (events are rare; an idle pool would only hold sockets).
pub(super) struct Client {
    pub(super) tls: Option<TlsConnector>,
}

impl Client {
    /// A client; with `tls`, able to reach `https://` receivers trusted by the system's roots.
    pub(super) fn new(tls: bool) -> Result<Client, WebhookError> {
        if !tls {
            return Ok(Client { tls: None });
        }
        let loaded = rustls_native_certs::load_native_certs();
        let errors = loaded.errors.len();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(WebhookError::NoRoots {
                errors,
                source: loaded.errors.into_iter().next(),
            });
        }
        if errors > 0 {
            tracing::warn!(
                errors,
                roots = added,
                "some system root certificates could not be read"
            );
        }
        Self::with_roots(roots)
    }

    /// A client for `https://` receivers whose certificates chain to `roots`.
    pub(super) fn with_roots(roots: rustls::RootCertStore) -> Result<Client, WebhookError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| WebhookError::Tls { source })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            tls: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    /// Sends `request` to `target` once.
    pub(super) async fn post(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<Answer, AttemptError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| AttemptError::Connect { source })?;
        match &target.tls {
            None => exchange(tcp, request).await,
            Some(name) => {
                let connector = self.tls.as_ref().ok_or(AttemptError::NoTls)?;
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| AttemptError::Tls { source })?;
                exchange(tls, request).await
            }
        }
    }
}

/// One HTTP/1.1 request and the head of its answer on `io` (and a bounded piece of the body
/// when it is not a success).
pub(super) async fn exchange<IO>(
    io: IO,
    request: Request<Full<Bytes>>,
) -> Result<Answer, AttemptError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEAD)
        .max_headers(MAX_RESPONSE_HEADERS)
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|source| AttemptError::Http { source })?;
    // The connection is driven beside the exchange and closed with it.
    let _conn = AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "webhook connection ended with an error");
        }
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|source| AttemptError::Http { source })?;
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(retry_after);
    let excerpt = if status.is_success() {
        String::new()
    } else {
        read_excerpt(response.into_body()).await
    };
    Ok(Answer {
        status: status.as_u16(),
        retry_after,
        excerpt,
    })
}

/// The first [`RESPONSE_EXCERPT`] bytes of `body`, printable; the rest is never read.
pub(super) async fn read_excerpt(mut body: Incoming) -> String {
    let mut buf = Vec::new();
    while buf.len() < RESPONSE_EXCERPT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = RESPONSE_EXCERPT - buf.len();
                    buf.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    printable(&buf)
}
