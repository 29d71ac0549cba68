//! `rtmp-load`: N concurrent RTMP players in one process, each a real client (streamfleet's
//! sans-IO `ClientSession` over a tokio `TcpStream`) that decodes everything the server sends
//! and judges whether it keeps up with real time.
//!
//! Timeline: players connect evenly over `--ramp` seconds, the stream settles for `--settle`
//! seconds, then the measurement window of `--duration` seconds runs, after which every player
//! hangs up. Machine-readable lines on stdout mark the window (`{"event":"window_start"}`,
//! `{"event":"window_end"}`) so a caller can sample the server's CPU and memory exactly over
//! it, and the last line is the `summary`. Per-player reports go to `--out` as a JSON array.
//!
//! With `--plan NAME:COUNT,...` the players spread over several streams of one application
//! (`--url rtmp://host:port/app`), joining in a shuffled order (`--seed`), and `--players` is
//! the plan's total.
//!
//! Exit status: 0 when the run completed (whatever the verdicts), 2 on bad arguments.

mod player;
mod report;

use std::time::{Duration, Instant};

use clap::Parser;
use streamfleet_bench_tools::plan;

use self::player::{Target, Thresholds, Window};
use self::report::Summary;

/// N RTMP players against one live stream; reports whether each kept up.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Stream to play: rtmp://host:port/app/stream (with `--plan`: rtmp://host:port/app).
    #[arg(long)]
    url: String,
    /// Number of players (with `--plan`: ignored, the plan's total).
    #[arg(long, default_value_t = 10)]
    players: usize,
    /// Players per stream: NAME:COUNT,NAME:COUNT,... of the application `--url` names.
    #[arg(long)]
    plan: Option<String>,
    /// Seed of the shuffled join order with `--plan`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds over which players connect (evenly spaced).
    #[arg(long, default_value_t = 5.0)]
    ramp: f64,
    /// Seconds between the last connect and the start of the window.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// A player more than this many ms behind real time has fallen behind.
    #[arg(long, default_value_t = 2000.0)]
    max_lag_ms: f64,
    /// A jump in video timestamps above this many ms counts as skipped frames.
    #[arg(long, default_value_t = 1000.0)]
    max_gap_ms: f64,
    /// Video frame rate of the source.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Share of `--fps` each player must receive over the window.
    #[arg(long, default_value_t = 0.9)]
    min_fps_ratio: f64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Socket read buffer per player, bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    read_buf: usize,
    /// Writes per-player reports (JSON array) here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// One target per player, in connection order.
fn targets(args: &Args) -> Result<Vec<Target>, String> {
    let Some(text) = &args.plan else {
        return Ok(vec![Target::parse(&args.url)?; args.players]);
    };
    let plan = plan::parse(text)?;
    let app = Target::parse(&format!("{}/-", args.url.trim_end_matches('/')))?;
    let order = plan::join_order(&plan, args.seed);
    Ok(order
        .into_iter()
        .map(|i| Target {
            stream: plan[i].0.clone(),
            ..app.clone()
        })
        .collect())
}

fn main() {
    let mut args = Args::parse();
    let targets = match targets(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rtmp-load: {e}");
            std::process::exit(2);
        }
    };
    args.players = targets.len();
    let seconds = [args.ramp, args.settle, args.duration];
    if args.players == 0 || args.threads == 0 || seconds.iter().any(|s| !(*s >= 0.0 && *s < 1e6)) {
        eprintln!("rtmp-load: players and threads must be positive, times non-negative");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rtmp-load: runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args, targets));
}

async fn run(args: Args, targets: Vec<Target>) {
    let origin = Instant::now() + Duration::from_millis(100);
    let ramp = Duration::from_secs_f64(args.ramp);
    let start = origin + ramp + Duration::from_secs_f64(args.settle);
    let window = Window {
        origin,
        start,
        end: start + Duration::from_secs_f64(args.duration),
    };
    let limits = Thresholds {
        max_lag_ms: args.max_lag_ms,
        max_gap_ms: args.max_gap_ms,
        fps: args.fps,
        min_fps_ratio: args.min_fps_ratio,
    };
    let players: Vec<_> = targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| {
            let connect_at = origin + ramp.mul_f64(i as f64 / args.players as f64);
            tokio::spawn(player::run(i, target, connect_at, window, args.read_buf))
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"event": "start", "players": args.players, "url": args.url})
    );
    tokio::time::sleep_until(window.start.into()).await;
    println!("{}", serde_json::json!({"event": "window_start"}));
    tokio::time::sleep_until(window.end.into()).await;
    println!("{}", serde_json::json!({"event": "window_end"}));
    let mut reports = Vec::with_capacity(players.len());
    for (id, handle) in players.into_iter().enumerate() {
        match handle.await {
            Ok(r) => reports.push(r),
            Err(e) => eprintln!("rtmp-load: player {id} panicked: {e}"),
        }
    }
    for r in &mut reports {
        r.verdict = r.judge(&limits);
    }
    if let Some(path) = &args.out {
        let written = serde_json::to_vec(&reports)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json));
        if let Err(e) = written {
            eprintln!("rtmp-load: writing {}: {e}", path.display());
        }
    }
    let summary = Summary::of(&reports, args.duration);
    match serde_json::to_string(&summary) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("rtmp-load: summary: {e}"),
    }
}
