//! One WebRTC viewer: a task owning the session's `Rtc` and its hub subscription.
//!
//! Loop: drain the `Rtc`'s outputs (datagrams onto the shared socket, events) until it names
//! its next timeout, then wait for whichever comes first: a datagram from the UDP task, a hub
//! event (only once connected: str0m drops media written before), a rendition switch's target
//! (`switch`), a control message (`forceStreamQuality`), the timeout, the connect deadline,
//! `DELETE` or the node draining. Media starts at the subscription's first keyframe (the hub's
//! start cache), which is written at once and squeezed in time (see `h264`). Opus audio, when
//! negotiated, comes from the stream's shared feed (see `audio`) and is written on the video's
//! timeline once the start cache is shown.
//!
//! Renditions: the session sends one rendition of its stream at a time and changes it at a
//! keyframe (`switch`) when the viewer forces one, when the source turns out to have B-frames
//! and the stream has a ladder (`ladder`), or when the bandwidth estimate says so (`abr`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::abr::Abr;
use super::audio::{AudioFeed, AudioSender, SharedPacket};
use super::h264::{self, Reordering, Timeline};
use super::ladder::{self, BFrameWarnings, Rung};
use super::switch::{Current, Switch, Why};
use super::{CONNECT_TIMEOUT, Control, Datagram, Notifier, SessionEvent, WebRtcMetrics};
use crate::media::frame::{Frame, TrackKind};
use crate::media::hub::{HubEvent, HubKey, Hubs, SubscriberKind, Subscription, TryRecvError};
use crate::runtime::Shutdown;
use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::names::RenditionId;

/// Hub events handled per wake-up before the session looks at its socket again.
const HUB_BATCH: usize = 32;
/// How often the ladder (renditions and their bit rates) is looked up again for ABR.
const LADDER_REFRESH: Duration = Duration::from_secs(2);

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
    /// The node's hubs: the stream's other renditions are found there.
    pub hubs: Arc<Hubs>,
    /// `forceStreamQuality` and the like, from the signalling.
    pub control: mpsc::Receiver<Control>,
    /// The one B-frame warning per stream.
    pub warnings: Arc<BFrameWarnings>,
    /// Bandwidth-driven switching (`webrtc.abr` and the stream has a ladder); str0m estimates
    /// only when it is on.
    pub abr: bool,
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
    /// The latest presentation time written (ms): where a switch may splice.
    written: Option<i64>,
    /// Still reading what waited in the subscription when the session connected (the start
    /// cache): its frames are squeezed in time.
    catching_up: bool,
    /// The session's str0m clock: the latest instant it was given ([`clock_to`]).
    clock: Instant,
}

/// Which rendition the session sends and why.
struct Renditions {
    /// The stream.
    stream: HubKey,
    /// The rendition sent (the current subscription's).
    current: RenditionId,
    /// The rendition the viewer forced, if it did.
    forced: Option<RenditionId>,
    /// B-frames seen in the source.
    bframes: Reordering,
    /// The switch in progress.
    switch: Option<Switch>,
    /// A keyframe of the current held back by a switch given up for another: sent first.
    resume: Option<Frame>,
    /// Bandwidth-driven choice.
    abr: Abr,
    /// The ladder for ABR and when it was looked up.
    ladder: Vec<Rung>,
    ladder_at: Option<Instant>,
    /// The latest bandwidth estimate (bits per second).
    estimate: Option<u64>,
    /// NACKs and PLIs of the video counted so far (str0m's stats are cumulative).
    nacks: u64,
    plis: u64,
}

