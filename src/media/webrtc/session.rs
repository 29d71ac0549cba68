//! One WebRTC viewer: a task owning the session's `Rtc` and its hub subscription.
//!
//! Loop: drain the `Rtc`'s outputs (datagrams onto the shared socket, events) until it names
//! its next timeout, then wait for whichever comes first: a datagram from the UDP task, a hub
//! event (only once connected: str0m drops media written before), the timeout, the connect
//! deadline, `DELETE` or the node draining. Media starts at the subscription's first keyframe
//! (the hub's start cache), which is written at once and squeezed in time (see `h264`). Opus
//! audio, when negotiated, comes from the stream's shared feed (see `audio`) and is written on
//! the video's timeline once the start cache is shown.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::audio::{AudioFeed, AudioSender, SharedPacket};
use super::h264::{self, Timeline};
use super::{CONNECT_TIMEOUT, Datagram, Notifier, SessionEvent, WebRtcMetrics};
use crate::media::frame::{Frame, TrackKind};
use crate::media::hub::{HubEvent, Subscription, TryRecvError};
use crate::runtime::Shutdown;
use streamfleet_proto::avc::DecoderConfig;

/// Hub events handled per wake-up before the session looks at its socket again.
const HUB_BATCH: usize = 32;

/// What a session task is started with.
pub(super) struct Parts {
    /// The session's WebRTC state machine, offer already answered.
    pub rtc: Rtc,
    /// The stream's source hub, from its latest keyframe.
    pub subscription: Subscription,
    /// The stream's `profile-level-id` (its payload type is preferred).
    pub profile: u32,
    /// The stream's Opus feed, when the answer accepted audio.
    pub audio: Option<Arc<AudioFeed>>,
    /// Datagrams the UDP task routed to this session.
    pub inbox: mpsc::Receiver<Datagram>,
    /// The node's one WebRTC socket, shared for sending.
    pub socket: Arc<UdpSocket>,
    /// The socket's address (the destination of what the UDP task hands over).
    pub local: std::net::SocketAddr,
    /// Cancelled by WHEP `DELETE`.
    pub cancel: CancellationToken,
    /// Node counters.
    pub metrics: WebRtcMetrics,
    /// The session ends when the node drains.
    pub shutdown: Shutdown,
    /// Told when the first frame is written (Ant Media's `play_started`).
    pub notifier: Notifier,
    /// The video m-line when this side made the offer (str0m announces `MediaAdded` only for
    /// m-lines the remote offered).
    pub offered_video: Option<Mid>,
    /// The audio m-line when this side made the offer (as `offered_video`).
    pub offered_audio: Option<Mid>,
}

/// The video sender's state.
struct Video {
    /// The video m-line.
    mid: Mid,
    /// Its H.264 payload type (the stream's profile when the viewer offered it).
    pt: Pt,
    /// The stream's decoder configuration (SPS/PPS put before IDRs).
    config: Option<DecoderConfig>,
    timeline: Timeline,
    /// Frames are dropped until a keyframe (at the start and after the hub skipped some).
    need_keyframe: bool,
    /// When the first frame was written (for the log).
    first_written: Option<Instant>,
    /// Still reading what waited in the subscription when the session connected (the start
    /// cache): its frames are squeezed in time.
    catching_up: bool,
}

/// Runs a session until it ends; errors are logged here, once.
pub(super) async fn run(mut p: Parts) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + CONNECT_TIMEOUT);
    let mut connected = false;
    let mut video: Option<Video> = None;
    let mut pending_mid: Option<Mid> = p.offered_video;
    let mut audio: Option<AudioSender> = None;
    let mut pending_audio_mid: Option<Mid> = p.offered_audio;
    let why = loop {
        // Drain outputs until the Rtc names its next timeout.
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
                        p.metrics.connected.inc();
                        tracing::debug!(elapsed = ?started.elapsed(), "webrtc connected");
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        break Err("ICE disconnected");
                    }
                    Event::MediaAdded(m) if m.kind == MediaKind::Video && video.is_none() => {
                        pending_mid = Some(m.mid);
                    }
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio && audio.is_none() => {
                        pending_audio_mid = Some(m.mid);
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(error = %e, "webrtc session failed");
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
        if video.is_none()
            && let Some(mid) = pending_mid
        {
            video = video_sender(&mut p.rtc, mid, p.profile);
            if video.is_none() {
                break "no H.264 payload type negotiated";
            }
        }
        if let Some(mid) = pending_audio_mid.take()
            && let Some(feed) = p.audio.take()
        {
            audio = AudioSender::new(&mut p.rtc, mid, feed);
        }
        let sending = connected && video.is_some();
        tokio::select! {
            () = p.cancel.cancelled() => break "ended by the viewer (DELETE)",
            () = p.shutdown.draining() => break "node draining",
            () = tokio::time::sleep_until(deadline), if !connected => {
                p.metrics.timeouts.inc();
                break "never connected (ICE/DTLS) within 10 s";
            }
            d = p.inbox.recv() => {
                let Some(d) = d else { break "inbox closed" };
                let Ok(r) = Receive::new(Protocol::Udp, d.source, p.local, &d.bytes) else {
                    continue;
                };
                if let Err(e) = p.rtc.handle_input(Input::Receive(d.at, r)) {
                    tracing::debug!(error = %e, "webrtc input refused");
                }
            }
            ev = p.subscription.recv(), if sending => {
                let Some(ev) = ev else { break "dropped by the hub for staying behind" };
                let Some(v) = video.as_mut() else { continue };
                let first = v.first_written.is_none();
                let mut next = Some(ev);
                let mut n = 0;
                while let Some(ev) = next.take() {
                    let skipped = p.subscription.skipped();
                    handle_event(&mut p.rtc, v, ev, skipped);
                    n += 1;
                    if n >= HUB_BATCH {
                        break;
                    }
                    next = match p.subscription.try_recv() {
                        Ok(ev) => Some(ev),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                            // Caught up with what waited when the session connected.
                            v.catching_up = false;
                            None
                        }
                    };
                }
                if first && v.first_written.is_some() {
                    tracing::debug!(elapsed = ?started.elapsed(), "webrtc first frame written");
                    p.notifier.send(SessionEvent::Playing);
                }
            }
            packet = next_audio(&mut audio), if sending && audio.is_some() => {
                match packet {
                    Some(packet) => write_audio(&mut p, audio.as_mut(), video.as_ref(), &packet),
                    None => {
                        tracing::debug!("the stream's Opus feed stopped; video only from now");
                        audio = None;
                    }
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(Instant::now())) {
                    tracing::debug!(error = %e, "webrtc timeout handling failed");
                    break "str0m error";
                }
            }
        }
    };
    tracing::debug!(reason = why, "webrtc session ending");
    p.rtc.disconnect();
    // Flush what closing produced (DTLS close_notify, RTCP BYE); best effort.
    while let Ok(Output::Transmit(t)) = p.rtc.poll_output() {
        if p.socket.send_to(&t.contents, t.destination).await.is_err() {
            break;
        }
    }
}

