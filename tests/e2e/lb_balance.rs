//! Balancing algorithms (`roundrobin` with weights, `leastconn`, `source`, `stream`) and the global
//! `maxconn` with its 90 % hysteresis.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::lb::{Behaviour, Upstream, curl, lb_config, raw, read_response};
use crate::common::{Proc, wait_for};

fn config(servers: &[(&Upstream, u32)], balance: &str, extra_node: &str) -> String {
    let list: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, (u, w))| format!("{{name: s{i}, addr: \"{}\", weight: {w}}}", u.addr))
        .collect();
    lb_config(&format!(
        "{extra_node}    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: http, balance: {balance}, servers: [{}]}}\n",
        list.join(", ")
    ))
}

fn body(lb: SocketAddr) -> String {
    let reply = raw(
        lb,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn roundrobin_follows_weights() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&[(&a, 2), (&b, 1)], "roundrobin", ""));
    let lb = p.addr("lb1", "frontend:web");
    let bodies: Vec<String> = (0..6).map(|_| body(lb)).collect();
    assert_eq!(bodies.iter().filter(|b| *b == "a").count(), 4, "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| *b == "b").count(), 2, "{bodies:?}");
}

#[test]
fn leastconn_avoids_the_busy_server() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    a.set(Behaviour::Stall);
    let p = Proc::start(&config(&[(&a, 1), (&b, 1)], "leastconn", ""));
    let lb = p.addr("lb1", "frontend:web");
    // Send requests until one is stuck on a (a answers nothing): a then has one session.
    let mut stuck = Vec::new();
    for i in 0..10 {
        let mut s = TcpStream::connect(lb).unwrap();
        s.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        stuck.push(s);
        let got = wait_for("the request to land", Duration::from_secs(5), || {
            let (na, nb) = (a.requests().len(), b.requests().len());
            (na + nb > i).then_some(na)
        });
        if got == 1 {
            break;
        }
    }
    assert_eq!(a.requests().len(), 1);
    // Every later request goes to b, the server with fewer sessions (round robin would send
    // half of them to a, where they would hang).
    let s = TcpStream::connect(lb).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..6 {
        w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut r).1, "b");
    }
    assert_eq!(a.requests().len(), 1);
}

#[test]
fn source_hashing_keeps_each_client_address_on_one_server() {
    let (a, b, c) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
    );
    let p = Proc::start(&config(&[(&a, 1), (&b, 1), (&c, 1)], "source", ""));
    let lb = p.addr("lb1", "frontend:web");
    let mut seen = std::collections::HashSet::new();
    for client in 1..=12 {
        let ip = format!("127.0.0.{client}");
        let bodies: Vec<String> = (0..3)
            .map(|_| {
                String::from_utf8_lossy(
                    &curl(&["--interface", &ip, &format!("http://{lb}/")]).stdout,
                )
                .to_string()
            })
            .collect();
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "client {ip} moved: {bodies:?}"
        );
        seen.insert(bodies[0].clone());
    }
    assert_eq!(
        seen.len(),
        3,
        "twelve client addresses spread over the three servers: {seen:?}"
    );
}

#[test]
fn maxconn_stops_accepting_at_the_limit_and_resumes_below_ninety_percent() {
    let up = Upstream::start("s");
    let p = Proc::start(&config(&[(&up, 1)], "roundrobin", "    maxconn: 10\n"));
    let lb = p.addr("lb1", "frontend:web");
    // Ten idle connections fill the limit (each proves it was accepted by getting an answer).
    let mut held: Vec<TcpStream> = (0..10)
        .map(|_| {
            let s = TcpStream::connect(lb).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            (&s).write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut r).1, "s");
            s
        })
        .collect();
    let mut extra = TcpStream::connect(lb).unwrap(); // queued by the kernel, not accepted
    extra
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    extra
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(extra.read(&mut buf).is_err(), "not served at the limit");
    held.pop(); // 9 open = 90 %: still paused
    assert!(extra.read(&mut buf).is_err(), "not served at 90 %");
    held.pop(); // 8 open: below 90 %, accepting again
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = Vec::new();
    extra.read_to_end(&mut reply).unwrap();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

