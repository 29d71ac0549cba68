//! Ant Media's WebSocket signalling for playing (`/{app}/websocket`): headless Chromium with
//! Ant Media's own `@antmedia/webrtc_adaptor` plays through the LB from an edge, and a raw
//! WebSocket client (tungstenite) checks every answer the protocol has: errors for malformed
//! and unknown messages (the socket stays usable), ping/pong, getStreamInfo, the offer and its
//! candidate, stop, play tokens, oversized messages and the node draining.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::common::browser::play_antmedia;
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::{Proc, get, stream_token, wait_for};

/// An origin, an edge that plays WebRTC, and an LB in front of the edge (HTTP, WebSocket).
const CLUSTER: &str = r#"
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
  - role: lb
    name: lb1
    timeouts: {connect: 1s, client: 30s, server: 30s}
    frontends:
      - {name: http_lb, mode: http, bind: ["127.0.0.1:0"], backend: edges}
    backends:
      - {name: edges, mode: http, sticky: {cookie: JSESSIONID, mode: prefix},
         health: {kind: http, path: /healthz, interval: 200ms, rise: 1},
         servers_from: {role: edge, listener: http}}
"#;

/// Chromium with Ant Media's adaptor plays through the LB from an edge that pulls the stream:
/// play, getStreamInfo, stop, play again on the same socket, and a stream that is not live.
#[test]
fn the_antmedia_adaptor_plays_through_the_lb_from_an_edge() {
    require_ffmpeg();
    let p = Proc::start(CLUSTER);
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/cam", p.addr("o1", "rtmp")),
        Source {
            seconds: 90,
            gop: 30,
            ..Source::default()
        },
    );
    let lb = p.addr("lb1", "frontend:http_lb");
    // The LB routes to the edge, and the edge serves the stream (pulled from the origin).
    let playlist = format!("http://{lb}/live/streams/cam.m3u8");
    wait_for("the stream through the LB", Duration::from_secs(30), || {
        (get(&playlist).status == 200).then_some(())
    });
    let r = play_antmedia(
        &format!("ws://{lb}/live/websocket"),
        "cam",
        60,
        &["--missing", "nobody"],
    );
    assert!(r.ok, "the adaptor did not play: {}\n{}", r.json, p.stderr());
    let first = &r.json["steps"]["first"];
    assert_eq!(first["codec"], "video/H264", "{}", r.json);
    assert_eq!(first["width"], 640, "{}", r.json);
    assert_eq!(first["audioCodec"], "audio/opus", "{}", r.json);
    assert!(
        first["audioEnergy"].as_f64().unwrap_or(0.0) > 0.0,
        "Opus audio with energy: {}",
        r.json
    );
    assert_eq!(
        r.json["steps"]["streamInfo"][0]["streamWidth"], 640,
        "{}",
        r.json
    );
    assert_eq!(
        r.json["steps"]["streamInfo"][0]["videoCodec"], "h264",
        "{}",
        r.json
    );
    assert_eq!(r.json["steps"]["missing"], "no_stream_exist", "{}", r.json);
    let events = r.json["events"].as_array().unwrap();
    let count = |name: &str| events.iter().filter(|e| *e == name).count();
    assert_eq!(count("play_started"), 2, "{}", r.json);
    assert!(count("play_finished") >= 1, "{}", r.json);
    assert!(
        count("reconnection_attempt_for_player") == 0,
        "the adaptor had to retry: {}",
        r.json
    );
    eprintln!(
        "Ant Media adaptor via the LB: first frame after {} ms, play_started after {} ms; \
         again after stop: {} ms",
        first["ttffMs"], first["playStartedMs"], r.json["steps"]["again"]["ttffMs"]
    );
    let ttff = first["ttffMs"].as_f64().unwrap();
    assert!(ttff < 3000.0, "time to first frame {ttff} ms: {}", r.json);
}

/// A raw WebSocket client.
pub(crate) type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Connects (101 expected) with a 20 s read timeout.
pub(crate) fn connect(url: &str) -> Ws {
    let (ws, response) = tungstenite::connect(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    ws
}

/// Sends a JSON text message.
pub(crate) fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).unwrap();
}

/// The next JSON message (pings and pongs of the WebSocket layer skipped).
pub(crate) fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a message within 20 s") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The `definition` of an `error` message.
pub(crate) fn error_of(v: &Value) -> &str {
    assert_eq!(v["command"], "error", "{v}");
    v["definition"].as_str().unwrap()
}

/// The `sec` app's play JWT key.
const KEY: &str = "ws-play-jwt-key-0123456789abcdef";

