//! Low-Latency HLS (issue 14) with real clients: an origin with an ABR rung, an edge and an LB
//! (HTTPS with HTTP/2) in one process. hls.js in low-latency mode plays through the LB from the
//! edge with a latency (wall clock minus the playing frame's program-date-time) under 2 s, and
//! switches renditions; the master playlists list every rendition from their first answer;
//! ffprobe decodes the fMP4 renditions; a blocking reload answers as soon as the part asked for
//! exists; malformed directives get 400.

use std::time::{Duration, Instant};

use crate::common::browser::play_hls;
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::{Proc, get, wait_for};

fn one_box() -> Proc {
    let dir = tempfile::tempdir().unwrap();
    Proc::start_in(
        dir,
        r#"
cluster: {store: embedded, heartbeat: 500ms, node_timeout: 3s}
nodes:
  - role: origin
    name: origin-1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    relay: "127.0.0.1:0"
    apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]
    hls: {segment: 1s, window: 6}
    llhls: {part: 333ms}
    transcode: {ladder: [{height: 180, bitrate: 200k}]}
  - role: edge
    name: edge-1
    http: "127.0.0.1:0"
    hls: {segment: 1s, window: 6, wait: 15s}
  - role: lb
    name: lb1
    timeouts: {connect: 1s, client: 30s, server: 30s}
    frontends:
      - {name: http_lb, mode: http, bind: ["127.0.0.1:0"], backend: edges}
      - {name: https_lb, mode: http, bind: ["127.0.0.1:0"], backend: edges,
         tls: {certs: [dev.pem], self_signed: true}}
    backends:
      - {name: edges, mode: http, sticky: {cookie: JSESSIONID, mode: prefix},
         health: {kind: http, path: /healthz, interval: 500ms},
         servers_from: {role: edge, listener: http}}
"#,
    )
}

fn publish(p: &Proc, id: &str) -> Publisher {
    Publisher::start(
        &format!("rtmp://{}/live/{id}", p.addr("origin-1", "rtmp")),
        Source {
            seconds: 120,
            ..Source::default()
        },
    )
}

/// Every `#EXT-X-STREAM-INF` of a master playlist, with the URI after it.
fn stream_infs(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("#EXT-X-STREAM-INF:"))
        .map(|w| (w[0].to_owned(), w[1].to_owned()))
        .collect()
}