/// `balance: stream`: a stream's viewers (every URL of it: playlists, renditions, segments,
/// LL-HLS) share one server while it has room; a big audience spills to more servers, none
/// above the bound; requests without a stream are balanced round robin; the stats show it.
#[test]
fn stream_balance_keeps_a_streams_viewers_together_and_spills_within_the_bound() {
    let ups: Vec<Upstream> = (0..4).map(|i| Upstream::start(&format!("s{i}"))).collect();
    let list: Vec<String> = ups
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{{name: s{i}, addr: \"{}\", cookie: s{i}}}", u.addr))
        .collect();
    let p = Proc::start(&lb_config(&format!(
        "    stats: {{bind: \"127.0.0.1:0\", uri: /st}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: http, balance: stream, hash_balance_factor: 125, viewer_idle: 1h, sticky: {{cookie: JSESSIONID, mode: prefix}}, servers: [{}]}}\n",
        list.join(", ")
    )));
    let lb = p.addr("lb1", "frontend:web");
    let get = |path: &str, cookie: Option<&str>| {
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: JSESSIONID={c}\r\n"));
        let reply = raw(
            lb,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
        reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    };
    // A viewer as a browser is one: its first request has no cookie; the server it reached
    // gives one (the LB prefixes it with the server's name), sent with every later request.
    let mut viewer_no = 0;
    let mut watch = |stream: &str, paths: &[String]| {
        viewer_no += 1;
        let server = get(&format!("/live/streams/{stream}.m3u8"), None);
        let cookie = format!("{server}~viewer{viewer_no}");
        for path in paths {
            assert_eq!(get(path, Some(&cookie)), server, "{path} left its server");
        }
        server
    };

    // A small audience: every URL of the stream, from every viewer, on one server.
    let demo_urls: Vec<String> = [
        "/live/streams/demo_adaptive.m3u8",
        "/live/streams/demo_240p.m3u8",
        "/live/streams/demo_240p-7.ts",
        "/live/streams/ll-hls/demo/demo__master.m3u8",
        "/live/ll/demo.m3u8",
    ]
    .map(String::from)
    .to_vec();
    let demo: Vec<String> = (0..5).map(|_| watch("demo", &demo_urls)).collect();
    assert!(demo.iter().all(|s| *s == demo[0]), "demo spread: {demo:?}");
    // A rendition's cookieless request hashes like its stream.
    assert_eq!(get("/live/streams/demo_480p-9.ts", None), demo[0]);

    // A big audience spills over more servers, none above 1.25 x the average.
    let big: Vec<String> = (0..60)
        .map(|i| watch("big", &[format!("/live/streams/big-{i}.ts")]))
        .collect();
    let mut load = std::collections::HashMap::<String, usize>::new();
    for s in demo.iter().chain(&big) {
        *load.entry(s.clone()).or_default() += 1;
    }
    let total: usize = load.values().sum();
    let max = load.values().max().copied().unwrap_or(0) as f64;
    assert!(
        max <= 1.25 * total as f64 / 4.0,
        "loads above the bound: {load:?}"
    );
    let big_servers: std::collections::HashSet<_> = big.iter().collect();
    assert!(big_servers.len() >= 3, "big on {big_servers:?}");

    // Requests that name no stream go round robin.
    let rest: std::collections::HashSet<String> = (0..8)
        .map(|_| get("/live/rest/v2/broadcasts/count", None))
        .collect();
    assert_eq!(rest.len(), 4, "{rest:?}");

    // The stats: the algorithm in the CSV, each server's load on the page.
    let stats = p.addr("lb1", "stats");
    let csv = raw(
        stats,
        b"GET /st;csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let backend_row = csv
        .lines()
        .find(|l| l.starts_with("b,BACKEND,"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(backend_row.contains(",http,stream,"), "{backend_row}");
    let page = raw(
        stats,
        b"GET /st HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.contains("balance: stream"), "{page}");
    let shown: usize = (0..4)
        .map(|i| {
            page.split(&format!("data-server=\"s{i}\""))
                .nth(1)
                .and_then(|rest| rest.split("data-load=\"").nth(1))
                .and_then(|v| v.split('"').next())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no load for s{i}: {page}"))
        })
        .sum();
    // Every viewer counted once (sessions), plus the cookieless requests of the last moments.
    assert!(shown >= total, "stats loads {shown} < {total} viewers");
}
