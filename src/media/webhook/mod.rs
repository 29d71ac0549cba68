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
/// How failed attempts are retried.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    attempts: 5,
    budget: Duration::from_secs(60),
    max_wait: Duration::from_secs(30),
};
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

mod client;
mod retry;
#[cfg(test)]
mod tests;

use client::*;
use retry::*;
