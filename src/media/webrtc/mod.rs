//! WebRTC playback (WHEP): one UDP socket per node shared by every session, str0m (sans-IO)
//! driving each session, ICE-lite with one host candidate (`advertise` and the bound port).
//!
//! Data flow: a WHEP offer (`http::whep`) -> [`WebRtc::open`] builds the session's `Rtc`, answers
//! the offer and spawns `session::run` with a hub subscription -> the UDP task
//! ([`WebRtc::serve`]) reads every datagram and hands it to its session: by source address once
//! known, else by the STUN `USERNAME` (our ufrag) of a connectivity check; anything else is
//! dropped after a few byte compares -> the session feeds it to its `Rtc`, which answers ICE,
//! runs DTLS-SRTP and, once connected, packetizes H.264 from the hub (`h264`) onto the same
//! socket.
//!
//! Ant Media's WebSocket signalling (`http::websocket`) has the server offer instead:
//! [`WebRtc::offer`] builds the `Rtc` and its offer and registers the session at once (the
//! browser's checks may arrive before its answer; they wait in the inbox), and
//! [`WebRtc::accept_answer`] applies the viewer's answer and spawns the same `session::run`.
//!
//! - `stun`: the ufrag of a STUN request; `h264`: hub frames to Annex-B and RTP time;
//! - `session`: one viewer's task; `signal`: Ant Media's signalling messages (sans-IO);
//! - `opus`: AAC to Opus; `audio`: one Opus feed per stream shared by its sessions;
//! - `metrics`: the node's WebRTC counters;
//! - `publish`: WebRTC publishers (WHIP): RTP in, H.264 and AAC (from the Opus) into the hub;
//! - `ladder`: the renditions a viewer may get; `switch`: changing rendition at a keyframe;
//!   `abr`: the bandwidth-driven choice (sans-IO).
//!
//! Limits: `webrtc.max_sessions` per node and `webrtc.max_sessions_per_address` per client
//! address, both counted from the offer until the session ends.

mod abr;
mod audio;
mod h264;
mod ladder;
mod metrics;
mod notify;
mod opus;
pub mod publish;
mod sdp;
mod session;
pub mod signal;
mod stun;
mod switch;
#[cfg(test)]
mod tests;

pub use self::notify::{Control, Notifier, SessionEvent};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::crypto::CryptoProvider;
use str0m::media::Mid;
use str0m::{Candidate, IceCreds, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, HubKey, Hubs, SubscriberKind, Subscription};
use crate::cluster::model::StreamKey;
use crate::config::WebRtcConfig;
use crate::runtime::Shutdown;
pub use metrics::WebRtcMetrics;
use sdp::{answer, answers_video, offers_h264, server_offer};
use streamfleet_proto::names::RenditionId;

/// A session that has not finished ICE and DTLS this long after its offer is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams waiting for one session's task.
const INBOX: usize = 256;
/// Control messages waiting for one session's task (a viewer forcing qualities in a loop
/// loses the extra ones).
const CONTROLS: usize = 4;
/// Largest datagram read (larger ones are truncated and then fail to parse).
const MAX_DATAGRAM: usize = 2048;

/// When a frame published at `published_us` (Unix µs, 0 = unknown) entered the cluster, on
/// the monotonic clock of `now`; never later than `now`. Both tracks' sender reports use it,
/// so the browser's lip sync sees when the media was live, not when a session sent it.
fn published_at(published_us: u64, now: Instant) -> Instant {
    if published_us == 0 {
        return now;
    }
    let age = crate::media::relay::unix_us().saturating_sub(published_us);
    now.checked_sub(Duration::from_micros(age)).unwrap_or(now)
}

