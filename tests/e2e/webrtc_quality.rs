//! Which rendition a WebRTC viewer gets: headless Chromium with Ant Media's adaptor forces
//! qualities (`forceStreamQuality`) on a stream with a transcode ladder and sees the decoded
//! height follow; a source with B-frames is replaced by its best rendition, or sent as it is
//! with one warning per stream when there is no ladder; the WebRTC counters are in `/metrics`;
//! a client address holds at most `webrtc.max_sessions_per_address` sessions.

use std::process::Command;
use std::time::Duration;

use crate::common::browser::{play_antmedia, play_antmedia_in};
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::netns::ip;
use crate::common::{Proc, get, wait_for};

/// A standalone node with WebRTC, with or without a one-rendition ladder (240p).
fn node(ladder: bool) -> String {
    let transcode = if ladder {
        "\n    transcode: {preset: veryfast, ladder: [{height: 240, bitrate: 300k}]}"
    } else {
        ""
    };
    format!(
        r#"
nodes:
  - role: standalone
    name: s1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    webrtc: {{udp: "127.0.0.1:0", max_sessions_per_address: 3}}
    apps: [{{name: live, security: {{publish: open}}}}]
    hls: {{segment: 1s, window: 6}}{transcode}
"#
    )
}

/// Publishes 640x360 (1 s GOPs) to `p` as `live/cam` and waits until `playlists` are served.
fn publish(p: &Proc, bframes: bool, playlists: &[&str]) -> Publisher {
    let publisher = Publisher::start(
        &format!("rtmp://{}/live/cam", p.addr("s1", "rtmp")),
        Source {
            seconds: 120,
            bframes,
            ..Source::default()
        },
    );
    for name in playlists {
        let url = format!("{}/live/streams/{name}", p.http("s1"));
        wait_for(name, Duration::from_secs(30), || {
            (get(&url).status == 200).then_some(())
        });
    }
    publisher
}

