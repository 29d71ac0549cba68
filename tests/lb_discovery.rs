//! `servers_from`: a backend that follows the live edge nodes of the cluster store. Here the
//! LB, an origin and two edges run in one process on the embedded store; requests through the
//! LB reach both real edges (never the origin), and the sticky cookie is the node name.
//! Joining, leaving and draining without restart are covered by `lb::discovery`'s unit test
//! (one process cannot lose one of its nodes while the others live).

mod common;

use std::time::Duration;

use common::lb::raw;
use common::{Proc, wait_for};

const CLUSTER: &str = r#"
cluster: {store: embedded, heartbeat: 200ms, node_timeout: 2s}
shutdown_grace: 2s
nodes:
  - role: lb
    name: lb1
    frontends:
      - {name: web, mode: http, bind: ["127.0.0.1:0"], backend: edges}
    backends:
      - name: edges
        mode: http
        sticky: {cookie: JSESSIONID, mode: prefix}
        health: {kind: http, path: /healthz, interval: 200ms, rise: 1, fall: 2}
        servers_from: {role: edge, listener: http}
  - {role: origin, name: origin-1, advertise: 127.0.0.1, rtmp: "127.0.0.1:0", http: "127.0.0.1:0", relay: "127.0.0.1:0"}
  - {role: edge, name: edge-1, advertise: 127.0.0.1, http: "127.0.0.1:0"}
  - {role: edge, name: edge-2, advertise: 127.0.0.1, http: "127.0.0.1:0"}
"#;

/// Which node answered `/metrics` through the LB.
fn node_behind(lb: std::net::SocketAddr, cookie: &str) -> String {
    let reply = raw(
        lb,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    ["origin-1", "edge-1", "edge-2"]
        .into_iter()
        .find(|n| reply.contains(&format!("node=\"{n}\"")))
        .unwrap_or("none")
        .to_owned()
}

#[test]
fn servers_follow_the_live_edges_of_the_store() {
    let p = Proc::start(CLUSTER);
    let lb = p.addr("lb1", "frontend:web");
    let seen = wait_for("both edges behind the LB", Duration::from_secs(10), || {
        let nodes: Vec<String> = (0..4).map(|_| node_behind(lb, "")).collect();
        (nodes.contains(&"edge-1".to_string()) && nodes.contains(&"edge-2".to_string()))
            .then_some(nodes)
    });
    assert!(!seen.contains(&"origin-1".to_string()), "{seen:?}");
    for _ in 0..4 {
        assert_eq!(
            node_behind(lb, "Cookie: JSESSIONID=edge-2~abc\r\n"),
            "edge-2",
            "cookie = node name"
        );
    }
}
