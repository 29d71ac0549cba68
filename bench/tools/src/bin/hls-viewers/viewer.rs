//! One simulated HLS viewer: what a browser player (hls.js) does on a live MPEG-TS playlist,
//! reduced to what loads the servers and what a person watching would notice.
//!
//! The viewer keeps one keep-alive HTTP/1.1 connection (hyper), its own cookie jar (the
//! `JSESSIONID` the LB or the edge sets, sent back on every request, as a browser does) and
//! its own `User-Agent` (edges count distinct HLS viewers by address + User-Agent, and every
//! simulated viewer comes from 127.0.0.1). It loads the playlist, starts `start_back` segments
//! from the newest (hls.js's `liveSyncDurationCount` is 3), downloads every segment once, in
//! order, and reloads the playlist one target duration after the previous reload when it had
//! something new, half a target duration otherwise (hls.js's live reload rule).
//!
//! Playback is modelled: it starts when the first segment is fully received, the playhead then
//! moves in real time through the downloaded media, and when it reaches the end of what was
//! downloaded the player stalls (the stall lasts until the next segment is in). Nothing per
//! segment is kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::playlist::{self, Playlist};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Who asked first for each (stream, edge): when, and the viewer's id.
pub type FirstJoins = Mutex<HashMap<(Arc<str>, String), (Instant, usize)>>;

/// What every viewer shares.
#[derive(Debug)]
pub struct Ctx {
    /// `host:port` to connect to.
    pub addr: String,
    /// Application (`live`).
    pub app: String,
    /// Origin of the millisecond clock in reports.
    pub origin: Instant,
    /// Measurement window.
    pub start: Instant,
    /// End of the window; viewers stop.
    pub end: Instant,
    /// Segments back from the newest where a viewer starts.
    pub start_back: usize,
    /// Who asked first for each (stream, edge): the cold joins.
    pub firsts: FirstJoins,
}

/// One viewer's report (times in ms).
#[derive(Debug, Clone, Serialize)]
pub struct ViewerReport {
    /// Index (join order).
    pub id: usize,
    /// Stream watched.
    pub stream: Arc<str>,
    /// Edge that served it last (the JSESSIONID prefix the LB set), empty without an LB.
    pub edge: String,
    /// Times the edge changed (the LB moved the viewer).
    pub moved: u32,
    /// First request, ms from the run's origin.
    pub join_at_ms: f64,
    /// First request -> first segment fully received: the startup (cold-edge) wait.
    pub startup_ms: Option<f64>,
    /// First request -> first playlist answer.
    pub first_playlist_ms: Option<f64>,
    /// Time the modelled player spent stalled inside the window.
    pub stall_ms: f64,
    /// Stalls that began (or were going on) inside the window.
    pub stalls: u32,
    /// Longest time without a new segment inside the window.
    pub max_gap_ms: f64,
    /// Largest (newest listed - newest downloaded), in segments, after a reload in the window.
    pub max_behind: u64,
    /// Segments that were listed but never downloaded (skipped over or failed), in the window.
    pub skipped: u64,
    /// Target duration seen, seconds.
    pub target_s: f64,
    /// Requests and segments inside the window, and segment bytes.
    pub requests: u64,
    /// Segments downloaded inside the window.
    pub segments: u64,
    /// Segment bytes downloaded inside the window.
    pub bytes: u64,
    /// Failed requests by kind, inside the window.
    pub failures: BTreeMap<String, u64>,
    /// Failed requests by kind, before the window (joining).
    pub failures_before: BTreeMap<String, u64>,
    /// `None` when the viewer watched without trouble over the window; else why not.
    pub verdict: Option<String>,
}

/// Judging thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stalled longer than this in total inside the window: behind.
    pub max_stall_ms: f64,
    /// More segments than this between the newest listed and the newest downloaded: behind.
    pub max_behind: u64,
    /// No new segment for this many target durations inside the window: behind.
    pub max_gap_targets: f64,
}

