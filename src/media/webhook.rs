//! Ant Media-compatible webhooks: `liveStreamStarted` and `liveStreamEnded` for the streams this
//! node owns, posted to each app's `webhook.url`.
//!
//! [`Leases`](super::leases::Leases) calls [`Webhooks::notify`] when it obtains a stream's lease
//! for a publish and when that publish ends or the lease is lost. Only the lease holder does, so
//! each event leaves the cluster once. `notify` only queues (bounded; when the queue is full the
//! event is dropped and counted): the media path never waits on HTTP. One background task per
//! node ([`Outbox::start`]) takes the events in order, signs each one and POSTs it as an HTML
//! form (hyper over TCP, or over rustls with the system's root certificates for `https://`),
//! retrying connection failures, timeouts, 5xx and 429 with exponential backoff ([`Backoff`]).
//! Every attempt of one event carries the same `X-Streamfleet-Delivery` id, so a receiver can
//! drop a repeat (an answer lost on the way back makes one).
//!
//! The form, the signature and the retry policy are sans-IO and tested below.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::task::AbortOnDropHandle;

use crate::cluster::model::StreamKey;
use crate::config::{AppConfig, Secret};
use crate::runtime::Shutdown;

/// Events waiting to be sent; more are dropped (and counted) until the sender catches up.
const QUEUE: usize = 1024;
/// Bound on one attempt: connect, TLS handshake, request and the response's head.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How failed attempts are retried.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    attempts: 5,
    budget: Duration::from_secs(60),
    max_wait: Duration::from_secs(30),
};
/// Bytes of a failed response's body read for the log line; the rest is never read.
const RESPONSE_EXCERPT: usize = 512;
/// Read buffer for a response's head: longer heads fail the attempt (hyper's minimum is 8 KiB).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Headers accepted in a response.
const MAX_RESPONSE_HEADERS: usize = 64;
/// When the node stops, how long queued events still get (one attempt each).
const STOP_FLUSH: Duration = Duration::from_millis(1500);

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "x-streamfleet-signature";
/// The event's `action`.
pub const EVENT_HEADER: &str = "x-streamfleet-event";
/// `{app}/{streamId}/{epoch}/{action}`: the same on every attempt of one event.
pub const DELIVERY_HEADER: &str = "x-streamfleet-delivery";

/// Characters left as they are in a form value (as `application/x-www-form-urlencoded` does).
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// What happened to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// This node obtained the stream's lease for a publish.
    Started,
    /// That publish ended, or another node took the stream over.
    Ended,
}

impl Action {
    /// Ant Media's name for it (the `action` field).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Started => "liveStreamStarted",
            Action::Ended => "liveStreamEnded",
        }
    }
}

/// One event for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The stream.
    pub key: StreamKey,
    /// Epoch of the lease the event belongs to: tells one life of a stream from the next.
    pub epoch: u64,
    /// What happened.
    pub action: Action,
    /// When it happened, in milliseconds since the Unix epoch (not when it was sent).
    pub at_ms: u64,
}

impl Event {
    /// The request body: Ant Media's form fields (`streamName` is the stream id: there is no
    /// separate broadcast name here), then ours (`app`, `epoch`, `timestamp`).
    pub fn form(&self) -> String {
        let fields: [(&str, &str); 5] = [
            ("action", self.action.as_str()),
            ("id", &self.key.stream_id),
            ("streamName", &self.key.stream_id),
            ("category", ""),
            ("app", &self.key.app),
        ];
        let mut out = String::new();
        for (name, value) in fields {
            out.push_str(name);
            out.push('=');
            out.extend(utf8_percent_encode(value, FORM_VALUE));
            out.push('&');
        }
        out.push_str(&format!("epoch={}&timestamp={}", self.epoch, self.at_ms));
        out
    }

