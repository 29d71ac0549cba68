//! `balance: stream` for Ant Media's WebSocket signalling (`/{app}/websocket`, the stream id in
//! a message): the LB answers the upgrade, reads the messages until one names the stream, and
//! places the socket on that stream's server (the same one as the stream's HLS viewers). Bad
//! openings get a close frame with the reason; a valid sticky cookie keeps its server. One
//! test on recording upstreams (WebSocket echo), one on a real cluster with Chromium and Ant
//! Media's own adaptor.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::common::browser::play_antmedia;
use crate::common::cluster::metric;
use crate::common::lb::{Upstream, lb_config, raw};
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::{Proc, get, wait_for};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Connects like a browser (offering permessage-deflate, with extra `headers`); returns the
/// socket and the `X-Server` of the 101 (set only when a server answered it, not the LB).
fn connect(url: &str, headers: &[(&str, &str)]) -> (Ws, Option<String>) {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (ws, resp) = tungstenite::connect(req).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 101);
    assert!(
        resp.headers().get("sec-websocket-extensions").is_none(),
        "no extension negotiated"
    );
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    let server = resp
        .headers()
        .get("x-server")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, server)
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a message within 20 s") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The close frame the peer sends next (code, reason), and how long it took.
fn closed(ws: &mut Ws) -> (u16, String, Duration) {
    let t = Instant::now();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                return (u16::from(f.code), f.reason.to_string(), t.elapsed());
            }
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// Per upstream, the WebSocket upgrades it received.
fn upgrades(ups: &[Upstream]) -> Vec<usize> {
    ups.iter()
        .map(|u| {
            u.requests()
                .iter()
                .filter(|r| r.path.contains("/websocket"))
                .count()
        })
        .collect()
}

