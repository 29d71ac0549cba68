//! Failover and outages on a multi-machine layout (issue 17): the store (SecantusDB with auth),
//! two origins, two edges and the LB each on a machine of its own (a network namespace with its
//! own address, [`Net`]); ffmpeg publishes and reads from a further one (this process's).
//! Figures are printed by the test.

use std::time::{Duration, Instant};

use crate::common::cluster::{NODE_TIMEOUT_MS, broadcast, cluster, window_end};
use crate::common::media::{Publisher, Source, assert_plays_default, require_ffmpeg};
use crate::common::netns::{Host, Net};
use crate::common::secantus::Secantus;
use crate::common::{Proc, get, wait_for};

const SECRET: &str = "test-secret-0123456";

fn origin_on(h: &Host, db: &Secantus, name: &str) -> Proc {
    let ip = &h.ip;
    Proc::start_on(
        h,
        &format!(
            "{}  - {{role: origin, name: {name}, rtmp: \"{ip}:0\", http: \"{ip}:0\", relay: \"{ip}:0\", apps: [{{name: live, security: {{publish: open}}}}], hls: {{segment: 1s, window: 6}}}}\n",
            cluster(&db.uri(), SECRET)
        ),
    )
}

/// An edge whose REST API answers the client machine (`client`: its address).
fn edge_on(h: &Host, db: &Secantus, name: &str, client: &str) -> Proc {
    let ip = &h.ip;
    Proc::start_on(
        h,
        &format!(
            "{}  - {{role: edge, name: {name}, rtmp: \"{ip}:0\", http: \"{ip}:0\", rest: {{remote_allowed_cidrs: [{client}/32]}}, hls: {{segment: 1s, window: 6, wait: 15s}}}}\n",
            cluster(&db.uri(), SECRET)
        ),
    )
}

fn lb_on(h: &Host, db: &Secantus) -> Proc {
    let ip = &h.ip;
    Proc::start_on(
        h,
        &format!(
            r#"{}  - role: lb
    name: lb1
    timeouts: {{connect: 1s, client: 30s, server: 30s}}
    frontends:
      - {{name: rtmp_lb, mode: rtmp, bind: ["{ip}:0"], publish_backend: origins_rtmp, play_backend: edges_rtmp}}
      - {{name: http_lb, mode: http, bind: ["{ip}:0"], backend: edges_http}}
    backends:
      - {{name: origins_rtmp, mode: tcp, health: {{kind: tcp, interval: 500ms}}, servers_from: {{role: origin, listener: rtmp}}}}
      - {{name: edges_rtmp, mode: tcp, health: {{kind: tcp, interval: 500ms}}, servers_from: {{role: edge, listener: rtmp}}}}
      - {{name: edges_http, mode: http, sticky: {{cookie: JSESSIONID, mode: prefix}}, health: {{kind: http, path: /healthz, interval: 500ms}}, servers_from: {{role: edge, listener: http}}}}
"#,
            cluster(&db.uri(), SECRET)
        ),
    )
}

/// Waits until the playlist at `url` lists `n` segments after the ones it listed now.
fn wait_fresh_segments(url: &str, n: u64, within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let end = window_end(&get(url).text()).unwrap_or(0);
    wait_for(what, within, || {
        window_end(&get(url).text())
            .filter(|e| *e >= end + n)
            .map(|_| ())
    });
    start.elapsed()
}