    /// The `X-Streamfleet-Delivery` id.
    pub fn delivery_id(&self) -> String {
        format!("{}/{}/{}", self.key, self.epoch, self.action.as_str())
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the `X-Streamfleet-Signature` header.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    // Invariant: HMAC takes keys of any length, so `new_from_slice` cannot fail.
    #[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why the webhooks of a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// An app's `webhook.url` is not an absolute `http://` or `https://` URL (the config checks
    /// this first; the URL is not quoted as it may hold credentials).
    #[error("app {app}: webhook url is not an absolute http:// or https:// URL")]
    Url {
        /// The app.
        app: String,
    },
    /// An `https://` webhook needs root certificates and none could be read from the system.
    #[error("no system root certificate could be read for https:// webhooks ({errors} errors)")]
    NoRoots {
        /// Errors met while reading the system's certificates.
        errors: usize,
        /// The first of them.
        #[source]
        source: Option<rustls_native_certs::Error>,
    },
    /// The TLS client could not be configured.
    #[error("TLS client for https:// webhooks: {source}")]
    Tls {
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },
}

/// Where one app's events go.
#[derive(Debug)]
struct Target {
    /// Host to connect to (an IPv6 address without its brackets).
    host: String,
    /// Port to connect to.
    port: u16,
    /// `Host` header: host and explicit port, without credentials.
    authority: HeaderValue,
    /// Request target: path and query.
    path: String,
    /// For `https://`: the name the server's certificate must hold.
    tls: Option<ServerName<'static>>,
    /// Key of the signature.
    secret: Secret,
    /// The URL without credentials or query, for logs.
    shown: String,
    /// The URL had credentials (`user:password@`): they are not sent.
    had_credentials: bool,
}

impl Target {
    /// Parses an app's `webhook.url` (sans-IO).
    fn parse(url: &str, secret: Secret) -> Option<Target> {
        let uri: Uri = url.parse().ok()?;
        let tls = match uri.scheme_str()? {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let bracketed = uri.host().filter(|h| !h.is_empty())?;
        let host = bracketed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(bracketed)
            .to_owned();
        let authority = match uri.port_u16() {
            Some(p) => format!("{bracketed}:{p}"),
            None => bracketed.to_owned(),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Some(Target {
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls: if tls {
                Some(ServerName::try_from(host.clone()).ok()?)
            } else {
                None
            },
            host,
            shown: format!("{}://{authority}{}", uri.scheme_str()?, uri.path()),
            authority: HeaderValue::from_str(&authority).ok()?,
            path,
            secret,
            had_credentials: uri.authority().is_some_and(|a| a.as_str().contains('@')),
        })
    }

    /// The signed POST of `event` with `body`.
    fn request(
        &self,
        event: &Event,
        body: Bytes,
        signature: &str,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        Request::post(self.path.as_str())
            .header(HOST, self.authority.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                USER_AGENT,
                concat!("streamfleet/", env!("CARGO_PKG_VERSION")),
            )
            .header(EVENT_HEADER, event.action.as_str())
            .header(DELIVERY_HEADER, event.delivery_id())
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(body))
    }
}

/// The webhooks of one node: where [`Leases`](super::leases::Leases) drops its events.
pub struct Webhooks {
    /// Apps with a webhook: events of other apps are not queued.
    apps: Vec<String>,
    queue: mpsc::Sender<Event>,
    /// Events dropped because the queue was full, since the node started.
    dropped: AtomicU64,
    /// The queue is full: the next drop is not logged again, the next success is.
    overflowing: AtomicBool,
}

/// The sending end's input: taken by [`Outbox::start`].
pub struct Outbox {
    queue: mpsc::Receiver<Event>,
    targets: Arc<HashMap<String, Target>>,
}

impl Webhooks {
    /// The webhooks of a node serving `apps`, and the outbox their events queue in.
    pub fn new(apps: &[AppConfig]) -> Result<(Arc<Webhooks>, Outbox), WebhookError> {
        Self::with_capacity(apps, QUEUE)
    }