/// Every message of the protocol, with a raw client.
#[test]
fn the_websocket_signalling_answers_every_message() {
    require_ffmpeg();
    let p = Proc::start(&format!(
        "shutdown_grace: 2s\nnodes:\n  - {{role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", webrtc: {{udp: \"127.0.0.1:0\"}}, apps: [{{name: live, security: {{publish: open}}}}, {{name: sec, security: {{publish: open, play: jwt, jwt_secret: {KEY}}}}}], hls: {{segment: 1s, window: 6}}}}\n"
    ));
    let http = p.http("s1");
    let ws_url = http.replace("http://", "ws://") + "/live/websocket?target=edge";

    // Not an upgrade: 426; an app the node does not serve: 404.
    let r = get(&format!("{http}/live/websocket"));
    assert_eq!(r.status, 426, "{}", r.text());
    let r = get(&format!("{http}/nope/websocket"));
    assert_eq!(r.status, 404, "{}", r.text());

    let mut ws = connect(&ws_url);
    // Malformed and unknown messages: an error each, and the socket stays usable.
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(error_of(&recv(&mut ws)), "invalid_message");
    send(&mut ws, json!([1, 2]));
    assert_eq!(error_of(&recv(&mut ws)), "invalid_message");
    send(&mut ws, json!({"command": "fly", "streamId": "x"}));
    let v = recv(&mut ws);
    assert_eq!(error_of(&v), "unsupported_command");
    assert!(v["message"].as_str().unwrap().contains("fly"), "{v}");
    // `publish` claims the stream and says `start`; a malformed offer gets an error (the
    // socket stays usable), `stop` releases the stream.
    send(
        &mut ws,
        json!({"command": "publish", "streamId": "x", "token": "", "video": true, "audio": true}),
    );
    assert_eq!(recv(&mut ws), json!({"command": "start", "streamId": "x"}));
    send(
        &mut ws,
        json!({"command": "takeConfiguration", "streamId": "x", "type": "offer", "sdp": "nonsense"}),
    );
    assert_eq!(error_of(&recv(&mut ws)), "notSetRemoteDescription");
    send(&mut ws, json!({"command": "stop", "streamId": "x"}));
    assert_eq!(recv(&mut ws)["definition"], "publish_finished");
    send(&mut ws, json!({"command": "play"}));
    assert_eq!(error_of(&recv(&mut ws)), "noStreamNameSpecified");
    send(
        &mut ws,
        json!({"command": "play", "streamId": "x", "token": 7}),
    );
    assert_eq!(error_of(&recv(&mut ws)), "invalid_message");
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(error_of(&recv(&mut ws)), "invalid_message");
    send(&mut ws, json!({"command": "ping"}));
    assert_eq!(recv(&mut ws), json!({"command": "pong"}));
    send(&mut ws, json!({"command": "getIceServerConfig"}));
    assert_eq!(recv(&mut ws)["command"], "iceServerConfig");

    // A stream that is not live.
    send(
        &mut ws,
        json!({"command": "getStreamInfo", "streamId": "cam"}),
    );
    assert_eq!(error_of(&recv(&mut ws)), "no_stream_exist");
    send(
        &mut ws,
        json!({"command": "play", "streamId": "cam", "token": "", "room": "", "trackList": []}),
    );
    let v = recv(&mut ws);
    assert_eq!(error_of(&v), "no_stream_exist");
    assert_eq!(v["streamId"], "cam");
    send(
        &mut ws,
        json!({"command": "takeConfiguration", "streamId": "cam", "type": "answer", "sdp": "v=0"}),
    );
    assert_eq!(error_of(&recv(&mut ws)), "no_session");

    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/cam", p.addr("s1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let playlist = format!("{http}/live/streams/cam.m3u8");
    wait_for("the stream to be live", Duration::from_secs(20), || {
        (get(&playlist).status == 200).then_some(())
    });

    send(
        &mut ws,
        json!({"command": "getStreamInfo", "streamId": "cam"}),
    );
    let v = recv(&mut ws);
    assert_eq!(v["command"], "streamInformation", "{v}");
    assert_eq!(v["streamId"], "cam", "{v}");
    let info = &v["streamInfo"][0];
    assert_eq!(info["streamWidth"], 640, "{v}");
    assert_eq!(info["streamHeight"], 360, "{v}");
    assert_eq!(info["videoCodec"], "h264", "{v}");
    assert!(
        info["videoBitrate"].is_u64() && info["audioBitrate"].is_u64(),
        "{v}"
    );

    // play: the offer at once, then the host candidate.
    send(
        &mut ws,
        json!({"command": "play", "streamId": "cam", "token": ""}),
    );
    let offer = recv(&mut ws);
    assert_eq!(offer["command"], "takeConfiguration", "{offer}");
    assert_eq!(offer["type"], "offer", "{offer}");
    assert_eq!(offer["streamId"], "cam", "{offer}");
    let sdp = offer["sdp"].as_str().unwrap();
    for want in [
        "a=ice-lite",
        "m=video",
        "H264/90000",
        "a=sendonly",
        "a=candidate:",
        "m=audio",
        "opus/48000/2",
    ] {
        assert!(sdp.contains(want), "{want} missing from {sdp}");
    }
    let mapping = offer["idMapping"].as_object().unwrap();
    assert_eq!(mapping.len(), 2, "video and audio: {offer}");
    let candidate = recv(&mut ws);
    assert_eq!(candidate["command"], "takeCandidate", "{candidate}");
    assert_eq!(candidate["label"], 0, "{candidate}");
    assert!(
        mapping.contains_key(candidate["id"].as_str().unwrap()),
        "{candidate}"
    );
    let c = candidate["candidate"].as_str().unwrap();
    let udp = p.addr("s1", "webrtc");
    assert!(
        c.starts_with("candidate:")
            && c.contains(&format!(" {} {} typ host", udp.ip(), udp.port())),
        "{c}"
    );
    // The same stream twice on one socket: refused; the offer stays.
    send(&mut ws, json!({"command": "play", "streamId": "cam"}));
    assert_eq!(error_of(&recv(&mut ws)), "already_playing");
    // Candidates (a real one, an mDNS one, the end) need no answer.
    for c in [
        "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0",
        "candidate:2 1 udp 2122260223 1f4712db-ea17.local 50001 typ host",
        "",
    ] {
        send(
            &mut ws,
            json!({"command": "takeCandidate", "streamId": "cam", "label": 0, "id": "0", "candidate": c}),
        );
    }
    // An answer that is not SDP: refused, the offer is gone.
    send(
        &mut ws,
        json!({"command": "takeConfiguration", "streamId": "cam", "type": "answer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n"}),
    );
    let v = recv(&mut ws);
    assert_eq!(error_of(&v), "notSetRemoteDescription", "{v}");
    // play again, stop: play_finished.
    send(&mut ws, json!({"command": "play", "streamId": "cam"}));
    assert_eq!(recv(&mut ws)["type"], "offer");
    assert_eq!(recv(&mut ws)["command"], "takeCandidate");
    send(&mut ws, json!({"command": "stop", "streamId": "cam"}));
    assert_eq!(
        recv(&mut ws),
        json!({"command": "notification", "definition": "play_finished", "streamId": "cam"})
    );
    // A stop of nothing is quiet; the socket still answers.
    send(&mut ws, json!({"command": "stop", "streamId": "cam"}));
    send(&mut ws, json!({"command": "ping"}));
    assert_eq!(recv(&mut ws), json!({"command": "pong"}));

    // Play tokens, in the app that asks for them.
    let sec_url = http.replace("http://", "ws://") + "/sec/websocket";
    let mut sec = connect(&sec_url);
    send(
        &mut sec,
        json!({"command": "play", "streamId": "cam", "token": ""}),
    );
    let v = recv(&mut sec);
    assert_eq!(error_of(&v), "unauthorized_access", "{v}");
    let other = stream_token(KEY, "other", "play", 600);
    send(
        &mut sec,
        json!({"command": "play", "streamId": "cam", "token": other}),
    );
    assert_eq!(error_of(&recv(&mut sec)), "unauthorized_access");
    let good = stream_token(KEY, "cam", "play", 600);
    send(
        &mut sec,
        json!({"command": "play", "streamId": "cam", "token": good}),
    );
    // Admitted: `sec/cam` is simply not live.
    assert_eq!(error_of(&recv(&mut sec)), "no_stream_exist");

    // A message over 64 KiB closes the socket with 1009 (message too big).
    let big = json!({"command": "ping", "pad": "x".repeat(100_000)});
    let _ = sec.send(Message::text(big.to_string()));
    let closed = loop {
        match sec.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(
        closed.map(|f| u16::from(f.code)),
        Some(1009),
        "closed with 1009"
    );

    // The node draining: `server_will_stop` on the open socket.
    p.signal("TERM");
    let v = recv(&mut ws);
    assert_eq!(
        v,
        json!({"command": "notification", "definition": "server_will_stop"}),
        "{v}"
    );
}