#[test]
fn an_origin_crash_then_a_store_crash_across_machines_leave_no_gap() {
    require_ffmpeg();
    // Declared first, dropped last: every process goes before its machine.
    let (net, hosts) = Net::new(&["db", "origin-1", "origin-2", "edge-1", "edge-2", "lb"]);
    let [db_h, o1_h, o2_h, e1_h, e2_h, lb_h] = <[Host; 6]>::try_from(hosts).unwrap();
    let mut db = Secantus::start_on(&db_h);
    let origins = [
        origin_on(&o1_h, &db, "origin-1"),
        origin_on(&o2_h, &db, "origin-2"),
    ];
    let client = net.client_ip();
    let edges = [
        edge_on(&e1_h, &db, "edge-1", &client),
        edge_on(&e2_h, &db, "edge-2", &client),
    ];
    let lb = lb_on(&lb_h, &db);
    let url = format!("rtmp://{}/live/cam", lb.addr("lb1", "frontend:rtmp_lb"));
    let source = || Source {
        seconds: 90,
        ..Source::default()
    };
    let first = Publisher::start(&url, source());
    let deadline = Instant::now() + Duration::from_secs(25);
    let owner = loop {
        let b = broadcast(&edges[0], "edge-1", "cam");
        if b["status"] == "broadcasting" {
            break b["origin"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the stream never broadcast: {b}\nlb: {}\norigin-1: {}\norigin-2: {}\nedge-1: {}",
            lb.stderr(),
            origins[0].stderr(),
            origins[1].stderr(),
            edges[0].stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (dead, other, taker) = if owner == "origin-1" {
        (&origins[0], "origin-2", &origins[1])
    } else {
        (&origins[1], "origin-1", &origins[0])
    };
    let playlists = [
        format!("{}/live/streams/cam.m3u8", edges[0].http("edge-1")),
        format!("{}/live/streams/cam.m3u8", edges[1].http("edge-2")),
    ];
    for p in &playlists {
        assert_plays_default(p, 2, "an edge before the crash");
    }

    // The owner's machine loses the process (kill -9); the publisher reconnects once through
    // the LB (ffmpeg does not retry by itself) and is held by the other origin until it can
    // take the stream over.
    dead.signal("KILL");
    let killed = Instant::now();
    first.stop();
    let mut again = Publisher::start(&url, source());
    wait_for(
        "the reconnected publisher to be broadcasting from the other origin",
        Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(10),
        || {
            let b = broadcast(&edges[0], "edge-1", "cam");
            (b["status"] == "broadcasting" && b["origin"] == other).then_some(())
        },
    );
    let taken_over = killed.elapsed();
    wait_fresh_segments(
        &playlists[0],
        1,
        Duration::from_secs(10),
        "a fresh segment on edge-1",
    );
    let fresh = killed.elapsed();
    println!(
        "machines: origin killed: broadcasting again after {taken_over:?}, fresh segment on edge-1 after {fresh:?} (node_timeout {NODE_TIMEOUT_MS} ms)"
    );
    assert!(
        fresh <= Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(2),
        "fresh media {fresh:?} after the kill\nedge-1: {}\n{other}: {}",
        edges[0].stderr(),
        taker.stderr()
    );
    // The dead owner's machine answered for it: its RTMP port refused connections, so the
    // other origin did not wait for the lease to run out.
    assert!(
        taker
            .stderr()
            .contains("taking the stream over before its lease runs out"),
        "{other} took the stream over early: {}",
        taker.stderr()
    );
    wait_fresh_segments(
        &playlists[1],
        1,
        Duration::from_secs(10),
        "a fresh segment on edge-2",
    );

    // Then the store's machine loses the database (kill -9): both edges keep serving fresh
    // segments from the new origin, for longer than node_timeout.
    db.stop();
    let outage = Duration::from_millis(NODE_TIMEOUT_MS) * 2;
    for (p, name) in playlists.iter().zip(["edge-1", "edge-2"]) {
        let took = wait_fresh_segments(
            p,
            outage.as_secs(),
            outage + Duration::from_secs(5),
            &format!("{name} to keep listing fresh segments during the store outage"),
        );
        println!(
            "machines: store down: {name} listed {} fresh segments in {took:?}",
            outage.as_secs()
        );
    }
    assert!(again.running(), "the publisher is still publishing");
    for p in &playlists {
        assert_plays_default(p, 2, "an edge during the store outage");
    }
}
