//! The cluster as separate processes on a real MongoDB-compatible server with authentication
//! (SecantusDB): publishers through the LB to the origin, players through the LB and on edges,
//! edges pulling over the QUIC relay, a killed origin's streams expiring, a store outage, a node
//! that stops heartbeating, the console in a real browser, and the one-box config.

use std::time::{Duration, Instant};

use crate::common::browser::console_lists;
use crate::common::cluster::{
    HEARTBEAT_MS, NODE_TIMEOUT_MS, broadcast, edge, edge_with_secret, lb, metric, origin,
    publish_until_broadcasting, wait_broadcasting, window_end,
};
use crate::common::media::{
    LiveReader, Publisher, Source, assert_plays, assert_plays_default, probe, require_ffmpeg,
};
use crate::common::secantus::Secantus;
use crate::common::{Proc, get, wait_for};

#[test]
fn publish_through_the_lb_and_play_from_every_edge() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let e1 = edge(&db, "edge-1");
    let e2 = edge(&db, "edge-2");
    let lb = lb(&db);
    let lb_rtmp = lb.addr("lb1", "frontend:rtmp_lb");
    let lb_http = lb.addr("lb1", "frontend:http_lb");

    let publisher = Publisher::start(
        &format!("rtmp://{lb_rtmp}/live/demo"),
        Source {
            seconds: 20,
            ..Source::default()
        },
    );
    wait_broadcasting(&e1, "edge-1", "demo", "origin-1");

    // Through the LB (HTTP to an edge), and from each edge directly with several viewers.
    let through_lb = format!("http://{lb_http}/live/streams/demo.m3u8");
    assert_plays_default(&through_lb, 3, "HLS through the LB");
    // The edge gives a new player a session cookie, which the LB prefixes with the edge's name
    // so that the player's segment requests stay on the edge that named the segments.
    let first = get(&through_lb);
    let cookie = first.header("set-cookie").unwrap_or_default().to_owned();
    assert!(
        cookie.starts_with("JSESSIONID=edge-1~") || cookie.starts_with("JSESSIONID=edge-2~"),
        "{cookie:?}"
    );
    for (p, name) in [(&e1, "edge-1"), (&e2, "edge-2")] {
        let url = format!("{}/live/streams/demo.m3u8", p.http(name));
        let viewers: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || probe(&url, 3))
            })
            .collect();
        for v in viewers {
            assert_plays(
                &v.join().unwrap(),
                640,
                360,
                30,
                30,
                3,
                &format!("HLS from {name}"),
            );
        }
        assert_eq!(
            metric(p, name, "streamfleet_relay_upstream_subscriptions"),
            1.0,
            "{name}: one upstream subscription for all its viewers"
        );
        assert!(metric(p, name, "streamfleet_relay_latency_seconds_count") > 100.0);
    }
    // RTMP play through the LB goes to an edge, which pulls from the origin.
    assert_plays_default(
        &format!("rtmp://{lb_rtmp}/live/demo"),
        3,
        "RTMP through the LB",
    );
    assert_eq!(
        metric(&o1, "origin-1", "streamfleet_relay_edges"),
        2.0,
        "both edges connected to the origin"
    );

    // The console, in a real browser, lists every running node.
    let r = console_lists(&e2.http("edge-2"), &["origin-1", "edge-1", "edge-2", "lb1"]);
    assert!(r.ok, "console: {}", r.json);
    drop(publisher);
    drop(lb);
}