impl ViewerReport {
    /// `None` if the viewer kept watching at the live edge over the whole window.
    pub fn judge(&self, l: &Limits, window_start_ms: f64) -> Option<String> {
        let Some(startup) = self.startup_ms else {
            return Some("never played".into());
        };
        if self.join_at_ms + startup >= window_start_ms {
            return Some("not playing when the window started".into());
        }
        if self.stall_ms > l.max_stall_ms {
            return Some("stalled".into());
        }
        if self.target_s > 0.0 && self.max_gap_ms > l.max_gap_targets * self.target_s * 1e3 {
            return Some("no new segment".into());
        }
        if self.max_behind > l.max_behind {
            return Some("behind the live edge".into());
        }
        None
    }
}

type Sender = SendRequest<Empty<Bytes>>;

async fn connect(addr: &str) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// Sends GET `path` and returns the response head (body unread).
async fn request(
    send: &mut Sender,
    ctx: &Ctx,
    path: &str,
    cookie: Option<&str>,
    agent: &str,
) -> Result<Response<Incoming>, String> {
    send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut req = Request::get(path)
        .header(header::HOST, ctx.addr.as_str())
        .header(header::USER_AGENT, agent);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    send.send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))
}

/// The `JSESSIONID=...` pair a response sets, if any.
fn session_cookie(resp: &Response<Incoming>) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .find(|pair| pair.starts_with("JSESSIONID="))
        .map(str::to_owned)
}

/// The server a `JSESSIONID` names with the LB's prefix mode (`edge-3~ABC...`), else "".
fn edge_of(cookie: &str) -> String {
    let value = cookie.strip_prefix("JSESSIONID=").unwrap_or(cookie);
    value
        .split_once('~')
        .map_or_else(String::new, |(server, _)| server.to_owned())
}

/// GET a playlist: status, cookie set, body text.
async fn get_playlist(
    send: &mut Sender,
    ctx: &Ctx,
    path: &str,
    cookie: Option<&str>,
    agent: &str,
) -> Result<(StatusCode, Option<String>, Bytes), String> {
    let fetch = async {
        let resp = request(send, ctx, path, cookie, agent).await?;
        let status = resp.status();
        let set = session_cookie(&resp);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, set, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetch)
        .await
        .map_err(|_| "timeout".to_owned())?
}

/// GET a segment, counting its bytes without keeping them: status and length.
async fn get_segment(
    send: &mut Sender,
    ctx: &Ctx,
    path: &str,
    cookie: Option<&str>,
    agent: &str,
) -> Result<(StatusCode, u64), String> {
    let fetch = async {
        let resp = request(send, ctx, path, cookie, agent).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                n += data.len() as u64;
            }
        }
        Ok((status, n))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetch)
        .await
        .map_err(|_| "timeout".to_owned())?
}

/// The modelled player and the counters.
struct Viewer {
    report: ViewerReport,
    ctx: Arc<Ctx>,
    /// When playback started (first segment in).
    play_start: Option<Instant>,
    /// Media seconds downloaded since playback started.
    buffered: f64,
    /// Seconds the playhead has stood still so far.
    stalled: f64,
    /// Newest segment downloaded.
    last_seq: Option<u64>,
    /// When the newest segment came in.
    last_new: Option<Instant>,
}

