//! `llhls-load`: N concurrent Low-Latency HLS clients in one process, each doing what hls.js
//! does at the live edge: a blocking playlist reload for the next part (`_HLS_msn`/`_HLS_part`,
//! RFC 8216bis 6.2.5.2) on its own keep-alive HTTP/1.1 connection, then (with
//! `--fetch-parts`) a download of the part it was waiting for, then the next blocking reload.
//! The JSESSIONID the server (or the LB in front of it) sets is sent back, as a browser would.
//!
//! So at any moment nearly every client holds one request the server has parked until the next
//! part exists. The figures: answers per second, how long each request was held, and the wake
//! spread: for every part, each client's answer time minus the first client's answer time for
//! that same part (how evenly and quickly the server releases everyone waiting on it).
//!
//! Timeline as `rtmp-load`: clients start evenly over `--ramp` s, settle for `--settle` s, then
//! the window of `--duration` s, marked on stdout by `{"event":"window_start"}` and
//! `{"event":"window_end"}` lines; the last line is the `summary`.
//!
//! Exit status: 0 when the run completed (whatever the figures), 2 on bad arguments.

mod client;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

use self::client::{Tally, Target};

/// N blocking LL-HLS playlist clients against one rendition playlist.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The LL-HLS media playlist: http://host:port/app/streams/ll-hls/id/name.m3u8.
    #[arg(long)]
    url: String,
    /// Number of clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds over which clients start (evenly spaced).
    #[arg(long, default_value_t = 5.0)]
    ramp: f64,
    /// Seconds between the last start and the start of the window.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Also download each part after its playlist answer.
    #[arg(long)]
    fetch_parts: bool,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// When each part was first answered to any client.
#[derive(Debug, Default)]
pub struct FirstAnswers {
    seen: Mutex<HashMap<(u64, u64), Instant>>,
}

impl FirstAnswers {
    /// The first answer time for `part`, recording `now` if this is the first.
    pub fn first(&self, part: (u64, u64), now: Instant) -> Instant {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 4096 {
            seen.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        }
        *seen.entry(part).or_insert(now)
    }
}

/// The last line on stdout.
#[derive(Debug, Serialize)]
struct Summary {
    event: &'static str,
    clients: usize,
    window_s: f64,
    /// Playlist answers (200) inside the window, per second.
    answers_per_s: f64,
    /// Parts downloaded inside the window, per second (with `--fetch-parts`).
    parts_per_s: f64,
    /// Bytes of parts downloaded inside the window, per second.
    part_bytes_per_s: f64,
    /// Blocking reloads answered without waiting for the part (it already existed).
    answered_at_once: u64,
    /// How long blocking reloads were held, ms.
    held_ms: Percentiles,
    /// Answer time minus the first answer for the same part, ms.
    wake_spread_ms: Percentiles,
    /// Requests that did not get a 200, by status or error, inside the window.
    failures: BTreeMap<String, u64>,
    /// Clients that had an answer before the window started.
    live_at_start: usize,
}

#[derive(Debug, Default, Serialize)]
struct Percentiles {
    samples: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f32>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f32::total_cmp);
        let at = |q: f64| f64::from(v[((q * v.len() as f64) as usize).min(v.len() - 1)]);
        Self {
            samples: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: f64::from(v[v.len() - 1]),
        }
    }
}

fn main() {
    let args = Args::parse();
    let target = match Target::parse(&args.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("llhls-load: {e}");
            std::process::exit(2);
        }
    };
    let seconds = [args.ramp, args.settle, args.duration];
    if args.clients == 0 || args.threads == 0 || seconds.iter().any(|s| !(*s >= 0.0 && *s < 1e6)) {
        eprintln!("llhls-load: clients and threads must be positive, times non-negative");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("llhls-load: runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args, target));
}

async fn run(args: Args, target: Target) {
    let origin = Instant::now() + Duration::from_millis(100);
    let ramp = Duration::from_secs_f64(args.ramp);
    let start = origin + ramp + Duration::from_secs_f64(args.settle);
    let end = start + Duration::from_secs_f64(args.duration);
    let firsts = Arc::new(FirstAnswers::default());
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let at = origin + ramp.mul_f64(i as f64 / args.clients as f64);
            tokio::spawn(client::run(
                target.clone(),
                at,
                (start, end),
                args.fetch_parts,
                firsts.clone(),
            ))
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"event": "start", "clients": args.clients, "url": args.url})
    );
    tokio::time::sleep_until(start.into()).await;
    println!("{}", serde_json::json!({"event": "window_start"}));
    tokio::time::sleep_until(end.into()).await;
    println!("{}", serde_json::json!({"event": "window_end"}));
    let mut all = Tally::default();
    let mut live = 0;
    for (id, handle) in clients.into_iter().enumerate() {
        match handle.await {
            Ok(t) => {
                live += usize::from(t.live_at_start);
                all.merge(t);
            }
            Err(e) => eprintln!("llhls-load: client {id} panicked: {e}"),
        }
    }
    let window = args.duration.max(1e-9);
    let summary = Summary {
        event: "summary",
        clients: args.clients,
        window_s: args.duration,
        answers_per_s: all.answers as f64 / window,
        parts_per_s: all.parts as f64 / window,
        part_bytes_per_s: all.part_bytes as f64 / window,
        answered_at_once: all.at_once,
        held_ms: Percentiles::of(all.held_ms),
        wake_spread_ms: Percentiles::of(all.spread_ms),
        failures: all.failures,
        live_at_start: live,
    };
    match serde_json::to_string(&summary) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("llhls-load: summary: {e}"),
    }
}
