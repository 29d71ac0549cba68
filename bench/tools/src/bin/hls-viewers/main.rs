//! `hls-viewers`: N simulated HLS viewers in one process, spread over several live streams
//! by a plan (`s00:444,s01:222,...`), each watching its stream as a browser player does (see
//! `viewer.rs`): own keep-alive connection, own cookie jar and User-Agent, playlist reloads,
//! every segment downloaded once, and a modelled playhead that stalls when the downloads do
//! not keep up.
//!
//! Figures: the startup wait (first request -> first segment fully received; the wait a viewer
//! has when its edge does not carry the stream yet and has to pull it from the origin), split
//! into cold joins (the first viewer of a stream on an edge) and warm ones; viewers behind
//! (stalled, no new segment, or behind the live edge inside the window); which edge served
//! whom (the LB's `JSESSIONID` prefix), per edge and per stream.
//!
//! Timeline as `rtmp-load`: viewers join evenly over `--ramp` s in a shuffled order, settle
//! for `--settle` s, then the window of `--duration` s, marked on stdout by
//! `{"event":"window_start"}` and `{"event":"window_end"}` lines; the last line is the
//! `summary`. `--out` gets one report per viewer (JSON array).
//!
//! Exit status: 0 when the run completed (whatever the figures), 2 on bad arguments.

mod playlist;
mod viewer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hyper::Uri;
use serde::Serialize;
use streamfleet_bench_tools::plan;

use self::viewer::{Ctx, Limits, ViewerReport};

/// N HLS viewers over several live streams; reports startup waits and who fell behind.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where viewers go: http://host:port (an LB or a media node).
    #[arg(long)]
    base: String,
    /// Application.
    #[arg(long, default_value = "live")]
    app: String,
    /// Viewers per stream: NAME:COUNT,NAME:COUNT,...
    #[arg(long)]
    plan: String,
    /// Seed of the shuffled join order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds over which viewers join (evenly spaced).
    #[arg(long, default_value_t = 20.0)]
    ramp: f64,
    /// Seconds between the last join and the start of the window.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// A viewer starts this many segments back from the newest (hls.js: 3).
    #[arg(long, default_value_t = 3)]
    start_back: usize,
    /// Stalled longer than this in total inside the window: behind (a single rebuffer of a
    /// viewer that started on a short playlist is not; losing a segment's worth is).
    #[arg(long, default_value_t = 2000.0)]
    max_stall_ms: f64,
    /// Newest listed minus newest downloaded above this many segments: behind.
    #[arg(long, default_value_t = 2)]
    max_behind: u64,
    /// No new segment for this many target durations inside the window: behind.
    #[arg(long, default_value_t = 3.0)]
    max_gap_targets: f64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Writes per-viewer reports (JSON array) here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// The last line on stdout.
#[derive(Debug, Serialize)]
struct Summary {
    event: &'static str,
    viewers: usize,
    window_s: f64,
    /// Viewers that received a first segment.
    played: usize,
    /// Viewers that watched without trouble over the whole window.
    ok: usize,
    /// Viewers that did not, by reason.
    behind: BTreeMap<String, usize>,
    /// First request -> first segment, all viewers that got one, ms.
    startup_ms: Percentiles,
    /// The same, for the first viewer of each (stream, edge): the edge had to pull the stream.
    cold_startup_ms: Percentiles,
    /// The same, for every other viewer.
    warm_startup_ms: Percentiles,
    /// First request -> first playlist answer, ms.
    first_playlist_ms: Percentiles,
    /// Stall time per viewer inside the window, ms.
    stall_ms: Percentiles,
    /// Viewers whose player stalled at all inside the window (behind or not).
    rebuffered: usize,
    /// Stall time of all viewers inside the window, seconds.
    stall_s_total: f64,
    /// Requests inside the window, per second.
    requests_per_s: f64,
    /// Segment bytes inside the window, per second.
    bytes_per_s: f64,
    /// Listed segments never downloaded inside the window.
    skipped: u64,
    /// Failed requests by kind inside the window.
    failures: BTreeMap<String, u64>,
    /// Failed requests by kind before the window (while joining).
    failures_before: BTreeMap<String, u64>,
    /// Viewers the LB moved to another edge.
    moved: usize,
    /// Viewers per edge (by their last JSESSIONID prefix).
    per_edge: BTreeMap<String, usize>,
    /// Viewers per stream and edge.
    per_stream: BTreeMap<String, BTreeMap<String, usize>>,
}

#[derive(Debug, Default, Serialize)]
struct Percentiles {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles (zeros when empty).
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i]
        };
        Self {
            n: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

fn main() {
    let args = Args::parse();
    let addr = match base_addr(&args.base) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hls-viewers: {e}");
            std::process::exit(2);
        }
    };
    let plan = match plan::parse(&args.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hls-viewers: {e}");
            std::process::exit(2);
        }
    };
    let seconds = [args.ramp, args.settle, args.duration];
    if args.threads == 0 || seconds.iter().any(|s| !(*s >= 0.0 && *s < 1e6)) {
        eprintln!("hls-viewers: threads must be positive, times non-negative");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hls-viewers: runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args, addr, plan));
}

