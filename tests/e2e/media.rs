//! A media node end to end with real clients: ffmpeg publishes over RTMP, ffprobe plays RTMP
//! and HLS while the stream is live, the REST reflects the stream's life, hostile input stays
//! contained.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::media::{
    Publisher, Source, assert_plays, assert_plays_default, probe, require_ffmpeg,
};
use crate::common::{Proc, get, stream_token, wait_for};

/// A standalone node whose apps take anyone's streams, unless `extra` starts with its own `apps:`.
fn standalone(extra: &str) -> Proc {
    let apps = if extra.trim_start().starts_with("apps:") {
        ""
    } else {
        "    apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]\n"
    };
    Proc::start(&format!(
        r#"
cluster: {{heartbeat: 300ms, node_timeout: 2s}}
shutdown_grace: 2s
nodes:
  - role: standalone
    name: s1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    hls: {{segment: 1s, window: 6, wait: 15s}}
{apps}{extra}
"#
    ))
}

fn broadcast(p: &Proc, id: &str) -> serde_json::Value {
    get(&format!("{}/live/rest/v2/broadcasts/{id}", p.http("s1"))).json()
}

fn wait_status(p: &Proc, id: &str, status: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(&format!("{}/live/rest/v2/broadcasts/{id}", p.http("s1")));
        if r.status == 200 && r.json()["status"] == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never became {status}: {}\nserver log:\n{}",
            r.text(),
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rtmp_and_hls_play_while_live() {
    require_ffmpeg();
    let p = standalone("");
    let rtmp = format!("rtmp://{}/live/demo", p.addr("s1", "rtmp"));
    let http = p.http("s1");
    let source = Source {
        seconds: 14,
        ..Source::default()
    };
    let publisher = Publisher::start(&rtmp, source);
    wait_status(&p, "demo", "broadcasting");

    // RTMP and HLS players at the same time, 4 s of stream each.
    let rtmp_probe = std::thread::spawn({
        let url = rtmp.clone();
        move || probe(&url, 4)
    });
    let playlist_url = format!("{http}/live/streams/demo.m3u8");
    let first = get(&playlist_url);
    assert_eq!(
        first.status, 200,
        "the playlist request waits for the first segment"
    );
    let hls = probe(&playlist_url, 4);
    assert_plays(&hls, 640, 360, 30, 30, 4, "HLS");
    assert_plays(
        &rtmp_probe.join().unwrap(),
        640,
        360,
        30,
        30,
        4,
        "RTMP play",
    );

    // The playlist: served with the right headers, parses, and follows RFC 8216.
    let r = get(&playlist_url);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let playlist = match m3u8_rs::parse_playlist_res(&r.body) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(pl)) => pl,
        other => panic!("not a media playlist: {other:?}\n{}", r.text()),
    };
    assert!(!playlist.segments.is_empty());
    assert!(!playlist.end_list, "live playlist");
    for s in &playlist.segments {
        // RFC 8216 4.3.3.1: each EXTINF, rounded to the nearest integer, <= target duration.
        assert!(
            (s.duration.round() as u64) <= playlist.target_duration,
            "{} > {}",
            s.duration,
            playlist.target_duration
        );
        assert!(
            s.program_date_time.is_some(),
            "EXT-X-PROGRAM-DATE-TIME on every segment"
        );
        let seg = get(&format!("{http}/live/streams/{}", s.uri));
        assert_eq!(seg.status, 200, "{}", s.uri);
        assert_eq!(seg.header("content-type"), Some("video/mp2t"));
        assert_eq!(seg.header("access-control-allow-origin"), Some("*"));
        assert!(
            seg.header("cache-control")
                .unwrap_or("")
                .contains("max-age"),
            "segments are cacheable"
        );
        assert!(seg.body.len().is_multiple_of(188) && seg.body[0] == 0x47);
    }
    assert_eq!(
        get(&format!("{http}/live/streams/nope.m3u8")).status,
        404,
        "unknown stream"
    );
    assert_eq!(
        get(&format!("{http}/live/streams/demo-1.ts")).status,
        404,
        "unknown segment"
    );
    assert_eq!(
        get(&format!("{http}/other/streams/demo.m3u8")).status,
        404,
        "unknown app"
    );

    let b = broadcast(&p, "demo");
    assert_eq!(b["renditions"][0]["width"], 640);
    assert_eq!(
        b["renditions"][0]["video_codec"]
            .as_str()
            .map(|c| c.starts_with("avc1.")),
        Some(true)
    );
    let (ok, err) = publisher.wait();
    assert!(ok, "publisher ran to the end: {err}");
}