#[test]
fn masters_list_every_rendition_from_their_first_answer() {
    require_ffmpeg();
    let p = one_box();
    let lb = p.addr("lb1", "frontend:http_lb");
    let _publisher = publish(&p, "early");
    // Asked at once, before any segment exists: the answer waits for the whole ladder.
    for url in [
        format!("http://{lb}/live/streams/early_adaptive.m3u8"),
        format!("http://{lb}/live/streams/ll-hls/early/early__master.m3u8"),
    ] {
        let r = get(&url);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let variants = stream_infs(&r.text());
        assert_eq!(variants.len(), 2, "{url}: source and 180p:\n{}", r.text());
        for (inf, uri) in &variants {
            let bandwidth: u64 = inf
                .split(',')
                .find_map(|a| a.strip_prefix("#EXT-X-STREAM-INF:BANDWIDTH="))
                .and_then(|b| b.parse().ok())
                .unwrap();
            assert!(bandwidth > 10_000, "{url}: a measured bandwidth: {inf}");
            assert!(
                inf.contains("RESOLUTION=") && inf.contains("CODECS=\"avc1."),
                "{inf}"
            );
            assert!(inf.contains("mp4a.40.2"), "audio muxed: {inf}");
            assert!(uri.starts_with("early"), "{uri}");
        }
        assert!(variants[1].1.starts_with("early_180p"), "{variants:?}");
    }
    // Ant Media's player probes with HEAD, `__master_adaptive` first.
    let out = crate::common::lb::curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-I",
        &format!("http://{lb}/live/streams/ll-hls/early/early__master_adaptive.m3u8"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

#[test]
fn hlsjs_plays_low_latency_through_the_lb_over_http2_and_switches_renditions() {
    require_ffmpeg();
    let p = one_box();
    let tls = p.addr("lb1", "frontend:https_lb");
    // hls.js starts at an independent part (a keyframe) at or before its live sync point, so its
    // latency lies anywhere in one GOP above PART-HOLD-BACK: with 1 s GOPs that spread reaches
    // the bound (1.4 s or 2.05 s in consecutive runs); a 0.5 s GOP, usual for low latency, keeps
    // what is measured our delivery, not the phase of the GOP.
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/ll", p.addr("origin-1", "rtmp")),
        Source {
            seconds: 120,
            gop: 15,
            ..Source::default()
        },
    );
    let master = format!(
        "https://localhost:{}/live/streams/ll-hls/ll/ll__master.m3u8",
        tls.port()
    );
    let played = play_hls(&master, 12, &["--ll", "--insecure"]);
    assert!(played.ok, "{}", played.json);
    let latency = &played.json["latency"];
    let p95 = latency["p95"].as_f64().unwrap_or(f64::MAX);
    assert!(
        p95 < 2000.0,
        "latency under 2 s (wall clock minus the frame's program-date-time): {latency}"
    );
    println!("LL-HLS latency through the LB (ms): {latency}");
    // Every rendition plays in turn, with parts.
    let switched = play_hls(&master, 4, &["--ll", "--insecure", "--switch-levels"]);
    assert!(switched.ok, "{}", switched.json);
    assert_eq!(
        switched.json["forced"].as_array().map(Vec::len),
        Some(2),
        "{}",
        switched.json
    );
}

#[test]
fn ffprobe_decodes_the_fmp4_renditions_and_blocking_reloads_answer_when_the_part_exists() {
    require_ffmpeg();
    let p = one_box();
    let lb = p.addr("lb1", "frontend:http_lb");
    let _publisher = publish(&p, "cam");
    let base = format!("http://{lb}/live/streams/ll-hls/cam");
    let master = get(&format!("{base}/cam__master.m3u8"));
    assert_eq!(master.status, 200, "{}", master.text());
    let dir = tempfile::tempdir().unwrap();
    for (name, width, height) in [("cam", 640, 360), ("cam_180p", 320, 180)] {
        let playlist = wait_for(
            &format!("{name}: four whole segments"),
            Duration::from_secs(30),
            || {
                let t = get(&format!("{base}/{name}.m3u8")).text();
                (t.matches("#EXTINF").count() >= 4).then_some(t)
            },
        );
        let init = playlist
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .map(|u| u.trim_end_matches('"').to_owned())
            .unwrap();
        let segments: Vec<&str> = playlist
            .lines()
            .filter(|l| !l.starts_with('#') && l.ends_with(".m4s"))
            .collect();
        let mut file = get(&format!("{base}/{init}")).body;
        for s in &segments {
            let r = get(&format!("{base}/{s}"));
            assert_eq!(r.status, 200, "{s}");
            file.extend_from_slice(&r.body);
        }
        let path = dir.path().join(format!("{name}.mp4"));
        std::fs::write(&path, &file).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-show_entries"])
            .args([
                "stream=codec_name,width,height,nb_read_frames",
                "-of",
                "json",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let streams = v["streams"].as_array().unwrap();
        let video = streams.iter().find(|s| s["codec_name"] == "h264").unwrap();
        let audio = streams.iter().find(|s| s["codec_name"] == "aac").unwrap();
        assert_eq!(
            (video["width"].as_u64(), video["height"].as_u64()),
            (Some(width), Some(height))
        );
        let frames: u64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
        let expected = segments.len() as u64 * 30;
        assert!(
            frames.abs_diff(expected) <= 1,
            "{name}: {frames} video frames in {} one-second segments",
            segments.len()
        );
        let audio_frames: u64 = audio["nb_read_frames"].as_str().unwrap().parse().unwrap();
        assert!(
            audio_frames >= segments.len() as u64 * 40,
            "{name}: {audio_frames} AAC frames"
        );
    }

    // A blocking reload for the next part answers once it exists: within about a part's
    // duration, with that part listed.
    let playlist = get(&format!("{base}/cam.m3u8")).text();
    let (msn, part) = next_part(&playlist);
    let asked = Instant::now();
    let r = get(&format!("{base}/cam.m3u8?_HLS_msn={msn}&_HLS_part={part}"));
    let took = asked.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(&format!("cam-{msn}.{part}.m4s")),
        "the part asked for is listed:\n{}",
        r.text()
    );
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
    // The part after it, asked before it exists (the preload hint), comes when it is written.
    let hint = r
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .map(|u| u.trim_end_matches('"').to_owned())
        .unwrap();
    let part = get(&format!("{base}/{hint}"));
    assert_eq!(part.status, 200, "{hint}");
    assert!(part.body.len() > 100);

    // Malformed or impossible directives.
    for (query, status) in [
        (format!("_HLS_msn={}", msn + 10), 400),
        ("_HLS_msn=x".to_owned(), 400),
        ("_HLS_part=1".to_owned(), 400),
    ] {
        assert_eq!(
            get(&format!("{base}/cam.m3u8?{query}")).status,
            status,
            "{query}"
        );
    }
}

/// The (segment, part) after the newest part a playlist lists.
fn next_part(playlist: &str) -> (u64, u64) {
    let last = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .next_back()
        .and_then(|l| l.split("URI=\"").nth(1))
        .and_then(|u| u.split('"').next())
        .map(|u| u.trim_end_matches(".m4s").to_owned())
        .unwrap();
    let (_, numbers) = last.rsplit_once('-').unwrap();
    let (msn, part) = numbers.split_once('.').unwrap();
    let (msn, part): (u64, u64) = (msn.parse().unwrap(), part.parse().unwrap());
    let complete = playlist.contains(&format!("-{msn}.m4s"));
    if complete {
        (msn + 1, 0)
    } else {
        (msn, part + 1)
    }
}