/// The sender of the negotiated video m-line: its H.264 payload type.
fn video_sender(rtc: &mut Rtc, mid: Mid, profile: u32) -> Option<Video> {
    let writer = rtc.writer(mid)?;
    let h264: Vec<_> = writer
        .payload_params()
        .filter(|p| p.spec().codec == Codec::H264 && p.spec().format.packetization_mode == Some(1))
        .collect();
    let same_profile = h264.iter().find(|p| {
        p.spec()
            .format
            .profile_level_id
            .is_some_and(|id| id >> 16 == profile >> 16)
    });
    let chosen = same_profile.or(h264.first())?;
    if same_profile.is_none() {
        tracing::debug!(
            stream_profile = %format!("{profile:06x}"),
            "the viewer offered no H.264 of the stream's profile; sending it as another profile"
        );
    }
    let pt = chosen.pt();
    Some(Video {
        mid,
        pt,
        config: None,
        timeline: Timeline::default(),
        need_keyframe: true,
        first_written: None,
        catching_up: true,
    })
}

/// Applies one hub event to the video sender.
fn handle_event(rtc: &mut Rtc, v: &mut Video, ev: HubEvent, skipped: bool) {
    match ev {
        HubEvent::Start { info, .. } => {
            let config = info.video.as_ref().and_then(h264::decoder_config);
            if config != v.config {
                v.need_keyframe = true;
            }
            v.config = config;
        }
        HubEvent::Stop { .. } => {
            v.timeline.rebase();
            v.need_keyframe = true;
        }
        HubEvent::Frame(f) => {
            if skipped {
                v.need_keyframe = true;
            }
            write_video(rtc, v, &f);
        }
    }
}

fn write_video(rtc: &mut Rtc, v: &mut Video, f: &Frame) {
    if f.kind != TrackKind::Video || (v.need_keyframe && !f.keyframe) {
        return;
    }
    let Some(config) = v.config.as_ref() else {
        return;
    };
    let Some(au) = h264::access_unit(&f.body, f.dts, f.keyframe, config) else {
        return;
    };
    v.need_keyframe = false;
    let rtp = v.timeline.rtp_90khz(au.pts, v.catching_up);
    let Some(writer) = rtc.writer(v.mid) else {
        return;
    };
    let now = Instant::now();
    // The sender reports map RTP time to when the frame was published (as the audio's do), not
    // to when this session got to it: a session running late must not shift video against
    // audio in the browser's lip sync. Squeezed start-cache frames are sent as of now.
    let wallclock = if v.catching_up {
        now
    } else {
        super::published_at(f.published_us, now)
    };
    if let Err(e) = writer.write(v.pt, wallclock, MediaTime::from_90khz(rtp), au.annexb) {
        tracing::debug!(error = %e, "webrtc video write failed");
        return;
    }
    v.first_written.get_or_insert(now);
}

/// The next Opus packet of the session's audio sender (pending forever without one).
async fn next_audio(audio: &mut Option<AudioSender>) -> Option<SharedPacket> {
    match audio {
        Some(a) => a.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes an Opus packet on the video's timeline.
fn write_audio(
    p: &mut Parts,
    audio: Option<&mut AudioSender>,
    video: Option<&Video>,
    packet: &SharedPacket,
) {
    let (Some(a), Some(v)) = (audio, video) else {
        return;
    };
    if a.write(
        &mut p.rtc,
        packet,
        &v.timeline,
        v.catching_up,
        Instant::now(),
    ) {
        p.metrics.audio_packets.inc();
    }
}
