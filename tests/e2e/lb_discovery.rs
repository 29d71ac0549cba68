//! `servers_from`: a backend that follows the live edge nodes of the cluster store. Here the
//! LB, an origin and two edges run in one process on the embedded store; requests through the
//! LB reach both real edges (never the origin), and the sticky cookie is the node name.
//! Joining, draining and dying without a restart need nodes in other processes: the second test
//! shares a real MongoDB-compatible store (SecantusDB) between an LB process and edge
//! processes that start, drain (SIGTERM) and die (SIGKILL).

use std::time::Duration;

use crate::common::lb::raw;
use crate::common::secantus::Secantus;
use crate::common::{Proc, wait_for};

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
  - {role: origin, name: origin-1, advertise: 127.0.0.1, rtmp: "127.0.0.1:0", http: "127.0.0.1:0", relay: "127.0.0.1:0", apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]}
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

fn edge(uri: &str, name: &str) -> Proc {
    Proc::start(&format!(
        "cluster: {{store: \"{uri}\", database: lbdisc, secret: lb-test-secret-0123, heartbeat: 200ms, node_timeout: 1s}}\nshutdown_grace: 1s\nnodes:\n  - {{role: edge, name: {name}, advertise: 127.0.0.1, http: \"127.0.0.1:0\"}}\n"
    ))
}

/// The set of nodes `/metrics` answers from through the LB in a few requests (503s count as none).
fn behind(lb: std::net::SocketAddr) -> Vec<String> {
    let mut nodes: Vec<String> = (0..6)
        .map(|_| {
            let reply = raw(
                lb,
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            ["edge-1", "edge-2", "edge-3"]
                .into_iter()
                .find(|n| reply.contains(&format!("node=\"{n}\"")))
                .unwrap_or(if reply.starts_with("HTTP/1.1 503") {
                    "503"
                } else {
                    "other"
                })
                .to_owned()
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

#[test]
fn nodes_join_drain_and_die_without_an_lb_restart() {
    let store = Secantus::start();
    let uri = store.uri();
    let lb = Proc::start(&format!(
        "cluster: {{store: \"{uri}\", database: lbdisc, secret: lb-test-secret-0123, heartbeat: 200ms, node_timeout: 1s}}\nshutdown_grace: 1s\nnodes:\n  - role: lb\n    name: lb1\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: edges}}\n    backends:\n      - {{name: edges, mode: http, servers_from: {{role: edge, listener: http}}}}\n"
    ));
    let web = lb.addr("lb1", "frontend:web");
    assert_eq!(behind(web), ["503"], "no edge yet");

    let mut e1 = edge(&uri, "edge-1");
    wait_for("edge-1 to join", Duration::from_secs(15), || {
        (behind(web) == ["edge-1"]).then_some(())
    });
    let e2 = edge(&uri, "edge-2");
    wait_for("edge-2 to join", Duration::from_secs(15), || {
        (behind(web) == ["edge-1", "edge-2"]).then_some(())
    });

    // A draining node leaves the backend (and the LB never restarted).
    e1.signal("TERM");
    wait_for("edge-1 to leave", Duration::from_secs(15), || {
        (behind(web) == ["edge-2"]).then_some(())
    });
    assert!(e1.wait_exit(Duration::from_secs(10)).is_some());

    // A node that dies silently leaves once its heartbeat is older than node_timeout.
    e2.signal("KILL");
    wait_for(
        "edge-2 to be declared dead",
        Duration::from_secs(15),
        || (behind(web) == ["503"]).then_some(()),
    );
    let _e3 = edge(&uri, "edge-3");
    wait_for("edge-3 to join", Duration::from_secs(15), || {
        (behind(web) == ["edge-3"]).then_some(())
    });
    let log = lb.stderr();
    assert!(
        log.contains("server joined") && log.contains("server left"),
        "{log}"
    );
}
