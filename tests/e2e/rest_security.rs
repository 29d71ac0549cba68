//! The closed REST (issue 13): a media node answers its REST API, console and `/metrics` only to
//! `rest.remote_allowed_cidrs` or with a REST JWT, believes `X-Forwarded-For` only from
//! `rest.trusted_proxies`, and sends CORS headers only to configured origins. Real curl, from
//! two loopback addresses (127.0.0.1 allowed, 127.0.0.2 not), directly and through the LB.

use std::process::Command;
use std::time::Duration;

use crate::common::media::{LiveReader, Publisher, Source, require_ffmpeg};
use crate::common::{Http, Proc, get, jwt_with, unix_now, wait_for};

const KEY: &str = "e2e-rest-key-0123456789";
const CONSOLE: &str = "https://console.example.com";

/// curl from `from` (a source address) with extra headers; any status comes back.
fn curl(from: &str, url: &str, headers: &[String]) -> Http {
    curl_with(from, "GET", url, headers, None)
}

/// curl with a method and an optional JSON body.
fn curl_with(from: &str, method: &str, url: &str, headers: &[String], body: Option<&str>) -> Http {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-i",
        "--max-time",
        "10",
        "--interface",
        from,
        "-X",
        method,
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(body) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::common::parse_curl_response(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn rest_answers_allowed_addresses_and_rest_jwts_only() {
    let p = Proc::start(&format!(
        r#"
cluster: {{heartbeat: 200ms, node_timeout: 2s}}
shutdown_grace: 1s
nodes:
  - role: standalone
    name: s1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    apps: [{{name: live, security: {{publish: open}}}}]
    rest:
      remote_allowed_cidrs: [127.0.0.1/32]
      trusted_proxies: [127.0.0.1]
      jwt_secret: {KEY}
      cors_origins: ["{CONSOLE}"]
  - role: lb
    name: lb1
    frontends: [{{name: web, mode: http, bind: ["127.0.0.1:0"], backend: nodes}}]
    backends:
      - {{name: nodes, mode: http, health: {{kind: http, path: /healthz, interval: 200ms, rise: 1}}, servers_from: {{role: standalone, listener: http}}}}
"#
    ));
    let node = p.http("s1");
    let lb = format!("http://{}", p.addr("lb1", "frontend:web"));
    let guarded = [
        "/rest/v2/cluster/node-count",
        "/rest/v2/cluster/nodes/0/10",
        "/live/rest/v2/broadcasts/count",
        "/metrics",
        "/",
    ];

    // From an allowed address: served.
    for path in guarded {
        let r = curl("127.0.0.1", &format!("{node}{path}"), &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // From another address: refused, with the reason; health and HLS stay open.
    for path in guarded {
        let r = curl("127.0.0.2", &format!("{node}{path}"), &[]);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(
            r.text().contains("rest.remote_allowed_cidrs") && r.text().contains("127.0.0.2"),
            "{path}: {}",
            r.text()
        );
    }
    assert_eq!(
        curl("127.0.0.2", &format!("{node}/healthz"), &[]).status,
        200
    );
    let hls = curl(
        "127.0.0.2",
        &format!("{node}/live/streams/nothing.m3u8"),
        &[],
    );
    assert_eq!(hls.status, 404, "HLS is not behind the REST guard");
    assert_eq!(hls.header("access-control-allow-origin"), Some("*"));

    // A forged X-Forwarded-For from an untrusted peer opens nothing.
    let forged = ["X-Forwarded-For: 127.0.0.1".to_owned()];
    let r = curl(
        "127.0.0.2",
        &format!("{node}/rest/v2/cluster/node-count"),
        &forged,
    );
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("not in rest.trusted_proxies"),
        "{}",
        r.text()
    );

    // Through the LB (a trusted proxy): the client is the address the LB appends.
    let through_lb = format!("{lb}/live/rest/v2/broadcasts/count");
    wait_for("the LB to reach the node", Duration::from_secs(10), || {
        (curl("127.0.0.1", &through_lb, &[]).status == 200).then_some(())
    });
    let r = curl("127.0.0.2", &through_lb, &forged);
    assert_eq!(r.status, 403, "forged header through the LB: {}", r.text());
    assert!(r.text().contains("127.0.0.2 is not one"), "{}", r.text());

    // A REST JWT opens it from anywhere, directly and through the LB; bad ones are named.
    let good = jwt_with(
        KEY,
        serde_json::json!({"sub": "ops", "exp": unix_now() + 60}),
    );
    for (url, auth) in [
        (
            format!("{node}/rest/v2/cluster/node-count"),
            format!("Authorization: Bearer {good}"),
        ),
        (through_lb.clone(), format!("Authorization: {good}")),
    ] {
        let r = curl("127.0.0.2", &url, &[auth]);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
    }
    let foreign = jwt_with("another-key-0123456789", serde_json::json!({"sub": "ops"}));
    let expired = jwt_with(KEY, serde_json::json!({"exp": unix_now() - 5}));
    for (token, why) in [(foreign, "signature"), (expired, "expired")] {
        let r = curl(
            "127.0.0.2",
            &format!("{node}/metrics"),
            &[format!("Authorization: Bearer {token}")],
        );
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
    }

    // CORS: the configured console origin only, never `*`, on the JSON APIs.
    let count = format!("{node}/live/rest/v2/broadcasts/count");
    let r = curl("127.0.0.1", &count, &[format!("Origin: {CONSOLE}")]);
    assert_eq!(r.header("access-control-allow-origin"), Some(CONSOLE));
    let r = curl(
        "127.0.0.1",
        &count,
        &["Origin: https://evil.example".to_owned()],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = curl("127.0.0.1", &count, &[]);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

/// The REST write calls operators script against, on a one-process cluster (origin and edge):
/// create, mint tokens, count live streams, sum viewers over the nodes, stop (the publisher is
/// dropped) and delete, each answered by whichever node is asked.
#[test]
fn rest_write_api_creates_mints_counts_stops_and_deletes_across_nodes() {
    require_ffmpeg();
    let p = Proc::start(&format!(
        r#"
cluster: {{heartbeat: 300ms, node_timeout: 3s}}
shutdown_grace: 1s
nodes:
  - role: origin
    name: o1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    relay: "127.0.0.1:0"
    hls: {{segment: 1s, window: 6}}
    rest: {{remote_allowed_cidrs: [127.0.0.1/32]}}
    apps:
      - {{name: live, security: {{publish: jwt, play: jwt, jwt_secret: {KEY}}}}}
      - {{name: open, security: {{publish: open}}}}
  - role: edge
    name: e1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    hls: {{segment: 1s, window: 6, wait: 15s}}
    apps: [{{name: live, security: {{play: jwt, jwt_secret: {KEY}}}}}, open]
"#
    ));
    let origin = p.http("o1");
    let edge = p.http("e1");
    let post = |url: &str, body: Option<&str>| curl_with("127.0.0.1", "POST", url, &[], body);
    let delete = |url: &str| curl_with("127.0.0.1", "DELETE", url, &[], None);

    // Create on one node; every node sees it.
    let r = post(
        &format!("{origin}/live/rest/v2/broadcasts/create"),
        Some(r#"{"streamId": "cam1", "name": "Cam 1"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["streamId"].as_str(), r.json()["status"].as_str()),
        (Some("cam1"), Some("created"))
    );
    let again = post(
        &format!("{edge}/live/rest/v2/broadcasts/create"),
        Some(r#"{"streamId": "cam1"}"#),
    );
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(again.text().contains("already exists"), "{}", again.text());
    assert_eq!(
        get(&format!("{edge}/live/rest/v2/broadcasts/cam1")).json()["status"],
        "created"
    );
    let made_up = post(&format!("{origin}/live/rest/v2/broadcasts/create"), None);
    assert_eq!(made_up.status, 200, "{}", made_up.text());
    assert!(
        made_up.json()["streamId"]
            .as_str()
            .is_some_and(|id| id.len() == 18)
    );
    for bad in [r#"{"streamId": "../x"}"#, "[1]", "{"] {
        let r = post(
            &format!("{origin}/live/rest/v2/broadcasts/create"),
            Some(bad),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // Tokens minted by the REST (from any node) publish and play.
    let exp = unix_now() + 600;
    let mint = |node: &str, kind: &str| {
        let r = get(&format!(
            "{node}/live/rest/v2/broadcasts/cam1/jwt-token?expireDate={exp}&type={kind}"
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            (r.json()["type"].as_str(), r.json()["expireDate"].as_u64()),
            (Some(kind), Some(exp))
        );
        r.json()["tokenId"].as_str().unwrap().to_owned()
    };
    let publish_token = mint(&edge, "publish");
    let play_token = mint(&origin, "play");
    for query in [
        "type=play",
        "type=view&expireDate=99999999999",
        &format!("type=play&expireDate={}", unix_now() - 1),
    ] {
        let r = get(&format!(
            "{origin}/live/rest/v2/broadcasts/cam1/jwt-token?{query}"
        ));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
    let r = get(&format!(
        "{origin}/open/rest/v2/broadcasts/x/jwt-token?expireDate={exp}&type=play"
    ));
    assert_eq!(
        r.status,
        400,
        "an app without play JWTs mints none: {}",
        r.text()
    );

    let mut publisher = Publisher::start(
        &format!(
            "rtmp://{}/live/cam1?token={publish_token}",
            p.addr("o1", "rtmp")
        ),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let active = format!("{edge}/live/rest/v2/broadcasts/active-live-stream-count");
    wait_for("the stream to be live", Duration::from_secs(20), || {
        (get(&active).json()["number"] == 1).then_some(())
    });

    // Viewers on the edge (HLS with the minted play token, one RTMP player), summed by the
    // origin's REST from the nodes' records.
    let playlist = format!("{edge}/live/streams/cam1.m3u8?token={play_token}");
    let player = LiveReader::start(
        &format!(
            "rtmp://{}/live/cam1?token={play_token}",
            p.addr("e1", "rtmp")
        ),
        30,
    );
    let stats_url = format!("{origin}/live/rest/v2/broadcasts/cam1/broadcast-statistics");
    let stats = wait_for("viewers in the statistics", Duration::from_secs(20), || {
        let list = get(&playlist);
        assert_eq!(list.status, 200, "{}", list.text());
        if let Some(segment) = list
            .text()
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert_eq!(get(&format!("{edge}/live/streams/{segment}")).status, 200);
        }
        let s = get(&stats_url).json();
        (s["totalHLSWatchersCount"] == 1 && s["totalRTMPWatchersCount"] == 1).then_some(s)
    });
    assert_eq!(stats["totalWebRTCWatchersCount"], 0);

    // Stop from the edge's REST: the origin drops the publisher within a heartbeat or two.
    let r = post(&format!("{edge}/live/rest/v2/broadcasts/cam1/stop"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for(
        "the publisher to be dropped",
        Duration::from_secs(10),
        || (!publisher.running()).then_some(()),
    );
    assert_eq!(get(&active).json()["number"], 0);
    assert_eq!(
        get(&format!("{origin}/live/rest/v2/broadcasts/cam1")).json()["status"],
        "finished"
    );
    let r = post(&format!("{origin}/live/rest/v2/broadcasts/cam1/stop"), None);
    assert_eq!(r.status, 409, "not live any more: {}", r.text());
    drop(player);

    // Delete.
    assert_eq!(
        delete(&format!("{origin}/live/rest/v2/broadcasts/cam1")).status,
        200
    );
    assert_eq!(
        get(&format!("{edge}/live/rest/v2/broadcasts/cam1")).status,
        404
    );
    assert_eq!(
        delete(&format!("{origin}/live/rest/v2/broadcasts/cam1")).status,
        404
    );
    assert_eq!(
        post(
            &format!("{origin}/live/rest/v2/broadcasts/nothing/stop"),
            None
        )
        .status,
        404
    );

    // Writes are behind the same guard as reads.
    let r = curl_with(
        "127.0.0.2",
        "POST",
        &format!("{origin}/live/rest/v2/broadcasts/create"),
        &[],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
}