/// Runs a session until it ends; errors are logged here, once.
pub(super) async fn run(mut p: Parts) {
    let started = Instant::now();
    // The latest instant given to str0m (its clock); the Rtc was made before `started`.
    let mut clock = started;
    let deadline = tokio::time::Instant::from_std(started + CONNECT_TIMEOUT);
    let mut connected = false;
    let mut video: Option<Video> = None;
    let mut pending_mid: Option<Mid> = p.offered_video;
    let mut audio: Option<AudioSender> = None;
    let mut pending_audio_mid: Option<Mid> = p.offered_audio;
    let mut r = Renditions {
        stream: p.subscription.hub().key().clone(),
        current: p.subscription.hub().key().rendition,
        forced: None,
        bframes: Reordering::default(),
        switch: None,
        resume: None,
        abr: Abr::default(),
        ladder: Vec::new(),
        ladder_at: None,
        estimate: None,
        nacks: 0,
        plis: 0,
    };
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
                    Event::MediaEgressStats(s)
                        if video.as_ref().is_some_and(|v| v.mid == s.mid) =>
                    {
                        // Cumulative per session: the node counters get what is new.
                        p.metrics.nacks.inc_by(s.nacks.saturating_sub(r.nacks));
                        p.metrics.plis.inc_by(s.plis.saturating_sub(r.plis));
                        r.nacks = r.nacks.max(s.nacks);
                        r.plis = r.plis.max(s.plis);
                        // Every second (str0m reports an estimate only when it changes): the
                        // controller looks at the latest one.
                        if let Some(estimate) = r.estimate
                            && video.as_ref().is_some_and(|v| v.first_written.is_some())
                        {
                            bandwidth(&mut p, &mut r, estimate);
                        }
                    }
                    Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                        r.estimate = Some(estimate.as_u64());
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
            video = video_sender(&mut p.rtc, mid, p.profile, clock);
            if video.is_none() {
                break "no H.264 payload type negotiated";
            }
            start_without_bframes(&mut p, &mut r);
        }
        if let Some(mid) = pending_audio_mid.take()
            && let Some(feed) = p.audio.take()
        {
            audio = AudioSender::new(&mut p.rtc, mid, feed);
        }
        let sending = connected && video.is_some();
        if let (Some(f), Some(v)) = (r.resume.take(), video.as_mut()) {
            write_video(&mut p.rtc, v, &f);
        }
        let holding = r.switch.as_ref().is_some_and(|s| s.splice.holding());
        let switch_deadline = r.switch.as_ref().map(|s| s.deadline);
        tokio::select! {
            () = p.cancel.cancelled() => break "ended by the viewer (DELETE)",
            () = p.shutdown.draining() => break "node draining",
            () = tokio::time::sleep_until(deadline), if !connected => {
                p.metrics.timeouts.inc();
                break "never connected (ICE/DTLS) within 10 s";
            }
            d = p.inbox.recv() => {
                let Some(d) = d else { break "inbox closed" };
                let Ok(rcv) = Receive::new(Protocol::Udp, d.source, p.local, &d.bytes) else {
                    continue;
                };
                if let Err(e) = p.rtc.handle_input(Input::Receive(d.at, rcv)) {
                    tracing::debug!(error = %e, "webrtc input refused");
                }
                clock = d.at;
                if let Some(v) = video.as_mut() {
                    v.clock = clock;
                }
            }
            Some(c) = p.control.recv() => match c {
                Control::Force(rendition) => {
                    r.forced = rendition;
                    let target = rendition.unwrap_or_else(|| auto_choice(&p, &r));
                    begin_switch(&mut p, &mut r, target, Why::Forced);
                }
            },
            ev = p.subscription.recv(), if sending && !holding => {
                let Some(ev) = ev else { break "dropped by the hub for staying behind" };
                let Some(v) = video.as_mut() else { continue };
                let first = v.first_written.is_none();
                let mut next = Some(ev);
                let mut n = 0;
                while let Some(ev) = next.take() {
                    let skipped = p.subscription.skipped();
                    if !current_event(&mut p, &mut r, v, ev, skipped) {
                        break;
                    }
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
            ev = next_target(&mut r.switch), if sending => {
                let Some(v) = video.as_mut() else { continue };
                let first = v.first_written.is_none();
                target_event(&mut p, &mut r, v, ev);
                if first && v.first_written.is_some() {
                    p.notifier.send(SessionEvent::Playing);
                }
            }
            () = sleep_until(switch_deadline) => {
                if let (Some(sw), Some(v)) = (r.switch.take(), video.as_mut()) {
                    abandon(&mut p, v, sw);
                }
            }
            packet = next_audio(&mut audio), if sending && audio.is_some() => {
                match packet {
                    Some(packet) => write_audio(&mut p, audio.as_mut(), video.as_mut(), &packet),
                    None => {
                        tracing::debug!("the stream's Opus feed stopped; video only from now");
                        audio = None;
                    }
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                clock = Instant::now();
                if let Some(v) = video.as_mut() {
                    v.clock = clock;
                }
                if let Err(e) = p.rtc.handle_input(Input::Timeout(clock)) {
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
fn video_sender(rtc: &mut Rtc, mid: Mid, profile: u32, clock: Instant) -> Option<Video> {
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
        written: None,
        catching_up: true,
        clock,
    })
}

/// Before the first frame: a source whose start cache shows B-frames is replaced by the best
/// rendition without them, when the stream has one (else the one warning).
fn start_without_bframes(p: &mut Parts, r: &mut Renditions) {
    if r.current != RenditionId::Source {
        return;
    }
    for f in p.subscription.cached() {
        if f.kind == TrackKind::Video {
            r.bframes.push(f);
        }
    }
    if r.bframes.seen {
        bframes_found(p, r);
    }
}

/// The source has B-frames: switch to the best rendition without them, or warn once.
fn bframes_found(p: &mut Parts, r: &mut Renditions) {
    if r.forced.is_some() {
        return;
    }
    let rungs = ladder::rungs(&p.hubs, &r.stream.stream, true);
    match ladder::best_without_bframes(&rungs) {
        Some(target) => {
            tracing::info!(stream = %r.stream.stream, to = %target,
                "the source has B-frames: sending its best rendition without them");
            begin_switch(p, r, target, Why::BFrames);
        }
        None => p.warnings.warn(&r.stream.stream),
    }
}

/// What the session sends when nothing is forced: the source, unless it has B-frames and the
/// stream has a ladder.
fn auto_choice(p: &Parts, r: &Renditions) -> RenditionId {
    if r.bframes.seen {
        let rungs = ladder::rungs(&p.hubs, &r.stream.stream, true);
        if let Some(best) = ladder::best_without_bframes(&rungs) {
            return best;
        }
    }
    RenditionId::Source
}

/// Starts switching to `target` (a switch to it already under way goes on; one elsewhere is
/// abandoned).
fn begin_switch(p: &mut Parts, r: &mut Renditions, target: RenditionId, why: Why) {
    if r.switch.as_ref().is_some_and(|s| s.target == target) {
        return;
    }
    if let Some(mut sw) = r.switch.take() {
        // The keyframe it held back is sent before the current goes on.
        r.resume = sw.splice.take_held();
    }
    if target == r.current {
        return;
    }
    let key = HubKey::new(r.stream.stream.clone(), target);
    let Some(hub) = p.hubs.get(&key).filter(|h| h.is_live()) else {
        tracing::debug!(to = %key, "no such live rendition to switch to");
        return;
    };
    tracing::debug!(from = %r.current, to = %target, ?why, "rendition switch begins");
    let subscription = hub.subscribe(SubscriberKind::WebRtc);
    r.switch = Some(Switch::new(target, why, subscription, Instant::now()));
}

/// One event of the rendition sent; false when the session must stop reading it for now (it
/// holds back a keyframe, or just switched).
fn current_event(
    p: &mut Parts,
    r: &mut Renditions,
    v: &mut Video,
    ev: HubEvent,
    skipped: bool,
) -> bool {
    let HubEvent::Frame(f) = ev else {
        handle_event(&mut p.rtc, v, ev, skipped);
        return true;
    };
    if f.kind != TrackKind::Video {
        return true;
    }
    if r.current == RenditionId::Source && r.bframes.push(&f) {
        bframes_found(p, r);
    }
    let step = match r.switch.as_mut() {
        Some(sw) => sw.splice.current(&f),
        None => Current::Write,
    };
    match step {
        Current::Write => {
            handle_event(&mut p.rtc, v, HubEvent::Frame(f), skipped);
            true
        }
        Current::Hold => false,
        Current::Splice => {
            if let Some(sw) = r.switch.take() {
                commit(p, r, v, sw);
            }
            false
        }
    }
}

/// One event of a switch's target.
fn target_event(p: &mut Parts, r: &mut Renditions, v: &mut Video, ev: Option<HubEvent>) {
    let Some(sw) = r.switch.as_mut() else { return };
    match ev {
        None => {
            tracing::debug!(to = %sw.target, "the rendition switched to dropped the session");
            if let Some(sw) = r.switch.take() {
                abandon(p, v, sw);
            }
        }
        Some(HubEvent::Start { info, .. }) => {
            sw.info = Some(info);
            sw.splice.reset();
        }
        Some(HubEvent::Stop { .. }) => sw.splice.reset(),
        Some(HubEvent::Frame(f)) => {
            let written = v.first_written.and(v.written);
            if sw.splice.target(f, written)
                && let Some(sw) = r.switch.take()
            {
                commit(p, r, v, sw);
            }
        }
    }
}

/// Makes the switch: the target's description, its kept frames, and its subscription from now.
fn commit(p: &mut Parts, r: &mut Renditions, v: &mut Video, mut sw: Switch) {
    if let Some(info) = sw.info.take() {
        handle_event(
            &mut p.rtc,
            v,
            HubEvent::Start {
                info,
                generation: 0,
            },
            false,
        );
    }
    for f in sw.splice.take_kept() {
        write_video(&mut p.rtc, v, &f);
    }
    tracing::info!(stream = %r.stream.stream, from = %r.current, to = %sw.target, why = ?sw.why,
        "WebRTC viewer switched rendition");
    p.metrics.switches.inc();
    if sw.why == Why::Bandwidth {
        p.metrics.bandwidth_switches.inc();
    }
    r.current = sw.target;
    r.abr.switched(Instant::now());
    // The old rendition's subscription ends here.
    p.subscription = sw.subscription;
}

/// Gives up a switch: the rendition sent goes on (with the keyframe it held back).
fn abandon(p: &mut Parts, v: &mut Video, mut sw: Switch) {
    tracing::debug!(to = %sw.target, "rendition switch abandoned (no keyframe in time)");
    if let Some(f) = sw.splice.take_held() {
        write_video(&mut p.rtc, v, &f);
    }
}

/// A bandwidth estimate: the ABR controller may pick another rendition.
fn bandwidth(p: &mut Parts, r: &mut Renditions, estimate: u64) {
    if !p.abr {
        return;
    }
    let now = Instant::now();
    if r.ladder_at
        .is_none_or(|t| now.saturating_duration_since(t) >= LADDER_REFRESH)
    {
        r.ladder = ladder::rungs(&p.hubs, &r.stream.stream, r.bframes.seen);
        r.ladder_at = Some(now);
    }
    let Some(current) = r.ladder.iter().position(|g| g.rendition == r.current) else {
        return;
    };
    if let Some(top) = r.ladder.first().map(|g| g.bitrate).filter(|b| *b > 0) {
        // What str0m probes for: the best rendition with room.
        p.rtc
            .bwe()
            .set_desired_bitrate(Bitrate::bps(top.saturating_mul(3) / 2));
    }
    tracing::trace!(estimate, rendition = %r.current, "bandwidth estimate");
    let rates: Vec<u64> = r.ladder.iter().map(|g| g.bitrate).collect();
    let busy = r.forced.is_some() || r.switch.is_some();
    if let Some(to) = r.abr.estimate(now, estimate, &rates, current, busy)
        && let Some(target) = r.ladder.get(to).map(|g| g.rendition)
    {
        tracing::debug!(estimate, from = %r.current, to = %target, "bandwidth estimate: switching");
        begin_switch(p, r, target, Why::Bandwidth);
    }
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
    let now = Instant::now();
    // The sender reports map RTP time to when the frame was published (as the audio's do), not
    // to when this session got to it: a session running late must not shift video against
    // audio in the browser's lip sync. Squeezed start-cache frames are sent as of now.
    let wallclock = if v.catching_up {
        now
    } else {
        super::published_at(f.published_us, now)
    };
    clock_to(rtc, &mut v.clock, wallclock);
    let Some(writer) = rtc.writer(v.mid) else {
        return;
    };
    if let Err(e) = writer.write(v.pt, wallclock, MediaTime::from_90khz(rtp), au.annexb) {
        tracing::debug!(error = %e, "webrtc video write failed");
        return;
    }
    v.written = Some(v.written.map_or(au.pts, |w| w.max(au.pts)));
    v.first_written.get_or_insert(now);
}

/// Moves the session's str0m clock up to `at` when it is behind. str0m's sender reports map
/// RTP time through the wall clock of the latest write, measured from its own clock: a write
/// dated after that clock makes them carry RTP time 0, a wrong lip-sync mapping in the
/// browser for up to a second.
pub(super) fn clock_to(rtc: &mut Rtc, clock: &mut Instant, at: Instant) {
    if at <= *clock {
        return;
    }
    *clock = at;
    if let Err(e) = rtc.handle_input(Input::Timeout(at)) {
        tracing::debug!(error = %e, "webrtc clock update failed");
    }
}

/// The next event of a switch's target (pending forever without one); `None` when the target
/// dropped the subscription.
async fn next_target(switch: &mut Option<Switch>) -> Option<HubEvent> {
    match switch {
        Some(s) => s.subscription.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
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
    video: Option<&mut Video>,
    packet: &SharedPacket,
) {
    let (Some(a), Some(v)) = (audio, video) else {
        return;
    };
    if a.write(
        &mut p.rtc,
        &mut v.clock,
        packet,
        &v.timeline,
        v.catching_up,
        Instant::now(),
    ) {
        p.metrics.audio_packets.inc();
    }
}
