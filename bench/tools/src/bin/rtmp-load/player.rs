//! One simulated RTMP player: a real client session over a tokio `TcpStream`, and the
//! [`Tracker`] that judges whether it keeps up.
//!
//! Bytes read from the socket go into streamfleet's sans-IO [`ClientSession`] (handshake, chunk
//! stream, messages, acknowledgements); its events drive the player through connect ->
//! createStream -> play, and every audio/video message is fed to the tracker with the wall-clock
//! time of the read that carried it. Whatever the session wants to send (commands, acks, pongs)
//! is written back after each read.

use std::time::{Duration, Instant};

use bytes::Bytes;
use streamfleet_proto::rtmp::handshake::RANDOM_LEN;
use streamfleet_proto::rtmp::session::{ClientConfig, ClientEvent, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::PlayerReport;

/// Where and what to play.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// RTMP application (`live`).
    pub app: String,
    /// Stream name.
    pub stream: String,
}

impl Target {
    /// Parses `rtmp://host:port/app/stream`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| format!("{url}: not an rtmp:// URL"))?;
        let (addr, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url}: no application"))?;
        let (app, stream) = path
            .split_once('/')
            .ok_or_else(|| format!("{url}: no stream name"))?;
        if addr.is_empty() || app.is_empty() || stream.is_empty() {
            return Err(format!("{url}: expected rtmp://host:port/app/stream"));
        }
        let addr = if addr.contains(':') {
            addr.to_owned()
        } else {
            format!("{addr}:1935")
        };
        Ok(Target {
            addr,
            app: app.to_owned(),
            stream: stream.to_owned(),
        })
    }

    /// `tcUrl` for connect.
    fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.addr, self.app)
    }
}

/// The moments every player shares: results count only inside the window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Origin of the millisecond clock in reports.
    pub origin: Instant,
    /// Measurement starts.
    pub start: Instant,
    /// Measurement ends; players hang up.
    pub end: Instant,
}

/// How a player judges itself.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Lag (behind the best media-vs-wall position this player ever had) that counts as
    /// falling behind.
    pub max_lag_ms: f64,
    /// A jump in video timestamps this large means the server skipped frames.
    pub max_gap_ms: f64,
    /// Video frames per second the source has.
    pub fps: f64,
    /// Share of `fps` a player must receive over the window.
    pub min_fps_ratio: f64,
}

/// Plays until the window ends (or the connection fails) and reports.
pub async fn run(
    id: usize,
    target: Target,
    connect_at: Instant,
    window: Window,
    read_buf: usize,
) -> PlayerReport {
    tokio::time::sleep_until(connect_at.into()).await;
    let mut tracker = Tracker::new(window, Instant::now());
    tracker.stream = target.stream.clone();
    let outcome =
        tokio::time::timeout_at(window.end.into(), play(&target, &mut tracker, read_buf)).await;
    match outcome {
        Err(_window_over) => {}
        Ok(Ok(())) => tracker.fail(Instant::now(), "server closed the connection".into()),
        Ok(Err(e)) => tracker.fail(Instant::now(), e),
    }
    tracker.finish(id)
}

/// Connects, plays, and feeds media to the tracker until the connection ends.
async fn play(target: &Target, tracker: &mut Tracker, read_buf: usize) -> Result<(), String> {
    let mut socket = TcpStream::connect(&target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    // The handshake random only has to be there; the server does not judge it.
    let random = [0x5a; RANDOM_LEN];
    let config = ClientConfig::new(target.app.clone(), target.tc_url());
    let mut session = ClientSession::new(config, 0, &random);
    let mut buf = vec![0u8; read_buf];
    loop {
        if let Some(out) = session.poll_output() {
            socket
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        // Indexing: `read` returned at most `buf.len()` bytes.
        session
            .handle_input(&buf[..n])
            .map_err(|e| format!("protocol: {e}"))?;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Connected { .. } => {
                    session.create_stream().map_err(|e| e.to_string())?;
                }
                ClientEvent::ConnectFailed { information } => {
                    return Err(format!("connect refused: {information:?}"));
                }
                ClientEvent::StreamCreated { stream_id } => {
                    session
                        .play(stream_id, &target.stream)
                        .map_err(|e| e.to_string())?;
                }
                ClientEvent::Status { level, code, .. } if level == "error" => {
                    return Err(format!("play refused: {code}"));
                }
                ClientEvent::Video {
                    timestamp, payload, ..
                } => tracker.video(now, timestamp, &payload),
                ClientEvent::Audio { .. } => tracker.audio(now),
                _ => {}
            }
        }
    }
}

