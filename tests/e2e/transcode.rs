//! ABR transcoding end to end: ffmpeg publishes 1280x720 over RTMP to an origin with a ladder;
//! the renditions play at their sizes and rates, are keyframe-aligned with the source (every
//! segment starts at the same PTS in every rendition), are listed in the adaptive master
//! playlist, play in hls.js with forced level switches on the origin and through an edge that
//! pulls them over the QUIC relay, and stop with the publisher.
//!
//! One test on purpose: the transcoder is the expensive part, and CI has two cores.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::browser::play_hls;
use crate::common::media::{probe, require_ffmpeg};
use crate::common::{Proc, get, wait_for};

/// (name, width, height, video bit rate) of the renditions of a 1280x720 source.
const RENDITIONS: [(&str, u32, u32, u64); 3] = [
    ("480p", 854, 480, 1_000_000),
    ("360p", 640, 360, 600_000),
    ("240p", 426, 240, 300_000),
];

/// ffmpeg publishing a cheap (ultrafast) 720p30 test pattern with AAC, 2 s GOPs.
struct Publisher(Child);

impl Publisher {
    fn start(url: &str, seconds: u32) -> Publisher {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &seconds.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-pix_fmt", "yuv420p", "-b:v", "2500k"])
            .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
            .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv"])
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ffmpeg (apt install ffmpeg)");
        Publisher(child)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(uri, duration)` of the segments a media playlist lists.
fn segments(playlist: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut duration = None;
    for line in playlist.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            duration = d
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|d| d.parse().ok());
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push((line.to_owned(), duration.take().unwrap_or(0.0)));
        }
    }
    out
}

/// Video packets of an MPEG-TS segment: (pts in 90 kHz ticks, size, keyframe).
fn video_packets(ts: &[u8]) -> Vec<(i64, u64, bool)> {
    let mut child = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "packet=pts,size,flags", "-of", "csv=p=0"])
        .args(["-f", "mpegts", "-i", "pipe:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffprobe");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = ts.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("ffprobe output");
    writer.join().expect("writer");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let pts = f.next()?.parse().ok()?;
            let size = f.next()?.parse().ok()?;
            let keyframe = f.next()?.starts_with('K');
            Some((pts, size, keyframe))
        })
        .collect()
}

/// First video PTS of every listed segment (keyed by it), and the video bit rate measured over
/// the listed segments after the first.
fn inspect(base: &str, stream: &str) -> (BTreeMap<i64, bool>, f64) {
    let playlist = get(&format!("{base}/{stream}.m3u8")).text();
    let mut starts = BTreeMap::new();
    let (mut bytes, mut seconds) = (0u64, 0.0);
    for (i, (uri, duration)) in segments(&playlist).into_iter().enumerate() {
        let seg = get(&format!("{base}/{uri}"));
        if seg.status != 200 {
            continue; // slid out of the window meanwhile
        }
        let packets = video_packets(&seg.body);
        let Some(&(first_pts, _, keyframe)) = packets.first() else {
            continue;
        };
        starts.insert(first_pts, keyframe);
        if i > 0 {
            bytes += packets.iter().map(|p| p.1).sum::<u64>();
            seconds += duration;
        }
    }
    (starts, bytes as f64 * 8.0 / seconds.max(0.001))
}

fn metric(p: &Proc, node: &str, name: &str) -> Option<f64> {
    get(&format!("{}/metrics", p.http(node)))
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// hls.js plays `master` in Chromium, is forced onto every level in turn, and plays each one
/// (the source at 720p and the three renditions) with no fatal error.
fn plays_every_level(master: &str, on: &str) {
    let r = play_hls(master, 4, &["--switch-levels"]);
    assert!(
        r.ok && r.json["fatal"].is_null(),
        "hls.js on the {on}: {}",
        r.json
    );
    let forced = r.json["forced"].as_array().cloned().unwrap_or_default();
    let mut heights: Vec<u64> = forced.iter().filter_map(|f| f["height"].as_u64()).collect();
    heights.sort_unstable();
    assert_eq!(
        heights,
        vec![240, 360, 480, 720],
        "every level played on the {on}: {}",
        r.json
    );
}

#[test]
fn ladder_renditions_play_aligned_and_switchable() {
    require_ffmpeg();
    let p = Proc::start(
        r#"
cluster: {heartbeat: 300ms, node_timeout: 2s, secret: transcode-test-secret}
shutdown_grace: 2s
nodes:
  - role: edge
    name: e1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    hls: {segment: 2s, window: 8, wait: 20s}
  - role: origin
    name: s1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    relay: "127.0.0.1:0"
    apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]
    hls: {segment: 2s, window: 8, wait: 20s}
    transcode:
      preset: veryfast
      ladder:
        - {height: 1080, bitrate: 4000k}
        - {height: 480, bitrate: 1000k}
        - {height: 360, bitrate: 600k}
        - {height: 240, bitrate: 300k}
"#,
    );
    let publisher = Publisher::start(&format!("rtmp://{}/live/abr", p.addr("s1", "rtmp")), 180);
    let base = format!("{}/live/streams", p.http("s1"));

    // The master playlist lists the source and the three renditions (no 1080p: above the source).
    let master = wait_for("the adaptive playlist", Duration::from_secs(40), || {
        let r = get(&format!("{base}/abr_adaptive.m3u8"));
        (r.status == 200 && r.text().matches("#EXT-X-STREAM-INF").count() == 4).then(|| r.text())
    });
    assert!(!master.contains("1080"), "{master}");
    for (name, width, height, bitrate) in RENDITIONS {
        let (inf, uri) = master
            .lines()
            .zip(master.lines().skip(1))
            .find(|(_, uri)| *uri == format!("abr_{name}.m3u8"))
            .unwrap_or_else(|| panic!("{name} missing from\n{master}"));
        assert!(
            inf.contains(&format!("RESOLUTION={width}x{height}")),
            "{inf}"
        );
        assert!(
            inf.contains("CODECS=\"avc1.64") && inf.contains(",mp4a.40.2\""),
            "{inf}"
        );
        assert!(inf.contains("FRAME-RATE=30"), "{inf}");
        let average: u64 = inf
            .split("AVERAGE-BANDWIDTH=")
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no AVERAGE-BANDWIDTH in {inf}"));
        assert!(
            average >= bitrate && average <= bitrate + 200_000,
            "{uri}: AVERAGE-BANDWIDTH {average} is the rung's {bitrate} plus audio"
        );
        assert!(
            inf.contains(",BANDWIDTH=") || inf.contains(":BANDWIDTH="),
            "{inf}"
        );
    }
    assert!(
        master.contains("RESOLUTION=1280x720") && master.contains("abr.m3u8"),
        "{master}"
    );

    // Each rendition plays with ffprobe at its size, with audio.
    for (name, width, height, _) in RENDITIONS {
        let streams = probe(&format!("{base}/abr_{name}.m3u8"), 3);
        let video = streams.iter().find(|s| s.kind == "video");
        assert!(
            video.is_some_and(
                |v| (v.codec.as_str(), v.width, v.height) == ("h264", width, height)
                    && v.frames > 30
            ),
            "{name}: {streams:?}"
        );
        assert!(
            streams
                .iter()
                .any(|s| s.kind == "audio" && s.codec == "aac" && s.frames > 0),
            "{name}: {streams:?}"
        );
    }

    // Enough segments for a bit rate measurement past the encoders' first seconds.
    wait_for(
        "eight segments per rendition",
        Duration::from_secs(60),
        || {
            RENDITIONS
                .iter()
                .all(|(name, ..)| {
                    segments(&get(&format!("{base}/abr_{name}.m3u8")).text()).len() >= 8
                })
                .then_some(())
        },
    );
    let (source_starts, _) = inspect(&base, "abr");
    for (name, _, _, bitrate) in RENDITIONS {
        let (starts, measured) = inspect(&base, &format!("abr_{name}"));
        let ratio = measured / bitrate as f64;
        eprintln!("{name}: {measured:.0} b/s measured for a {bitrate} b/s rung");
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{name}: measured {measured:.0} b/s for a {bitrate} b/s rung"
        );
        assert!(
            starts.values().all(|&k| k),
            "{name}: every segment starts on a keyframe"
        );
        // Over the span both playlists cover, segments start at the same PTS as the source's.
        let (lo, hi) = (
            *starts
                .keys()
                .next()
                .unwrap()
                .max(source_starts.keys().next().unwrap()),
            *starts
                .keys()
                .last()
                .unwrap()
                .min(source_starts.keys().last().unwrap()),
        );
        let ours: Vec<i64> = starts
            .keys()
            .copied()
            .filter(|t| (lo..=hi).contains(t))
            .collect();
        let theirs: Vec<i64> = source_starts
            .keys()
            .copied()
            .filter(|t| (lo..=hi).contains(t))
            .collect();
        assert!(
            ours.len() >= 4,
            "{name}: too little overlap: {starts:?} vs {source_starts:?}"
        );
        assert_eq!(
            ours, theirs,
            "{name}: segment start PTS differ from the source's"
        );
    }

    // hls.js plays the adaptive playlist and survives forcing every level, on the origin and
    // through an edge (the renditions ride the relay with the source).
    plays_every_level(&format!("{base}/abr_adaptive.m3u8"), "origin");
    plays_every_level(
        &format!("{}/live/streams/abr_adaptive.m3u8", p.http("e1")),
        "edge",
    );
    assert_eq!(
        metric(&p, "e1", "streamfleet_relay_upstream_subscriptions "),
        Some(1.0),
        "one upstream subscription carries every rendition"
    );

    // Unpublish: the session ends and the rendition hubs stop.
    assert_eq!(
        metric(&p, "s1", "streamfleet_transcode_sessions "),
        Some(1.0)
    );
    drop(publisher);
    wait_for(
        "the transcode session to end",
        Duration::from_secs(40),
        || (metric(&p, "s1", "streamfleet_transcode_sessions ") == Some(0.0)).then_some(()),
    );
    assert_eq!(
        metric(&p, "s1", "streamfleet_transcode_errors_total "),
        Some(0.0)
    );
}