#[test]
fn lifecycle_duplicate_publisher_and_republish() {
    require_ffmpeg();
    let p = standalone("");
    let rtmp = format!("rtmp://{}/live/cam", p.addr("s1", "rtmp"));
    let mut first = Publisher::start(
        &rtmp,
        Source {
            seconds: 8,
            ..Source::default()
        },
    );
    wait_status(&p, "cam", "broadcasting");
    let b = broadcast(&p, "cam");
    assert_eq!(
        (b["origin"].as_str(), b["originAdress"].as_str()),
        (Some("s1"), Some("127.0.0.1"))
    );
    assert_eq!(
        get(&format!("{}/live/rest/v2/broadcasts/count", p.http("s1"))).json()["number"],
        1
    );
    let list = get(&format!(
        "{}/live/rest/v2/broadcasts/list/0/10",
        p.http("s1")
    ))
    .json();
    assert_eq!(list[0]["streamId"], "cam");

    // A second publisher of the same stream is refused; the first keeps going.
    let (ok, err) = Publisher::start(
        &rtmp,
        Source {
            seconds: 3,
            ..Source::default()
        },
    )
    .wait();
    assert!(!ok, "second publisher must fail");
    assert!(
        p.stderr().contains("NetStream.Publish.BadName"),
        "{}",
        p.stderr()
    );
    assert!(first.running(), "first publisher still live ({err})");
    assert_eq!(broadcast(&p, "cam")["epoch"], 1, "ownership unchanged");

    let (ok, err) = first.wait();
    assert!(ok, "{err}");
    wait_status(&p, "cam", "finished");

    // Republish: the playlist marks the break, and the stream plays again.
    let _again = Publisher::start(
        &rtmp,
        Source {
            seconds: 12,
            ..Source::default()
        },
    );
    wait_status(&p, "cam", "broadcasting");
    assert_eq!(broadcast(&p, "cam")["epoch"], 2);
    let url = format!("{}/live/streams/cam.m3u8", p.http("s1"));
    let text = wait_for(
        "a discontinuity in the playlist",
        Duration::from_secs(20),
        || {
            let t = get(&url).text();
            t.contains("#EXT-X-DISCONTINUITY\n").then_some(t)
        },
    );
    let pl = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(pl)) => pl,
        other => panic!("{other:?}"),
    };
    assert!(pl.segments.iter().any(|s| s.discontinuity));
    assert_plays(&probe(&url, 3), 640, 360, 30, 30, 3, "HLS after republish");
}

/// Opens an RTMP connection and completes the plain handshake.
fn handshaken(addr: std::net::SocketAddr) -> TcpStream {
    use bytes::BytesMut;
    use streamfleet_proto::rtmp::handshake::{ClientHandshake, RANDOM_LEN};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = BytesMut::new();
    let mut hs = ClientHandshake::start(0, &[7u8; RANDOM_LEN], false, &mut out);
    s.write_all(&out).unwrap();
    out.clear();
    let mut input = BytesMut::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during handshake");
        input.extend_from_slice(&buf[..n]);
        if hs.read(&mut input, &mut out).unwrap().is_some() {
            break;
        }
    }
    s.write_all(&out).unwrap();
    s
}

fn message(csid: u32, type_id: u8, payload: Vec<u8>) -> Vec<u8> {
    use streamfleet_proto::rtmp::chunk::{ChunkEncoder, RawMessage};
    let mut out = bytes::BytesMut::new();
    ChunkEncoder::new()
        .write(
            &RawMessage {
                csid,
                timestamp: 0,
                type_id,
                stream_id: 0,
                payload: payload.into(),
            },
            &mut out,
        )
        .unwrap();
    out.to_vec()
}

/// Sends `bytes`, then expects the server to close the connection and log one line about it.
fn expect_closed_and_logged(p: &Proc, mut s: TcpStream, bytes: &[u8], what: &str) {
    let port = s.local_addr().unwrap().port();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    // Whatever the server still sends, it must end the connection.
    let _ = s.read_to_end(&mut sink);
    let needle = format!("peer=127.0.0.1:{port}");
    let line = wait_for(
        &format!("a log line for the {what} connection"),
        Duration::from_secs(15),
        || {
            p.stderr()
                .lines()
                .find(|l| l.contains(&needle) && l.contains("rtmp connection closed"))
                .map(str::to_owned)
        },
    );
    assert_eq!(
        p.stderr().lines().filter(|l| l.contains(&needle)).count(),
        1,
        "one line: {line}"
    );
}