impl Viewer {
    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.ctx.origin).as_secs_f64() * 1e3
    }

    fn inside(&self, at: Instant) -> bool {
        at >= self.ctx.start && at < self.ctx.end
    }

    fn fail(&mut self, at: Instant, why: String) {
        let map = if self.inside(at) {
            &mut self.report.failures
        } else if at < self.ctx.start {
            &mut self.report.failures_before
        } else {
            return;
        };
        *map.entry(why).or_default() += 1;
    }

    /// Moves the modelled playhead to `now`: if it ran past the downloaded media, the player
    /// stalled from that moment until `now`.
    fn advance(&mut self, now: Instant) {
        let Some(t0) = self.play_start else { return };
        let playhead = now.saturating_duration_since(t0).as_secs_f64() - self.stalled;
        let deficit = playhead - self.buffered;
        if deficit <= 0.0 {
            return;
        }
        self.stalled += deficit;
        // The part of [now - deficit, now] inside the window.
        let began = now
            .checked_sub(Duration::from_secs_f64(deficit))
            .unwrap_or(t0);
        let from = began.max(self.ctx.start);
        let to = now.min(self.ctx.end);
        if to > from {
            self.report.stall_ms += (to - from).as_secs_f64() * 1e3;
            self.report.stalls += 1;
        }
    }

    /// A new segment is fully in at `now`.
    fn got_segment(&mut self, now: Instant, seq: u64, duration: f64, bytes: u64) {
        if self.play_start.is_none() {
            self.play_start = Some(now);
            self.report.startup_ms = Some(self.ms(now) - self.report.join_at_ms);
        } else {
            self.advance(now);
        }
        self.buffered += duration;
        if self.inside(now) {
            self.report.segments += 1;
            self.report.bytes += bytes;
            let since = self.last_new.unwrap_or(self.ctx.start).max(self.ctx.start);
            self.report.max_gap_ms = self
                .report
                .max_gap_ms
                .max(now.saturating_duration_since(since).as_secs_f64() * 1e3);
        }
        self.last_seq = Some(seq);
        self.last_new = Some(now);
    }

    /// The window is over: a stall going on, or a gap going on, counts until its end.
    fn finish(&mut self) {
        let end = self.ctx.end;
        self.advance(end);
        if self.play_start.is_some() {
            let since = self.last_new.unwrap_or(self.ctx.start).max(self.ctx.start);
            self.report.max_gap_ms = self
                .report
                .max_gap_ms
                .max(end.saturating_duration_since(since).as_secs_f64() * 1e3);
        }
    }

    /// Notes which edge served the viewer (from its cookie).
    fn on_cookie(&mut self, cookie: &str, first_asked: Instant) {
        let edge = edge_of(cookie);
        if self.report.startup_ms.is_some() || self.report.first_playlist_ms.is_some() {
            if edge != self.report.edge {
                self.report.moved += 1;
            }
        } else {
            let mut firsts = self.ctx.firsts.lock().unwrap_or_else(|p| p.into_inner());
            let entry = firsts
                .entry((self.report.stream.clone(), edge.clone()))
                .or_insert((first_asked, self.report.id));
            if first_asked < entry.0 {
                *entry = (first_asked, self.report.id);
            }
        }
        self.report.edge = edge;
    }
}

