//! WebRTC playback over WHEP: headless Chromium with a plain RTCPeerConnection plays H.264 and
//! Opus (transcoded from the AAC) that ffmpeg publishes over RTMP to a standalone node; curl
//! checks the WHEP errors and DELETE.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::browser::play_whep;
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::{Http, Proc, wait_for};

const NODE: &str = "nodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", webrtc: {udp: \"127.0.0.1:0\"}, apps: [{name: live, security: {publish: open}}], hls: {segment: 1s, window: 6}}\n";

/// A request with curl (a real HTTP client that sends any method); any status is returned.
fn curl(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> Http {
    curl_with(method, url, content_type, body, &[])
}

/// [`curl`] with extra request headers.
fn curl_with(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
    headers: &[&str],
) -> Http {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-i", "--max-time", "30", "-X", method, url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(ct) = content_type {
        cmd.args(["-H", &format!("content-type: {ct}"), "--data-binary", "@-"]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    crate::common::parse_curl_response(&String::from_utf8_lossy(&out.stdout))
}

/// A minimal offer a browser would make for recvonly H.264.
const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

#[test]
fn chromium_plays_h264_over_whep() {
    require_ffmpeg();
    let p = Proc::start(NODE);
    let whep = format!("{}/live/whep/cam", p.http("s1"));

    // Not live yet: 404 with the reason.
    let r = curl("POST", &whep, Some("application/sdp"), OFFER.as_bytes());
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("not live"), "{}", r.text());

    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/cam", p.addr("s1", "rtmp")),
        Source {
            seconds: 60,
            gop: 60,
            ..Source::default()
        },
    );
    let playlist = format!("{}/live/streams/cam.m3u8", p.http("s1"));
    wait_for("the stream to be live", Duration::from_secs(20), || {
        (crate::common::get(&playlist).status == 200).then_some(())
    });

    // Bad offers: malformed 400, no H.264 406, too large 413, wrong type 415.
    let r = curl("POST", &whep, Some("application/sdp"), b"hello");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("malformed"), "{}", r.text());
    let vp8 = OFFER.replace("H264/90000", "VP8/90000").replace(
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n",
        "",
    );
    let r = curl("POST", &whep, Some("application/sdp"), vp8.as_bytes());
    assert_eq!(r.status, 406, "{}", r.text());
    assert!(r.text().contains("H.264"), "{}", r.text());
    let r = curl("POST", &whep, Some("application/sdp"), &vec![b'a'; 100_000]);
    assert_eq!(r.status, 413, "{}", r.text());
    let r = curl("POST", &whep, Some("text/plain"), OFFER.as_bytes());
    assert_eq!(r.status, 415, "{}", r.text());
    let r = curl(
        "POST",
        &format!("{}/nope/whep/cam", p.http("s1")),
        Some("application/sdp"),
        OFFER.as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // CORS preflight exposes Location.
    let r = curl("OPTIONS", &whep, None, b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-expose-headers")
            .unwrap_or("")
            .contains("Location")
    );

    // A session curl opens and never connects: PATCH is accepted, DELETE ends it.
    let r = curl("POST", &whep, Some("application/sdp"), OFFER.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert!(r.header("etag").is_some());
    assert!(r.text().contains("a=ice-lite"), "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with("/live/whep/cam/"), "{location}");
    let resource = format!("{}{location}", p.http("s1"));
    // The session counts as a WebRTC viewer in Ant Media's fields (from the node's heartbeat).
    let stats = format!(
        "{}/live/rest/v2/broadcasts/cam/broadcast-statistics",
        p.http("s1")
    );
    wait_for(
        "one WebRTC viewer in the statistics",
        Duration::from_secs(10),
        || {
            let s = crate::common::get(&stats).json();
            (s["totalWebRTCWatchersCount"] == 1).then_some(())
        },
    );
    let b = crate::common::get(&format!("{}/live/rest/v2/broadcasts/cam", p.http("s1"))).json();
    assert_eq!(b["webRTCViewerCount"], 1, "{b}");
    assert_eq!(b["rtmpViewerCount"], 0, "{b}");
    let frag =
        b"a=ice-ufrag:abcd\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let r = curl(
        "PATCH",
        &resource,
        Some("application/trickle-ice-sdpfrag"),
        frag,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let elsewhere = resource.replace("/live/whep/cam/", "/live/whep/other/");
    let r = curl("DELETE", &elsewhere, None, b"");
    assert_eq!(
        r.status,
        404,
        "a session is only under its stream's path: {}",
        r.text()
    );
    let r = curl("DELETE", &resource, None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = curl("DELETE", &resource, None, b"");
    assert_eq!(r.status, 404, "a deleted session is gone: {}", r.text());
    wait_for(
        "no WebRTC viewer after DELETE",
        Duration::from_secs(10),
        || {
            let s = crate::common::get(&stats).json();
            (s["totalWebRTCWatchersCount"] == 0).then_some(())
        },
    );

    // Garbage on the UDP port is ignored.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = p.addr("s1", "webrtc");
    for garbage in [
        &b""[..],
        b"\x00\x01\x00\x00garbage",
        &[0x80; 1200],
        &[22; 300],
        b"hello",
    ] {
        udp.send_to(garbage, port).unwrap();
    }

    // Chromium plays: decoded frames grow past 60, the first one soon after the POST; audio
    // is Opus with energy (the source is a 440 Hz sine).
    let r = play_whep(&whep, 60, &["--audio"]);
    assert!(r.ok, "WHEP playback failed: {}\n{}", r.json, p.stderr());
    let post = &r.json["post"];
    assert_eq!(post["status"], 201, "{}", r.json);
    assert!(
        post["location"]
            .as_str()
            .unwrap()
            .starts_with("/live/whep/cam/"),
        "{}",
        r.json
    );
    assert_eq!(r.json["codec"], "video/H264", "{}", r.json);
    assert_eq!(r.json["width"], 640, "{}", r.json);
    let ttff = r.json["ttffMs"].as_f64().unwrap();
    eprintln!("WHEP time to first frame: {ttff:.0} ms ({})", r.json);
    assert!(ttff < 2000.0, "time to first frame {ttff} ms: {}", r.json);
    // Then it runs live: about 30 frames a second.
    assert!(r.json["liveFps"].as_u64().unwrap() >= 20, "{}", r.json);
    let audio = &r.json["audio"];
    assert_eq!(audio["codec"], "audio/opus", "{}", r.json);
    assert!(
        audio["totalAudioEnergy"].as_f64().unwrap() > 0.0,
        "{}",
        r.json
    );
    assert!(
        audio["packetsReceived"].as_u64().unwrap() > 50,
        "{}",
        r.json
    );
    assert!(
        r.json["post"]["audioAnswer"]
            .as_str()
            .unwrap()
            .starts_with("audio 9 "),
        "{}",
        r.json
    );
    let sent = crate::common::cluster::metric(&p, "s1", "streamfleet_webrtc_audio_packets_total");
    assert!(sent > 50.0, "{sent} Opus packets sent");
    eprintln!(
        "WHEP A/V sync (audio - video playout): {} ms over {} samples {}; audio {}",
        r.json["avSyncMs"], r.json["avSyncSamples"], r.json["syncTrace"], audio
    );
    // Both tracks in one stream, so the browser can synchronise them.
    let streams = r.json["trackStreams"].as_array().unwrap();
    let ids: Vec<_> = streams
        .iter()
        .map(|s| s.as_str().unwrap().split_once(':').unwrap().1)
        .collect();
    assert!(ids.len() == 2 && ids[0] == ids[1], "{}", r.json);
    // Audio and video are on one timeline: what Chromium plays of each is from about the same
    // capture time. The bound catches a broken timeline (a missed start-cache squeeze is the
    // GOP, 2 s, off), not lip-sync accuracy: the audio jitter buffer Chromium fills at start
    // (measured 100-400 ms above its target here, on a loaded machine) dominates the measure
    // and drains slowly.
    assert!(r.json["avSyncSamples"].as_u64().unwrap() > 0, "{}", r.json);
    let av = r.json["avSyncMs"].as_f64().unwrap();
    assert!(
        av.abs() < 1000.0,
        "audio - video playout {av} ms: {}",
        r.json
    );
    assert_eq!(r.json["deleteStatus"], 200, "{}", r.json);
    // The browser's session is gone after its DELETE.
    let resource = format!("{}{}", p.http("s1"), post["location"].as_str().unwrap());
    let r = curl("DELETE", &resource, None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
}

/// A stream without audio plays video only: the browser's audio m-line is refused.
#[test]
fn a_stream_without_audio_plays_video_only() {
    require_ffmpeg();
    let p = Proc::start(NODE);
    let _publisher = Publisher::start_with_audio(
        &format!("rtmp://{}/live/mute", p.addr("s1", "rtmp")),
        Source {
            seconds: 40,
            ..Source::default()
        },
        false,
    );
    let playlist = format!("{}/live/streams/mute.m3u8", p.http("s1"));
    wait_for("the stream to be live", Duration::from_secs(20), || {
        (crate::common::get(&playlist).status == 200).then_some(())
    });
    let r = play_whep(&format!("{}/live/whep/mute", p.http("s1")), 30, &[]);
    assert!(r.ok, "WHEP playback failed: {}\n{}", r.json, p.stderr());
    assert_eq!(r.json["codec"], "video/H264", "{}", r.json);
    assert!(
        r.json["post"]["audioAnswer"]
            .as_str()
            .unwrap()
            .starts_with("audio 0 "),
        "{}",
        r.json
    );
    let sent = crate::common::cluster::metric(&p, "s1", "streamfleet_webrtc_audio_packets_total");
    assert_eq!(sent, 0.0);
}

/// A session whose viewer never completes ICE is dropped after 10 s.
#[test]
fn a_session_that_never_connects_is_dropped() {
    require_ffmpeg();
    let p = Proc::start(NODE);
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/idle", p.addr("s1", "rtmp")),
        Source {
            seconds: 40,
            ..Source::default()
        },
    );
    let whep = format!("{}/live/whep/idle", p.http("s1"));
    let r = wait_for("the stream to be live", Duration::from_secs(20), || {
        let r = curl("POST", &whep, Some("application/sdp"), OFFER.as_bytes());
        (r.status == 201).then_some(r)
    });
    let opened = std::time::Instant::now();
    let resource = format!("{}{}", p.http("s1"), r.header("location").unwrap());
    let frag = b"a=ice-ufrag:abcd\r\na=mid:0\r\n";
    wait_for("the session to be dropped", Duration::from_secs(20), || {
        let r = curl(
            "PATCH",
            &resource,
            Some("application/trickle-ice-sdpfrag"),
            frag,
        );
        (r.status == 404).then_some(())
    });
    let after = opened.elapsed();
    assert!(
        after >= Duration::from_secs(9) && after < Duration::from_secs(15),
        "dropped after {after:?}"
    );
}

/// WHEP follows the app's `security.play`: a play JWT in `Authorization: Bearer`.
#[test]
fn whep_needs_the_play_token_where_the_app_asks_for_one() {
    const KEY: &str = "whep-jwt-key-0123456789abcdef";
    let p = Proc::start(&format!(
        "nodes:\n  - {{role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", webrtc: {{udp: \"127.0.0.1:0\"}}, apps: [{{name: live, security: {{publish: open, play: jwt, jwt_secret: {KEY}}}}}]}}\n"
    ));
    let whep = format!("{}/live/whep/cam", p.http("s1"));
    let r = curl("POST", &whep, Some("application/sdp"), OFFER.as_bytes());
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("not allowed to play live/cam"),
        "{}",
        r.text()
    );
    let token = crate::common::stream_token(KEY, "cam", "play", 600);
    let bearer = format!("authorization: Bearer {token}");
    // Admitted: the stream is simply not live.
    let r = curl_with(
        "POST",
        &whep,
        Some("application/sdp"),
        OFFER.as_bytes(),
        &[&bearer],
    );
    assert_eq!(r.status, 404, "{}", r.text());
    // A token for another stream is refused.
    let r = curl_with(
        "POST",
        &format!("{}/live/whep/other", p.http("s1")),
        Some("application/sdp"),
        OFFER.as_bytes(),
        &[&bearer],
    );
    assert_eq!(r.status, 403, "{}", r.text());
}

/// On an edge, a WHEP offer for a stream the edge does not carry yet pulls it from its origin
/// over the relay, and Chromium plays it.
#[test]
fn chromium_plays_over_whep_from_an_edge_that_pulls_on_demand() {
    require_ffmpeg();
    let p = Proc::start(
        r#"
cluster: {heartbeat: 300ms, node_timeout: 3s}
shutdown_grace: 1s
nodes:
  - role: origin
    name: o1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    relay: "127.0.0.1:0"
    apps: [{name: live, security: {publish: open}}]
    hls: {segment: 1s, window: 6}
  - role: edge
    name: e1
    http: "127.0.0.1:0"
    webrtc: {udp: "127.0.0.1:0"}
    apps: [live]
    hls: {segment: 1s, window: 6, wait: 10s}
"#,
    );
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/far", p.addr("o1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let origin_playlist = format!("{}/live/streams/far.m3u8", p.http("o1"));
    wait_for("the stream on the origin", Duration::from_secs(20), || {
        (crate::common::get(&origin_playlist).status == 200).then_some(())
    });
    let r = play_whep(&format!("{}/live/whep/far", p.http("e1")), 60, &[]);
    assert!(
        r.ok,
        "WHEP playback from the edge failed: {}\n{}",
        r.json,
        p.stderr()
    );
    assert_eq!(r.json["codec"], "video/H264", "{}", r.json);
    eprintln!(
        "WHEP on an edge, time to first frame: {} ms",
        r.json["ttffMs"]
    );
}
