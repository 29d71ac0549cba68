//! Opus audio for WebRTC viewers: one transcoder per stream however many viewers it has.
//!
//! Flow: the first session of a stream that negotiated audio starts the stream's [`AudioFeed`]
//! ([`AudioFeeds::feed`]); the feed subscribes to the hub (an internal subscriber), hands the
//! AAC frames over a bounded channel to a thread of its own, which transcodes them (`opus`)
//! and broadcasts the Opus packets; every session of the stream holds the feed and reads the
//! broadcast ([`AudioSender`]); when the last one drops it, the hub task and the thread end.
//! A session that joins a running feed gets the next packet, 20 ms later at most.
//!
//! Timing: a packet carries its stream time (48 kHz) and when that time was live here (the
//! arrival of the AAC frame it came from, moved by the packet's offset in it), so that the
//! sender reports of audio and video map both streams to the same wall clock. Each session
//! maps the stream time onto its RTP clock with the video's [`Timeline`] offset (one origin
//! for both), and drops the audio while its video is still squeezing the start cache: that
//! audio is old, and the browser starts audio with the first live video.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{MediaTime, Mid, Pt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::WebRtcMetrics;
use super::h264::Timeline;
use super::opus::{OPUS_RATE, OpusPacket, Transcoder};
use crate::media::frame::{Frame, TrackKind};
use crate::media::hub::{Hub, HubEvent, HubKey, SubscriberKind, TryRecvError};
use streamfleet_proto::flv::{AacPacket, AudioBody, AudioTag};

/// AAC frames waiting for the transcoder thread (about 3 s at 44.1 kHz).
const TO_THREAD: usize = 128;
/// Opus packets a session may fall behind before it skips (1.28 s).
const BROADCAST: usize = 64;
/// A packet this long past its live time is not written: a burst of old audio would make the
/// browser's jitter buffer grow and the audio lag. (A fresh packet is up to about 70 ms old:
/// an AAC frame, the FIFO, the encoder's frame.)
const MAX_AGE: Duration = Duration::from_millis(250);

/// One Opus packet as sessions receive it.
#[derive(Debug, Clone)]
pub struct SharedPacket {
    /// The packet and its stream time.
    pub packet: OpusPacket,
    /// When its stream time was live on this node (for the RTCP sender reports).
    pub live_at: Instant,
}

/// The running feeds of a node, by stream.
#[derive(Debug, Default)]
pub struct AudioFeeds {
    feeds: Mutex<HashMap<HubKey, Weak<AudioFeed>>>,
}

/// A stream's transcoder, shared by its sessions; dropping the last holder stops it.
#[derive(Debug)]
pub struct AudioFeed {
    packets: broadcast::Sender<SharedPacket>,
    /// Cancels the hub task (whose end closes the thread's channel) when the feed drops.
    _stop: DropGuard,
}

impl AudioFeed {
    /// A receiver of the packets from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SharedPacket> {
        self.packets.subscribe()
    }
}

impl AudioFeeds {
    /// The running feed of `hub`, or a new one (this spawns a task on the current runtime
    /// and a thread).
    pub fn feed(&self, hub: &Arc<Hub>, metrics: &WebRtcMetrics) -> Arc<AudioFeed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = feeds.get(hub.key()).and_then(Weak::upgrade) {
            return feed;
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let (packets, _) = broadcast::channel(BROADCAST);
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(TO_THREAD);
        let name = hub.key().to_string();
        let thread = {
            let packets = packets.clone();
            let metrics = metrics.clone();
            let name = name.clone();
            std::thread::Builder::new()
                .name("webrtc-opus".into())
                .spawn(move || transcode(rx, packets, &metrics, &name))
        };
        if let Err(e) = thread {
            // Without the thread the channel is closed: the hub task ends at once.
            tracing::warn!(stream = %name, error = %e, "cannot start the Opus transcoder thread");
        }
        tokio::spawn(pump(
            hub.subscribe(SubscriberKind::Internal),
            tx,
            stop.clone(),
        ));
        tracing::debug!(stream = %name, "Opus feed started");
        let feed = Arc::new(AudioFeed {
            packets,
            _stop: stop.drop_guard(),
        });
        feeds.insert(hub.key().clone(), Arc::downgrade(&feed));
        feed
    }
}

/// What the hub task hands the transcoder thread.
#[derive(Debug)]
enum ToThread {
    /// The stream's AudioSpecificConfig (a new or changed audio track), or none.
    Config(Option<Bytes>),
    /// A publish session ended: the next frame starts a new timeline.
    Stop,
    /// One raw AAC frame.
    Frame {
        /// The raw frame.
        aac: Bytes,
        /// Its time, ms.
        pts: i64,
        /// When it came out of the hub.
        at: Instant,
    },
}

