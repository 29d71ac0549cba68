//! Offline driver of streamfleet's transcoder: reads an FLV file (H.264 video), feeds every
//! frame to one [`TranscodeSession`] as fast as the pool takes them (keeping the queues short
//! enough that nothing is shed), drains the codecs and prints one JSON line: frames, wall
//! seconds, frames per second, CPU seconds, dropped GOPs.
//!
//! `streamfleet-transcode-bench --input FILE.flv [--threads N] [--preset P] [--ladder 480:1000k,360:600k,240:300k]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamfleet::config::{Rung, TranscodeConfig};
use streamfleet::media::frame::{TimestampExtender, VideoTrack};
use streamfleet::media::hub::{HubKey, HubMetrics, Hubs};
use streamfleet::media::transcode::{TranscodeMetrics, Transcoder};
use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::flv::{AvcPacket, VideoBody, VideoTag};
use streamfleet::runtime::Shutdown;

struct Args {
    input: String,
    threads: usize,
    preset: String,
    ladder: Vec<Rung>,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let (n, mult) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1_000.0),
        None => match s.strip_suffix(['m', 'M']) {
            Some(n) => (n, 1_000_000.0),
            None => (s, 1.0),
        },
    };
    let n: f64 = n.parse().map_err(|_| format!("bad bit rate {s}"))?;
    Ok((n * mult) as u64)
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        input: String::new(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        preset: "veryfast".into(),
        ladder: Vec::new(),
    };
    let mut ladder = "480:1000k,360:600k,240:300k".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--input" => a.input = v,
            "--threads" => {
                a.threads = v
                    .parse()
                    .map_err(|_| format!("--threads {v}: not a number"))?
            }
            "--preset" => a.preset = v,
            "--ladder" => ladder = v,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.input.is_empty() {
        return Err("--input FILE.flv is required".into());
    }
    for rung in ladder.split(',') {
        let bad = || format!("ladder rung {rung:?} is not HEIGHT:BITRATE");
        let (h, b) = rung.split_once(':').ok_or_else(bad)?;
        a.ladder.push(Rung {
            height: h.parse().map_err(|_| bad())?,
            bitrate: parse_rate(b)?,
        });
    }
    a.ladder.sort_by_key(|r| std::cmp::Reverse(r.height));
    Ok(a)
}

/// (timestamp ms, body) of every video tag of an FLV file.
fn video_tags(flv: &[u8]) -> Result<Vec<(u32, Bytes)>, String> {
    let header = match flv {
        [b'F', b'L', b'V', _, _, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
        _ => return Err("not an FLV file".into()),
    };
    let mut at = header + 4;
    let mut out = Vec::new();
    while at + 11 <= flv.len() {
        let kind = flv[at] & 0x1F;
        let size = u32::from_be_bytes([0, flv[at + 1], flv[at + 2], flv[at + 3]]) as usize;
        let ts = u32::from_be_bytes([flv[at + 7], flv[at + 4], flv[at + 5], flv[at + 6]]);
        let body = at + 11;
        if body + size > flv.len() {
            break;
        }
        if kind == 9 {
            out.push((ts, Bytes::copy_from_slice(&flv[body..body + size])));
        }
        at = body + size + 4;
    }
    Ok(out)
}

/// CPU seconds (user + system) this process used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // Fields after the command: state is index 0, utime 11, stime 12 (clock ticks, 100 Hz).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    if let Err(e) = run() {
        eprintln!("streamfleet-transcode-bench: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let a = args()?;
    let flv = std::fs::read(&a.input).map_err(|e| format!("{}: {e}", a.input))?;
    let tags = video_tags(&flv).map_err(|e| format!("{}: {e}", a.input))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let _guard = rt.enter();
    let hubs = Arc::new(Hubs::new(HubMetrics::default(), None));
    let metrics = TranscodeMetrics::default();
    let config = TranscodeConfig {
        preset: a.preset.clone(),
        tune: None,
        threads: a.threads,
        ladder: a.ladder.clone(),
    };
    let transcoder = Transcoder::new(config, hubs, metrics.clone(), Shutdown::new())
        .map_err(|e| format!("transcoder: {e}"))?;
    let mut session = transcoder.session(HubKey::source("bench", "src"));
    let mut ts = TimestampExtender::default();
    let mut frames = 0u64;
    let mut names = Vec::new();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    for (timestamp, body) in tags {
        let dts = ts.extend(timestamp);
        let Ok(tag) = VideoTag::parse(&body) else {
            continue;
        };
        let keyframe = tag.is_keyframe();
        match tag.body {
            VideoBody::Avc(AvcPacket::SequenceHeader(record)) => {
                let config =
                    DecoderConfig::parse(&record).map_err(|e| format!("AVC config: {e}"))?;
                let sps = config
                    .first_sps()
                    .ok_or("AVC config without an SPS")?
                    .map_err(|e| format!("SPS: {e}"))?;
                names = streamfleet::media::transcode::plan(&a.ladder, sps.width, sps.height)
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                session.video_track(&VideoTrack {
                    sequence_header: body.clone(),
                    width: sps.width,
                    height: sps.height,
                    codec: config.codec_string(),
                    frame_rate: sps.frame_rate.map(|f| f.as_f64()),
                });
            }
            VideoBody::Avc(AvcPacket::Nalu {
                composition_time,
                data,
            }) => {
                // Keep the queues short: the pool stays busy and nothing is shed.
                loop {
                    let (decode, encode) = session.queued();
                    if decode < 4 && encode < 8 {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                session.video(dts, composition_time, keyframe, data);
                frames += 1;
            }
            _ => {}
        }
    }
    session.finish();
    while !session.is_idle() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let encoded: Vec<String> = names
        .iter()
        .map(|n| format!("\"{n}\":{}", metrics.frames_of(n)))
        .collect();
    let dropped: u64 = names.iter().map(|n| metrics.dropped_gops_of(n)).sum();
    println!(
        "{{\"tool\":\"streamfleet\",\"frames\":{frames},\"wall_s\":{wall:.3},\"fps\":{:.2},\"cpu_s\":{cpu:.2},\"encoded\":{{{}}},\"dropped_gops\":{dropped},\"errors\":{}}}",
        frames as f64 / wall,
        encoded.join(","),
        metrics.errors.get()
    );
    drop(session);
    Ok(())
}