#[test]
fn a_killed_origin_expires_and_a_new_origin_takes_over_without_restarts() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let e1 = edge(&db, "edge-1");
    let lb = lb(&db);
    let lb_rtmp = lb.addr("lb1", "frontend:rtmp_lb");
    let (edge_pid, lb_pid) = (e1.pid(), lb.pid());
    let publisher = Publisher::start(
        &format!("rtmp://{lb_rtmp}/live/cam"),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    wait_broadcasting(&e1, "edge-1", "cam", "origin-1");
    let playlist = format!("{}/live/streams/cam.m3u8", e1.http("edge-1"));
    assert_plays_default(&playlist, 2, "edge before the crash");

    o1.signal("KILL");
    let killed = Instant::now();
    publisher.stop();
    let limit = Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(2);
    wait_for("the stream to stop broadcasting", limit, || {
        (broadcast(&e1, "edge-1", "cam")["status"] == "finished").then_some(())
    });
    wait_for(
        "the edge to answer 404",
        limit.saturating_sub(killed.elapsed()) + Duration::from_millis(100),
        || (get(&playlist).status == 404).then_some(()),
    );
    assert!(
        killed.elapsed() <= limit + Duration::from_millis(200),
        "took {:?}",
        killed.elapsed()
    );

    // A second origin; the publisher comes back through the same LB; the same edge serves it.
    let _o2 = origin(&db, "origin-2");
    // The LB may not have noticed origin-1's death yet: the publisher tries again.
    let _again = publish_until_broadcasting(
        &format!("rtmp://{lb_rtmp}/live/cam"),
        Source {
            seconds: 30,
            ..Source::default()
        },
        (&e1, "edge-1"),
        "cam",
        "origin-2",
    );
    assert_eq!(
        broadcast(&e1, "edge-1", "cam")["epoch"],
        2,
        "ownership changed by compare-and-set"
    );
    assert_plays_default(&playlist, 2, "edge after the takeover");
    assert_eq!((e1.pid(), lb.pid()), (edge_pid, lb_pid), "no restarts");
}

#[test]
fn a_store_outage_keeps_streams_flowing_and_readiness_recovers() {
    require_ffmpeg();
    let mut db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let e1 = edge(&db, "edge-1");
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/steady", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    wait_broadcasting(&e1, "edge-1", "steady", "origin-1");
    let playlist = format!("{}/live/streams/steady.m3u8", e1.http("edge-1"));
    assert_plays_default(&playlist, 2, "before the outage");
    for (p, n) in [(&o1, "origin-1"), (&e1, "edge-1")] {
        assert_eq!(get(&format!("{}/readyz", p.http(n))).status, 200);
    }

    db.stop();
    for (p, n) in [(&o1, "origin-1"), (&e1, "edge-1")] {
        let r = wait_for(
            &format!("{n} to report not ready"),
            Duration::from_secs(15),
            || {
                let r = get(&format!("{}/readyz", p.http(n)));
                (r.status == 503).then_some(r)
            },
        );
        assert!(
            r.json()["reason"]
                .as_str()
                .unwrap()
                .contains("cluster store"),
            "{}",
            r.text()
        );
        assert_eq!(
            get(&format!("{}/healthz", p.http(n))).status,
            200,
            "alive all along"
        );
    }
    assert_plays_default(&playlist, 2, "during the outage");

    db.restart_same_port();
    for (p, n) in [(&o1, "origin-1"), (&e1, "edge-1")] {
        wait_for(
            &format!("{n} to be ready again"),
            Duration::from_secs(30),
            || (get(&format!("{}/readyz", p.http(n))).status == 200).then_some(()),
        );
    }
    wait_broadcasting(&e1, "edge-1", "steady", "origin-1");
    assert!(
        !o1.stderr().contains("test-secret") && !o1.stderr().contains(db.password()),
        "no secret in logs"
    );
}

#[test]
fn a_node_that_stops_heartbeating_is_reported_dead_after_node_timeout() {
    let db = Secantus::start();
    let a = edge(&db, "edge-a");
    let b = edge(&db, "edge-b");
    let nodes = format!("{}/rest/v2/cluster/nodes/0/10", a.http("edge-a"));
    let state = |name: &str| -> Option<bool> {
        get(&nodes)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["alive"] == true)
    };
    wait_for("edge-b alive", Duration::from_secs(10), || {
        (state("edge-b") == Some(true)).then_some(())
    });
    b.signal("STOP");
    let stopped = Instant::now();
    wait_for("edge-b reported dead", Duration::from_secs(10), || {
        (state("edge-b") == Some(false)).then_some(())
    });
    let took = stopped.elapsed();
    let timeout = Duration::from_millis(NODE_TIMEOUT_MS);
    assert!(
        took + Duration::from_millis(HEARTBEAT_MS) >= timeout,
        "dead only after node_timeout ({took:?})"
    );
    assert!(
        took <= timeout + Duration::from_millis(1500),
        "dead soon after node_timeout ({took:?})"
    );
    b.signal("CONT");
    wait_for("edge-b alive again", Duration::from_secs(10), || {
        (state("edge-b") == Some(true)).then_some(())
    });
}