/// The hub task: hands AAC frames to the thread until the feed is dropped. What waited in the
/// start cache is old: only its stream description is used.
async fn pump(
    mut sub: crate::media::hub::Subscription,
    tx: mpsc::Sender<ToThread>,
    stop: CancellationToken,
) {
    let mut config: Option<Bytes> = None;
    let mut backlog = true;
    loop {
        let event = if backlog {
            match sub.try_recv() {
                Ok(e) => e,
                Err(TryRecvError::Empty) => {
                    backlog = false;
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            tokio::select! {
                () = stop.cancelled() => break,
                e = sub.recv() => match e {
                    Some(e) => e,
                    None => {
                        tracing::debug!(stream = %sub.hub().key(), "Opus feed dropped by the hub");
                        break;
                    }
                },
            }
        };
        let message = match event {
            HubEvent::Start { info, .. } => {
                let asc = info.audio.as_ref().and_then(|a| asc_of(&a.sequence_header));
                if asc == config {
                    continue;
                }
                config = asc.clone();
                ToThread::Config(asc)
            }
            HubEvent::Stop { .. } => ToThread::Stop,
            HubEvent::Frame(f) if !backlog => match raw_aac(&f) {
                Some(aac) => ToThread::Frame {
                    aac,
                    pts: i64::try_from(f.dts).unwrap_or(i64::MAX),
                    at: super::published_at(f.published_us, Instant::now()),
                },
                None => continue,
            },
            HubEvent::Frame(_) => continue,
        };
        // Full: the thread is behind; the frame is lost (the transcoder fills the gap).
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(message) {
            break;
        }
    }
}

/// The AudioSpecificConfig in an AAC sequence-header tag body.
fn asc_of(tag_body: &Bytes) -> Option<Bytes> {
    match AudioTag::parse(tag_body) {
        Ok(AudioTag {
            body: AudioBody::Aac(AacPacket::SequenceHeader(asc)),
            ..
        }) => Some(asc),
        _ => None,
    }
}

/// The raw AAC frame of an audio frame.
fn raw_aac(f: &Frame) -> Option<Bytes> {
    if f.kind != TrackKind::Audio {
        return None;
    }
    match AudioTag::parse(&f.body) {
        Ok(AudioTag {
            body: AudioBody::Aac(AacPacket::Raw(aac)),
            ..
        }) => Some(aac),
        _ => None,
    }
}

/// The transcoder thread: until the hub task ends.
fn transcode(
    mut rx: mpsc::Receiver<ToThread>,
    packets: broadcast::Sender<SharedPacket>,
    metrics: &WebRtcMetrics,
    stream: &str,
) {
    let mut transcoder: Option<Transcoder> = None;
    let mut out = Vec::new();
    let mut errors = 0u64;
    while let Some(message) = rx.blocking_recv() {
        match message {
            ToThread::Config(None) => transcoder = None,
            ToThread::Config(Some(asc)) => match Transcoder::new(&asc) {
                Ok(t) => {
                    tracing::debug!(stream, decoder = ?t.decoder_kind(), "Opus transcoder ready");
                    transcoder = Some(t);
                }
                Err(e) => {
                    tracing::warn!(stream, error = %e, "no Opus audio for WebRTC viewers");
                    transcoder = None;
                }
            },
            ToThread::Stop => {
                if let Some(t) = transcoder.as_mut() {
                    t.reset();
                }
            }
            ToThread::Frame { aac, pts, at } => {
                let Some(t) = transcoder.as_mut() else {
                    continue;
                };
                out.clear();
                if let Err(e) = t.push(&aac, pts, &mut out) {
                    errors += 1;
                    metrics.audio_errors.inc();
                    // The first error of a stream is worth a line; the rest are counted.
                    if errors == 1 {
                        tracing::warn!(stream, error = %e, "an AAC frame could not be transcoded");
                    } else {
                        tracing::debug!(stream, error = %e, "an AAC frame could not be transcoded");
                    }
                }
                let anchor = pts.saturating_mul(i64::from(OPUS_RATE) / 1000);
                for packet in out.drain(..) {
                    let live_at = shift(at, packet.pts - anchor);
                    // No receiver is not an error: sessions come and go.
                    let _no_receiver_is_fine = packets.send(SharedPacket { packet, live_at });
                }
            }
        }
    }
    tracing::debug!(stream, "Opus feed stopped");
}

/// `at` moved by `ticks` of 48 kHz.
fn shift(at: Instant, ticks: i64) -> Instant {
    let d = Duration::from_micros(ticks.unsigned_abs() * 1000 / u64::from(OPUS_RATE / 1000));
    if ticks >= 0 {
        at + d
    } else {
        at.checked_sub(d).unwrap_or(at)
    }
}

/// One session's audio m-line: the Opus packets of its stream's feed, written on the video's
/// timeline.
pub(super) struct AudioSender {
    mid: Mid,
    pt: Pt,
    packets: broadcast::Receiver<SharedPacket>,
    /// RTP time of the last packet written (48 kHz): written times only move forward.
    last: Option<u64>,
    /// Writing has begun: what queued before it (while ICE, DTLS and the video's start cache
    /// ran) was dropped.
    live: bool,
    /// Keeps the feed running while the session lives.
    _feed: Arc<AudioFeed>,
}

impl AudioSender {
    /// The sender of the negotiated audio m-line, if Opus was negotiated on it.
    pub(super) fn new(rtc: &mut Rtc, mid: Mid, feed: Arc<AudioFeed>) -> Option<Self> {
        let writer = rtc.writer(mid)?;
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)?
            .pt();
        Some(AudioSender {
            mid,
            pt,
            packets: feed.subscribe(),
            last: None,
            live: false,
            _feed: feed,
        })
    }

    /// The next packet; `None` when the feed has stopped.
    pub(super) async fn recv(&mut self) -> Option<SharedPacket> {
        loop {
            match self.packets.recv().await {
                Ok(p) => return Some(p),
                // Behind: go on with the oldest packet still there.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Writes a packet at its place on the session's timeline; dropped while the video is
    /// still catching up or before its first frame, when it is stale, and when it would go
    /// back in time.
    pub(super) fn write(
        &mut self,
        rtc: &mut Rtc,
        clock: &mut Instant,
        p: &SharedPacket,
        timeline: &Timeline,
        catching_up: bool,
        now: Instant,
    ) -> bool {
        if catching_up {
            return false;
        }
        let Some(rtp) = timeline.rtp_48khz(p.packet.pts) else {
            return false;
        };
        if !self.live {
            // Audio starts now: what waited in the channel is old.
            self.live = true;
            self.packets = self.packets.resubscribe();
        }
        if now.saturating_duration_since(p.live_at) > MAX_AGE {
            return false;
        }
        if self.last.is_some_and(|last| rtp <= last) {
            return false;
        }
        let time = MediaTime::new(rtp, str0m::media::Frequency::FORTY_EIGHT_KHZ);
        // Never in the future, nor past str0m's own clock: its sender reports would then
        // carry RTP time 0.
        let wallclock = p.live_at.min(now);
        super::session::clock_to(rtc, clock, wallclock);
        let Some(writer) = rtc.writer(self.mid) else {
            return false;
        };
        if let Err(e) = writer.write(self.pt, wallclock, time, p.packet.data.to_vec()) {
            tracing::debug!(error = %e, "webrtc audio write failed");
            return false;
        }
        self.last = Some(rtp);
        true
    }
}

/// Whether an SDP answer sends audio (an audio m-line with a port and a codec).
pub(super) fn answers_audio(sdp: &str) -> bool {
    let mut audio = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            audio = m.starts_with("audio ") && !m.starts_with("audio 0 ");
        } else if audio
            && line.to_ascii_lowercase().starts_with("a=rtpmap:")
            && line.contains("opus/48000")
        {
            return true;
        }
    }
    false
}

/// The answer with the audio track in the video's media stream (`a=msid`): str0m gives every
/// m-line it answers a random stream id of its own, and browsers synchronise audio and video
/// only within one stream.
pub(super) fn one_stream(sdp: &str) -> String {
    let mut kind = "";
    let (mut video, mut audio) = (None, None);
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split(' ').next().unwrap_or("");
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            let stream = msid
                .split(' ')
                .next()
                .filter(|s| !s.is_empty() && *s != "-");
            match kind {
                "video" => video = video.or(stream),
                "audio" => audio = audio.or(stream),
                _ => {}
            }
        }
    }
    let (Some(video), Some(audio)) = (video, audio) else {
        return sdp.to_owned();
    };
    if video == audio {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=msid-semantic:") {
            // Each stream once.
            let end = line.trim_end_matches(['\r', '\n']);
            let mut ids: Vec<&str> = Vec::new();
            for id in end.split(' ').skip(2) {
                let id = if id == audio { video } else { id };
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let head: Vec<&str> = end.split(' ').take(2).collect();
            out.push_str(&head.join(" "));
            for id in ids {
                out.push(' ');
                out.push_str(id);
            }
            out.push_str(&line[end.len()..]);
        } else if line.starts_with("a=msid:")
            || (line.starts_with("a=ssrc:") && line.contains(" msid:"))
        {
            out.push_str(&line.replace(audio, video));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_joins_the_video_stream() {
        let answer = "v=0\r\na=msid-semantic: WMS vs as\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=msid:vs vt\r\na=ssrc:1 msid:vs vt\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:as at\r\na=ssrc:2 cname:c\r\n\
                      a=ssrc:2 msid:as at\r\n";
        assert_eq!(
            one_stream(answer),
            "v=0\r\na=msid-semantic: WMS vs\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=msid:vs vt\r\na=ssrc:1 msid:vs vt\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:vs at\r\na=ssrc:2 cname:c\r\n\
             a=ssrc:2 msid:vs at\r\n"
        );
        let video_only = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=msid:vs vt\r\n";
        assert_eq!(one_stream(video_only), video_only);
    }

    #[test]
    fn finds_opus_in_an_accepted_audio_section() {
        let yes = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(answers_audio(yes));
        let rejected = "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(!answers_audio(rejected));
        let video_only = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n";
        assert!(!answers_audio(video_only));
    }

    #[test]
    fn live_times_move_with_the_packet_offset() {
        let at = Instant::now() + Duration::from_secs(10);
        assert_eq!(shift(at, 48), at + Duration::from_millis(1));
        assert_eq!(shift(at, -960), at - Duration::from_millis(20));
    }
}
