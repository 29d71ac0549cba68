//! One WebRTC publisher: a task owning the session's `Rtc` and the stream's [`Ingest`].
//!
//! Loop: drain the `Rtc`'s outputs (datagrams onto the shared socket, events: depacketized
//! media) until it names its next timeout, then wait for whichever comes first: a datagram
//! from the UDP task, an AAC frame from the audio thread, a WebRTC viewer joining (a keyframe
//! is asked for), the timeout, the connect deadline,
//! the idle deadline, the lease lost to another origin, `DELETE` or the node draining. When the
//! task ends the `Ingest` is dropped: the hub ends the stream (HLS `#EXT-X-ENDLIST`, players and
//! edges told), the lease is released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PUBLISHER_IDLE;
use super::audio::{self, ASC, AacFrame, AudioThread, MAX_OPUS_PACKET};
use super::video::{H264Ingest, VideoDropped};
use crate::media::ingest::Ingest;
use crate::media::webrtc::{CONNECT_TIMEOUT, Datagram, Notifier, SessionEvent};
use crate::runtime::Shutdown;

/// Keyframe requests are at least this far apart (a lost PLI is sent again after it).
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// What a publisher's task is started with.
pub(super) struct Parts {
    /// The session's WebRTC state machine, offer answered.
    pub rtc: Rtc,
    /// The admitted stream.
    pub ingest: Ingest,
    /// Datagrams the UDP task routed to this session.
    pub inbox: mpsc::Receiver<Datagram>,
    /// The node's one WebRTC socket, shared for sending.
    pub socket: Arc<UdpSocket>,
    /// The socket's address.
    pub local: std::net::SocketAddr,
    /// Cancelled by WHIP `DELETE`.
    pub cancel: CancellationToken,
    /// The session ends when the node drains.
    pub shutdown: Shutdown,
    /// `hls.segment`: a keyframe is asked for when this long passed since the last one.
    pub segment: Duration,
    /// Notified when a WebRTC viewer of the stream starts: a keyframe is asked for.
    pub keyframe: Arc<tokio::sync::Notify>,
    /// Told when the first video frame reached the stream (`Playing`) and when the session
    /// ended (Ant Media's signalling says `publish_started` / `publish_finished`).
    pub notifier: Notifier,
}

/// One track's mapping from RTP time to the session clock.
#[derive(Debug, Clone, Copy)]
struct TrackClock {
    /// The RTP time (ticks) of the track's first packet.
    rtp0: u64,
    /// Its arrival on the session clock, ms.
    ms0: u64,
    /// Ticks per second.
    rate: u64,
}

impl TrackClock {
    fn new(data: &MediaData, started: Instant) -> Self {
        TrackClock {
            rtp0: data.time.numer(),
            ms0: data
                .network_time
                .saturating_duration_since(started)
                .as_millis() as u64,
            rate: u64::from(data.time.denom()).max(1),
        }
    }

    /// The session-clock time (ms) of a packet of this track.
    fn ms(&self, data: &MediaData) -> u64 {
        let ticks = data.time.numer().saturating_sub(self.rtp0);
        self.ms0 + ticks * 1000 / self.rate
    }

    /// The same in the track's ticks.
    fn ticks(&self, data: &MediaData) -> i64 {
        let ticks = data.time.numer().saturating_sub(self.rtp0);
        (self.ms0 * self.rate / 1000 + ticks) as i64
    }
}

/// The publisher's media state.
struct Media {
    video_mid: Option<Mid>,
    video_clock: Option<TrackClock>,
    audio_clock: Option<TrackClock>,
    h264: H264Ingest,
    audio: Option<AudioThread>,
    /// The AAC sequence header was sent.
    audio_described: bool,
    /// When the last keyframe arrived and a keyframe was last asked for.
    last_keyframe: Option<Instant>,
    last_pli: Option<Instant>,
    /// When media last arrived.
    last_media: Option<Instant>,
    /// A video frame reached the stream (the notifier was told).
    flowing: bool,
}