/// `host:port` of `http://host:port[/]`.
fn base_addr(base: &str) -> Result<String, String> {
    let uri: Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{base}: only http:// URLs"));
    }
    let host = uri.host().ok_or_else(|| format!("{base}: no host"))?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

async fn run(args: Args, addr: String, plan: Vec<(String, usize)>) {
    let origin = Instant::now() + Duration::from_millis(100);
    let ramp = Duration::from_secs_f64(args.ramp);
    let start = origin + ramp + Duration::from_secs_f64(args.settle);
    let end = start + Duration::from_secs_f64(args.duration);
    let ctx = Arc::new(Ctx {
        addr,
        app: args.app.clone(),
        origin,
        start,
        end,
        start_back: args.start_back,
        firsts: Mutex::new(HashMap::new()),
    });
    let names: Vec<Arc<str>> = plan.iter().map(|(n, _)| Arc::from(n.as_str())).collect();
    let order = plan::join_order(&plan, args.seed);
    let n = order.len();
    let viewers: Vec<_> = order
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let at = origin + ramp.mul_f64(i as f64 / n as f64);
            tokio::spawn(viewer::run(i, names[s].clone(), at, ctx.clone()))
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"event": "start", "viewers": n, "streams": plan.len(), "base": args.base})
    );
    tokio::time::sleep_until(start.into()).await;
    println!("{}", serde_json::json!({"event": "window_start"}));
    tokio::time::sleep_until(end.into()).await;
    println!("{}", serde_json::json!({"event": "window_end"}));
    let mut reports: Vec<ViewerReport> = Vec::with_capacity(n);
    for (id, handle) in viewers.into_iter().enumerate() {
        match handle.await {
            Ok(r) => reports.push(r),
            Err(e) => eprintln!("hls-viewers: viewer {id} panicked: {e}"),
        }
    }
    let limits = Limits {
        max_stall_ms: args.max_stall_ms,
        max_behind: args.max_behind,
        max_gap_targets: args.max_gap_targets,
    };
    let window_start_ms = start.saturating_duration_since(origin).as_secs_f64() * 1e3;
    for r in &mut reports {
        r.verdict = r.judge(&limits, window_start_ms);
    }
    let cold: HashSet<usize> = ctx
        .firsts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|(_, id)| *id)
        .collect();
    if let Some(path) = &args.out {
        let written = serde_json::to_vec(&reports)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json));
        if let Err(e) = written {
            eprintln!("hls-viewers: writing {}: {e}", path.display());
        }
    }
    let summary = summarise(&reports, &cold, args.duration);
    match serde_json::to_string(&summary) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("hls-viewers: summary: {e}"),
    }
}

fn summarise(reports: &[ViewerReport], cold: &HashSet<usize>, window_s: f64) -> Summary {
    let mut behind = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let mut failures_before = BTreeMap::new();
    let mut per_edge = BTreeMap::new();
    let mut per_stream: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let (mut requests, mut bytes, mut skipped) = (0u64, 0u64, 0u64);
    for r in reports {
        if let Some(why) = &r.verdict {
            *behind.entry(why.clone()).or_insert(0) += 1;
        }
        for (k, v) in &r.failures {
            *failures.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &r.failures_before {
            *failures_before.entry(k.clone()).or_insert(0) += v;
        }
        if r.first_playlist_ms.is_some() {
            *per_edge.entry(r.edge.clone()).or_insert(0) += 1;
            *per_stream
                .entry(r.stream.to_string())
                .or_default()
                .entry(r.edge.clone())
                .or_insert(0) += 1;
        }
        requests += r.requests;
        bytes += r.bytes;
        skipped += r.skipped;
    }
    let startups = |keep: &dyn Fn(&ViewerReport) -> bool| {
        Percentiles::of(
            reports
                .iter()
                .filter(|r| keep(r))
                .filter_map(|r| r.startup_ms)
                .collect(),
        )
    };
    let window = window_s.max(1e-9);
    Summary {
        event: "summary",
        viewers: reports.len(),
        window_s,
        played: reports.iter().filter(|r| r.startup_ms.is_some()).count(),
        ok: reports.iter().filter(|r| r.verdict.is_none()).count(),
        behind,
        startup_ms: startups(&|_| true),
        cold_startup_ms: startups(&|r| cold.contains(&r.id)),
        warm_startup_ms: startups(&|r| !cold.contains(&r.id)),
        first_playlist_ms: Percentiles::of(
            reports.iter().filter_map(|r| r.first_playlist_ms).collect(),
        ),
        stall_ms: Percentiles::of(reports.iter().map(|r| r.stall_ms).collect()),
        rebuffered: reports.iter().filter(|r| r.stall_ms > 0.0).count(),
        stall_s_total: reports.iter().map(|r| r.stall_ms).sum::<f64>() / 1e3,
        requests_per_s: requests as f64 / window,
        bytes_per_s: bytes as f64 / window,
        skipped,
        failures,
        failures_before,
        moved: reports.iter().filter(|r| r.moved > 0).count(),
        per_edge,
        per_stream,
    }
}
