//! WebRTC publishing over WHIP: headless Chromium with a fake camera and microphone publishes
//! H.264 and Opus through the LB (its `path: /*/whip/` route) to an origin; from an edge,
//! ffprobe reads the stream as HLS (video frames and AAC frames counted) and over RTMP, and a
//! second Chromium plays it over WHEP (video frames, Opus with energy); when the browser DELETEs
//! its session the stream ends. curl checks the refusals (malformed offer, no H.264, stream id
//! in use, an edge, a token the app's security refuses) and a publisher that never connects.
//! The same with Ant Media's WebSocket publish flow: Chromium with `@antmedia/webrtc_adaptor`
//! through the LB (`?target=origin`), and its refusals with a raw WebSocket client.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::antmedia_ws::{connect, error_of, recv, send};
use crate::common::browser::{play_whep, publish_antmedia, publish_whip};
use crate::common::cluster::{cluster, edge};
use crate::common::media::{Publisher, Source, probe, require_ffmpeg};
use crate::common::secantus::Secantus;
use crate::common::{Http, Proc, get, wait_for};

/// A POST with curl (any status is returned).
fn curl(method: &str, url: &str, headers: &[&str], body: &[u8]) -> Http {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-i", "--max-time", "30", "-X", method, url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args(["--data-binary", "@-"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    crate::common::parse_curl_response(&String::from_utf8_lossy(&out.stdout))
}

const SDP: &str = "content-type: application/sdp";

/// A minimal offer a publisher would make: sendonly H.264.
const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

