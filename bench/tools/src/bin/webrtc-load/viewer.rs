//! One viewer's session state and counters: the `Rtc` (driven by its worker thread), what it
//! received, and its latency against the server's RTCP sender reports.
//!
//! Latency: the server stamps each frame it writes with the wall-clock time the frame was
//! published (entered the server's hub), so its sender reports map RTP time to publish time.
//! A frame's publish time is `ntp + (rtp - sr_rtp) / clock` from the latest report of its
//! track; its latency is the wall clock when its last packet (video: the marker) arrived minus
//! that. Server and viewers run on one host, so they read the same clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use mio::net::UdpSocket;
use str0m::media::Mid;
use str0m::rtp::RtpPacket;
use str0m::rtp::rtcp::SenderInfo;
use str0m::{Event, IceConnectionState, Rtc};

use crate::report::{Histogram, ViewerReport};

/// The measurement window (and the run's time origin).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Times in the reports are ms from here.
    pub origin: Instant,
    /// Counting starts.
    pub start: Instant,
    /// Counting ends.
    pub end: Instant,
}

impl Window {
    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64() * 1e3
    }

    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// The latest sender report of one track.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    ntp: SystemTime,
    rtp: u32,
    clock: f64,
}

impl Mapping {
    fn of(info: &SenderInfo) -> Self {
        Mapping {
            ntp: info.ntp_time,
            // RTP timestamps are 32 bits on the wire; str0m extends them.
            rtp: info.rtp_time.numer() as u32,
            clock: f64::from(info.rtp_time.denom()),
        }
    }

    /// ms from the publish time of RTP time `rtp` to `now` (negative if `now` is earlier).
    fn latency_ms(&self, rtp: u32, now: SystemTime) -> f64 {
        let since_report = f64::from(rtp.wrapping_sub(self.rtp) as i32) / self.clock;
        let since_ntp = match now.duration_since(self.ntp) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        (since_ntp - since_report) * 1e3
    }
}

/// Per-track receive counters.
#[derive(Debug, Default)]
struct Track {
    /// Highest extended sequence number seen.
    highest: Option<u64>,
    /// Packets received inside the window.
    packets: u64,
    /// Payload bytes inside the window.
    bytes: u64,
    /// Sequence numbers skipped inside the window (lost or late).
    gaps: u64,
    /// Packets that arrived below the highest sequence number (late or retransmitted).
    late: u64,
    mapping: Option<Mapping>,
}

impl Track {
    /// Counts a packet; true when it is the newest so far.
    fn count(&mut self, p: &RtpPacket, in_window: bool) -> bool {
        let seq = *p.seq_no;
        let newest = match self.highest {
            Some(h) if seq <= h => {
                if in_window {
                    self.late += 1;
                }
                false
            }
            Some(h) => {
                if in_window {
                    self.gaps += seq - h - 1;
                }
                true
            }
            None => true,
        };
        if newest {
            self.highest = Some(seq);
        }
        if in_window {
            self.packets += 1;
            self.bytes += p.payload.len() as u64;
        }
        newest
    }
}

/// One WebRTC viewer.
pub struct Viewer {
    /// Index (join order).
    pub id: usize,
    /// Its session.
    pub rtc: Rtc,
    /// Its socket, registered with the worker's poll.
    pub socket: UdpSocket,
    /// The socket's address (the destination of what it receives).
    pub local: SocketAddr,
    /// When str0m wants its next `Input::Timeout`.
    pub next_timeout: Instant,
    /// Ended (error or closed): no more input.
    pub done: bool,
    video_mid: Mid,
    audio_mid: Option<Mid>,
    posted: Instant,
    answered: Instant,
    connected: Option<Instant>,
    first_frame: Option<Instant>,
    video: Track,
    audio: Track,
    /// Video frames (marker packets) inside the window.
    frames: u64,
    /// Video frames before the window (was it playing when the window started?).
    frames_before: u64,
    /// First and last video frame in the window: arrival and RTP time.
    first_in_window: Option<(Instant, u32)>,
    last_in_window: Option<(Instant, u32)>,
    /// Largest gap between consecutive video frames inside the window.
    max_gap: Duration,
    last_frame_at: Option<Instant>,
    /// This viewer's video latency inside the window (10 ms buckets).
    latency: Histogram,
    error: Option<(Instant, String)>,
    /// Sender reports received, and those with RTP time 0 (ignored).
    reports: u64,
    zero_reports: u64,
    zero_video_reports: u64,
}

impl Viewer {
    /// A viewer from its negotiated session and its socket (non-blocking, registered).
    pub fn new(id: usize, n: crate::whep::Session, socket: UdpSocket) -> Self {
        Viewer {
            id,
            rtc: n.rtc,
            socket,
            local: n.local,
            next_timeout: n.answered,
            done: false,
            video_mid: n.video,
            audio_mid: n.audio,
            posted: n.posted,
            answered: n.answered,
            connected: None,
            first_frame: None,
            video: Track::default(),
            audio: Track::default(),
            frames: 0,
            frames_before: 0,
            first_in_window: None,
            last_in_window: None,
            max_gap: Duration::ZERO,
            last_frame_at: None,
            latency: Histogram::new(10.0, 600),
            error: None,
            reports: 0,
            zero_reports: 0,
            zero_video_reports: 0,
        }
    }