    fn with_capacity(
        apps: &[AppConfig],
        capacity: usize,
    ) -> Result<(Arc<Webhooks>, Outbox), WebhookError> {
        let mut targets = HashMap::new();
        for app in apps {
            let Some(w) = &app.webhook else { continue };
            let target =
                Target::parse(&w.url, w.secret.clone()).ok_or_else(|| WebhookError::Url {
                    app: app.name.clone(),
                })?;
            targets.insert(app.name.clone(), target);
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let webhooks = Arc::new(Webhooks {
            apps: targets.keys().cloned().collect(),
            queue: tx,
            dropped: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
        });
        Ok((
            webhooks,
            Outbox {
                queue: rx,
                targets: Arc::new(targets),
            },
        ))
    }

    /// Queues `action` for the lease `epoch` of stream `key`, if its app has a webhook. Never
    /// waits: when the queue is full the event is dropped (logged once per overflow, counted).
    pub fn notify(&self, key: &StreamKey, epoch: u64, action: Action) {
        if !self.apps.contains(&key.app) {
            return;
        }
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let event = Event {
            key: key.clone(),
            epoch,
            action,
            at_ms,
        };
        match self.queue.try_send(event) {
            Ok(()) => {
                if self.overflowing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        dropped_total = self.dropped.load(Ordering::Relaxed),
                        "webhook queue has room again"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Full(event)) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        stream = %event.key,
                        action = event.action.as_str(),
                        dropped_total = total,
                        "webhook queue full ({QUEUE} events): dropping events until the receiver catches up"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                tracing::debug!(stream = %event.key, action = event.action.as_str(), "webhook sender stopped; event not sent");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Outbox {
    /// Starts sending, in one background task that ends when the node stops (after a last
    /// attempt at what is still queued). Nothing starts when no app has a webhook.
    pub fn start(self, node: &str, shutdown: &Shutdown) -> Result<(), WebhookError> {
        if self.targets.is_empty() {
            return Ok(());
        }
        let needs_tls = self.targets.values().any(|t| t.tls.is_some());
        let client = Client::new(needs_tls)?;
        for (app, t) in self.targets.iter() {
            tracing::info!(node, app = %app, url = %t.shown, "webhook enabled");
            if t.had_credentials {
                tracing::warn!(node, app = %app, url = %t.shown, "credentials in the webhook url are not sent; receivers check the signature header");
            }
        }
        let courier = Courier {
            queue: self.queue,
            targets: self.targets,
            client,
        };
        shutdown.spawn_service(courier.run(shutdown.clone()));
        Ok(())
    }

    /// The next queued event, if any (tests of the code that queues them).
    #[cfg(test)]
    pub fn try_next(&mut self) -> Option<Event> {
        self.queue.try_recv().ok()
    }
}

/// What an attempt got, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The receiver answered.
    Status {
        /// HTTP status.
        code: u16,
        /// Its `Retry-After`, in seconds form.
        retry_after: Option<Duration>,
    },
    /// No answer: connection, TLS or HTTP failure, or timeout.
    Failed,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 2xx: done.
    Delivered,
    /// A refusal that a retry would not change (4xx but 429, or a redirect, not followed).
    Rejected,
    /// Try again after this wait.
    RetryIn(Duration),
    /// Out of attempts or time.
    GiveUp,
}

/// Exponential backoff for failed attempts (sans-IO).
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Wait after the first failed attempt; doubled after each next one.
    first: Duration,
    /// Attempts at most.
    attempts: u32,
    /// No retry starts later than this after the first attempt began.
    budget: Duration,
    /// Longest wait a receiver's `Retry-After` can ask for.
    max_wait: Duration,
}

impl Backoff {
    /// What to do after attempt number `attempt` (from 1) ended with `outcome`, `elapsed` after
    /// the first attempt began.
    fn verdict(&self, attempt: u32, outcome: Outcome, elapsed: Duration) -> Verdict {
        let asked = match outcome {
            Outcome::Status {
                code: 200..=299, ..
            } => return Verdict::Delivered,
            Outcome::Status {
                code: 429 | 500..=599,
                retry_after,
            } => retry_after,
            Outcome::Status { .. } => return Verdict::Rejected,
            Outcome::Failed => None,
        };
        if attempt >= self.attempts {
            return Verdict::GiveUp;
        }
        let backoff = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let wait = asked.map_or(backoff, |a| a.min(self.max_wait).max(backoff));
        if elapsed.saturating_add(wait) > self.budget {
            Verdict::GiveUp
        } else {
            Verdict::RetryIn(wait)
        }
    }
}

/// `Retry-After` in its seconds form (the date form is ignored: the backoff applies).
fn retry_after(value: &HeaderValue) -> Option<Duration> {
    value
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Up to [`RESPONSE_EXCERPT`] bytes of a response body as one printable line, for a log.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
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
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    /// The start of a non-2xx body, printable.
    excerpt: String,
}

/// One connection per attempt (events are rare; an idle pool would only hold sockets).
struct Client {
    tls: Option<TlsConnector>,
}

impl Client {
    /// A client; with `tls`, able to reach `https://` receivers trusted by the system's roots.
    fn new(tls: bool) -> Result<Client, WebhookError> {
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
    fn with_roots(roots: rustls::RootCertStore) -> Result<Client, WebhookError> {
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
    async fn post(
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
async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Answer, AttemptError>
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
async fn read_excerpt(mut body: Incoming) -> String {
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

/// How an event's delivery ended.
enum Delivery {
    /// Sent, refused or given up (each logged).
    Done,
    /// The node is stopping: the event gets one last attempt.
    Interrupted,
}

/// The background sender.
struct Courier {
    queue: mpsc::Receiver<Event>,
    targets: Arc<HashMap<String, Target>>,
    client: Client,
}

impl Courier {
    /// Sends events in order until the node stops, then gives what is queued (and what the
    /// closing publishers add) one attempt each for [`STOP_FLUSH`].
    async fn run(mut self, shutdown: Shutdown) {
        let mut pending = None;
        loop {
            let event = tokio::select! {
                e = self.queue.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
                () = shutdown.stopped() => break,
            };
            if let Delivery::Interrupted = self.deliver(&event, Some(&shutdown)).await {
                pending = Some(event);
                break;
            }
        }
        let deadline = Instant::now() + STOP_FLUSH;
        loop {
            let event = match pending.take() {
                Some(e) => e,
                None => match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                    Ok(Some(e)) => e,
                    // Every publisher is gone: nothing more can come.
                    Ok(None) => return,
                    Err(_) => break,
                },
            };
            if tokio::time::timeout_at(deadline, self.deliver(&event, None))
                .await
                .is_err()
            {
                pending = Some(event);
                break;
            }
        }
        let left = self.queue.len() + usize::from(pending.is_some());
        if left > 0 {
            tracing::warn!(events = left, "node stopped: webhook events not sent");
        }
    }

    /// Sends `event`, retrying per [`BACKOFF`] while `stop` (the node's shutdown) allows;
    /// without `stop`, one attempt (the node is stopping).
    async fn deliver(&self, event: &Event, stop: Option<&Shutdown>) -> Delivery {
        let Some(target) = self.targets.get(&event.key.app) else {
            return Delivery::Done;
        };
        let body = Bytes::from(event.form());
        let signature = signature(&target.secret, &body);
        let first = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = match target.request(event, body.clone(), &signature) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(stream = %event.key, action = event.action.as_str(), error = %e, "webhook request cannot be built; event dropped");
                    return Delivery::Done;
                }
            };
            let post = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.post(target, request));
            let result = match stop {
                Some(s) => tokio::select! {
                    r = post => r,
                    () = s.stopped() => return Delivery::Interrupted,
                },
                None => post.await,
            };
            let result = result.unwrap_or(Err(AttemptError::Timeout));
            let (outcome, what) = match &result {
                Ok(a) => (
                    Outcome::Status {
                        code: a.status,
                        retry_after: a.retry_after,
                    },
                    format!("HTTP {}", a.status),
                ),
                Err(e) => (Outcome::Failed, e.to_string()),
            };
            let excerpt = result.as_ref().map_or("", |a| a.excerpt.as_str());
            let verdict = match (BACKOFF.verdict(attempt, outcome, first.elapsed()), stop) {
                (Verdict::RetryIn(_), None) => Verdict::GiveUp,
                (v, _) => v,
            };
            match verdict {
                Verdict::Delivered => {
                    tracing::debug!(stream = %event.key, action = event.action.as_str(), epoch = event.epoch, attempt, "webhook delivered");
                    return Delivery::Done;
                }
                Verdict::Rejected => {
                    tracing::warn!(stream = %event.key, action = event.action.as_str(), epoch = event.epoch, url = %target.shown, answer = %what, response = %excerpt, "webhook refused by the receiver; not retried");
                    return Delivery::Done;
                }
                Verdict::GiveUp => {
                    tracing::warn!(stream = %event.key, action = event.action.as_str(), epoch = event.epoch, url = %target.shown, attempts = attempt, last = %what, response = %excerpt, "webhook not delivered; giving up");
                    return Delivery::Done;
                }
                Verdict::RetryIn(wait) => {
                    tracing::info!(stream = %event.key, action = event.action.as_str(), epoch = event.epoch, url = %target.shown, attempt, error = %what, retry_in = ?wait, "webhook attempt failed; retrying");
                    if let Some(s) = stop {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = s.stopped() => return Delivery::Interrupted,
                        }
                    }
                }
            }
        }
    }
}

/// An open app, with a webhook to `url` when given (tests of the code that queues events).
#[cfg(test)]
pub fn test_app(name: &str, url: Option<&str>) -> AppConfig {
    use crate::config::{AppSecurity, PlayRule, PublishRule, WebhookConfig};
    AppConfig {
        name: name.into(),
        security: AppSecurity {
            publish: PublishRule::Open,
            play: PlayRule::Open,
        },
        webhook: url.map(|u| WebhookConfig {
            url: u.into(),
            secret: Secret::new("0123456789abcdef"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action) -> Event {
        Event {
            key: StreamKey::new("live", "cam-1.hd"),
            epoch: 7,
            action,
            at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn form_has_ant_media_fields() {
        assert_eq!(
            event(Action::Started).form(),
            "action=liveStreamStarted&id=cam-1.hd&streamName=cam-1.hd&category=&app=live&epoch=7&timestamp=1700000000123"
        );
        assert_eq!(
            event(Action::Ended).delivery_id(),
            "live/cam-1.hd/7/liveStreamEnded"
        );
        // Values are form-encoded (stream ids cannot hold these, but nothing relies on it).
        let mut odd = event(Action::Ended);
        odd.key = StreamKey::new("a b", "x&y=z/é");
        assert!(
            odd.form()
                .starts_with("action=liveStreamEnded&id=x%26y%3Dz%2F%C3%A9&streamName=x%26y%3Dz%2F%C3%A9&category=&app=a%20b&"),
            "{}",
            odd.form()
        );
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(&Secret::new("Jefe"), b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn targets_parse_without_leaking_credentials_or_query() {
        let t = Target::parse(
            "https://user:pw@hooks.example.com/ant/hook?token=abc",
            Secret::new("k"),
        )
        .unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.shown.as_str()),
            (
                "hooks.example.com",
                443,
                "/ant/hook?token=abc",
                "https://hooks.example.com/ant/hook"
            )
        );
        assert_eq!(t.authority, "hooks.example.com");
        assert!(t.tls.is_some() && t.had_credentials);

        let t = Target::parse("http://[::1]:8080", Secret::new("k")).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.tls.is_none()),
            ("::1", 8080, "/", true)
        );
        assert_eq!(t.authority, "[::1]:8080");
        assert!(!t.had_credentials);

        assert!(Target::parse("ftp://h/x", Secret::new("k")).is_none());
        assert!(Target::parse("/relative", Secret::new("k")).is_none());
    }

    #[test]
    fn request_is_signed_and_identified() {
        let t = Target::parse("http://127.0.0.1:9/hook", Secret::new("k")).unwrap();
        let e = event(Action::Started);
        let body = Bytes::from(e.form());
        let sig = signature(&t.secret, &body);
        let r = t.request(&e, body, &sig).unwrap();
        let h = r.headers();
        assert_eq!(r.uri(), "/hook");
        assert_eq!(h[HOST], "127.0.0.1:9");
        assert_eq!(h[CONTENT_TYPE], "application/x-www-form-urlencoded");
        assert_eq!(h[EVENT_HEADER], "liveStreamStarted");
        assert_eq!(h[DELIVERY_HEADER], "live/cam-1.hd/7/liveStreamStarted");
        assert_eq!(h[SIGNATURE_HEADER], sig.as_str());
    }

    fn status(code: u16) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn retry_policy() {
        let b = BACKOFF;
        let s = Duration::from_secs;
        assert_eq!(b.verdict(1, status(200), s(0)), Verdict::Delivered);
        assert_eq!(b.verdict(1, status(204), s(0)), Verdict::Delivered);
        // Refusals a retry would not change.
        for code in [301, 400, 401, 403, 404, 410] {
            assert_eq!(
                b.verdict(1, status(code), s(0)),
                Verdict::Rejected,
                "{code}"
            );
        }
        // Exponential: 1 s, 2 s, 4 s, 8 s, then out of attempts.
        for (attempt, wait) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
            assert_eq!(
                b.verdict(attempt, status(503), s(0)),
                Verdict::RetryIn(s(wait))
            );
            assert_eq!(
                b.verdict(attempt, Outcome::Failed, s(0)),
                Verdict::RetryIn(s(wait))
            );
        }
        assert_eq!(b.verdict(5, status(500), s(20)), Verdict::GiveUp);
        assert_eq!(b.verdict(2, status(429), s(10)), Verdict::RetryIn(s(2)));
        // Retry-After is honoured up to a bound, never below the backoff.
        let asked = |secs| Outcome::Status {
            code: 429,
            retry_after: Some(s(secs)),
        };
        assert_eq!(b.verdict(1, asked(10), s(0)), Verdict::RetryIn(s(10)));
        assert_eq!(b.verdict(1, asked(3600), s(0)), Verdict::RetryIn(s(30)));
        assert_eq!(b.verdict(3, asked(0), s(0)), Verdict::RetryIn(s(4)));
        // No retry past the time budget.
        assert_eq!(b.verdict(4, status(502), s(55)), Verdict::GiveUp);
        assert_eq!(b.verdict(1, asked(30), s(31)), Verdict::GiveUp);
    }

    #[test]
    fn retry_after_in_seconds_only() {
        assert_eq!(
            retry_after(&HeaderValue::from_static(" 7 ")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(printable(b"bad\r\nrequest\x1b[31m"), "bad  request [31m");
    }

    #[tokio::test]
    async fn notify_queues_only_apps_with_a_webhook_and_never_blocks() {
        let apps = [
            test_app("live", Some("http://127.0.0.1:9/h")),
            test_app("other", None),
        ];
        let (hooks, mut outbox) = Webhooks::with_capacity(&apps, 2).unwrap();
        hooks.notify(&StreamKey::new("other", "s"), 1, Action::Started);
        assert_eq!(outbox.try_next(), None);
        for epoch in 1..=5 {
            hooks.notify(&StreamKey::new("live", "s"), epoch, Action::Started);
        }
        assert_eq!(hooks.dropped(), 3);
        let first = outbox.try_next().unwrap();
        assert_eq!((first.epoch, first.action), (1, Action::Started));
        assert_eq!(outbox.try_next().map(|e| e.epoch), Some(2));
        assert_eq!(outbox.try_next(), None);
        // Room again: queued again.
        hooks.notify(&StreamKey::new("live", "s"), 6, Action::Ended);
        assert_eq!(outbox.try_next().map(|e| e.action), Some(Action::Ended));
    }

    /// One HTTPS exchange with a local server whose certificate the client trusts: the request
    /// arrives whole and signed, the answer's status and a bounded excerpt come back.
    #[tokio::test]
    async fn posts_over_tls() {
        use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Head and the (short) body: until the body's last field has arrived.
            while !String::from_utf8_lossy(&got).contains("&timestamp=1700000000123") {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 503 Busy\r\nretry-after: 3\r\ncontent-length: 2000\r\n\r\n{}",
                "x".repeat(2000)
            );
            tls.write_all(answer.as_bytes()).await.unwrap();
            tls.shutdown().await.unwrap();
            String::from_utf8(got).unwrap()
        });

        let client = Client::with_roots(roots).unwrap();
        let target = Target::parse(
            &format!("https://localhost:{port}/hook?x=1"),
            Secret::new("0123456789abcdef"),
        )
        .unwrap();
        let e = event(Action::Started);
        let body = Bytes::from(e.form());
        let sig = signature(&target.secret, &body);
        let answer = client
            .post(&target, target.request(&e, body, &sig).unwrap())
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.retry_after, answer.excerpt.len()),
            (503, Some(Duration::from_secs(3)), RESPONSE_EXCERPT)
        );
        let request = served.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("post /hook?x=1 http/1.1\r\n"),
            "{request}"
        );
        for line in [
            format!("host: localhost:{port}\r\n"),
            "content-type: application/x-www-form-urlencoded\r\n".into(),
            format!("{SIGNATURE_HEADER}: {sig}\r\n"),
            format!("content-length: {}\r\n", e.form().len()),
        ] {
            assert!(request.contains(&line), "{line:?} missing in {request}");
        }
    }

    #[test]
    fn a_bad_url_names_the_app() {
        let err = Webhooks::new(&[test_app("live", Some("not a url"))])
            .err()
            .unwrap();
        assert!(matches!(err, WebhookError::Url { ref app } if app == "live"));
    }
}