/// Recording upstreams (WebSocket echo): placement by stream, agreement with HLS, the replay
/// of held messages, pings answered by the LB, stickiness, and every refused opening.
#[test]
fn websocket_signalling_is_placed_by_the_stream_its_first_message_names() {
    let ups: Vec<Upstream> = (0..3).map(|i| Upstream::start(&format!("s{i}"))).collect();
    let list: Vec<String> = ups
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{{name: s{i}, addr: \"{}\", cookie: s{i}}}", u.addr))
        .collect();
    let p = Proc::start(&lb_config(&format!(
        "    timeouts: {{connect: 1s, client: 2s, server: 5s}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: http, balance: stream, viewer_idle: 1h, sticky: {{cookie: JSESSIONID, mode: prefix}}, servers: [{}]}}\n",
        list.join(", ")
    )));
    let lb = p.addr("lb1", "frontend:web");
    let url = format!("ws://{lb}/live/websocket?target=edge");
    let hls_server = |stream: &str| {
        let reply = raw(
            lb,
            format!(
                "GET /live/streams/{stream}.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        reply.split_once("\r\n\r\n").unwrap().1.to_owned()
    };

    // Twelve streams, two viewers each, as Ant Media's adaptor talks: getIceServerConfig and
    // pings before play. Both viewers of a stream reach one server, the stream's HLS server.
    let mut placed: HashMap<String, usize> = HashMap::new();
    let mut held = Vec::new();
    for k in 0..12 {
        let stream = format!("cam{k}");
        let before = upgrades(&ups);
        for _ in 0..2 {
            let (mut ws, server) = connect(&url, &[]);
            assert_eq!(server, None, "the LB answers the upgrade itself");
            send(&mut ws, json!({"command": "getIceServerConfig"}));
            send(&mut ws, json!({"command": "ping"}));
            assert_eq!(
                recv(&mut ws),
                json!({"command": "pong"}),
                "the LB answers pings"
            );
            ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
            let play = json!({"command": "play", "streamId": stream, "token": ""});
            send(&mut ws, play.clone());
            // The echo server got the held message, then play (the ping was not forwarded).
            assert_eq!(recv(&mut ws), json!({"command": "getIceServerConfig"}));
            assert_eq!(recv(&mut ws), play);
            // Spliced: later messages flow both ways.
            send(&mut ws, json!({"command": "stop", "streamId": stream}));
            assert_eq!(recv(&mut ws)["command"], "stop");
            held.push(ws);
        }
        let after = upgrades(&ups);
        let gained: Vec<usize> = (0..3).filter(|&i| after[i] > before[i]).collect();
        assert_eq!(
            gained.len(),
            1,
            "{stream}: both viewers on one server: {before:?} -> {after:?}"
        );
        assert_eq!(after[gained[0]] - before[gained[0]], 2);
        assert_eq!(
            hls_server(&stream),
            format!("s{}", gained[0]),
            "{stream}: the HLS viewers' server"
        );
        placed.insert(stream, gained[0]);
    }
    let used: BTreeSet<usize> = placed.values().copied().collect();
    assert!(used.len() >= 2, "twelve streams spread: {placed:?}");
    // A rendition name is its stream.
    let before = upgrades(&ups);
    let (mut ws, _) = connect(&url, &[]);
    send(
        &mut ws,
        json!({"command": "getStreamInfo", "streamId": "cam3_240p"}),
    );
    recv(&mut ws);
    let after = upgrades(&ups);
    assert_eq!(
        after[placed["cam3"]],
        before[placed["cam3"]] + 1,
        "{before:?} -> {after:?}"
    );
    // The upgrade went on as the client sent it, without the extension offer.
    for u in &ups {
        for r in u
            .requests()
            .iter()
            .filter(|r| r.path.contains("/websocket"))
        {
            assert_eq!(r.path, "/live/websocket?target=edge");
            assert!(
                r.header("sec-websocket-extensions").is_none(),
                "{:?}",
                r.headers
            );
            assert!(r.header("sec-websocket-key").is_some());
        }
    }

    // A valid sticky cookie keeps its server (which answers the upgrade itself).
    let other = (placed["cam0"] + 1) % 3;
    let cookie = format!("JSESSIONID=s{other}~abc");
    let (mut ws, server) = connect(&url, &[("Cookie", &cookie)]);
    assert_eq!(server.as_deref(), Some(format!("s{other}").as_str()));
    send(&mut ws, json!({"command": "play", "streamId": "cam0"}));
    assert_eq!(recv(&mut ws)["streamId"], "cam0");

    // Refused openings: a close frame with the reason, then the connection ends.
    let refused = |send_bad: &dyn Fn(&mut Ws), code: u16, words: &str| {
        let (mut ws, _) = connect(&url, &[]);
        send_bad(&mut ws);
        let (got, reason, _) = closed(&mut ws);
        assert_eq!(got, code, "{reason}");
        assert!(reason.contains(words), "{reason}");
    };
    refused(&|ws| ws.send(Message::text("hello")).unwrap(), 1008, "JSON");
    refused(
        &|ws| send(ws, json!({"command": "play", "streamId": 7})),
        1008,
        "streamId",
    );
    refused(
        &|ws| ws.send(Message::binary(vec![1, 2])).unwrap(),
        1003,
        "binary",
    );
    refused(
        &|ws| {
            let _ = ws.send(Message::text("x".repeat(100_000)));
        },
        1009,
        "limit",
    );
    refused(
        &|ws| {
            for _ in 0..17 {
                send(ws, json!({"command": "getIceServerConfig"}));
            }
        },
        1009,
        "too many",
    );
    // Silence, and a frame that never completes: closed after `timeouts.client` (2 s).
    let (mut ws, _) = connect(&url, &[]);
    let (code, reason, took) = closed(&mut ws);
    assert_eq!(code, 1008);
    assert!(reason.contains("within 2s"), "{reason}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (mut ws, _) = connect(&url, &[]);
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        // FIN + text, masked, 10 bytes announced, 3 sent.
        s.write_all(&[0x81, 0x8a, 1, 2, 3, 4, b'{', b'"', b'c'])
            .unwrap();
    }
    let (code, _, took) = closed(&mut ws);
    assert_eq!(code, 1008);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Nothing refused reached a server.
    assert_eq!(upgrades(&ups).iter().sum::<usize>(), 12 * 2 + 2);
    drop(held);
}

/// Origin, three WebRTC edges, the LB on `balance: stream`.
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
  - {role: edge, name: e1, http: "127.0.0.1:0", webrtc: {udp: "127.0.0.1:0"}, apps: [live], hls: {segment: 1s, window: 6, wait: 10s}}
  - {role: edge, name: e2, http: "127.0.0.1:0", webrtc: {udp: "127.0.0.1:0"}, apps: [live], hls: {segment: 1s, window: 6, wait: 10s}}
  - {role: edge, name: e3, http: "127.0.0.1:0", webrtc: {udp: "127.0.0.1:0"}, apps: [live], hls: {segment: 1s, window: 6, wait: 10s}}
  - role: lb
    name: lb1
    timeouts: {connect: 1s, client: 30s, server: 30s}
    stats: {bind: "127.0.0.1:0", uri: /st}
    frontends:
      - {name: http_lb, mode: http, bind: ["127.0.0.1:0"], backend: edges}
    backends:
      - {name: edges, mode: http, balance: stream, sticky: {cookie: JSESSIONID, mode: prefix},
         health: {kind: http, path: /healthz, interval: 200ms, rise: 1},
         servers_from: {role: edge, listener: http}}
"#;

/// The edge whose WebRTC port an offer's host candidate names.
fn edge_of(p: &Proc, candidate: &str) -> String {
    ["e1", "e2", "e3"]
        .into_iter()
        .find(|e| {
            let udp: SocketAddr = p.addr(e, "webrtc");
            candidate.contains(&format!(" {} {} typ host", udp.ip(), udp.port()))
        })
        .unwrap_or_else(|| panic!("no edge for {candidate}"))
        .to_owned()
}

/// Real edges: two raw viewers of one stream get offers from one edge; Chromium with Ant
/// Media's adaptor plays through the LB from that edge too, and no other edge pulls the stream.
#[test]
fn the_antmedia_adaptor_and_raw_viewers_of_a_stream_share_one_edge() {
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
    // Live on the origin (asked there, so that no edge pulls it yet).
    let playlist = format!("{}/live/streams/cam.m3u8", p.http("o1"));
    wait_for("the stream on the origin", Duration::from_secs(30), || {
        (get(&playlist).status == 200).then_some(())
    });
    // Every edge discovered and UP, so that the ring does not change between the viewers.
    let stats = p.addr("lb1", "stats");
    wait_for(
        "three edges UP behind the LB",
        Duration::from_secs(15),
        || {
            let csv = raw(
                stats,
                b"GET /st;csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let up = csv
                .lines()
                .filter(|l| l.starts_with("edges,e") && l.contains(",UP,"))
                .count();
            (up == 3).then_some(())
        },
    );
    let url = format!("ws://{lb}/live/websocket?target=edge");
    let mut edges = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mut ws, _) = connect(&url, &[]);
        send(
            &mut ws,
            json!({"command": "play", "streamId": "cam", "token": ""}),
        );
        let offer = recv(&mut ws);
        assert_eq!(offer["type"], "offer", "{offer}");
        let candidate = recv(&mut ws);
        assert_eq!(candidate["command"], "takeCandidate", "{candidate}");
        edges.push(edge_of(&p, candidate["candidate"].as_str().unwrap()));
        held.push(ws);
    }
    assert_eq!(edges[0], edges[1], "both viewers on one edge");
    let home = edges[0].clone();
    drop(held);

    let r = play_antmedia(&url, "cam", 30, &[]);
    assert!(r.ok, "the adaptor did not play: {}\n{}", r.json, p.stderr());
    let subscriptions: Vec<(String, f64)> = ["e1", "e2", "e3"]
        .into_iter()
        .map(|e| {
            (
                e.to_owned(),
                metric(&p, e, "streamfleet_relay_upstream_subscriptions"),
            )
        })
        .collect();
    for (e, n) in &subscriptions {
        let want = if *e == home { 1.0 } else { 0.0 };
        assert_eq!(*n, want, "only {home} pulls cam: {subscriptions:?}");
    }
}