#[test]
fn hostile_rtmp_input_is_contained() {
    require_ffmpeg();
    let p = standalone("");
    let addr = p.addr("s1", "rtmp");
    let rtmp = format!("rtmp://{addr}/live/steady");
    let publisher = Publisher::start(
        &rtmp,
        Source {
            seconds: 16,
            ..Source::default()
        },
    );
    wait_status(&p, "steady", "broadcasting");

    // Random bytes (a TLS ClientHello is a classic).
    let mut noise = vec![0x16, 0x03, 0x01];
    noise.extend((0..2000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    expect_closed_and_logged(
        &p,
        TcpStream::connect(addr).unwrap(),
        &noise,
        "random bytes",
    );
    // A truncated handshake: C0 and part of C1, then the client hangs up.
    let mut partial = vec![3u8];
    partial.extend([0u8; 700]);
    expect_closed_and_logged(
        &p,
        TcpStream::connect(addr).unwrap(),
        &partial,
        "truncated handshake",
    );
    // A huge chunk size.
    let huge = message(2, 1, 0x7FFF_FFFFu32.to_be_bytes().to_vec());
    expect_closed_and_logged(&p, handshaken(addr), &huge, "huge chunk size");
    // A connect command whose AMF0 object nests 5000 levels deep.
    let mut amf = vec![0x02, 0x00, 0x07];
    amf.extend(b"connect");
    amf.push(0x00);
    amf.extend(1.0f64.to_be_bytes());
    for _ in 0..5000 {
        amf.extend([0x03, 0x00, 0x01, b'a']);
    }
    let deep = message(3, 20, amf);
    expect_closed_and_logged(&p, handshaken(addr), &deep, "deeply nested AMF");

    // The live stream on the same node did not notice.
    assert_plays(
        &probe(&rtmp, 3),
        640,
        360,
        30,
        30,
        3,
        "RTMP after hostile input",
    );
    assert_eq!(broadcast(&p, "steady")["status"], "broadcasting");
    let metrics = get(&format!("{}/metrics", p.http("s1"))).text();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("streamfleet_rtmp_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 3, "protocol errors counted: {errors}");
    drop(publisher);
}

#[test]
fn publish_tokens_unknown_apps_and_edges() {
    require_ffmpeg();
    let p = standalone(
        r#"    apps: [{name: live, security: {publish: open}}, {name: secure, publish_token_secret: s3cret-s3cret-s3cret}]
  - {role: edge, name: e1, rtmp: "127.0.0.1:0", http: "127.0.0.1:0"}"#,
    );
    let addr = p.addr("s1", "rtmp");
    let short = Source {
        seconds: 2,
        ..Source::default()
    };
    let (ok, _) = Publisher::start(&format!("rtmp://{addr}/secure/cam1"), short).wait();
    assert!(!ok, "publishing without a token is refused");
    let (ok, err) =
        Publisher::start(&format!("rtmp://{addr}/secure/cam1?token=00ff"), short).wait();
    assert!(!ok, "a wrong token is refused");
    let log = p.stderr();
    assert!(
        log.contains("publish refused") && log.contains("a token is required"),
        "no token: refused with the reason (ffmpeg said: {err})\n{log}"
    );
    assert!(
        log.contains("the token's signature is not valid"),
        "a wrong token: refused with the reason\n{log}"
    );
    let token = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac =
            <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"s3cret-s3cret-s3cret").unwrap();
        mac.update(b"cam1");
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let (ok, err) =
        Publisher::start(&format!("rtmp://{addr}/secure/cam1?token={token}"), short).wait();
    assert!(ok, "the right token is accepted: {err}");

    let (ok, _) = Publisher::start(&format!("rtmp://{addr}/nosuchapp/x"), short).wait();
    assert!(!ok, "unknown app refused");
    assert!(
        p.stderr()
            .contains("connect to an unknown application refused")
    );

    let (ok, _) =
        Publisher::start(&format!("rtmp://{}/live/x", p.addr("e1", "rtmp")), short).wait();
    assert!(!ok, "an edge refuses publishers");
    assert!(p.stderr().contains("NetStream.Publish.Denied"));
}

#[test]
fn sigterm_drains_open_rtmp_connections_then_a_second_signal_exits_at_once() {
    let mut p = Proc::start(
        "shutdown_grace: 1h\nnodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]}\n",
    );
    // A client inside the handshake holds a connection open.
    let held = handshaken(p.addr("s1", "rtmp"));
    p.signal("TERM");
    wait_for("draining to begin", Duration::from_secs(5), || {
        p.stderr().contains("draining").then_some(())
    });
    // Draining stops accepting: new connections are refused (the accept loops close their
    // listeners as they see the signal, just after the log line).
    let http = p.addr("s1", "http");
    wait_for(
        "the listener to close while draining",
        Duration::from_secs(5),
        || std::net::TcpStream::connect(http).is_err().then_some(()),
    );
    assert!(
        p.wait_exit(Duration::from_millis(500)).is_none(),
        "still draining the held connection"
    );
    p.signal("INT");
    let status = p.wait_exit(Duration::from_secs(5)).expect("exits at once");
    assert_eq!(status.code(), Some(130));
    drop(held);
}

#[test]
fn sigterm_closes_remaining_connections_after_the_grace_period() {
    let mut p = Proc::start(
        "shutdown_grace: 1s\nnodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]}\n",
    );
    let mut held = handshaken(p.addr("s1", "rtmp"));
    let started = std::time::Instant::now();
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "waited for the connection ({took:?})"
    );
    assert!(
        took < Duration::from_secs(5),
        "bounded by shutdown_grace ({took:?})"
    );
    let mut buf = [0u8; 1];
    assert!(matches!(held.read(&mut buf), Ok(0) | Err(_)), "closed");
}

/// An HS256 JWT as Ant Media's `jwt-token` REST call mints it.
/// Ant Media's JWT stream security: ffmpeg publishes only with a valid publish token (expired,
/// wrong-stream and play-type tokens are refused, each with its reason); players need a play
/// token: RTMP play and HLS without one are refused, with one they play, and the HLS playlist
/// hands the token on to its segments.
#[test]
fn jwt_stream_security_for_publishers_and_players() {
    require_ffmpeg();
    const KEY: &str = "e2e-jwt-key-0123456789";
    let p = standalone(&format!(
        "    apps: [{{name: live, security: {{publish: jwt, play: jwt, jwt_secret: {KEY}}}}}]"
    ));
    let rtmp = format!("rtmp://{}/live", p.addr("s1", "rtmp"));
    let http = p.http("s1");
    let short = Source {
        seconds: 2,
        ..Source::default()
    };
    for (token, reason) in [
        (
            stream_token(KEY, "cam1", "publish", -10),
            "the token has expired",
        ),
        (
            stream_token(KEY, "cam2", "publish", 600),
            "the token is for another stream",
        ),
        (
            stream_token(KEY, "cam1", "play", 600),
            "the token is a `play` token",
        ),
        (
            stream_token("not-the-apps-key-0123", "cam1", "publish", 600),
            "the token's signature is not valid",
        ),
    ] {
        let (ok, _) = Publisher::start(&format!("{rtmp}/cam1?token={token}"), short).wait();
        assert!(!ok, "refused: {reason}");
        assert!(
            p.stderr().contains(reason),
            "the refusal names the reason `{reason}`\n{}",
            p.stderr()
        );
    }
    let publisher = Publisher::start(
        &format!(
            "{rtmp}/cam1?token={}",
            stream_token(KEY, "cam1", "publish", 600)
        ),
        Source {
            seconds: 30,
            ..Source::default()
        },
    );
    wait_status(&p, "cam1", "broadcasting");

    // HLS: no token, an expired one or a publish token: 403 with the reason.
    let playlist = format!("{http}/live/streams/cam1.m3u8");
    for (query, reason) in [
        (String::new(), "a token is required"),
        (
            format!("?token={}", stream_token(KEY, "cam1", "play", -10)),
            "expired",
        ),
        (
            format!("?token={}", stream_token(KEY, "cam1", "publish", 600)),
            "`publish` token",
        ),
        (
            format!("?token={}", stream_token(KEY, "cam9", "play", 600)),
            "another stream",
        ),
    ] {
        let r = get(&format!("{playlist}{query}"));
        assert_eq!(r.status, 403, "{query}: {}", r.text());
        assert!(r.text().contains(reason), "{}", r.text());
    }
    // A segment without the token is refused too.
    let play = stream_token(KEY, "cam1", "play", 600);
    let listed = get(&format!("{playlist}?token={play}"));
    assert_eq!(listed.status, 200, "{}", listed.text());
    let segment = listed
        .text()
        .lines()
        .find(|l| l.ends_with(&format!(".ts?token={play}")))
        .unwrap_or_else(|| panic!("segment URIs carry the token:\n{}", listed.text()))
        .to_owned();
    let bare = segment.split('?').next().unwrap();
    assert_eq!(get(&format!("{http}/live/streams/{bare}")).status, 403);
    assert_eq!(get(&format!("{http}/live/streams/{segment}")).status, 200);
    // ffprobe plays the HLS with the token only on the playlist URL (the playlist hands it
    // on), and the RTMP stream with it on the play name.
    assert_plays_default(
        &format!("{playlist}?token={play}"),
        3,
        "HLS with a play token",
    );
    assert_plays_default(
        &format!("{rtmp}/cam1?token={play}"),
        3,
        "RTMP with a play token",
    );
    let refused = probe(&format!("{rtmp}/cam1"), 2);
    assert!(refused.is_empty(), "RTMP play without a token: {refused:?}");
    assert!(
        p.stderr().contains("play refused"),
        "logged with its reason\n{}",
        p.stderr()
    );
    drop(publisher);
}

/// Names from the network cannot forge log lines: an RTMP connect whose app name holds a
/// newline and an escape sequence is logged on one line, the control characters written out.
#[test]
fn a_newline_in_an_rtmp_name_cannot_forge_a_log_line() {
    let p = standalone("");
    let addr = p.addr("s1", "rtmp");
    let app = "nope\nERROR forged event\x1b[31m";
    let mut amf = vec![0x02, 0x00, 0x07];
    amf.extend(b"connect");
    amf.push(0x00);
    amf.extend(1.0f64.to_be_bytes());
    amf.push(0x03);
    amf.extend(3u16.to_be_bytes());
    amf.extend(b"app");
    amf.push(0x02);
    amf.extend((app.len() as u16).to_be_bytes());
    amf.extend(app.as_bytes());
    amf.extend([0x00, 0x00, 0x09]);
    let mut s = handshaken(addr);
    s.write_all(&message(3, 20, amf)).unwrap();
    let line = wait_for("the refusal in the log", Duration::from_secs(10), || {
        p.stderr()
            .lines()
            .find(|l| l.contains("unknown application refused"))
            .map(str::to_owned)
    });
    assert!(
        line.contains(r"nope\nERROR forged event\x1b[31m"),
        "escaped on its line: {line}"
    );
    assert!(
        !p.stderr().lines().any(|l| l.starts_with("ERROR forged")),
        "{}",
        p.stderr()
    );
    assert!(!p.stderr().contains('\x1b'), "no raw escape sequence");
}

/// `hls.max_memory` bounds the segment bytes a node holds for all its streams: past it, the
/// node refuses a new publisher with the reason and goes on serving the streams it carries.
#[test]
fn past_hls_max_memory_a_new_publisher_is_refused_and_the_live_stream_plays_on() {
    require_ffmpeg();
    let p = Proc::start(
        r#"
cluster: {heartbeat: 300ms, node_timeout: 2s}
shutdown_grace: 1s
nodes:
  - role: standalone
    name: s1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    apps: [{name: live, security: {publish: open}}]
    hls: {segment: 1s, window: 6, wait: 15s, max_memory: 256Ki}
"#,
    );
    let rtmp = |id: &str| format!("rtmp://{}/live/{id}", p.addr("s1", "rtmp"));
    let _first = Publisher::start(
        &rtmp("first"),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let metric = |name: &str| -> u64 {
        get(&format!("{}/metrics", p.http("s1")))
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // A 640x360 stream fills 256 KiB within a few 1 s segments.
    let held = wait_for(
        "the HLS bytes over the budget",
        Duration::from_secs(30),
        || Some(metric("streamfleet_hls_bytes")).filter(|b| *b > 256 * 1024),
    );
    let (ok, _) = Publisher::start(
        &rtmp("second"),
        Source {
            seconds: 3,
            ..Source::default()
        },
    )
    .wait();
    assert!(!ok, "a new stream is refused while {held} bytes are held");
    assert!(
        p.stderr()
            .contains("publish refused: the node's HLS segments use its whole hls.max_memory"),
        "{}",
        p.stderr()
    );
    // What the node carries plays on, and holds no more than its window past the budget.
    let url = format!("{}/live/streams/first.m3u8", p.http("s1"));
    assert_plays_default(&url, 2, "the stream the node carries");
    let held = metric("streamfleet_hls_bytes");
    assert!(
        held < 4 << 20,
        "one stream's window past the budget at most: {held}"
    );
}