/// Why a WHEP offer was not answered.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// The offer is not SDP str0m can read.
    #[error("malformed SDP offer: {0}")]
    MalformedOffer(#[source] str0m::error::SdpError),
    /// The offer has no H.264 video the stream could be sent as.
    #[error("the offer has no H.264 video with packetization-mode=1 (this stream is H.264 {0})")]
    NoH264(String),
    /// The stream has no video track (yet).
    #[error("the stream has no H.264 video")]
    NoVideo,
    /// The node holds `webrtc.max_sessions` sessions.
    #[error("this node serves its maximum of {0} WebRTC sessions")]
    Full(usize),
    /// The client's address holds `webrtc.max_sessions_per_address` sessions.
    #[error(
        "{1} already holds {0} WebRTC sessions on this node, its maximum (webrtc.max_sessions_per_address)"
    )]
    AddressFull(usize, IpAddr),
    /// str0m refused the offer.
    #[error("cannot answer the offer: {0}")]
    Answer(#[source] str0m::RtcError),
    /// The host candidate could not be made.
    #[error("no host candidate for {0}")]
    Candidate(SocketAddr),
    /// str0m made no offer (it had no change to offer).
    #[error("no SDP offer could be made")]
    NoOffer,
    /// The viewer's answer is not SDP str0m can read.
    #[error("malformed SDP answer: {0}")]
    MalformedAnswer(#[source] str0m::error::SdpError),
    /// str0m refused the viewer's answer.
    #[error("cannot accept the answer: {0}")]
    Negotiate(#[source] str0m::RtcError),
    /// The viewer's answer refuses the video m-line.
    #[error("the answer refuses the H.264 video")]
    VideoRefused,
    /// A trickled candidate str0m cannot read.
    #[error("malformed ICE candidate")]
    MalformedCandidate,
    /// A publisher's offer sends no H.264 video.
    #[error(
        "the offer sends no H.264 video with packetization-mode=1 (streamfleet ingests H.264 and Opus)"
    )]
    PublishNoH264,
}

/// One received datagram, on its way to a session.
#[derive(Debug)]
struct Datagram {
    /// When it was read.
    at: Instant,
    /// Who sent it.
    source: SocketAddr,
    /// Its bytes.
    bytes: Bytes,
}

/// What the registry knows of a session.
#[derive(Debug)]
struct Entry {
    /// The stream played: the WHEP resource is under its path only.
    stream: HubKey,
    /// Our ICE ufrag (the STUN username's first half).
    ufrag: String,
    /// Its inbox.
    inbox: mpsc::Sender<Datagram>,
    /// Cancelled by `DELETE`.
    cancel: CancellationToken,
    /// `forceStreamQuality` and the like.
    control: mpsc::Sender<Control>,
    /// A publisher's session (WHIP, Ant Media `publish`), not a viewer's: the WHEP resource
    /// of the same stream does not reach it, nor the WHIP resource a viewer's.
    publisher: bool,
}

/// Open sessions by id, and session ids by ufrag.
#[derive(Debug, Default)]
struct SessionTable {
    by_id: HashMap<String, Entry>,
    by_ufrag: HashMap<String, String>,
}

/// The node's WebRTC endpoint: the socket, the open sessions, what every session is built with.
pub struct WebRtc {
    /// The one socket every session receives on (this task) and sends on (session tasks).
    socket: Arc<UdpSocket>,
    /// The bound address (the port of the host candidate).
    local: SocketAddr,
    /// The host candidate every session offers.
    candidate: SocketAddr,
    /// `webrtc.max_sessions`.
    max_sessions: usize,
    /// `webrtc.max_sessions_per_address`.
    max_per_address: usize,
    /// Sessions by client address (entries at 0 are removed).
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// `webrtc.abr`.
    abr: bool,
    /// The node's hubs (a stream's renditions).
    hubs: Arc<Hubs>,
    /// The one B-frame warning per stream.
    warnings: Arc<ladder::BFrameWarnings>,
    /// DTLS and SRTP (aws-lc-rs), shared by every session.
    crypto: Arc<CryptoProvider>,
    /// Open sessions: `DELETE` and the UDP task find them here.
    sessions: Mutex<SessionTable>,
    /// Open sessions, counted before they are in the registry (the limit is never exceeded).
    open: AtomicUsize,
    /// Node counters.
    metrics: WebRtcMetrics,
    /// The Opus feeds of the streams played with audio.
    audio: audio::AudioFeeds,
    /// Sessions run as connections: the node's drain ends them.
    shutdown: Shutdown,
    /// The WebRTC publishers, asked for a keyframe when a viewer joins.
    publishers: publish::Publishers,
}

/// A session the WHEP handler answered.
#[derive(Debug)]
pub struct Answer {
    /// The session id (the WHEP resource's last path segment).
    pub id: String,
    /// The SDP answer.
    pub sdp: String,
}

