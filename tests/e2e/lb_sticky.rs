//! Sticky sessions, `sticky: {cookie: JSESSIONID, mode: prefix, nocache: true}`, case by case
//! as issue 3 lists them, and WebSocket upgrades (the cookie applies, then a tunnel under
//! `timeouts.tunnel`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::lb::{Behaviour, Upstream, lb_config, raw};
use crate::common::{Proc, wait_for};

fn sticky_config(ams1: &Upstream, ams2: &Upstream, timeouts: &str) -> String {
    lb_config(&format!(
        "{timeouts}    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - name: b\n        mode: http\n        sticky: {{cookie: JSESSIONID, mode: prefix, nocache: true}}\n        health: {{kind: http, path: /healthz, interval: 100ms, rise: 1, fall: 1}}\n        servers: [{{name: ams1, addr: \"{}\", cookie: ams1}}, {{name: ams2, addr: \"{}\", cookie: ams2}}]\n",
        ams1.addr, ams2.addr
    ))
}

/// GET / with an optional Cookie header; returns (head, body).
fn get(lb: SocketAddr, cookie: Option<&str>) -> (String, String) {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let reply = raw(
        lb,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
    );
    let (head, body) = reply.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
    (head.to_owned(), body.to_owned())
}

#[test]
fn the_servers_set_cookie_is_prefixed_with_its_name_attributes_untouched() {
    let (ams1, ams2) = (Upstream::start("ams1"), Upstream::start("ams2"));
    ams1.set(Behaviour::SetCookie(
        "JSESSIONID=abc; Path=/; HttpOnly".into(),
    ));
    ams2.set(Behaviour::SetCookie("JSESSIONID=def; Path=/".into()));
    let p = Proc::start(&sticky_config(&ams1, &ams2, ""));
    let lb = p.addr("lb1", "frontend:web");
    let heads: Vec<String> = (0..2).map(|_| get(lb, None).0).collect();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("\r\nSet-Cookie: JSESSIONID=ams1~abc; Path=/; HttpOnly")),
        "{heads:?}"
    );
    assert!(
        heads
            .iter()
            .any(|h| h.contains("\r\nSet-Cookie: JSESSIONID=ams2~def; Path=/")),
        "{heads:?}"
    );
}

#[test]
fn a_prefixed_cookie_goes_to_its_server_which_sees_the_bare_value() {
    let (ams1, ams2) = (Upstream::start("ams1"), Upstream::start("ams2"));
    let p = Proc::start(&sticky_config(&ams1, &ams2, ""));
    let lb = p.addr("lb1", "frontend:web");
    for _ in 0..5 {
        let (head, body) = get(lb, Some("JSESSIONID=ams1~abc; other=1"));
        assert_eq!(body, "ams1");
        assert!(
            !head.contains("Set-Cookie"),
            "the LB never invents the cookie: {head}"
        );
    }
    assert!(ams2.requests().is_empty());
    for r in ams1.requests() {
        assert_eq!(r.all("cookie"), ["JSESSIONID=abc; other=1"]);
    }
}

#[test]
fn a_cookie_for_a_down_server_is_balanced_normally_and_still_stripped() {
    let (ams1, ams2) = (Upstream::start("ams1"), Upstream::start("ams2"));
    let p = Proc::start(&sticky_config(&ams1, &ams2, ""));
    let lb = p.addr("lb1", "frontend:web");
    // ams1 fails its health check but still accepts connections: only its DOWN state can
    // keep the sticky request away from it.
    ams1.set_healthy(false);
    wait_for("ams1 DOWN", Duration::from_secs(10), || {
        p.stderr().contains("Server b/ams1 is DOWN").then_some(())
    });
    let before = ams1.requests().len();
    for _ in 0..4 {
        let (head, body) = get(lb, Some("JSESSIONID=ams1~abc; other=1"));
        assert_eq!(body, "ams2");
        assert!(
            !head.contains("Set-Cookie"),
            "no Set-Cookie is added: {head}"
        );
    }
    assert_eq!(ams1.requests().len(), before);
    for r in ams2.requests() {
        assert_eq!(
            r.all("cookie"),
            ["JSESSIONID=abc; other=1"],
            "the prefix is still stripped"
        );
    }
    ams1.set_healthy(true);
    wait_for("ams1 UP", Duration::from_secs(10), || {
        p.stderr().contains("Server b/ams1 is UP").then_some(())
    });
    assert_eq!(
        get(lb, Some("JSESSIONID=ams1~abc")).1,
        "ams1",
        "sticky again once UP"
    );
}

#[test]
fn no_cookie_or_an_unknown_prefix_is_balanced_normally() {
    let (ams1, ams2) = (Upstream::start("ams1"), Upstream::start("ams2"));
    let p = Proc::start(&sticky_config(&ams1, &ams2, ""));
    let lb = p.addr("lb1", "frontend:web");
    let bodies: Vec<String> = (0..4).map(|_| get(lb, None).1).collect();
    assert!(
        bodies.contains(&"ams1".into()) && bodies.contains(&"ams2".into()),
        "{bodies:?}"
    );
    let bodies: Vec<String> = (0..4)
        .map(|_| get(lb, Some("JSESSIONID=zz9~abc")).1)
        .collect();
    assert!(
        bodies.contains(&"ams1".into()) && bodies.contains(&"ams2".into()),
        "{bodies:?}"
    );
    let bodies: Vec<String> = (0..4)
        .map(|_| get(lb, Some("JSESSIONID=plain")).1)
        .collect();
    assert!(
        bodies.contains(&"ams1".into()) && bodies.contains(&"ams2".into()),
        "{bodies:?}"
    );
    let all: Vec<_> = ams1.requests().into_iter().chain(ams2.requests()).collect();
    assert!(
        all.iter().any(|r| r.all("cookie") == ["JSESSIONID=abc"]),
        "an unknown prefix is stripped, as HAProxy does"
    );
    assert!(
        all.iter().any(|r| r.all("cookie") == ["JSESSIONID=plain"]),
        "a value without prefix is left alone"
    );
}

#[test]
fn websocket_upgrades_pass_with_the_sticky_cookie_then_tunnel_until_idle() {
    let (ams1, ams2) = (Upstream::start("ams1"), Upstream::start("ams2"));
    let p = Proc::start(&sticky_config(
        &ams1,
        &ams2,
        "    timeouts: {server: 300ms, tunnel: 1s}\n",
    ));
    let lb = p.addr("lb1", "frontend:web");
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{lb}/LiveApp/websocket"))
        .header("Host", lb.to_string())
        .header("Cookie", "JSESSIONID=ams2~sess; theme=dark")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let stream = std::net::TcpStream::connect(lb).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, response) =
        tungstenite::client(request, stream).expect("WebSocket handshake through the LB");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["x-server"],
        "ams2",
        "the sticky cookie chose the server"
    );
    for msg in ["hello", "streamfleet"] {
        ws.send(tungstenite::Message::text(msg)).unwrap();
        assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), msg);
    }
    // Quiet for longer than `timeouts.server`: a tunnel is bound by `timeouts.tunnel` only.
    std::thread::sleep(Duration::from_millis(500));
    ws.send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .unwrap();
    assert_eq!(ws.read().unwrap().into_data().as_ref(), [1, 2, 3]);
    let r = &ams2.requests()[0];
    assert_eq!(r.all("cookie"), ["JSESSIONID=sess; theme=dark"]);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // Then the idle tunnel is closed by the LB after `timeouts.tunnel`.
    let idle = Instant::now();
    let end = ws.read();
    assert!(end.is_err() || end.unwrap().is_close(), "closed");
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}
