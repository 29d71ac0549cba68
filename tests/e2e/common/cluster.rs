//! A cluster as separate processes on a real MongoDB-compatible server (SecantusDB): origins,
//! edges and an LB that finds them in the store, with short heartbeats so that deaths are
//! noticed within a few seconds.

use std::time::Duration;

use super::media::{Publisher, Source};
use super::secantus::Secantus;
use super::{Proc, get, wait_for};

/// Heartbeat of every node.
pub const HEARTBEAT_MS: u64 = 500;
/// Silence after which a node is dead and its leases expire.
pub const NODE_TIMEOUT_MS: u64 = 3000;

/// The `cluster:` section and the `nodes:` key of a config on `uri`.
pub fn cluster(uri: &str, secret: &str) -> String {
    format!(
        "cluster: {{store: \"{uri}\", secret: {secret}, heartbeat: {HEARTBEAT_MS}ms, node_timeout: {NODE_TIMEOUT_MS}ms}}\nshutdown_grace: 2s\nnodes:\n"
    )
}

/// An origin process (1 s segments).
pub fn origin(db: &Secantus, name: &str) -> Proc {
    Proc::start(&format!(
        "{}  - {{role: origin, name: {name}, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", apps: [{{name: live, security: {{publish: open}}}}, {{name: LiveApp, security: {{publish: open}}}}], hls: {{segment: 1s, window: 6}}}}\n",
        cluster(&db.uri(), "test-secret-0123456")
    ))
}

/// An edge process knowing `secret`.
pub fn edge_with_secret(db: &Secantus, name: &str, secret: &str) -> Proc {
    Proc::start(&format!(
        "{}  - {{role: edge, name: {name}, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", hls: {{segment: 1s, window: 6, wait: 15s}}}}\n",
        cluster(&db.uri(), secret)
    ))
}

/// An edge process.
pub fn edge(db: &Secantus, name: &str) -> Proc {
    edge_with_secret(db, name, "test-secret-0123456")
}

/// An LB process: RTMP publishers to origins, players to edges; HTTP to edges (sticky).
pub fn lb(db: &Secantus) -> Proc {
    Proc::start(&format!(
        r#"{}  - role: lb
    name: lb1
    timeouts: {{connect: 1s, client: 30s, server: 30s}}
    frontends:
      - {{name: rtmp_lb, mode: rtmp, bind: ["127.0.0.1:0"], publish_backend: origins_rtmp, play_backend: edges_rtmp}}
      - {{name: http_lb, mode: http, bind: ["127.0.0.1:0"], backend: edges_http}}
    backends:
      - {{name: origins_rtmp, mode: tcp, health: {{kind: tcp, interval: 500ms}}, servers_from: {{role: origin, listener: rtmp}}}}
      - {{name: edges_rtmp, mode: tcp, health: {{kind: tcp, interval: 500ms}}, servers_from: {{role: edge, listener: rtmp}}}}
      - {{name: edges_http, mode: http, sticky: {{cookie: JSESSIONID, mode: prefix}}, health: {{kind: http, path: /healthz, interval: 500ms}}, servers_from: {{role: edge, listener: http}}}}
"#,
        cluster(&db.uri(), "test-secret-0123456")
    ))
}

/// A stream as the REST API of `node` shows it.
pub fn broadcast(node: &Proc, name: &str, id: &str) -> serde_json::Value {
    get(&format!("{}/live/rest/v2/broadcasts/{id}", node.http(name))).json()
}

/// One unlabelled value of `node`'s `/metrics`.
pub fn metric(node: &Proc, name: &str, metric: &str) -> f64 {
    let text = get(&format!("{}/metrics", node.http(name))).text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(metric)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no {metric} in\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until `node` says stream `id` is broadcasting from origin `on`.
pub fn wait_broadcasting(node: &Proc, name: &str, id: &str, on: &str) {
    wait_for(
        &format!("{id} broadcasting on {on}"),
        Duration::from_secs(25),
        || {
            let b = broadcast(node, name, id);
            (b["status"] == "broadcasting" && b["origin"] == on).then_some(())
        },
    );
}

/// Publishes `source` to `url` until `node` says stream `id` is broadcasting from origin `on`,
/// starting the publisher again each time it is refused (an origin refuses a stream whose
/// owner's lease has not expired yet, and ffmpeg does not retry by itself).
pub fn publish_until_broadcasting(
    url: &str,
    source: Source,
    node: (&Proc, &str),
    id: &str,
    on: &str,
) -> Publisher {
    let mut publisher = Publisher::start(url, source);
    wait_for(
        &format!("{id} to be broadcasting from {on}"),
        Duration::from_secs(30),
        || {
            let b = broadcast(node.0, node.1, id);
            if b["status"] == "broadcasting" && b["origin"] == on {
                return Some(());
            }
            if !publisher.running() {
                publisher = Publisher::start(url, source);
            }
            None
        },
    );
    publisher
}

/// The `#EXT-X-MEDIA-SEQUENCE` of a playlist, with its segment count: where its window ends.
pub fn window_end(playlist: &str) -> Option<u64> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .trim()
        .parse()
        .ok()?;
    Some(first + playlist.matches("#EXTINF").count() as u64)
}