impl WebRtc {
    /// The endpoint on a bound socket; `advertise` is the host browsers reach this node at (an
    /// IP address: ICE candidates carry no names).
    pub fn new(
        socket: std::net::UdpSocket,
        config: WebRtcConfig,
        advertise: IpAddr,
        hubs: Arc<Hubs>,
        metrics: WebRtcMetrics,
        shutdown: Shutdown,
    ) -> std::io::Result<Arc<Self>> {
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let socket = UdpSocket::from_std(socket)?;
        Ok(Arc::new(WebRtc {
            socket: Arc::new(socket),
            local,
            candidate: SocketAddr::new(advertise, local.port()),
            max_sessions: config.max_sessions,
            max_per_address: config.max_sessions_per_address,
            per_address: Mutex::default(),
            abr: config.abr,
            hubs,
            warnings: Arc::default(),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            sessions: Mutex::default(),
            open: AtomicUsize::new(0),
            metrics,
            audio: audio::AudioFeeds::default(),
            shutdown,
            publishers: publish::Publishers::default(),
        }))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn registry(&self) -> MutexGuard<'_, SessionTable> {
        // A panic while holding the lock leaves plain maps behind: still consistent.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers a WHEP offer of `client` for `hub` and starts the session.
    pub fn open(
        self: &Arc<Self>,
        offer: &str,
        hub: &Arc<Hub>,
        client: IpAddr,
    ) -> Result<Answer, WebRtcError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(WebRtcError::MalformedOffer)?;
        let info = hub.info();
        let profile = stream_profile(&info)?;
        let offer_sdp = offer.to_sdp_string();
        if !offers_h264(&offer_sdp) {
            return Err(WebRtcError::NoH264(format!("{profile:06x}")));
        }
        let slot = self.reserve(client)?;
        let ufrag = random_token(8);
        let creds = IceCreds {
            ufrag: ufrag.clone(),
            pass: random_token(24),
        };
        let opus = info.audio.is_some();
        let abr = self.abr_for(hub);
        let (rtc, sdp) = answer(
            offer,
            profile,
            opus,
            abr,
            creds,
            self.candidate,
            self.crypto.clone(),
        )?;
        let audio =
            (opus && audio::answers_audio(&sdp)).then(|| self.audio.feed(hub, &self.metrics));
        let registered = self.register(hub, ufrag, slot);
        let id = registered.id.clone();
        tracing::info!(stream = %hub.key(), session = %id, "WebRTC session answered");
        let subscription = hub.subscribe(SubscriberKind::WebRtc);
        self.spawn(
            registered,
            rtc,
            subscription,
            profile,
            Notifier::default(),
            SessionMedia {
                offered_video: None,
                offered_audio: None,
                audio,
                abr,
            },
        );
        Ok(Answer { id, sdp })
    }

    /// Makes an offer for `hub` (Ant Media's signalling: the server offers) and registers the
    /// session, whose datagrams wait in its inbox until [`WebRtc::accept_answer`] starts it.
    pub fn offer(self: &Arc<Self>, hub: &Arc<Hub>, client: IpAddr) -> Result<Offer, WebRtcError> {
        let info = hub.info();
        let profile = stream_profile(&info)?;
        let slot = self.reserve(client)?;
        let ufrag = random_token(8);
        let creds = IceCreds {
            ufrag: ufrag.clone(),
            pass: random_token(24),
        };
        let track = format!("{}", hub.key().stream);
        let opus = info.audio.is_some();
        let abr = self.abr_for(hub);
        let made = server_offer(
            profile,
            opus,
            abr,
            creds,
            self.candidate,
            self.crypto.clone(),
            &track,
        )?;
        let registered = self.register(hub, ufrag, slot);
        tracing::info!(stream = %hub.key(), session = %registered.id, "WebRTC offer made");
        Ok(Offer {
            sdp: made.sdp,
            id_mapping: made.id_mapping,
            candidate: format!("candidate:{}", made.candidate),
            pending: PendingOffer {
                rtc: made.rtc,
                pending: made.pending,
                video: made.video,
                audio: made.audio,
                profile,
                stream: hub.key().clone(),
                subscription: hub.subscribe(SubscriberKind::WebRtc),
                registered,
                abr,
            },
        })
    }