/// What one player saw, reduced as it goes (nothing per frame is kept).
#[derive(Debug)]
pub struct Tracker {
    /// The shared moments.
    window: Window,
    /// When this player started connecting.
    connect_at: Instant,
    /// Connect -> first video keyframe.
    first_keyframe: Option<Duration>,
    /// Whether any video arrived before the window started (the player was playing).
    playing_at_start: bool,
    /// Smallest (wall ms - media ms) so far: the furthest ahead of real time the player was.
    best_offset: Option<f64>,
    /// Last video timestamp, ms (unwrapped).
    last_ts: Option<i64>,
    /// Video frames inside the window.
    video_frames: u64,
    /// Audio frames inside the window.
    audio_frames: u64,
    /// Largest lag inside the window, ms.
    max_lag_ms: f64,
    /// Largest jump between consecutive video timestamps inside the window, ms.
    max_gap_ms: f64,
    /// The failure that ended the connection, and when.
    error: Option<(f64, String)>,
    /// Stream played (for the report).
    stream: String,
}

impl Tracker {
    /// A player that starts connecting at `connect_at`.
    pub fn new(window: Window, connect_at: Instant) -> Self {
        Tracker {
            window,
            connect_at,
            first_keyframe: None,
            playing_at_start: false,
            best_offset: None,
            last_ts: None,
            video_frames: 0,
            audio_frames: 0,
            max_lag_ms: 0.0,
            max_gap_ms: 0.0,
            error: None,
            stream: String::new(),
        }
    }

    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.window.origin)
            .as_secs_f64()
            * 1000.0
    }

    fn in_window(&self, at: Instant) -> bool {
        at >= self.window.start && at < self.window.end
    }

    /// A video message with RTMP timestamp `timestamp` read at `now`.
    pub fn video(&mut self, now: Instant, timestamp: u32, payload: &Bytes) {
        if self.first_keyframe.is_none() && is_keyframe(payload) {
            self.first_keyframe = Some(now.saturating_duration_since(self.connect_at));
        }
        if now < self.window.start {
            self.playing_at_start = true;
        }
        let ts = self.unwrap_ts(timestamp);
        let offset = self.ms(now) - ts as f64;
        let best = self.best_offset.map_or(offset, |b| b.min(offset));
        self.best_offset = Some(best);
        if self.in_window(now) {
            self.video_frames += 1;
            self.max_lag_ms = self.max_lag_ms.max(offset - best);
            if let Some(last) = self.last_ts {
                self.max_gap_ms = self.max_gap_ms.max((ts - last) as f64);
            }
        }
        self.last_ts = Some(ts);
    }

    /// An audio message read at `now`.
    pub fn audio(&mut self, now: Instant) {
        if self.in_window(now) {
            self.audio_frames += 1;
        }
    }

    /// The connection failed at `now`.
    pub fn fail(&mut self, now: Instant, why: String) {
        self.error = Some((self.ms(now), why));
    }

    /// RTMP timestamps are 32-bit milliseconds; follow them across a wrap.
    fn unwrap_ts(&self, timestamp: u32) -> i64 {
        let ts = i64::from(timestamp);
        match self.last_ts {
            Some(last) => {
                let base = last - (last & 0xffff_ffff);
                let candidate = base + ts;
                // Closest of candidate and its neighbours across a wrap.
                [candidate - (1 << 32), candidate, candidate + (1 << 32)]
                    .into_iter()
                    .min_by_key(|c| (c - last).abs())
                    .unwrap_or(candidate)
            }
            None => ts,
        }
    }

    /// The player's report at the end of the window.
    pub fn finish(self, id: usize) -> PlayerReport {
        // A stalled player receives nothing, so its lag is measured at the end too.
        let end_lag = match (self.best_offset, self.last_ts, &self.error) {
            (Some(best), Some(last), None) => self.ms(self.window.end) - last as f64 - best,
            _ => 0.0,
        };
        let window_s = self
            .window
            .end
            .saturating_duration_since(self.window.start)
            .as_secs_f64();
        PlayerReport {
            id,
            stream: self.stream.clone(),
            connect_at_ms: self.ms(self.connect_at),
            ttff_ms: self.first_keyframe.map(|d| d.as_secs_f64() * 1000.0),
            playing_at_start: self.playing_at_start,
            video_frames: self.video_frames,
            audio_frames: self.audio_frames,
            video_fps: if window_s > 0.0 {
                self.video_frames as f64 / window_s
            } else {
                0.0
            },
            max_lag_ms: self.max_lag_ms.max(end_lag),
            max_gap_ms: self.max_gap_ms,
            error_at_ms: self.error.as_ref().map(|(at, _)| *at),
            error: self.error.map(|(_, why)| why),
            verdict: None,
        }
    }
}

