//! `maxconn_per_source`: one client address cannot hold more than its share of a frontend.
//! Loopback aliases (127.0.0.2, 127.0.0.3) are distinct sources on Linux without any setup.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::lb::{Upstream, curl, lb_config};
use crate::common::{Proc, get};

/// A connection to `lb` from `source`.
fn connect_from(source: &str, lb: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&lb.into()).unwrap();
    socket.into()
}

/// `GET path` on `s`: the response's status line, or `None` when the LB closed instead.
fn status_line(mut s: TcpStream, path: &str) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return None;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    text.lines().next().map(str::to_owned)
}

/// Three idle connections from 127.0.0.2 fill its share (`maxconn_per_source: 3`): a fourth
/// from it is closed unanswered, 127.0.0.3 is served meanwhile, the refusal is counted (stats
/// `dreq`, `streamfleet_lb_frontend_source_limit_refusals_total`), and once one of the three
/// closes, 127.0.0.2 is served again.
#[test]
fn connections_over_the_per_source_limit_are_closed() {
    let up = Upstream::start("s1");
    let p = Proc::start(&lb_config(&format!(
        "    timeouts: {{client: 30s}}\n    stats: {{bind: \"127.0.0.1:0\", uri: /stats}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b, maxconn_per_source: 3}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n",
        up.addr
    )));
    let lb = p.addr("lb1", "frontend:web");
    let stats = p.addr("lb1", "stats");
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.2", lb)).collect();
    // The three are admitted (a request on one of them is answered: it was accepted before).
    let first = held.remove(0);
    let mut first_clone = first.try_clone().unwrap();
    first_clone
        .write_all(b"GET /keep HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    first_clone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = first_clone.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    held.insert(0, first);

    assert_eq!(
        status_line(connect_from("127.0.0.2", lb), "/fourth"),
        None,
        "the fourth connection from 127.0.0.2 is closed"
    );
    let other = status_line(connect_from("127.0.0.3", lb), "/other");
    assert!(
        other
            .as_deref()
            .is_some_and(|l| l.starts_with("HTTP/1.1 200")),
        "another source is served: {other:?}"
    );
    let out = curl(&[&format!("http://{stats}/stats;csv")]);
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    let dreq = csv
        .lines()
        .find(|l| l.starts_with("web,FRONTEND,"))
        .and_then(|l| l.split(',').nth(10));
    assert_eq!(dreq, Some("1"), "{csv}");
    let metrics = get(&format!("http://{stats}/metrics")).text();
    assert!(
        metrics.contains("streamfleet_lb_frontend_source_limit_refusals_total{proxy=\"web\"} 1"),
        "{metrics}"
    );

    drop(held.pop());
    let served =
        crate::common::wait_for("a slot back for 127.0.0.2", Duration::from_secs(5), || {
            status_line(connect_from("127.0.0.2", lb), "/again").filter(|l| l.contains("200"))
        });
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert!(!paths.contains(&"/fourth".to_owned()), "{paths:?}");
}