    /// Applies the viewer's answer to an offer and starts its session; returns the session id.
    pub fn accept_answer(
        self: &Arc<Self>,
        offer: PendingOffer,
        answer: &str,
        notifier: Notifier,
    ) -> Result<String, WebRtcError> {
        let PendingOffer {
            mut rtc,
            pending,
            video,
            audio,
            profile,
            stream,
            subscription,
            registered,
            abr,
        } = offer;
        let answer_sdp = signal::normalized_fmtp(answer);
        if !answers_video(&answer_sdp) {
            return Err(WebRtcError::VideoRefused);
        }
        let answer =
            SdpAnswer::from_sdp_string(&answer_sdp).map_err(WebRtcError::MalformedAnswer)?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(WebRtcError::Negotiate)?;
        // Opus for this session if the viewer kept the offered audio m-line.
        let audio = audio.filter(|_| audio::answers_audio(&answer_sdp));
        let feed = audio.map(|_| self.audio.feed(subscription.hub(), &self.metrics));
        let id = registered.id.clone();
        tracing::info!(%stream, session = %id, "WebRTC answer accepted");
        self.spawn(
            registered,
            rtc,
            subscription,
            profile,
            notifier,
            SessionMedia {
                offered_video: Some(video),
                offered_audio: audio,
                audio: feed,
                abr,
            },
        );
        Ok(id)
    }

    /// Whether a session of `hub` estimates its bandwidth: `webrtc.abr` and the stream has a
    /// ladder. Without one there is nothing to switch to, and str0m paces media at the
    /// estimate, which would only add delay.
    fn abr_for(&self, hub: &Arc<Hub>) -> bool {
        self.abr && self.hubs.family(&hub.key().stream).len() > 1
    }

    /// One of `max_sessions` places, and one of `max_sessions_per_address` for `client`.
    fn reserve(self: &Arc<Self>, client: IpAddr) -> Result<OpenSlot, WebRtcError> {
        let client = client.to_canonical();
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_sessions {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(WebRtcError::Full(self.max_sessions));
        }
        let mut per = self.addresses();
        let n = per.entry(client).or_insert(0);
        if *n >= self.max_per_address {
            drop(per);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(WebRtcError::AddressFull(self.max_per_address, client));
        }
        *n += 1;
        drop(per);
        Ok(OpenSlot {
            webrtc: self.clone(),
            client,
        })
    }