/// Watches `stream` from `at` until the window ends.
pub async fn run(id: usize, stream: Arc<str>, at: Instant, ctx: Arc<Ctx>) -> ViewerReport {
    tokio::time::sleep_until(at.into()).await;
    let joined = Instant::now();
    let mut v = Viewer {
        report: ViewerReport {
            id,
            stream: stream.clone(),
            edge: String::new(),
            moved: 0,
            join_at_ms: 0.0,
            startup_ms: None,
            first_playlist_ms: None,
            stall_ms: 0.0,
            stalls: 0,
            max_gap_ms: 0.0,
            max_behind: 0,
            skipped: 0,
            target_s: 0.0,
            requests: 0,
            segments: 0,
            bytes: 0,
            failures: BTreeMap::new(),
            failures_before: BTreeMap::new(),
            verdict: None,
        },
        ctx: ctx.clone(),
        play_start: None,
        buffered: 0.0,
        stalled: 0.0,
        last_seq: None,
        last_new: None,
    };
    v.report.join_at_ms = v.ms(joined);
    let agent = format!("hls-viewers/1 (viewer {id})");
    let path = format!("/{}/streams/{stream}.m3u8", ctx.app);
    let mut cookie: Option<String> = None;
    let mut conn: Option<Sender> = None;
    while Instant::now() < ctx.end {
        let send = match &mut conn {
            Some(s) => s,
            None => match connect(&ctx.addr).await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    v.fail(Instant::now(), e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let asked = Instant::now();
        let got = get_playlist(send, &ctx, &path, cookie.as_deref(), &agent).await;
        let now = Instant::now();
        if v.inside(asked) {
            v.report.requests += 1;
        }
        let list = match got {
            Ok((StatusCode::OK, set, body)) => {
                if let Some(set) = set {
                    v.on_cookie(&set, joined);
                    cookie = Some(set);
                }
                if v.report.first_playlist_ms.is_none() {
                    v.report.first_playlist_ms = Some(v.ms(now) - v.report.join_at_ms);
                }
                match std::str::from_utf8(&body).ok().and_then(playlist::parse) {
                    Some(p) => p,
                    None => {
                        v.fail(now, "unreadable playlist".into());
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            Ok((status, ..)) => {
                v.fail(now, format!("playlist {}", status.as_u16()));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(why) => {
                v.fail(now, why);
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        v.report.target_s = list.target;
        let got_new = fetch_new(&mut v, &mut conn, &list, &path, cookie.as_deref(), &agent).await;
        if let (Some(newest), Some(last)) = (list.newest(), v.last_seq)
            && v.inside(Instant::now())
        {
            v.report.max_behind = v.report.max_behind.max(newest.saturating_sub(last));
        }
        // hls.js: reload one target duration after the last reload when the playlist had
        // something new, half of one when it did not.
        let next = if got_new {
            asked + Duration::from_secs_f64(list.target)
        } else {
            Instant::now() + Duration::from_secs_f64(list.target / 2.0)
        };
        tokio::time::sleep_until(next.min(ctx.end).into()).await;
    }
    v.finish();
    v.report
}

/// Downloads the segments of `list` the viewer has not got yet, in order; whether any came.
async fn fetch_new(
    v: &mut Viewer,
    conn: &mut Option<Sender>,
    list: &Playlist,
    playlist_path: &str,
    cookie: Option<&str>,
    agent: &str,
) -> bool {
    let ctx = v.ctx.clone();
    let from = match v.last_seq {
        Some(last) => last + 1,
        None => {
            let i = list.segments.len().saturating_sub(ctx.start_back.max(1));
            match list.segments.get(i) {
                Some(s) => s.seq,
                None => return false,
            }
        }
    };
    let mut got = false;
    for seg in list.segments.iter().filter(|s| s.seq >= from) {
        if Instant::now() >= ctx.end {
            break;
        }
        if let Some(last) = v.last_seq
            && seg.seq > last + 1
            && v.inside(Instant::now())
        {
            // Listed segments that slid out of the window before they were fetched.
            v.report.skipped += seg.seq - last - 1;
        }
        let Some(send) = conn.as_mut() else {
            return got;
        };
        let asked = Instant::now();
        let path = playlist::resolve(playlist_path, &seg.uri);
        let r = get_segment(send, &ctx, &path, cookie, agent).await;
        let now = Instant::now();
        if v.inside(asked) {
            v.report.requests += 1;
        }
        match r {
            Ok((StatusCode::OK, bytes)) => {
                v.got_segment(now, seg.seq, seg.duration, bytes);
                got = true;
            }
            Ok((status, _)) => {
                v.fail(now, format!("segment {}", status.as_u16()));
                if v.inside(now) {
                    v.report.skipped += 1;
                }
                // Go on with the next one: a player skips a segment it cannot get.
                v.last_seq = Some(seg.seq);
            }
            Err(why) => {
                v.fail(now, why);
                *conn = None;
                return got;
            }
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(origin: Instant) -> Arc<Ctx> {
        Arc::new(Ctx {
            addr: "127.0.0.1:1".into(),
            app: "live".into(),
            origin,
            start: origin + Duration::from_secs(10),
            end: origin + Duration::from_secs(20),
            start_back: 3,
            firsts: Mutex::new(HashMap::new()),
        })
    }

    fn viewer(ctx: Arc<Ctx>) -> Viewer {
        Viewer {
            report: ViewerReport {
                id: 0,
                stream: "s".into(),
                edge: String::new(),
                moved: 0,
                join_at_ms: 0.0,
                startup_ms: None,
                first_playlist_ms: None,
                stall_ms: 0.0,
                stalls: 0,
                max_gap_ms: 0.0,
                max_behind: 0,
                skipped: 0,
                target_s: 2.0,
                requests: 0,
                segments: 0,
                bytes: 0,
                failures: BTreeMap::new(),
                failures_before: BTreeMap::new(),
                verdict: None,
            },
            ctx,
            play_start: None,
            buffered: 0.0,
            stalled: 0.0,
            last_seq: None,
            last_new: None,
        }
    }

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    const LIMITS: Limits = Limits {
        max_stall_ms: 1000.0,
        max_behind: 2,
        max_gap_targets: 3.0,
    };

    #[test]
    fn a_viewer_fed_in_time_never_stalls() {
        let origin = Instant::now();
        let mut v = viewer(ctx(origin));
        // Three segments at join (1 s), then one every 2 s.
        for s in 0..3 {
            v.got_segment(at(origin, 1000), s, 2.0, 100);
        }
        for s in 3..13 {
            v.got_segment(at(origin, 1000 + (s - 2) * 2000), s, 2.0, 100);
        }
        v.finish();
        assert_eq!(v.report.stall_ms, 0.0);
        assert_eq!(v.report.startup_ms, Some(1000.0));
        assert!(v.report.max_gap_ms <= 2000.0, "{}", v.report.max_gap_ms);
        assert_eq!(v.report.judge(&LIMITS, 10_000.0), None);
    }

    #[test]
    fn a_starved_viewer_stalls_and_is_behind() {
        let origin = Instant::now();
        let mut v = viewer(ctx(origin));
        v.got_segment(at(origin, 1000), 0, 2.0, 100);
        // Segments of 2 s arrive every 3 s: the player stalls 1 s per segment.
        for s in 1..7 {
            v.got_segment(at(origin, 1000 + s * 3000), s, 2.0, 100);
        }
        v.finish();
        // Arrivals at 4, 7, ..., 19 s, each after 1 s of stall; in the window (10-20 s) the
        // stalls ending at 13, 16 and 19 s (the one ending at 10 s is just outside).
        assert!(
            (v.report.stall_ms - 3000.0).abs() < 1.0,
            "{}",
            v.report.stall_ms
        );
        assert_eq!(
            v.report.judge(&LIMITS, 10_000.0).as_deref(),
            Some("stalled")
        );
    }

    #[test]
    fn silence_counts_until_the_window_ends() {
        let origin = Instant::now();
        let mut v = viewer(ctx(origin));
        for s in 0..6 {
            v.got_segment(at(origin, 1000 + s * 2000), s, 2.0, 100);
        }
        // Last segment at 11 s; nothing after: a gap of 9 s (over 3 target durations).
        v.finish();
        assert!((v.report.max_gap_ms - 9000.0).abs() < 1.0);
        assert!(v.report.judge(&LIMITS, 10_000.0).is_some());
    }

    #[test]
    fn cookies_name_the_edge_and_cold_joins_are_kept() {
        assert_eq!(edge_of("JSESSIONID=edge-3~ABCD"), "edge-3");
        assert_eq!(edge_of("JSESSIONID=ABCD"), "");
        let origin = Instant::now();
        let c = ctx(origin);
        let mut a = viewer(c.clone());
        a.report.id = 1;
        a.on_cookie("JSESSIONID=edge-1~X", at(origin, 50));
        let mut b = viewer(c.clone());
        b.report.id = 2;
        b.on_cookie("JSESSIONID=edge-1~Y", at(origin, 10));
        let firsts = c.firsts.lock().unwrap();
        assert_eq!(
            firsts.get(&("s".into(), "edge-1".into())).map(|f| f.1),
            Some(2)
        );
    }
}