/// Runs a publisher until it ends; why is logged here, once.
pub(super) async fn run(mut p: Parts) {
    let started = Instant::now();
    let stream = p.ingest.name();
    let deadline = tokio::time::Instant::from_std(started + CONNECT_TIMEOUT);
    let mut connected = false;
    let audio = match audio::spawn(stream.clone()) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(%stream, error = %e, "no AAC for this stream: video only");
            None
        }
    };
    let mut m = Media {
        video_mid: None,
        video_clock: None,
        audio_clock: None,
        h264: H264Ingest::default(),
        audio,
        audio_described: false,
        last_keyframe: None,
        last_pli: None,
        last_media: None,
        flowing: false,
    };
    let why = loop {
        let timeout = loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break Ok(t),
                Ok(Output::Transmit(t)) => {
                    if let Err(e) = p.socket.send_to(&t.contents, t.destination).await {
                        tracing::debug!(error = %e, to = %t.destination, "webrtc send failed");
                    }
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        connected = true;
                        tracing::info!(%stream, elapsed = ?started.elapsed(), "WebRTC publisher connected");
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        break Err("ICE disconnected");
                    }
                    Event::MediaAdded(a) if a.kind == MediaKind::Video && m.video_mid.is_none() => {
                        m.video_mid = Some(a.mid);
                    }
                    Event::MediaData(data) => media(&mut p, &mut m, data, started),
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(%stream, error = %e, "webrtc publisher session failed");
                    break Err("str0m error");
                }
            }
        };
        let timeout = match timeout {
            Ok(t) => t,
            Err(why) => break why,
        };
        if !p.rtc.is_alive() {
            break "closed";
        }
        keyframe_due(&mut p, &mut m);
        let idle = tokio::time::Instant::from_std(
            m.last_media.unwrap_or(started) + PUBLISHER_IDLE.max(CONNECT_TIMEOUT),
        );
        tokio::select! {
            () = p.cancel.cancelled() => break "ended by the publisher (DELETE)",
            () = p.shutdown.draining() => break "node draining",
            () = tokio::time::sleep_until(deadline), if !connected => {
                break "never connected (ICE/DTLS) within 10 s";
            }
            () = tokio::time::sleep_until(idle), if connected => {
                break "no media from the publisher for 10 s";
            }
            () = lease_lost(&mut p.ingest) => break "stream taken over by another origin",
            d = p.inbox.recv() => {
                let Some(d) = d else { break "inbox closed" };
                let Ok(rcv) = Receive::new(Protocol::Udp, d.source, p.local, &d.bytes) else {
                    continue;
                };
                if let Err(e) = p.rtc.handle_input(Input::Receive(d.at, rcv)) {
                    tracing::debug!(error = %e, "webrtc input refused");
                }
            }
            Some(frame) = next_aac(&mut m.audio) => aac(&mut p, &mut m, frame),
            () = p.keyframe.notified(), if connected => {
                request_keyframe(&mut p, &mut m, Instant::now());
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(Instant::now())) {
                    tracing::debug!(error = %e, "webrtc timeout handling failed");
                    break "str0m error";
                }
            }
        }
    };
    tracing::info!(%stream, reason = why, "WebRTC publisher ended");
    p.notifier.send(SessionEvent::Ended);
    p.rtc.disconnect();
    while let Ok(Output::Transmit(t)) = p.rtc.poll_output() {
        if p.socket.send_to(&t.contents, t.destination).await.is_err() {
            break;
        }
    }
}

/// One depacketized frame (video) or packet (audio) from the publisher.
fn media(p: &mut Parts, m: &mut Media, data: MediaData, started: Instant) {
    let now = Instant::now();
    m.last_media = Some(now);
    let video = Some(data.mid) == m.video_mid || data.params.spec().codec.is_video();
    if video {
        m.video_mid.get_or_insert(data.mid);
        let clock = *m
            .video_clock
            .get_or_insert_with(|| TrackClock::new(&data, started));
        let ms = clock.ms(&data);
        if !data.contiguous {
            // Packets were lost for good: the decoder needs a new keyframe.
            request_keyframe(p, m, now);
        }
        match m.h264.push(&data.data) {
            Ok(out) => {
                if let Some(header) = out.header {
                    p.ingest.video(ms as u32, header);
                }
                if let Some((keyframe, body)) = out.frame {
                    if keyframe {
                        m.last_keyframe = Some(now);
                    }
                    p.ingest.video(ms as u32, body);
                    if !m.flowing {
                        m.flowing = true;
                        p.notifier.send(SessionEvent::Playing);
                    }
                }
            }
            Err(VideoDropped::NeedKeyframe) => request_keyframe(p, m, now),
            Err(e) => tracing::debug!(stream = %p.ingest.name(), error = %e, "video frame dropped"),
        }
    } else if data.params.spec().codec == str0m::format::Codec::Opus {
        let clock = *m
            .audio_clock
            .get_or_insert_with(|| TrackClock::new(&data, started));
        if data.data.len() > MAX_OPUS_PACKET {
            return;
        }
        if let Some(a) = &m.audio {
            // Full: the packet is dropped (the audio thread is behind), the FIFO goes on.
            let _dropped = a
                .input
                .try_send((Bytes::copy_from_slice(&data.data), clock.ticks(&data)));
        }
    }
}

/// An AAC frame from the audio thread into the hub (the sequence header first).
fn aac(p: &mut Parts, m: &mut Media, frame: AacFrame) {
    if !m.audio_described {
        m.audio_described = true;
        let mut header = BytesMut::with_capacity(4);
        // FLV: AAC, 44 kHz flag, 16-bit, stereo; sequence header; the AudioSpecificConfig.
        header.put_slice(&[0xaf, 0]);
        header.put_slice(&ASC);
        p.ingest.audio(frame.ms as u32, header.freeze());
    }
    let mut body = BytesMut::with_capacity(frame.data.len() + 2);
    body.put_slice(&[0xaf, 1]);
    body.put_slice(&frame.data);
    p.ingest.audio(frame.ms as u32, body.freeze());
}

/// Asks for a keyframe when a segment's worth passed since the last one.
fn keyframe_due(p: &mut Parts, m: &mut Media) {
    let now = Instant::now();
    if let Some(k) = m.last_keyframe
        && now.saturating_duration_since(k) >= p.segment
    {
        request_keyframe(p, m, now);
    }
}

/// Sends a PLI to the publisher, at most every [`PLI_INTERVAL`].
fn request_keyframe(p: &mut Parts, m: &mut Media, now: Instant) {
    if m.last_pli
        .is_some_and(|t| now.saturating_duration_since(t) < PLI_INTERVAL)
    {
        return;
    }
    let Some(mid) = m.video_mid else { return };
    let Some(mut writer) = p.rtc.writer(mid) else {
        return;
    };
    match writer.request_keyframe(None, KeyframeRequestKind::Pli) {
        Ok(()) => m.last_pli = Some(now),
        Err(e) => tracing::debug!(error = %e, "keyframe request failed"),
    }
}

async fn next_aac(audio: &mut Option<AudioThread>) -> Option<AacFrame> {
    match audio {
        Some(a) => a.output.recv().await,
        None => std::future::pending().await,
    }
}

async fn lease_lost(ingest: &mut Ingest) {
    match ingest.lease.as_mut() {
        Some(lease) => lease.lost().await,
        None => std::future::pending().await,
    }
}