    fn addresses(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Plain counters: a panic while holding the lock leaves them usable.
        self.per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rendition of `stream` that `forceStreamQuality` names by `height` (0 = auto: `None`
    /// inside), or `Err` when the stream has none of that height.
    pub fn rendition_by_height(
        &self,
        stream: &StreamKey,
        height: u32,
    ) -> Result<Option<RenditionId>, Vec<u32>> {
        if height == 0 {
            return Ok(None);
        }
        let rungs = ladder::rungs(&self.hubs, stream, false);
        ladder::by_height(&rungs, height)
            .map(Some)
            .ok_or_else(|| rungs.iter().map(|r| r.height).collect())
    }

    /// Tells a session of `stream` what the signalling asks; false when it is not running.
    pub fn control(&self, stream: &HubKey, id: &str, control: Control) -> bool {
        let tx = self
            .registry()
            .by_id
            .get(id)
            .filter(|e| &e.stream == stream)
            .map(|e| e.control.clone());
        tx.is_some_and(|tx| tx.try_send(control).is_ok())
    }

    /// Puts a session in the registry (the UDP task routes its ufrag's checks to its inbox
    /// from now on); dropping the result takes it out again.
    fn register(self: &Arc<Self>, hub: &Arc<Hub>, ufrag: String, slot: OpenSlot) -> Registered {
        self.register_as(hub, ufrag, slot, false)
    }

    /// [`WebRtc::register`] for a viewer (`publisher` false) or a publisher.
    fn register_as(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        ufrag: String,
        slot: OpenSlot,
        publisher: bool,
    ) -> Registered {
        let id = random_token(16);
        let (tx, rx) = mpsc::channel(INBOX);
        let (control_tx, control) = mpsc::channel(CONTROLS);
        let cancel = CancellationToken::new();
        let mut reg = self.registry();
        reg.by_ufrag.insert(ufrag.clone(), id.clone());
        reg.by_id.insert(
            id.clone(),
            Entry {
                stream: hub.key().clone(),
                ufrag,
                inbox: tx,
                cancel: cancel.clone(),
                control: control_tx,
                publisher,
            },
        );
        drop(reg);
        self.metrics.sessions.inc();
        Registered {
            id: id.clone(),
            inbox: rx,
            control,
            cancel,
            guard: SessionGuard {
                webrtc: self.clone(),
                id,
                _slot: slot,
            },
        }
    }

    /// Runs a registered session's task on `subscription` (the stream's hub, from its latest
    /// keyframe).
    fn spawn(
        &self,
        registered: Registered,
        rtc: Rtc,
        subscription: Subscription,
        profile: u32,
        notifier: Notifier,
        media: SessionMedia,
    ) {
        let SessionMedia {
            offered_video,
            offered_audio,
            audio,
            abr,
        } = media;
        let Registered {
            id,
            inbox,
            control,
            cancel,
            guard,
        } = registered;
        let notifier = notifier.with_id(&id);
        self.publishers
            .want_keyframe(&subscription.hub().key().stream);
        let parts = session::Parts {
            rtc,
            subscription,
            profile,
            audio,
            inbox,
            socket: self.socket.clone(),
            local: self.local,
            cancel,
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
            notifier: notifier.clone(),
            offered_video,
            offered_audio,
            hubs: self.hubs.clone(),
            control,
            warnings: self.warnings.clone(),
            abr,
        };
        self.shutdown.spawn_connection(async move {
            session::run(parts).await;
            drop(guard);
            notifier.send(SessionEvent::Ended);
        });
    }

    /// Ends a viewer's (`publisher` false, WHEP `DELETE`) or a publisher's session (WHIP
    /// `DELETE`) of `stream`; false if there is none with this id.
    pub fn close(&self, stream: &HubKey, id: &str, publisher: bool) -> bool {
        let mut reg = self.registry();
        if reg
            .by_id
            .get(id)
            .is_none_or(|e| &e.stream != stream || e.publisher != publisher)
        {
            return false;
        }
        match reg.by_id.remove(id) {
            Some(e) => {
                reg.by_ufrag.remove(&e.ufrag);
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether a viewer's (`publisher` false) or a publisher's session of `stream` with this
    /// id is open.
    pub fn exists(&self, stream: &HubKey, id: &str, publisher: bool) -> bool {
        self.registry()
            .by_id
            .get(id)
            .is_some_and(|e| &e.stream == stream && e.publisher == publisher)
    }

    /// The UDP task: reads every datagram and hands it to its session, until the node stops.
    pub async fn serve(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Source address -> the session's inbox; learnt from STUN requests with our ufrag.
        let mut routes: HashMap<SocketAddr, mpsc::Sender<Datagram>> = HashMap::new();
        loop {
            let (n, source) = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(v) => v,
                    Err(e) => {
                        // ICMP port unreachable from a browser that left, for example.
                        tracing::debug!(error = %e, "webrtc udp receive failed");
                        continue;
                    }
                },
                () = self.shutdown.stopped() => break,
            };
            let Some(bytes) = buf.get(..n) else { continue };
            let datagram = || Datagram {
                at: Instant::now(),
                source,
                bytes: Bytes::copy_from_slice(bytes),
            };
            if let Some(inbox) = routes.get(&source) {
                match inbox.try_send(datagram()) {
                    Ok(()) => continue,
                    // Full: the session is behind; UDP may drop, the peer retransmits.
                    Err(mpsc::error::TrySendError::Full(_)) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        routes.remove(&source);
                    }
                }
            }
            let inbox = stun::local_ufrag(bytes).and_then(|ufrag| {
                let reg = self.registry();
                let id = reg.by_ufrag.get(ufrag)?;
                reg.by_id.get(id).map(|e| e.inbox.clone())
            });
            let Some(inbox) = inbox else {
                self.metrics.unmatched.inc();
                continue;
            };
            if inbox.try_send(datagram()).is_ok() {
                // Forget the addresses of sessions that ended before learning a new one.
                routes.retain(|_, tx| !tx.is_closed());
                routes.insert(source, inbox);
            }
        }
    }
}

/// A server offer waiting for the viewer's answer: it holds its place in `max_sessions` and in
/// the registry until [`WebRtc::accept_answer`] starts the session or it is dropped.
pub struct PendingOffer {
    /// The session's state machine, waiting for the answer.
    rtc: Rtc,
    /// Its bandwidth estimation is on.
    abr: bool,
    /// What str0m needs to accept the answer.
    pending: SdpPendingOffer,
    /// The offered video m-line (str0m announces no `MediaAdded` for it).
    video: Mid,
    /// The stream's `profile-level-id`.
    profile: u32,
    /// The stream (for the log).
    stream: HubKey,
    /// The offered audio m-line (streams with audio).
    audio: Option<Mid>,
    /// Taken at the offer: it counts as a viewer from then on (an edge keeps pulling).
    subscription: Subscription,
    /// Its place in the registry and in `max_sessions`.
    registered: Registered,
}

impl PendingOffer {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.registered.id
    }

    /// Adds a trickled viewer candidate (`candidate:...`). This node is ICE-lite and learns
    /// the viewer's addresses from its checks, so this only helps str0m pair early.
    pub fn add_candidate(&mut self, candidate: &str) -> Result<(), WebRtcError> {
        let c = Candidate::from_sdp_string(candidate.trim_start_matches("a="))
            .map_err(|_| WebRtcError::MalformedCandidate)?;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }
}

/// An offer for the viewer and what answers it.
pub struct Offer {
    /// The SDP offer.
    pub sdp: String,
    /// mid -> track id, for Ant Media's `idMapping`.
    pub id_mapping: Vec<(String, String)>,
    /// The host candidate (`candidate:...`), also in the SDP.
    pub candidate: String,
    /// The state waiting for the answer.
    pub pending: PendingOffer,
}

/// A session in the registry whose task has not started.
struct Registered {
    /// The session id.
    id: String,
    /// Datagrams the UDP task routes to the session.
    inbox: mpsc::Receiver<Datagram>,
    /// What the signalling asks of the session.
    control: mpsc::Receiver<Control>,
    /// Cancelled by `DELETE` / `stop`.
    cancel: CancellationToken,
    /// Takes the session out of the registry when dropped.
    guard: SessionGuard,
}

/// What a session sends besides video: the m-lines this side offered (str0m announces
/// `MediaAdded` only for the remote's) and the stream's Opus feed when audio was negotiated.
struct SessionMedia {
    offered_video: Option<Mid>,
    offered_audio: Option<Mid>,
    audio: Option<Arc<audio::AudioFeed>>,
    /// Bandwidth estimation is on for the session.
    abr: bool,
}

/// The `profile-level-id` of a stream's H.264 (from its SPS), or [`WebRtcError::NoVideo`].
fn stream_profile(info: &crate::media::frame::StreamInfo) -> Result<u32, WebRtcError> {
    let config = info
        .video
        .as_ref()
        .and_then(h264::decoder_config)
        .ok_or(WebRtcError::NoVideo)?;
    Ok(h264::profile_level_id(&config))
}

/// Holds one of `max_sessions` places, and one of its client's, until dropped.
struct OpenSlot {
    webrtc: Arc<WebRtc>,
    client: IpAddr,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.webrtc.open.fetch_sub(1, Ordering::AcqRel);
        let mut per = self.webrtc.addresses();
        if let Some(n) = per.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.client);
            }
        }
    }
}

/// Takes a session out of the registry when its task ends.
struct SessionGuard {
    webrtc: Arc<WebRtc>,
    id: String,
    _slot: OpenSlot,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut reg = self.webrtc.registry();
        if let Some(e) = reg.by_id.remove(&self.id) {
            reg.by_ufrag.remove(&e.ufrag);
        }
        drop(reg);
        self.webrtc.metrics.sessions.dec();
        tracing::info!(session = %self.id, "WebRTC session ended");
    }
}

/// `n` random bytes as lowercase hex (ICE credentials and session ids).
fn random_token(n: usize) -> String {
    let mut raw = vec![0u8; n];
    if getrandom::fill(&mut raw).is_err() {
        // Without the OS generator, fall back to the clock: still unique, only guessable.
        let t = crate::runtime::entropy::unix_time()
            .as_nanos()
            .to_be_bytes();
        for (i, b) in raw.iter_mut().enumerate() {
            *b = t[i % t.len()] ^ (i as u8);
        }
    }
    hex::encode(raw)
}
