//! WebRTC publishers (WHIP, RFC 9725): a browser, OBS 30+ or GStreamer sends H.264 and Opus to
//! an origin or a standalone node; the stream then plays like an RTMP-published one everywhere
//! (HLS, RTMP play, the relay to edges, the transcoder, WebRTC viewers).
//!
//! Data flow: the WHIP offer (`http::whip`) is read ([`PublishOffer::parse`]) before anything is
//! claimed, then the publisher is admitted by the same rules and code as an RTMP publisher
//! (`ingest::Publishing::admit`: role, stream id, `security.publish`, `max_streams`, the hub, the
//! store lease) -> [`WebRtc::publish`] answers the offer and registers the session with the UDP
//! task like a viewer's -> `session::run` feeds datagrams to its `Rtc`, which runs ICE-lite,
//! DTLS-SRTP, NACKs lost video packets to the publisher and depacketizes media:
//!
//! - video: Annex-B access units -> `video` -> FLV AVC bodies (sequence header from the in-band
//!   SPS/PPS) -> the `Ingest`, as if an RTMP publisher had sent them;
//! - audio: Opus -> `audio` (a thread per publisher: libavcodec's Opus decoder, its `aac`
//!   encoder, once per stream) -> AAC-LC 48 kHz stereo -> the `Ingest`.
//!
//! Both tracks are stamped on one session clock (milliseconds since the session started):
//! each track's first packet is placed by its arrival time, the packets after it by their RTP
//! time, so audio and video stay in step within the first packets' network jitter.
//!
//! Keyframes: browsers send one rarely. The session asks for one (PLI) when a segment's worth
//! (`hls.segment`) has passed since the last, so HLS segments keep their length and new viewers
//! start fast, and while nothing decodable has arrived yet.

mod audio;
mod session;
mod video;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use str0m::IceCreds;
use str0m::change::SdpOffer;

use super::sdp::{offers_h264, publisher_answer};
use super::{Answer, Notifier, WebRtc, WebRtcError, random_token};
use crate::cluster::model::StreamKey;
use crate::media::ingest::Ingest;

/// A publisher that connected and then sends no media for this long is gone: its stream ends.
pub const PUBLISHER_IDLE: Duration = Duration::from_secs(10);

/// The WebRTC publishers of the node by stream: a WebRTC viewer joining one of their streams
/// asks its publisher for a keyframe (the hub's start cache shows the last GOP at once; a fresh
/// keyframe shortens the GOP the viewer then waits through after a rendition switch or a skip).
#[derive(Debug, Default)]
pub(super) struct Publishers(Mutex<HashMap<StreamKey, Arc<Notify>>>);

impl Publishers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Arc<Notify>>> {
        // A plain map: a panic while holding it leaves it usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A viewer of `stream` started: its WebRTC publisher (if any) is asked for a keyframe.
    pub(super) fn want_keyframe(&self, stream: &StreamKey) {
        if let Some(n) = self.map().get(stream) {
            n.notify_one();
        }
    }
}

/// A publisher's entry in [`Publishers`], removed when dropped.
struct PublisherEntry {
    webrtc: Arc<WebRtc>,
    stream: StreamKey,
}

impl Drop for PublisherEntry {
    fn drop(&mut self) {
        self.webrtc.publishers.map().remove(&self.stream);
    }
}

/// A publisher's offer, read and checked before the stream is claimed.
pub struct PublishOffer(SdpOffer);

impl PublishOffer {
    /// Reads an SDP offer; it must send H.264 video.
    pub fn parse(sdp: &str) -> Result<Self, WebRtcError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(WebRtcError::MalformedOffer)?;
        if !offers_h264(&offer.to_sdp_string()) {
            return Err(WebRtcError::PublishNoH264);
        }
        Ok(PublishOffer(offer))
    }
}

impl WebRtc {
    /// Answers a publisher's offer from `client` and starts its session, which feeds `ingest`
    /// (an admitted publisher) until the publisher leaves, goes silent, `DELETE`s it or the
    /// stream is taken over. `segment` is the HLS segment length (the keyframe interval asked
    /// of the publisher). `notifier` hears when video first flows and when the session ends
    /// (WHIP listens to none; Ant Media's WebSocket signalling tells its client).
    pub fn publish(
        self: &Arc<Self>,
        offer: PublishOffer,
        ingest: Ingest,
        client: IpAddr,
        segment: Duration,
        notifier: Notifier,
    ) -> Result<Answer, WebRtcError> {
        let slot = self.reserve(client)?;
        let ufrag = random_token(8);
        let creds = IceCreds {
            ufrag: ufrag.clone(),
            pass: random_token(24),
        };
        let (rtc, sdp) = publisher_answer(offer.0, creds, self.candidate, self.crypto.clone())?;
        let hub = ingest.hub().clone();
        let registered = self.register_as(&hub, ufrag, slot, true);
        let id = registered.id.clone();
        tracing::info!(stream = %hub.key(), session = %id, "WebRTC publisher answered");
        let keyframe = Arc::new(Notify::new());
        let stream = hub.key().stream.clone();
        self.publishers
            .map()
            .insert(stream.clone(), keyframe.clone());
        let entry = PublisherEntry {
            webrtc: self.clone(),
            stream,
        };
        let parts = session::Parts {
            keyframe,
            rtc,
            ingest,
            inbox: registered.inbox,
            socket: self.socket.clone(),
            local: self.local,
            cancel: registered.cancel,
            shutdown: self.shutdown.clone(),
            segment,
            notifier: notifier.with_id(&id),
        };
        let guard = registered.guard;
        self.shutdown.spawn_connection(async move {
            session::run(parts).await;
            drop(entry);
            drop(guard);
        });
        Ok(Answer { id, sdp })
    }
}
