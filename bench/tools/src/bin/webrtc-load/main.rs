//! `webrtc-load`: N headless WebRTC viewers of one stream over WHEP, each a real str0m
//! session (full ICE, DTLS-SRTP, RTCP) on its own UDP socket, all driven by a few threads.
//!
//! Timeline: viewers POST their offers evenly over `--ramp` seconds (signalling threads, plain
//! blocking HTTP/1.1), the stream settles for `--settle` seconds, then the measurement window
//! of `--duration` seconds runs, after which every viewer ends its session (DTLS close). Lines
//! on stdout mark the window (`{"event":"window_start"}`, `{"event":"window_end"}`) so a caller
//! can sample the server over exactly it; the last line is the `summary`. Per-viewer reports go
//! to `--out` as a JSON array.
//!
//! Per viewer: bytes, video frames (RTP marker), packets lost, media time against wall time,
//! and latency: arrival against the publish time the server's RTCP sender reports give (see
//! `viewer`). Exit status: 0 when the run completed (whatever the verdicts), 2 on bad
//! arguments.

#[cfg(test)]
mod pacing;
mod report;
mod viewer;
mod whep;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use self::report::{Histogram, Summary, Thresholds};
use self::viewer::Window;
use self::whep::Endpoint;

/// N WebRTC (WHEP) viewers of one live stream; reports whether each kept up, and latency.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// WHEP endpoint of the stream: http://host:port/{app}/whep/{stream}.
    #[arg(long)]
    url: String,
    /// Number of viewers.
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Seconds over which viewers POST their offers (evenly spaced).
    #[arg(long, default_value_t = 5.0)]
    ramp: f64,
    /// Seconds between the last offer and the start of the window.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Video frame rate of the source.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Share of `--fps` each viewer must receive over the window.
    #[arg(long, default_value_t = 0.9)]
    min_fps_ratio: f64,
    /// A viewer whose p95 video latency is above this many ms has fallen behind.
    #[arg(long, default_value_t = 1000.0)]
    max_latency_ms: f64,
    /// A viewer without a video frame for this many ms has stalled.
    #[arg(long, default_value_t = 1000.0)]
    max_gap_ms: f64,
    /// Largest share of RTP packets a viewer may lose.
    #[arg(long, default_value_t = 0.01)]
    max_loss: f64,
    /// Offer video only (no Opus m-line).
    #[arg(long)]
    no_audio: bool,
    /// Threads running the viewers' sessions (one poll loop each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Threads sending WHEP offers during the ramp.
    #[arg(long, default_value_t = 2)]
    signal_threads: usize,
    /// Writes per-viewer reports (JSON array) here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let seconds = [args.ramp, args.settle, args.duration];
    if args.viewers == 0
        || args.threads == 0
        || args.signal_threads == 0
        || seconds.iter().any(|s| !(*s >= 0.0 && *s < 1e6))
    {
        eprintln!("webrtc-load: viewers and threads must be positive, times non-negative");
        std::process::exit(2);
    }
    let endpoint = match Endpoint::parse(&args.url) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("webrtc-load: {e}");
            std::process::exit(2);
        }
    };
    let local_ip = match endpoint.local_ip() {
        Ok(ip) => ip,
        Err(e) => {
            eprintln!("webrtc-load: no route to {}: {e}", endpoint.addr);
            std::process::exit(1);
        }
    };
    run(&args, endpoint, local_ip);
}

fn run(args: &Args, endpoint: Endpoint, local_ip: std::net::IpAddr) {
    let origin = Instant::now() + Duration::from_millis(100);
    let ramp = Duration::from_secs_f64(args.ramp);
    let start = origin + ramp + Duration::from_secs_f64(args.settle);
    let window = Window {
        origin,
        start,
        end: start + Duration::from_secs_f64(args.duration),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut joins = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..args.threads {
        let (tx, rx) = mpsc::channel();
        let stop = stop.clone();
        workers.push(tx);
        joins.push(thread::spawn(move || worker::run(rx, window, stop)));
    }
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let endpoint = Arc::new(endpoint);
    let signalling: Vec<_> = (0..args.signal_threads)
        .map(|s| {
            let (endpoint, crypto, workers, stop) = (
                endpoint.clone(),
                crypto.clone(),
                workers.clone(),
                stop.clone(),
            );
            let (n, step, audio) = (args.viewers, args.signal_threads, !args.no_audio);
            thread::spawn(move || {
                let mut refused = Vec::new();
                for id in (s..n).step_by(step) {
                    let at = origin + ramp.mul_f64(id as f64 / n as f64);
                    thread::sleep(at.saturating_duration_since(Instant::now()));
                    if stop.load(Ordering::Relaxed) {
                        refused.push("not started: the run ended".to_owned());
                        continue;
                    }
                    match whep::negotiate(&endpoint, local_ip, &crypto, audio) {
                        Ok(negotiated) => {
                            let to = workers.get(id % workers.len());
                            if to.is_none_or(|w| w.send((id, negotiated)).is_err()) {
                                refused.push("worker gone".to_owned());
                            }
                        }
                        Err(e) => refused.push(format!("refused: {e}")),
                    }
                }
                refused
            })
        })
        .collect();
    drop(workers);
    println!(
        "{}",
        serde_json::json!({"event": "start", "viewers": args.viewers, "url": args.url})
    );
    thread::sleep(window.start.saturating_duration_since(Instant::now()));
    println!("{}", serde_json::json!({"event": "window_start"}));
    thread::sleep(window.end.saturating_duration_since(Instant::now()));
    println!("{}", serde_json::json!({"event": "window_end"}));
    stop.store(true, Ordering::Relaxed);
    let mut refused = Vec::new();
    for s in signalling {
        match s.join() {
            Ok(r) => refused.extend(r),
            Err(_) => eprintln!("webrtc-load: a signalling thread panicked"),
        }
    }
    let mut reports = Vec::with_capacity(args.viewers);
    let mut video = Histogram::new(1.0, 10_000);
    let mut audio = Histogram::new(1.0, 10_000);
    for j in joins {
        match j.join() {
            Ok(done) => {
                reports.extend(done.reports);
                video.merge(&done.video);
                audio.merge(&done.audio);
            }
            Err(_) => eprintln!("webrtc-load: a worker panicked"),
        }
    }
    reports.sort_by_key(|r| r.id);
    let limits = Thresholds {
        fps: args.fps,
        min_fps_ratio: args.min_fps_ratio,
        max_latency_ms: args.max_latency_ms,
        max_gap_ms: args.max_gap_ms,
        max_loss: args.max_loss,
    };
    for r in &mut reports {
        r.verdict = r.judge(&limits);
    }
    if let Some(path) = &args.out {
        let written = serde_json::to_vec(&reports)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json));
        if let Err(e) = written {
            eprintln!("webrtc-load: writing {}: {e}", path.display());
        }
    }
    for why in refused.iter().take(3) {
        eprintln!("webrtc-load: {why}");
    }
    let summary = Summary::of(&reports, &refused, args.duration, &video, &audio);
    match serde_json::to_string(&summary) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("webrtc-load: summary: {e}"),
    }
}
