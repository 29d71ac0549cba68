//! Every edge serves the same HLS (issue 18): the origin decides segment boundaries, names,
//! numbers and times, and the relay carries them, so playlists agree and segments are byte for
//! byte the same on every edge, whenever it joined. A player needs no stickiness: hls.js on
//! another site (no cookies) plays through a round-robin LB over three edges, then two after
//! one is killed; numbering continues across an origin failover with one discontinuity.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::browser::play_hls;
use crate::common::cluster::{
    cluster, edge, lb, metric, origin, publish_until_broadcasting, wait_broadcasting,
};
use crate::common::media::{LiveReader, Publisher, Source, require_ffmpeg};
use crate::common::secantus::Secantus;
use crate::common::{Proc, get, wait_for};

/// A playlist as fetched: its segments by URI with their media sequence and discontinuity
/// sequence numbers (as a player computes them), and its text.
struct Listed {
    text: String,
    segments: Vec<(String, u64, u64)>,
}

fn listed(url: &str) -> Listed {
    let r = get(url);
    assert_eq!(r.status, 200, "{url}: {}", r.text());
    let text = r.text();
    let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("{url}: invalid playlist {e:?}\n{text}"));
    let mut discontinuity = pl.discontinuity_sequence;
    let segments = pl
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.discontinuity {
                discontinuity += 1;
            }
            (s.uri.clone(), pl.media_sequence + i as u64, discontinuity)
        })
        .collect();
    Listed { text, segments }
}

/// Asserts that what two nodes list agrees: every segment both list has the same numbers on
/// both and the same bytes; they share at least `min_common` segments.
fn assert_same_hls(a: (&str, &str), b: (&str, &str), path: &str, min_common: usize) {
    let (la, lb) = (
        listed(&format!("{}{path}", a.1)),
        listed(&format!("{}{path}", b.1)),
    );
    let theirs: HashMap<&str, (u64, u64)> = lb
        .segments
        .iter()
        .map(|(uri, seq, disc)| (uri.as_str(), (*seq, *disc)))
        .collect();
    let common: Vec<&(String, u64, u64)> = la
        .segments
        .iter()
        .filter(|(uri, ..)| theirs.contains_key(uri.as_str()))
        .collect();
    assert!(
        common.len() >= min_common,
        "{} and {} share {} segments of {path}:\n{}\n{}",
        a.0,
        b.0,
        common.len(),
        la.text,
        lb.text
    );
    for (uri, seq, disc) in &common {
        assert_eq!(
            theirs[uri.as_str()],
            (*seq, *disc),
            "{uri}: numbers on {} and {}:\n{}\n{}",
            a.0,
            b.0,
            la.text,
            lb.text
        );
    }
    // Every segment both have, byte for byte.
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    for (uri, ..) in common {
        let (x, y) = (
            get(&format!("{}{dir}/{uri}", a.1)),
            get(&format!("{}{dir}/{uri}", b.1)),
        );
        assert_eq!((x.status, y.status), (200, 200), "{uri}");
        assert!(!x.body.is_empty());
        assert!(
            x.body == y.body,
            "{uri}: {} bytes on {}, {} bytes on {}",
            x.body.len(),
            a.0,
            y.body.len(),
            b.0
        );
    }
}

fn segments_served(node: &Proc, name: &str) -> f64 {
    metric(node, name, "streamfleet_hls_segments_served_total")
}

