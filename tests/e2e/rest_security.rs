//! The closed REST (issue 13): a media node answers its REST API, console and `/metrics` only to
//! `rest.remote_allowed_cidrs` or with a REST JWT, believes `X-Forwarded-For` only from
//! `rest.trusted_proxies`, and sends CORS headers only to configured origins. Real curl, from
//! two loopback addresses (127.0.0.1 allowed, 127.0.0.2 not), directly and through the LB.

use std::process::Command;
use std::time::Duration;

use crate::common::{Http, Proc, wait_for};

const KEY: &str = "e2e-rest-key-0123456789";
const CONSOLE: &str = "https://console.example.com";

/// curl from `from` (a source address) with extra headers; any status comes back.
fn curl(from: &str, url: &str, headers: &[String]) -> Http {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "10", "--interface", from]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn jwt(key: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
    let good = jwt(KEY, serde_json::json!({"sub": "ops", "exp": now() + 60}));
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
    let foreign = jwt("another-key-0123456789", serde_json::json!({"sub": "ops"}));
    let expired = jwt(KEY, serde_json::json!({"exp": now() - 5}));
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
