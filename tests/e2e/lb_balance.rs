//! Balancing algorithms (`roundrobin` with weights, `leastconn`, `source`) and the global
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
