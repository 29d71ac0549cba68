//! Active health checks: a killed server goes DOWN after `fall` failed checks and comes back
//! UP after `rise` good ones (each change logged once), every server DOWN means 503, and the
//! time from a server's death to the last request routed to it with `interval: 200ms,
//! fall: 3` is measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::lb::{Behaviour, Upstream, lb_config, raw};
use crate::common::{Proc, wait_for};

fn config(a: &Upstream, b: &Upstream, kind: &str) -> String {
    lb_config(&format!(
        "    timeouts: {{connect: 1s}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - name: b\n        mode: http\n        health: {{{kind}, interval: 200ms, rise: 2, fall: 3}}\n        servers: [{{name: a, addr: \"{}\"}}, {{name: b, addr: \"{}\"}}]\n",
        a.addr, b.addr
    ))
}

fn status_and_body(lb: SocketAddr) -> (u16, String) {
    let reply = raw(
        lb,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_killed_server_goes_down_after_fall_checks_and_up_after_rise() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "kind: tcp"));
    let lb = p.addr("lb1", "frontend:web");
    let killed = Instant::now();
    a.kill();
    wait_for("a DOWN", Duration::from_secs(10), || {
        p.stderr().contains("Server b/a is DOWN").then_some(())
    });
    let down_after = killed.elapsed();
    // Three failed checks 200 ms apart: at least two intervals after the first failure.
    assert!(
        down_after >= Duration::from_millis(400) && down_after < Duration::from_secs(3),
        "DOWN after {down_after:?}"
    );
    for _ in 0..4 {
        assert_eq!(status_and_body(lb), (200, "b".into()));
    }
    let back = Upstream::start_on("a", a.addr);
    let restarted = Instant::now();
    wait_for("a UP", Duration::from_secs(10), || {
        p.stderr().contains("Server b/a is UP").then_some(())
    });
    assert!(
        restarted.elapsed() >= Duration::from_millis(200),
        "two good checks are needed"
    );
    let bodies: Vec<String> = (0..4).map(|_| status_and_body(lb).1).collect();
    assert!(bodies.contains(&"a".to_string()), "{bodies:?}");
    assert!(!back.requests().is_empty());
    let log = p.stderr();
    assert_eq!(
        log.matches("Server b/a is DOWN").count(),
        1,
        "logged once:\n{log}"
    );
    assert_eq!(
        log.matches("Server b/a is UP").count(),
        1,
        "logged once:\n{log}"
    );
}

#[test]
fn every_server_down_means_503() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "kind: http, path: /healthz"));
    let lb = p.addr("lb1", "frontend:web");
    assert_eq!(status_and_body(lb).0, 200);
    a.set_healthy(false);
    b.set_healthy(false);
    wait_for("both DOWN", Duration::from_secs(10), || {
        let log = p.stderr();
        (log.contains("Server b/a is DOWN") && log.contains("Server b/b is DOWN")).then_some(())
    });
    let before = a.requests().len() + b.requests().len();
    assert_eq!(status_and_body(lb).0, 503);
    assert_eq!(
        a.requests().len() + b.requests().len(),
        before,
        "no server was tried"
    );
}

/// The number the issue asks for: a server dies (refuses service and fails its checks) while
/// a client keeps sending requests; how long after its death did the LB still route
/// requests to it? The dying server records every request it gets, so the last one's arrival
/// time minus the death time is measured on the server's side.
#[test]
fn time_from_death_to_last_routed_request() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "kind: http, path: /healthz"));
    let lb = p.addr("lb1", "frontend:web");
    let stop = Arc::new(AtomicBool::new(false));
    let client = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut sent = 0u32;
            while !stop.load(Ordering::SeqCst) {
                status_and_body(lb);
                sent += 1;
            }
            sent
        }
    });
    wait_for("traffic on a", Duration::from_secs(10), || {
        (a.requests().len() >= 5).then_some(())
    });
    // Death: every request is dropped unanswered, every check fails.
    a.set(Behaviour::Close);
    a.set_healthy(false);
    let died = Instant::now();
    wait_for("a DOWN", Duration::from_secs(10), || {
        p.stderr().contains("Server b/a is DOWN").then_some(())
    });
    let detected = died.elapsed();
    // Keep the traffic going for a while after DOWN to show nothing more reaches a.
    let quiet_until = Instant::now() + Duration::from_millis(600);
    wait_for("traffic after DOWN", Duration::from_secs(10), || {
        (Instant::now() >= quiet_until).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    let sent = client.join().unwrap();
    let last = a.requests().iter().map(|r| r.at).max().unwrap();
    let last_routed = last.saturating_duration_since(died);
    eprintln!(
        "MEASURED interval=200ms fall=3: death -> DOWN logged {:?}; death -> last request routed to the dead server {:?} ({sent} requests sent)",
        detected, last_routed
    );
    assert!(
        last_routed < detected + Duration::from_millis(50),
        "nothing routed to a after DOWN ({last_routed:?} vs {detected:?})"
    );
    assert!(last_routed < Duration::from_millis(1200), "{last_routed:?}");
}