/// A counter's value in the node's `/metrics`.
fn metric(p: &Proc, name: &str) -> Option<f64> {
    let body = get(&format!("{}/metrics", p.http("s1"))).body;
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn force_stream_quality_switches_the_decoded_rendition_and_back_to_auto() {
    require_ffmpeg();
    let p = Proc::start(&node(true));
    let _publisher = publish(&p, false, &["cam.m3u8", "cam_240p.m3u8"]);
    let ws = format!(
        "ws://{}/live/websocket",
        p.http("s1").trim_start_matches("http://")
    );
    let r = play_antmedia(
        &ws,
        "cam",
        30,
        &["--force", "240:240,0:360,360:360", "--force-bad", "1080"],
    );
    assert!(r.ok, "the adaptor did not play: {}\n{}", r.json, p.stderr());
    assert_eq!(
        r.json["steps"]["first"]["height"], 360,
        "auto = the source: {}",
        r.json
    );
    let force = r.json["steps"]["force"].as_array().expect("force steps");
    assert_eq!(force.len(), 3, "{}", r.json);
    for step in force {
        assert!(
            step["errors"].as_array().is_some_and(Vec::is_empty),
            "forcing answered an error: {}",
            r.json
        );
    }
    assert_eq!(
        r.json["steps"]["forceBad"], "no_such_rendition",
        "{}",
        r.json
    );
    eprintln!(
        "forceStreamQuality: 240p decoded after {} ms, auto (source) after {} ms",
        force[0]["ms"], force[1]["ms"]
    );
    // Two switches were made (240p, then back to the source; 360 is already the source).
    let switches = metric(&p, "streamfleet_webrtc_rendition_switches_total").unwrap_or(0.0);
    assert!(switches >= 2.0, "switches counted: {switches}");
    for name in [
        "streamfleet_webrtc_nacks_total",
        "streamfleet_webrtc_plis_total",
        "streamfleet_webrtc_bandwidth_switches_total",
    ] {
        assert!(metric(&p, name).is_some(), "{name} in /metrics");
    }
    assert_eq!(
        metric(&p, "streamfleet_webrtc_bandwidth_switches_total"),
        Some(0.0),
        "no bandwidth switch on loopback"
    );
}

#[test]
fn a_b_frame_source_is_replaced_by_its_best_rendition() {
    require_ffmpeg();
    let p = Proc::start(&node(true));
    let _publisher = publish(&p, true, &["cam.m3u8", "cam_240p.m3u8"]);
    let ws = format!(
        "ws://{}/live/websocket",
        p.http("s1").trim_start_matches("http://")
    );
    let r = play_antmedia(&ws, "cam", 30, &["--wait-height", "240"]);
    assert!(r.ok, "the adaptor did not play: {}\n{}", r.json, p.stderr());
    assert_eq!(r.json["steps"]["first"]["height"], 240, "{}", r.json);
    eprintln!(
        "B-frame source: first frame after {} ms, at {} lines",
        r.json["steps"]["first"]["ttffMs"], r.json["steps"]["first"]["height"]
    );
    assert!(
        !p.stderr().contains("has B-frames, which browsers"),
        "no warning when a rendition is sent instead"
    );
}

#[test]
fn a_b_frame_source_without_ladder_plays_with_one_warning() {
    require_ffmpeg();
    let p = Proc::start(&node(false));
    let _publisher = publish(&p, true, &["cam.m3u8"]);
    let ws = format!(
        "ws://{}/live/websocket",
        p.http("s1").trim_start_matches("http://")
    );
    // Two sessions (play, stop, play again): the source both times, one warning.
    let r = play_antmedia(&ws, "cam", 30, &[]);
    assert!(r.ok, "the adaptor did not play: {}\n{}", r.json, p.stderr());
    assert_eq!(r.json["steps"]["first"]["height"], 360, "{}", r.json);
    let warnings = p.stderr().matches("has B-frames, which browsers").count();
    assert_eq!(warnings, 1, "{}", p.stderr());
}

/// A minimal offer a browser would make for recvonly H.264.
const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

/// POSTs the offer to `url` (as if forwarded for `client` by a trusted proxy); the status
/// and the body.
fn whep_offer(url: &str, client: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(["-H", "content-type: application/sdp"])
        .args(["-H", &format!("x-forwarded-for: {client}")])
        .args(["--data-binary", OFFER, url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn one_client_address_holds_at_most_its_share_of_sessions() {
    require_ffmpeg();
    let p = Proc::start(&node(false));
    let _publisher = publish(&p, false, &["cam.m3u8"]);
    let url = format!("{}/live/whep/cam", p.http("s1"));
    // `max_sessions_per_address: 3`: these sessions never connect, and count until dropped
    // (10 s), far longer than the test takes.
    for i in 0..3 {
        let (status, body) = whep_offer(&url, "198.51.100.7");
        assert_eq!(status, 201, "offer {i}: {body}");
    }
    let (status, body) = whep_offer(&url, "198.51.100.7");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("198.51.100.7 already holds 3 WebRTC sessions")
            && body.contains("max_sessions_per_address"),
        "{body}"
    );
    // Another client behind the same proxy is not affected.
    let (status, body) = whep_offer(&url, "203.0.113.9");
    assert_eq!(status, 201, "{body}");
}

/// A network namespace joined to this one by a veth pair whose host side sends at `rate`
/// (tc tbf): the browser runs inside, the node listens on the host side. Deleted when dropped.
struct ThrottledLink {
    ns: String,
    host_if: String,
    /// The host side's address (the node binds it).
    host: String,
}

impl ThrottledLink {
    fn new(rate: &str) -> ThrottledLink {
        let id = std::process::id() % 10_000;
        let link = ThrottledLink {
            ns: format!("sfabr{id}"),
            host_if: format!("sfabr{id}h"),
            host: format!("10.213.{}.1", id % 250),
        };
        let peer_if = format!("sfabr{id}n");
        let peer = format!("10.213.{}.2/30", id % 250);
        ip(&["netns", "add", &link.ns]);
        ip(&[
            "link",
            "add",
            &link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &link.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", link.host),
            "dev",
            &link.host_if,
        ]);
        ip(&["link", "set", &link.host_if, "up"]);
        ip(&[
            "netns", "exec", &link.ns, "ip", "addr", "add", &peer, "dev", &peer_if,
        ]);
        ip(&[
            "netns", "exec", &link.ns, "ip", "link", "set", &peer_if, "up",
        ]);
        ip(&["netns", "exec", &link.ns, "ip", "link", "set", "lo", "up"]);
        let tc = Command::new("tc")
            .args([
                "qdisc",
                "add",
                "dev",
                &link.host_if,
                "root",
                "tbf",
                "rate",
                rate,
            ])
            .args(["burst", "20kb", "latency", "300ms"])
            .output()
            .expect("tc (iproute2)");
        assert!(
            tc.status.success(),
            "{}",
            String::from_utf8_lossy(&tc.stderr)
        );
        link
    }
}

impl Drop for ThrottledLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A viewer on a 500 kbit/s link of a 1 Mbit/s source with a 300k 240p rendition: its
/// bandwidth estimate falls below the source's rate and it steps down to 240p by itself.
#[test]
fn a_viewer_on_a_slow_link_steps_down_the_ladder() {
    require_ffmpeg();
    // Needs root and iproute2 (CI has both): fails with the reason otherwise.
    let link = ThrottledLink::new("500kbit");
    // `/metrics` answers the test from the link's address.
    let config = node(true)
        .replace(
            "hls: {segment: 1s, window: 6}",
            "hls: {segment: 1s, window: 6}\n    rest: {remote_allowed_cidrs: [10.213.0.0/16]}",
        )
        .replace(
            "http: \"127.0.0.1:0\"",
            &format!("http: \"{}:0\"", link.host),
        )
        .replace("udp: \"127.0.0.1:0\"", &format!("udp: \"{}:0\"", link.host));
    let p = Proc::start(&config);
    let _publisher = publish(&p, false, &["cam.m3u8", "cam_240p.m3u8"]);
    let ws = format!(
        "ws://{}/live/websocket",
        p.http("s1").trim_start_matches("http://")
    );
    let r = play_antmedia_in(Some(&link.ns), &ws, "cam", 10, &["--wait-height", "240"]);
    assert!(
        r.ok,
        "the adaptor did not step down: {}\n{}",
        r.json,
        p.stderr()
    );
    let switches = metric(&p, "streamfleet_webrtc_bandwidth_switches_total").unwrap_or(0.0);
    assert!(switches >= 1.0, "bandwidth switches counted: {switches}");
    eprintln!(
        "slow link: first frame after {} ms, 240p {} ms after that; NACKs {:?}",
        r.json["steps"]["first"]["ttffMs"],
        r.json["steps"]["first"]["heightAfterMs"],
        metric(&p, "streamfleet_webrtc_nacks_total")
    );
}