#[test]
fn hlsjs_without_cookies_plays_through_the_lb_while_an_edge_dies() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin(&db, "origin-1");
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/demo", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 180,
            ..Source::default()
        },
    );
    let edges = [
        (edge(&db, "edge-1"), "edge-1"),
        (edge(&db, "edge-2"), "edge-2"),
        (edge(&db, "edge-3"), "edge-3"),
    ];
    let lb = lb(&db);
    let lb_http = lb.addr("lb1", "frontend:http_lb");
    wait_broadcasting(&edges[0].0, "edge-1", "demo", "origin-1");

    // hls.js on a page of another origin: no cookies, so the LB alternates between edges.
    let url = format!("http://{lb_http}/live/streams/demo.m3u8");
    let player = std::thread::spawn(move || play_hls(&url, 60, &[]));

    // Every edge serves segments to the one browser (no stickiness), for about 20 s of media.
    wait_for(
        "every edge to serve the player",
        Duration::from_secs(60),
        || {
            let served: Vec<f64> = edges.iter().map(|(p, n)| segments_served(p, n)).collect();
            (served.iter().all(|s| *s >= 3.0) && served.iter().sum::<f64>() >= 20.0)
                .then_some(served)
        },
    );
    // Fetched from each edge directly: the same names, numbers and bytes.
    let path = "/live/streams/demo.m3u8";
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        let (pa, na) = (&edges[a].0, edges[a].1);
        let (pb, nb) = (&edges[b].0, edges[b].1);
        assert_same_hls((na, &pa.http(na)), (nb, &pb.http(nb)), path, 3);
    }

    // The edge that served the player last is as good as any: kill one mid-play.
    let [(e1, n1), (e2, n2), (e3, _)] = edges;
    e3.signal("KILL");
    let before = segments_served(&e1, n1) + segments_served(&e2, n2);
    let result = player.join().unwrap();
    assert!(
        result.ok,
        "hls.js played 60 s through the LB over 3 then 2 edges without a fatal error: {}",
        result.json
    );
    assert!(result.json["fatal"].is_null(), "{}", result.json);
    assert!(
        result.json["currentTime"].as_f64().unwrap_or(0.0) >= 60.0,
        "{}",
        result.json
    );
    let after = segments_served(&e1, n1) + segments_served(&e2, n2);
    assert!(
        after >= before + 15.0,
        "the two edges left served the rest: {before} -> {after}"
    );
    drop(lb);
}

/// An origin with a one-rung ladder, so renditions are checked too. Segments of 2 s (GOPs of
/// 1 s): the numbering falls behind the wall clock, so a new origin that did not continue it
/// would be seen.
fn origin_with_ladder(db: &Secantus, name: &str) -> Proc {
    Proc::start(&format!(
        "{}  - {{role: origin, name: {name}, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", apps: [{{name: live, security: {{publish: open}}}}, {{name: LiveApp, security: {{publish: open}}}}], hls: {{segment: 2s, window: 6}}, transcode: {{ladder: [{{height: 180, bitrate: 200k}}]}}}}\n",
        cluster(&db.uri(), "test-secret-0123456")
    ))
}