    /// Records why the viewer ended (the first reason only).
    pub fn fail(&mut self, now: Instant, why: String) {
        self.done = true;
        if self.error.is_none() {
            self.error = Some((now, why));
        }
    }

    /// Handles one str0m event; `global` collects every viewer's latencies (video, audio).
    pub fn on_event(
        &mut self,
        event: Event,
        now: Instant,
        window: &Window,
        global: &mut (Histogram, Histogram),
    ) {
        match event {
            Event::Connected => {
                self.connected.get_or_insert(now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.fail(now, "ICE disconnected".into());
            }
            Event::Closed => self.fail(now, "closed by the server".into()),
            Event::SenderFeedback(f) => {
                self.reports += 1;
                if f.sender_info.rtp_time.numer() == 0 {
                    // str0m reports RTP time 0 when the last media was written with a
                    // wallclock later than the `Rtc`'s own time: no mapping; keep the last.
                    self.zero_reports += 1;
                    if f.mid == self.video_mid {
                        self.zero_video_reports += 1;
                    }
                    return;
                }
                let mapping = Some(Mapping::of(&f.sender_info));
                if f.mid == self.video_mid {
                    self.video.mapping = mapping;
                } else if Some(f.mid) == self.audio_mid {
                    self.audio.mapping = mapping;
                }
            }
            Event::RtpPacket(p) => self.on_rtp(&p, now, window, global),
            _ => {}
        }
    }

    fn on_rtp(
        &mut self,
        p: &RtpPacket,
        now: Instant,
        window: &Window,
        global: &mut (Histogram, Histogram),
    ) {
        let in_window = window.contains(now);
        if p.time.denom() != 90_000 {
            // Opus: every packet is a frame.
            let newest = self.audio.count(p, in_window);
            if in_window
                && newest
                && let Some(m) = self.audio.mapping
            {
                global
                    .1
                    .add(m.latency_ms(p.header.timestamp, SystemTime::now()));
            }
            return;
        }
        let newest = self.video.count(p, in_window);
        if !(p.header.marker && newest) {
            return;
        }
        self.first_frame.get_or_insert(now);
        if now < window.start {
            self.frames_before += 1;
        }
        if !in_window {
            return;
        }
        self.frames += 1;
        let ts = p.header.timestamp;
        self.first_in_window.get_or_insert((now, ts));
        self.last_in_window = Some((now, ts));
        if let Some(last) = self.last_frame_at {
            self.max_gap = self.max_gap.max(now - last);
        }
        self.last_frame_at = Some(now);
        if let Some(m) = self.video.mapping {
            let ms = m.latency_ms(ts, SystemTime::now());
            self.latency.add(ms);
            global.0.add(ms);
        }
    }

    /// The viewer's report at the end of the window.
    pub fn report(&self, window: &Window) -> ViewerReport {
        let secs = (window.end - window.start).as_secs_f64();
        // A stall that lasted until the window closed counts too.
        let tail = self.last_frame_at.map_or(window.end - window.start, |t| {
            window.end.saturating_duration_since(t)
        });
        let media_rate = match (self.first_in_window, self.last_in_window) {
            (Some((t0, r0)), Some((t1, r1))) if t1 > t0 => {
                f64::from(r1.wrapping_sub(r0)) / 90_000.0 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let packets = self.video.packets + self.audio.packets;
        let gaps = self.video.gaps + self.audio.gaps;
        ViewerReport {
            id: self.id,
            posted_at_ms: window.ms(self.posted),
            answer_ms: (self.answered - self.posted).as_secs_f64() * 1e3,
            connect_ms: self
                .connected
                .map(|t| (t - self.posted).as_secs_f64() * 1e3),
            ttff_ms: self
                .first_frame
                .map(|t| (t - self.posted).as_secs_f64() * 1e3),
            playing_at_start: self.frames_before > 0,
            frames: self.frames,
            fps: self.frames as f64 / secs,
            video_kbps: self.video.bytes as f64 * 8.0 / secs / 1e3,
            audio_packets: self.audio.packets,
            audio_kbps: self.audio.bytes as f64 * 8.0 / secs / 1e3,
            media_rate,
            packets,
            lost: gaps.saturating_sub(self.video.late + self.audio.late),
            late: self.video.late + self.audio.late,
            max_gap_ms: self.max_gap.max(tail).as_secs_f64() * 1e3,
            latency_ms: self.latency.summary(),
            sender_reports: self.reports,
            zero_sender_reports: self.zero_reports,
            zero_video_sender_reports: self.zero_video_reports,
            error_at_ms: self.error.as_ref().map(|(t, _)| window.ms(*t)),
            error: self.error.as_ref().map(|(_, e)| e.clone()),
            verdict: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_arrival_minus_publish_time_of_the_rtp_time() {
        let ntp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = Mapping {
            ntp,
            rtp: u32::MAX - 44_999, // wraps half a second later
            clock: 90_000.0,
        };
        // A frame 1 s after the report's RTP time, arriving 1.25 s after its NTP time.
        let rtp = m.rtp.wrapping_add(90_000);
        let ms = m.latency_ms(rtp, ntp + Duration::from_millis(1250));
        assert!((ms - 250.0).abs() < 1e-6, "{ms}");
        // A frame before the report.
        let ms = m.latency_ms(m.rtp.wrapping_sub(9_000), ntp);
        assert!((ms - 100.0).abs() < 1e-6, "{ms}");
    }
}