/// Whether an FLV video tag body is a decodable keyframe (not an AVC sequence header).
fn is_keyframe(body: &[u8]) -> bool {
    match body {
        [first, rest @ ..] if first >> 4 == 1 => {
            let avc = first & 0x0f == 7;
            // AVCPacketType 1 = NAL units; 0 is the sequence header.
            !avc || rest.first() == Some(&1)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> (Window, Instant) {
        let origin = Instant::now();
        let w = Window {
            origin,
            start: origin + Duration::from_secs(10),
            end: origin + Duration::from_secs(20),
        };
        (w, origin)
    }

    fn ms(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    /// keyframe flag (1) + AVC (7), AVCPacketType 1 (NALU), composition time 0.
    const KEYFRAME: &[u8] = &[0x17, 0x01, 0, 0, 0];
    /// inter frame (2) + AVC (7), NALU.
    const INTER: &[u8] = &[0x27, 0x01, 0, 0, 0];
    /// keyframe + AVC, AVCPacketType 0: the sequence header.
    const SEQUENCE_HEADER: &[u8] = &[0x17, 0x00, 0, 0, 0];

    #[test]
    fn keyframes_are_told_from_sequence_headers() {
        assert!(is_keyframe(KEYFRAME));
        assert!(!is_keyframe(INTER));
        assert!(!is_keyframe(SEQUENCE_HEADER));
        assert!(!is_keyframe(&[]));
    }

    #[test]
    fn a_burst_then_real_time_is_no_lag() {
        let (w, origin) = window();
        let mut t = Tracker::new(w, ms(origin, 0));
        let frame = Bytes::from_static(INTER);
        // A 2 s GOP cache arrives at once at 1 s...
        for i in 0..60u32 {
            t.video(ms(origin, 1000), i * 33, &frame);
        }
        // ...then one frame every 33 ms in real time, through the window.
        for i in 60..640u32 {
            t.video(ms(origin, 1000 + u64::from(i - 59) * 33), i * 33, &frame);
        }
        let r = t.finish(0);
        assert!(r.max_lag_ms < 100.0, "lag {}", r.max_lag_ms);
        assert!(r.playing_at_start);
        assert!(r.video_frames > 250, "{} frames", r.video_frames);
    }

    #[test]
    fn falling_behind_shows_as_lag() {
        let (w, origin) = window();
        let mut t = Tracker::new(w, ms(origin, 0));
        let frame = Bytes::from_static(INTER);
        // Frames arrive at 3/4 of real time: 40 ms apart for 30 ms of media each.
        for i in 0..500u32 {
            t.video(ms(origin, u64::from(i) * 40), i * 30, &frame);
        }
        let r = t.finish(0);
        // At 19.96 s of wall time the media is at 14.97 s: about 5 s behind.
        assert!(
            (r.max_lag_ms - 5000.0).abs() < 100.0,
            "lag {}",
            r.max_lag_ms
        );
    }

    #[test]
    fn a_stall_counts_at_the_end_of_the_window() {
        let (w, origin) = window();
        let mut t = Tracker::new(w, ms(origin, 0));
        let frame = Bytes::from_static(INTER);
        for i in 0..400u32 {
            t.video(ms(origin, u64::from(i) * 30), i * 30, &frame);
        }
        // Nothing after 12 s: at the 20 s window end the player is 8 s behind.
        let r = t.finish(0);
        assert!((r.max_lag_ms - 8030.0).abs() < 10.0, "lag {}", r.max_lag_ms);
    }

    #[test]
    fn skipped_frames_show_as_a_gap() {
        let (w, origin) = window();
        let mut t = Tracker::new(w, ms(origin, 0));
        let frame = Bytes::from_static(INTER);
        t.video(ms(origin, 11_000), 11_000, &frame);
        t.video(ms(origin, 11_033), 13_000, &frame);
        let r = t.finish(0);
        assert_eq!(r.max_gap_ms, 2000.0);
    }

    #[test]
    fn first_keyframe_time_is_from_connect() {
        let (w, origin) = window();
        let mut t = Tracker::new(w, ms(origin, 500));
        t.video(ms(origin, 600), 0, &Bytes::from_static(SEQUENCE_HEADER));
        t.video(ms(origin, 700), 0, &Bytes::from_static(INTER));
        t.video(ms(origin, 900), 33, &Bytes::from_static(KEYFRAME));
        let r = t.finish(0);
        assert_eq!(r.ttff_ms, Some(400.0));
    }

    #[test]
    fn timestamps_unwrap_across_2_pow_32() {
        let (w, origin) = window();
        let mut t = Tracker::new(w, ms(origin, 0));
        let frame = Bytes::from_static(INTER);
        t.video(ms(origin, 11_000), u32::MAX - 10, &frame);
        t.video(ms(origin, 11_033), 23, &frame);
        assert_eq!(t.last_ts, Some((1 << 32) + 23));
        assert_eq!(t.finish(0).max_gap_ms, 34.0);
    }

    #[test]
    fn urls() {
        let t = Target::parse("rtmp://127.0.0.1:1935/live/bench").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.app.as_str(), t.stream.as_str()),
            ("127.0.0.1:1935", "live", "bench")
        );
        assert_eq!(t.tc_url(), "rtmp://127.0.0.1:1935/live");
        assert_eq!(
            Target::parse("rtmp://localhost/live/x").unwrap().addr,
            "localhost:1935"
        );
        assert!(Target::parse("http://h/live/x").is_err());
        assert!(Target::parse("rtmp://h/live").is_err());
    }
}