#[test]
fn numbering_continues_across_an_origin_failover_with_one_discontinuity() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin_with_ladder(&db, "origin-1");
    let o2 = origin_with_ladder(&db, "origin-2");
    let e1 = edge(&db, "edge-1");
    let first = Publisher::start(
        &format!("rtmp://{}/live/cam", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 120,
            ..Source::default()
        },
    );
    wait_broadcasting(&e1, "edge-1", "cam", "origin-1");
    let playlist = format!("{}/live/streams/cam.m3u8", e1.http("edge-1"));
    wait_for(
        "edge-1 to list the source and the 180p rendition",
        Duration::from_secs(30),
        || {
            let low = get(&format!("{}/live/streams/cam_180p.m3u8", e1.http("edge-1")));
            (listed(&playlist).segments.len() >= 4
                && low.status == 200
                && low.text().matches("#EXTINF").count() >= 3)
                .then_some(())
        },
    );
    // An edge that joins later lists the same segments, renditions included, as the origin.
    let e2 = edge(&db, "edge-2");
    for path in [
        "/live/streams/cam.m3u8",
        "/live/streams/cam_180p.m3u8",
        "/live/streams/cam_adaptive.m3u8",
    ] {
        let min = if path.ends_with("_adaptive.m3u8") {
            0
        } else {
            2
        };
        let joined = format!("{}{path}", e2.http("edge-2"));
        wait_for("edge-2 to serve", Duration::from_secs(20), || {
            (get(&joined).status == 200).then_some(())
        });
        if min == 0 {
            assert_eq!(
                get(&joined).text(),
                get(&format!("{}{path}", e1.http("edge-1"))).text(),
                "same master playlist"
            );
            continue;
        }
        wait_for(
            "edge-2 to have full segments",
            Duration::from_secs(20),
            || (listed(&joined).segments.len() >= 2).then_some(()),
        );
        assert_same_hls(
            ("origin-1", &o1.http("origin-1")),
            ("edge-2", &e2.http("edge-2")),
            path,
            min,
        );
        assert_same_hls(
            ("edge-1", &e1.http("edge-1")),
            ("edge-2", &e2.http("edge-2")),
            path,
            min,
        );
    }

    // A player reads from edge-1 across the failover.
    let reader = LiveReader::start(&playlist, 16);
    let before = listed(&playlist);
    let (last_before, ..) = before.segments.last().unwrap().clone();

    // The origin dies; the publisher comes back on origin-2 once the lease has expired.
    o1.signal("KILL");
    first.stop();
    let _second = publish_until_broadcasting(
        &format!("rtmp://{}/live/cam", o2.addr("origin-2", "rtmp")),
        Source {
            seconds: 120,
            ..Source::default()
        },
        (&e1, "edge-1"),
        "cam",
        "origin-2",
    );
    // The edge lists origin-2's segments after origin-1's, numbered on, with one break.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<String> = Vec::new();
    let after = loop {
        let l = listed(&playlist);
        if let Some(i) = l.segments.iter().position(|(u, ..)| *u == last_before)
            && l.segments.len() - i > 3
        {
            break l;
        }
        if seen.last() != Some(&l.text) {
            seen.push(l.text.clone());
        }
        assert!(
            Instant::now() < deadline,
            "edge-1 never listed 3 segments from origin-2 after {last_before}:\n{}\nedge-1: {}",
            seen.join("\n----\n"),
            e1.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let i = after
        .segments
        .iter()
        .position(|(u, ..)| *u == last_before)
        .unwrap();
    let tail = &after.segments[i..];
    for w in tail.windows(2) {
        let ((_, s0, _), (_, s1, _)) = (&w[0], &w[1]);
        assert_eq!(s1, &(s0 + 1), "consecutive numbers:\n{}", after.text);
    }
    let breaks = tail.windows(2).filter(|w| w[1].2 != w[0].2).count();
    assert_eq!(breaks, 1, "one discontinuity:\n{}", after.text);
    let number = |uri: &str| -> u64 {
        uri.trim_end_matches(".ts")
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap()
    };
    for (uri, seq, _) in tail {
        assert_eq!(number(uri), *seq, "names carry the sequence numbers");
    }
    // origin-2 itself continued the numbering (and so does every edge that pulls from it).
    assert_same_hls(
        ("origin-2", &o2.http("origin-2")),
        ("edge-1", &e1.http("edge-1")),
        "/live/streams/cam.m3u8",
        2,
    );

    let read = reader.finish();
    assert!(
        read.ok,
        "the player read across the failover: {}",
        read.stderr
    );
    assert!(
        read.frames >= 16 * 30 * 9 / 10,
        "16 s of video across the failover, got {} frames",
        read.frames
    );
}

/// A cold edge (issue 17): the origin sends a new subscriber its HLS window (the finished
/// segments it still lists) before the live frames, so the edge's first playlist is as long as
/// the origin's, with the origin's bytes, instead of one segment after a segment's wait.
#[test]
fn a_cold_edge_serves_the_origins_whole_window_at_once() {
    require_ffmpeg();
    let db = Secantus::start();
    let o1 = origin_with_ladder(&db, "origin-1");
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/cam", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 120,
            ..Source::default()
        },
    );
    let origin_http = o1.http("origin-1");
    // The origin's window fills up (6 segments of 2 s), renditions included.
    wait_for(
        "origin-1 to list a full window",
        Duration::from_secs(60),
        || {
            let full = |path: &str| {
                let r = get(&format!("{origin_http}{path}"));
                r.status == 200 && r.text().matches("#EXTINF").count() >= 6
            };
            (full("/live/streams/cam.m3u8") && full("/live/streams/cam_180p.m3u8")).then_some(())
        },
    );
    let e1 = edge(&db, "edge-1");
    let edge_http = e1.http("edge-1");
    for path in ["/live/streams/cam.m3u8", "/live/streams/cam_180p.m3u8"] {
        let theirs = listed(&format!("{origin_http}{path}")).segments.len();
        let asked = Instant::now();
        // The edge's very first answer for the stream (it pulls it on this request).
        let first = listed(&format!("{edge_http}{path}"));
        let took = asked.elapsed();
        eprintln!(
            "cold edge: first {path} in {} ms, {} segments (origin: {theirs})",
            took.as_millis(),
            first.segments.len()
        );
        assert!(
            first.segments.len() >= theirs,
            "the edge's first {path} lists the origin's window ({theirs} segments):\n{}",
            first.text
        );
        assert_same_hls(
            ("origin-1", &origin_http),
            ("edge-1", &edge_http),
            path,
            theirs - 1,
        );
    }
}