#[test]
fn a_peer_without_the_cluster_secret_is_refused_by_the_relay() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let intruder = edge_with_secret(&db, "edge-x", "wrong-secret-0123456");
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/priv", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 30,
            ..Source::default()
        },
    );
    wait_broadcasting(&intruder, "edge-x", "priv", "origin-1");
    let r = get(&format!(
        "{}/live/streams/priv.m3u8",
        intruder.http("edge-x")
    ));
    assert_eq!(r.status, 404, "the intruder cannot pull");
    let line = wait_for("the origin's log line", Duration::from_secs(10), || {
        o1.stderr()
            .lines()
            .find(|l| l.contains("relay peer refused"))
            .map(str::to_owned)
    });
    assert!(
        !line.contains("wrong-secret-0123456") && !line.contains("test-secret"),
        "{line}"
    );
    assert!(metric(&o1, "origin-1", "streamfleet_relay_auth_failures_total") >= 1.0);
    assert!(
        intruder.stderr().contains("relay"),
        "the intruder logs why: {}",
        intruder.stderr()
    );
}

#[test]
fn the_one_box_config_serves_publishers_and_players_through_the_lb() {
    require_ffmpeg();
    // config.example.yaml as shipped, with every port made 0 and the certificate in a temp dir.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
            .unwrap();
    let mut yaml = String::new();
    let mut rest = example.as_str();
    // Every quoted "IP:PORT" becomes "127.0.0.1:0".
    while let Some(i) = rest
        .find("\"0.0.0.0:")
        .into_iter()
        .chain(rest.find("\"127.0.0.1:"))
        .min()
    {
        let end = i + 1 + rest[i + 1..].find('"').unwrap();
        yaml.push_str(&rest[..i]);
        yaml.push_str("\"127.0.0.1:0\"");
        rest = &rest[end + 1..];
    }
    yaml.push_str(rest);
    assert!(yaml.matches("127.0.0.1:0").count() >= 11, "{yaml}");
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start_in(dir, &yaml);
    assert!(
        p.dir.path().join("certs/dev.pem").exists(),
        "development certificate made on first run"
    );
    let lb_rtmp = p.addr("lb1", "frontend:rtmp_lb");
    let _publisher = Publisher::start(
        &format!("rtmp://{lb_rtmp}/live/demo"),
        Source {
            seconds: 20,
            ..Source::default()
        },
    );
    wait_broadcasting(&p, "edge-1", "demo", "origin-1");
    let http = format!(
        "http://{}/live/streams/demo.m3u8",
        p.addr("lb1", "frontend:http_lb")
    );
    assert_plays_default(&http, 3, "one box: HLS through the LB");
    let https = format!(
        "https://{}/live/streams/demo.m3u8",
        p.addr("lb1", "frontend:frontend_https")
    );
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(p.dir.path().join("certs/dev.pem"))
        .args([
            "--resolve",
            &format!(
                "localhost:{}:127.0.0.1",
                p.addr("lb1", "frontend:frontend_https").port()
            ),
        ])
        .arg(https.replace("127.0.0.1", "localhost"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("#EXTM3U"),
        "HTTPS with the dev certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edge_pulls: f64 = ["edge-1", "edge-2"]
        .iter()
        .map(|n| metric(&p, n, "streamfleet_relay_upstream_subscriptions"))
        .sum();
    assert!(edge_pulls >= 1.0, "players were served by an edge");
}

#[test]
fn hls_viewers_on_an_edge_continue_when_the_publisher_moves_to_another_origin() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let o2 = origin(&db, "origin-2");
    let e1 = edge(&db, "edge-1");
    let first = Publisher::start(
        &format!("rtmp://{}/live/move", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    wait_broadcasting(&e1, "edge-1", "move", "origin-1");
    let playlist = format!("{}/live/streams/move.m3u8", e1.http("edge-1"));
    // One player reads 10 s of the stream from the edge while the publisher moves.
    let reader = LiveReader::start(&playlist, 10);
    wait_for(
        "the edge to serve a few segments",
        Duration::from_secs(20),
        || (get(&playlist).text().matches("#EXTINF").count() >= 3).then_some(()),
    );
    // The publisher leaves origin-1 and comes back on origin-2.
    first.stop();
    let _second = Publisher::start(
        &format!("rtmp://{}/live/move", o2.addr("origin-2", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    wait_broadcasting(&e1, "edge-1", "move", "origin-2");
    let read = reader.finish();
    assert!(read.ok, "the player ran to the end: {}", read.stderr);
    let frames = read.frames;
    assert!(
        frames >= 270,
        "10 s of video across the move, got {frames} frames"
    );
    let text = get(&playlist).text();
    assert!(
        text.contains("#EXT-X-DISCONTINUITY"),
        "the move shows as a discontinuity:\n{text}"
    );
    assert_eq!(
        metric(&e1, "edge-1", "streamfleet_relay_resubscribes_total"),
        1.0
    );
}

#[test]
fn a_hung_store_stalls_no_edge_and_edges_find_streams_at_their_last_known_origin() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let e1 = edge(&db, "edge-1");
    let source = || Source {
        seconds: 90,
        ..Source::default()
    };
    let _steady = Publisher::start(
        &format!("rtmp://{}/live/steady", o1.addr("origin-1", "rtmp")),
        source(),
    );
    let _other = Publisher::start(
        &format!("rtmp://{}/live/other", o1.addr("origin-1", "rtmp")),
        source(),
    );
    wait_broadcasting(&e1, "edge-1", "steady", "origin-1");
    wait_broadcasting(&e1, "edge-1", "other", "origin-1");
    let steady = format!("{}/live/streams/steady.m3u8", e1.http("edge-1"));
    let other = format!("{}/live/streams/other.m3u8", e1.http("edge-1"));
    assert_plays_default(&other, 2, "other, before the outage");
    assert_plays_default(&steady, 2, "steady, before the outage");
    // The edge lets go of `other` once nobody watched it for its grace period, and keeps
    // `steady`, which a player keeps asking for.
    wait_for(
        "the edge to let go of the unwatched stream",
        Duration::from_secs(40),
        || {
            assert_eq!(get(&steady).status, 200);
            (metric(&e1, "edge-1", "streamfleet_relay_upstream_subscriptions") == 1.0).then_some(())
        },
    );

    // The store hangs: every look-up now waits for its timeout.
    db.freeze();
    let frozen = Instant::now();
    // The flowing stream keeps growing at the segment rate on the edge: the longest wait for
    // a new segment stays near one segment (1 s), not the store's timeout.
    let mut end = window_end(&get(&steady).text()).expect("a playlist");
    let mut changed = Instant::now();
    let mut longest = Duration::ZERO;
    let mut segments = 0;
    while frozen.elapsed() < Duration::from_secs(10) {
        let now = window_end(&get(&steady).text()).expect("a playlist during the outage");
        if now > end {
            longest = longest.max(changed.elapsed());
            segments += now - end;
            end = now;
            changed = Instant::now();
        }
        std::thread::yield_now();
    }
    longest = longest.max(changed.elapsed());
    println!("store hung 10 s: {segments} new segments on the edge, longest wait {longest:?}");
    assert!(
        segments >= 7 && longest < Duration::from_millis(2500),
        "the edge's playlist stalled while the store hung: {segments} new segments in 10 s, longest wait {longest:?}"
    );
    // A stream the edge no longer carries: found at its last known origin without the store.
    let asked = Instant::now();
    assert_plays_default(&other, 2, "other, pulled again while the store hangs");
    println!(
        "cold pull during the outage played after {:?}",
        asked.elapsed()
    );
    assert!(
        e1.stderr().contains("using the stream's last known origin"),
        "{}",
        e1.stderr()
    );
    db.thaw();
}

#[test]
fn a_publisher_reconnecting_after_its_origin_died_is_held_and_accepted_at_once() {
    require_ffmpeg();
    let db = Secantus::start();
    let origins = [origin(&db, "origin-1"), origin(&db, "origin-2")];
    let e1 = edge(&db, "edge-1");
    let lb = lb(&db);
    let lb_rtmp = lb.addr("lb1", "frontend:rtmp_lb");
    let url = format!("rtmp://{lb_rtmp}/live/cam");
    let source = || Source {
        seconds: 60,
        ..Source::default()
    };
    let first = Publisher::start(&url, source());
    let owner = wait_for(
        "the stream to be broadcasting",
        Duration::from_secs(25),
        || {
            let b = broadcast(&e1, "edge-1", "cam");
            (b["status"] == "broadcasting").then(|| b["origin"].as_str().unwrap().to_string())
        },
    );
    let (dead, other, taker) = if owner == "origin-1" {
        (&origins[0], "origin-2", &origins[1])
    } else {
        (&origins[1], "origin-1", &origins[0])
    };
    let playlist = format!("{}/live/streams/cam.m3u8", e1.http("edge-1"));
    assert_plays_default(&playlist, 2, "edge before the crash");

    // The owner dies; the publisher reconnects at once through the LB, once (ffmpeg does not
    // retry by itself): the other origin holds it until the dead owner's lease runs out.
    dead.signal("KILL");
    let killed = Instant::now();
    first.stop();
    let mut again = Publisher::start(&url, source());
    wait_for(
        "the reconnected publisher to be broadcasting from the other origin",
        Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(10),
        || {
            let b = broadcast(&e1, "edge-1", "cam");
            (b["status"] == "broadcasting" && b["origin"] == other).then_some(())
        },
    );
    let taken_over = killed.elapsed();
    // Fresh media on the edge: a segment newer than the takeover.
    let end = window_end(&get(&playlist).text()).unwrap_or(0);
    wait_for(
        "a fresh segment on the edge",
        Duration::from_secs(10),
        || {
            let text = get(&playlist).text();
            window_end(&text).filter(|e| *e > end).map(|_| ())
        },
    );
    let fresh = killed.elapsed();
    println!(
        "origin killed: stream broadcasting again after {taken_over:?}, fresh segment on the edge after {fresh:?} (node_timeout {NODE_TIMEOUT_MS} ms)"
    );
    assert!(
        fresh <= Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(2),
        "fresh media {fresh:?} after the kill"
    );
    assert!(
        again.running(),
        "the reconnected publisher is still publishing"
    );
    // The dead owner's RTMP port refused connections: no need to wait for its lease.
    assert!(
        taker
            .stderr()
            .contains("taking the stream over before its lease runs out"),
        "{other} took the stream over early: {}",
        taker.stderr()
    );
    assert_plays_default(&playlist, 2, "edge after the takeover");
}

#[test]
fn max_streams_refuses_publishers_on_origins_and_pulls_on_edges_with_the_reason() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = Proc::start(&format!(
        "{}  - {{role: origin, name: origin-1, max_streams: 2, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", apps: [{{name: live, security: {{publish: open}}}}], hls: {{segment: 1s, window: 6}}}}\n",
        crate::common::cluster::cluster(&db.uri(), "test-secret-0123456")
    ));
    let e1 = Proc::start(&format!(
        "{}  - {{role: edge, name: edge-1, max_streams: 1, http: \"127.0.0.1:0\", hls: {{segment: 1s, window: 6, wait: 15s}}}}\n",
        crate::common::cluster::cluster(&db.uri(), "test-secret-0123456")
    ));
    let rtmp = |id: &str| format!("rtmp://{}/live/{id}", o1.addr("origin-1", "rtmp"));
    let source = || Source {
        seconds: 60,
        ..Source::default()
    };
    let _one = Publisher::start(&rtmp("one"), source());
    let _two = Publisher::start(&rtmp("two"), source());
    wait_broadcasting(&e1, "edge-1", "one", "origin-1");
    wait_broadcasting(&e1, "edge-1", "two", "origin-1");

    // A third publisher: refused with the reason; the others go on.
    let (ok, _) = Publisher::start(
        &rtmp("three"),
        Source {
            seconds: 3,
            ..Source::default()
        },
    )
    .wait();
    assert!(!ok, "a third stream is refused");
    assert!(
        o1.stderr()
            .contains("the node carries its maximum of streams"),
        "{}",
        o1.stderr()
    );
    assert_eq!(
        broadcast(&e1, "edge-1", "three")["status"],
        serde_json::Value::Null
    );

    // The edge pulls one stream; a second is refused at once with 503 and the reason.
    let url = |id: &str| format!("{}/live/streams/{id}.m3u8", e1.http("edge-1"));
    assert_plays_default(&url("one"), 2, "the first stream on the edge");
    let r = get(&url("two"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("maximum of 1 streams"), "{}", r.text());
}