/// An origin with WebRTC (publishing) in a cluster on `db`.
fn origin(db: &Secantus) -> Proc {
    Proc::start(&format!(
        "{}  - {{role: origin, name: o1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", webrtc: {{udp: \"127.0.0.1:0\"}}, apps: [{{name: live, security: {{publish: open}}}}], hls: {{segment: 1s, window: 6}}}}\n",
        cluster(&db.uri(), "test-secret-0123456")
    ))
}

/// An edge with WebRTC playback.
fn webrtc_edge(db: &Secantus) -> Proc {
    Proc::start(&format!(
        "{}  - {{role: edge, name: e1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", webrtc: {{udp: \"127.0.0.1:0\"}}, hls: {{segment: 1s, window: 6, wait: 15s}}}}\n",
        cluster(&db.uri(), "test-secret-0123456")
    ))
}

/// An LB whose HTTP frontend sends WHIP (`/*/whip/`) and `?target=origin` to the origins,
/// the rest to the edges.
fn lb(db: &Secantus) -> Proc {
    Proc::start(&format!(
        r#"{}  - role: lb
    name: lb1
    timeouts: {{connect: 1s, client: 30s, server: 30s}}
    frontends:
      - name: http_lb
        mode: http
        bind: ["127.0.0.1:0"]
        backend: edges_http
        routes: [{{path: "/*/whip/", backend: origins_http}}, {{query: target=origin, backend: origins_http}}]
    backends:
      - {{name: edges_http, mode: http, health: {{kind: http, path: /healthz, interval: 500ms}}, servers_from: {{role: edge, listener: http}}}}
      - {{name: origins_http, mode: http, health: {{kind: http, path: /healthz, interval: 500ms}}, servers_from: {{role: origin, listener: http}}}}
"#,
        cluster(&db.uri(), "test-secret-0123456")
    ))
}

#[test]
fn chromium_publishes_over_whip_through_the_lb_and_an_edge_serves_hls_rtmp_and_webrtc() {
    require_ffmpeg();
    let db = Secantus::start();
    let o = origin(&db);
    let e = webrtc_edge(&db);
    let balancer = lb(&db);
    let whip = format!(
        "http://{}/live/whip/cam",
        balancer.addr("lb1", "frontend:http_lb")
    );
    // The LB found the origin and routes WHIP to it (the origin's WHIP handler answers a GET
    // with 405; an edge, or no server yet, would not).
    wait_for("WHIP routed to the origin", Duration::from_secs(20), || {
        let r = get(&whip);
        (r.status == 405 && r.text().contains("WHIP")).then_some(())
    });

    let browser = publish_whip(&whip, 30, &[]);
    let playlist = format!("{}/live/streams/cam.m3u8", e.http("e1"));
    wait_for(
        "the stream live on the edge",
        Duration::from_secs(40),
        || {
            let r = get(&playlist);
            (r.status == 200 && r.text().matches("#EXTINF").count() >= 4).then_some(())
        },
    );
    // The stream record says who publishes it, as for RTMP.
    let b = get(&format!("{}/live/rest/v2/broadcasts/cam", o.http("o1"))).json();
    assert_eq!(b["status"], "broadcasting", "{b}");

    // Another publisher of the same stream id: 409 (one publisher per stream).
    let r = curl("POST", &whip, &[SDP], OFFER.as_bytes());
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("already"), "{}", r.text());

    let streams = probe(&playlist, 4);
    let video = streams
        .iter()
        .find(|s| s.kind == "video")
        .unwrap_or_else(|| panic!("no video in {streams:?}"));
    let audio = streams
        .iter()
        .find(|s| s.kind == "audio")
        .unwrap_or_else(|| panic!("no audio in {streams:?}"));
    assert_eq!(video.codec, "h264", "{streams:?}");
    assert!(video.width > 0 && video.height > 0, "{streams:?}");
    // Chromium's fake camera runs at up to 30 fps; WebRTC may lower it on a busy machine.
    assert!(
        video.frames >= 4 * 10,
        "{} video frames in 4 s",
        video.frames
    );
    // AAC-LC at 48 kHz: 46.9 frames a second.
    assert_eq!(audio.codec, "aac", "{streams:?}");
    assert!(
        // (A loaded machine's reader gets 3-4 s of media in its 4 s window.)
        (4 * 30..=4 * 50).contains(&audio.frames),
        "{} AAC frames in 4 s",
        audio.frames
    );

    // RTMP play from the edge: H.264 and AAC.
    let rtmp = probe(&format!("rtmp://{}/live/cam", e.addr("e1", "rtmp")), 3);
    assert!(
        rtmp.iter()
            .any(|s| s.kind == "video" && s.codec == "h264" && s.frames > 0)
            && rtmp
                .iter()
                .any(|s| s.kind == "audio" && s.codec == "aac" && s.frames > 0),
        "RTMP play: {rtmp:?}"
    );
    // A second Chromium plays it over WHEP from the edge: video frames and Opus with energy.
    let viewer = play_whep(&format!("{}/live/whep/cam", e.http("e1")), 30, &["--audio"]);
    assert!(viewer.ok, "{}", viewer.json);

    let result = browser.finish();
    assert!(result.ok, "{}", result.json);
    assert_eq!(result.json["post"]["status"], 201, "{}", result.json);
    assert_eq!(result.json["codec"], "video/H264", "{}", result.json);
    assert_eq!(result.json["deleteStatus"], 200, "{}", result.json);
    // DELETE ended the stream, as when an RTMP publisher leaves.
    wait_for("the stream finished", Duration::from_secs(20), || {
        let b = get(&format!("{}/live/rest/v2/broadcasts/cam", o.http("o1"))).json();
        (b["status"] == "finished").then_some(())
    });
}

#[test]
fn whip_refusals_say_why() {
    let db = Secantus::start();
    let o = origin(&db);
    let e = edge(&db, "e1");
    let whip = format!("{}/live/whip/cam", o.http("o1"));

    let r = curl("POST", &whip, &[SDP], b"v=0\r\nnonsense");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("malformed"), "{}", r.text());
    let vp8 = OFFER.replace("H264/90000", "VP8/90000");
    let r = curl("POST", &whip, &[SDP], vp8.as_bytes());
    assert_eq!(r.status, 406, "{}", r.text());
    assert!(r.text().contains("H.264"), "{}", r.text());
    let r = curl(
        "POST",
        &whip,
        &["content-type: text/plain"],
        OFFER.as_bytes(),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let r = curl(
        "POST",
        &format!("{}/nope/whip/cam", o.http("o1")),
        &[SDP],
        OFFER.as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = curl(
        "POST",
        &format!("{}/live/whip/cam_240p", o.http("o1")),
        &[SDP],
        OFFER.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // None of them claimed the stream: a valid offer is answered.
    let r = curl("POST", &whip, &[SDP], OFFER.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.text().contains("a=recvonly"), "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with("/live/whip/cam/"), "{location}");
    // The WHEP resource of the same stream does not reach a publisher's session.
    let whep_twin = location.replace("/whip/", "/whep/");
    let r = curl("DELETE", &format!("{}{whep_twin}", o.http("o1")), &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = curl("DELETE", &format!("{}{location}", o.http("o1")), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    // Edges refuse publishers, like RTMP ones.
    let r = curl(
        "POST",
        &format!("{}/live/whip/cam", e.http("e1")),
        &[SDP],
        OFFER.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("edge"), "{}", r.text());

    // A stream published over RTMP: WHIP for the same id is 409.
    let _rtmp = Publisher::start(
        &format!("rtmp://{}/live/busy", o.addr("o1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let playlist = format!("{}/live/streams/busy.m3u8", o.http("o1"));
    wait_for("the RTMP stream live", Duration::from_secs(20), || {
        (get(&playlist).status == 200).then_some(())
    });
    let r = curl(
        "POST",
        &format!("{}/live/whip/busy", o.http("o1")),
        &[SDP],
        OFFER.as_bytes(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
}

#[test]
fn whip_follows_the_apps_publish_security() {
    let p = Proc::start(
        "nodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", webrtc: {udp: \"127.0.0.1:0\"}, apps: [{name: live, security: {publish: jwt, jwt_secret: \"publish-secret-0123456789\"}}]}\n",
    );
    let whip = format!("{}/live/whip/cam", p.http("s1"));
    let r = curl("POST", &whip, &[SDP], OFFER.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("token"), "{}", r.text());
    let token = crate::common::stream_token("publish-secret-0123456789", "cam", "publish", 600);
    let bearer = format!("authorization: Bearer {token}");
    let r = curl("POST", &whip, &[SDP, &bearer], OFFER.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    // The resource wants the token too.
    let resource = format!("{}{location}", p.http("s1"));
    assert_eq!(curl("DELETE", &resource, &[], b"").status, 401);
    assert_eq!(curl("DELETE", &resource, &[&bearer], b"").status, 200);

    // A publisher that never connects (curl sends no ICE) is dropped after 10 s and frees the
    // stream id: a new publisher of it is answered. (The DELETEd session above ends at once but
    // asynchronously: the new POST may have to wait for it.)
    let r = wait_for("the deleted publisher gone", Duration::from_secs(5), || {
        let r = curl("POST", &whip, &[SDP, &bearer], OFFER.as_bytes());
        (r.status == 201).then_some(r)
    });
    let resource = format!("{}{}", p.http("s1"), r.header("location").unwrap());
    assert_eq!(
        curl("POST", &whip, &[SDP, &bearer], OFFER.as_bytes()).status,
        409
    );
    let trickle = "content-type: application/trickle-ice-sdpfrag";
    let patch = || curl("PATCH", &resource, &[&bearer, trickle], b"a=mid:0\r\n").status;
    assert_eq!(patch(), 204, "the session exists until it times out");
    let started = std::time::Instant::now();
    wait_for(
        "the silent publisher dropped",
        Duration::from_secs(25),
        || (patch() == 404).then_some(()),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "dropped by the connect timeout, not at once ({:?})",
        started.elapsed()
    );
    let r = curl("POST", &whip, &[SDP, &bearer], OFFER.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Ant Media's WebSocket publish flow: Chromium with `@antmedia/webrtc_adaptor` publishes its
/// fake camera and microphone through the LB (`?target=origin`) to the origin; from the edge,
/// ffprobe reads HLS (H.264 frames and AAC frames counted); a second publisher of the same id
/// over the WebSocket gets `streamIdInUse`; the adaptor's `stop` ends the stream.
#[test]
fn chromium_publishes_with_the_antmedia_adaptor_through_the_lb() {
    require_ffmpeg();
    let db = Secantus::start();
    let o = origin(&db);
    let e = webrtc_edge(&db);
    let balancer = lb(&db);
    let lb_addr = balancer.addr("lb1", "frontend:http_lb");
    // The LB found the origin: its WHIP route (the same backend as `?target=origin`) reaches
    // the origin's WHIP handler (a GET is 405 there).
    let whip = format!("http://{lb_addr}/live/whip/cam");
    wait_for("the origins' backend up", Duration::from_secs(20), || {
        let r = get(&whip);
        (r.status == 405 && r.text().contains("WHIP")).then_some(())
    });
    let ws_url = format!("ws://{lb_addr}/live/websocket?target=origin");

    let browser = publish_antmedia(&ws_url, "cam", 20, &[]);
    let playlist = format!("{}/live/streams/cam.m3u8", e.http("e1"));
    wait_for(
        "the stream live on the edge",
        Duration::from_secs(60),
        || {
            let r = get(&playlist);
            (r.status == 200 && r.text().matches("#EXTINF").count() >= 4).then_some(())
        },
    );
    let b = get(&format!("{}/live/rest/v2/broadcasts/cam", o.http("o1"))).json();
    assert_eq!(b["status"], "broadcasting", "{b}");

    // Another WebSocket publisher of the id: `streamIdInUse`, and its socket stays usable.
    let mut ws = connect(&ws_url);
    send(
        &mut ws,
        json!({"command": "publish", "streamId": "cam", "token": "", "video": true, "audio": true}),
    );
    assert_eq!(error_of(&recv(&mut ws)), "streamIdInUse");
    send(&mut ws, json!({"command": "ping"}));
    assert_eq!(recv(&mut ws), json!({"command": "pong"}));

    let streams = probe(&playlist, 4);
    let video = streams
        .iter()
        .find(|s| s.kind == "video")
        .unwrap_or_else(|| panic!("no video in {streams:?}"));
    let audio = streams
        .iter()
        .find(|s| s.kind == "audio")
        .unwrap_or_else(|| panic!("no audio in {streams:?}"));
    assert_eq!(video.codec, "h264", "{streams:?}");
    assert!(video.width > 0 && video.height > 0, "{streams:?}");
    assert!(
        video.frames >= 4 * 10,
        "{} video frames in 4 s",
        video.frames
    );
    assert_eq!(audio.codec, "aac", "{streams:?}");
    assert!(
        // (A loaded machine's reader gets 3-4 s of media in its 4 s window.)
        (4 * 30..=4 * 50).contains(&audio.frames),
        "{} AAC frames in 4 s",
        audio.frames
    );

    // The adaptor saw publish_started, sent H.264, and its `stop` was answered publish_finished.
    let result = browser.finish();
    eprintln!("antmedia_publish.mjs: {}", result.json);
    assert!(result.ok, "{}", result.json);
    assert_eq!(result.json["codec"], "video/H264", "{}", result.json);
    assert_eq!(result.json["steps"]["finished"], true, "{}", result.json);
    // The adaptor's own code ran without an exception (e.g. on a remote track it did not expect).
    assert!(result.json["pageErrors"].is_null(), "{}", result.json);
    let events = result.json["events"].to_string();
    assert!(
        events.contains("publish_started") && events.contains("publish_finished"),
        "{events}"
    );
    // `stop` ended the stream, as when an RTMP publisher leaves.
    wait_for("the stream finished", Duration::from_secs(20), || {
        let b = get(&format!("{}/live/rest/v2/broadcasts/cam", o.http("o1"))).json();
        (b["status"] == "finished").then_some(())
    });
}

/// The WebSocket publish refusals: a stream id an RTMP publisher holds (`streamIdInUse`), an
/// edge, a token the app's security refuses (`unauthorized_access`), a bad stream id; and the
/// claim of a `publish` released by the socket closing and by the offer never coming.
#[test]
fn websocket_publish_refusals_as_ant_media_names_them() {
    require_ffmpeg();
    let db = Secantus::start();
    let o = origin(&db);
    let e = webrtc_edge(&db);
    let publish = |id: &str| json!({"command": "publish", "streamId": id, "token": ""});

    let _rtmp = Publisher::start(
        &format!("rtmp://{}/live/busy", o.addr("o1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let playlist = format!("{}/live/streams/busy.m3u8", o.http("o1"));
    wait_for("the RTMP stream live", Duration::from_secs(20), || {
        (get(&playlist).status == 200).then_some(())
    });
    let mut ws = connect(&(o.http("o1").replace("http://", "ws://") + "/live/websocket"));
    send(&mut ws, publish("busy"));
    let v = recv(&mut ws);
    assert_eq!(error_of(&v), "streamIdInUse", "{v}");
    assert_eq!(v["streamId"], "busy", "{v}");
    send(&mut ws, publish("cam_240p"));
    assert_eq!(error_of(&recv(&mut ws)), "invalidStreamName");
    // The socket stays usable: a free id is admitted.
    send(&mut ws, publish("free"));
    assert_eq!(
        recv(&mut ws),
        json!({"command": "start", "streamId": "free"})
    );
    // A second `publish` of the same id on this socket.
    send(&mut ws, publish("free"));
    assert_eq!(error_of(&recv(&mut ws)), "streamIdInUse");
    // Closing the socket releases the claim: another socket may publish the id (the socket's
    // task ends asynchronously).
    ws.close(None).unwrap();
    drop(ws);
    let ws_url = o.http("o1").replace("http://", "ws://") + "/live/websocket";
    wait_for(
        "the closed socket's claim released",
        Duration::from_secs(10),
        || {
            let mut ws = connect(&ws_url);
            send(&mut ws, publish("free"));
            (recv(&mut ws)["command"] == "start").then_some(())
        },
    );

    let mut edge_ws = connect(&(e.http("e1").replace("http://", "ws://") + "/live/websocket"));
    send(&mut edge_ws, publish("cam"));
    let v = recv(&mut edge_ws);
    assert_eq!(error_of(&v), "publish_not_allowed_on_edge", "{v}");

    let s = Proc::start(
        "nodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", webrtc: {udp: \"127.0.0.1:0\"}, apps: [{name: live, security: {publish: jwt, jwt_secret: \"publish-secret-0123456789\"}}]}\n",
    );
    let mut ws = connect(&(s.http("s1").replace("http://", "ws://") + "/live/websocket"));
    send(&mut ws, publish("cam"));
    assert_eq!(error_of(&recv(&mut ws)), "unauthorized_access");
    let token = crate::common::stream_token("publish-secret-0123456789", "cam", "publish", 600);
    send(
        &mut ws,
        json!({"command": "publish", "streamId": "cam", "token": token}),
    );
    assert_eq!(
        recv(&mut ws),
        json!({"command": "start", "streamId": "cam"})
    );
    send(&mut ws, json!({"command": "stop", "streamId": "cam"}));
    assert_eq!(recv(&mut ws)["definition"], "publish_finished");
    // A `publish` whose offer never comes ends by itself (10 s) and frees the id.
    send(
        &mut ws,
        json!({"command": "publish", "streamId": "cam", "token": token}),
    );
    let started = std::time::Instant::now();
    assert_eq!(recv(&mut ws)["command"], "start");
    let v = recv(&mut ws);
    assert_eq!(v["definition"], "publish_finished", "{v}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    send(
        &mut ws,
        json!({"command": "publish", "streamId": "cam", "token": token}),
    );
    assert_eq!(recv(&mut ws)["command"], "start");
}
