//! The access log: one HAProxy `httplog` line per HTTP request (HTTP/1.1 and HTTP/2), a
//! `tcplog` line per TCP connection, `dontlognull` honoured for both, error exchanges with
//! HAProxy's termination states, and no secret ever in a line.
//!
//! Synchronisation without sleeps: the sink keeps lines in order, so once a later request's
//! line is in the log, an earlier connection's line would be there too; and a connection's
//! line is written before its session closes, which the stats CSV shows (`scur` back to 0).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::lb::{Upstream, curl, raw, write_cert};
use crate::common::{Proc, refusing_addr, wait_for};

/// Two LB nodes: `quiet` has `dontlognull`, `chatty` does not. Each has an HTTP frontend
/// `web`, a TCP frontend `pipe` and a stats listener (no auth) used to see sessions close.
fn config(up: &Upstream, dead: SocketAddr) -> String {
    let tcp = closing_server();
    let node = |name: &str, null: bool| {
        format!(
            "  - role: lb\n    name: {name}\n    timeouts: {{connect: 1s}}\n    log: {{access: true, dontlognull: {null}}}\n    stats: {{bind: \"127.0.0.1:0\", uri: /stats}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: be, routes: [{{path_prefix: /dead, backend: gone}}]}}\n      - {{name: pipe, mode: tcp, bind: [\"127.0.0.1:0\"], backend: tcp_be}}\n    backends:\n      - {{name: be, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n      - {{name: gone, mode: http, retries: 1, servers: [{{name: nobody, addr: \"{dead}\"}}]}}\n      - {{name: tcp_be, mode: tcp, servers: [{{name: t1, addr: \"{}\"}}]}}\n",
            up.addr, tcp
        )
    };
    format!(
        "cluster: {{store: embedded, heartbeat: 200ms, node_timeout: 2s}}\nshutdown_grace: 2s\nnodes:\n{}{}",
        node("quiet", true),
        node("chatty", false)
    )
}

/// A TCP server that reads what a client sends, answers `pong` if it got anything, and closes.
fn closing_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if let Ok(n) = std::io::Read::read(&mut s, &mut buf)
                    && n > 0
                {
                    let _ = s.write_all(b"pong");
                }
            });
        }
    });
    addr
}

/// Access-log lines of `node` (they start with `node[pid]: `).
fn lines(p: &Proc, node: &str) -> Vec<String> {
    let tag = format!("{node}[{}]: ", p.pid());
    p.stderr()
        .lines()
        .filter(|l| l.starts_with(&tag))
        .map(str::to_owned)
        .collect()
}

/// Waits for a line of `node` containing `needle`.
fn wait_line(p: &Proc, node: &str, needle: &str) -> String {
    wait_for(
        &format!("{node} to log `{needle}`"),
        Duration::from_secs(10),
        || lines(p, node).into_iter().find(|l| l.contains(needle)),
    )
}

/// Waits until the frontend of `node` has seen `total` sessions and has none open.
fn wait_closed(p: &Proc, node: &str, frontend: &str, total: u64) {
    let stats = p.addr(node, "stats");
    wait_for(
        &format!("{node}/{frontend} to close its sessions"),
        Duration::from_secs(10),
        || {
            let csv = raw(
                stats,
                b"GET /stats;csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let row = csv
                .lines()
                .find(|l| l.starts_with(&format!("{frontend},FRONTEND,")))?
                .to_owned();
            let f: Vec<&str> = row.split(',').collect();
            // scur is field 4, stot field 7.
            (f[4] == "0" && f[7] == total.to_string()).then_some(())
        },
    );
}

/// Splits a line into its space-separated fields, the quoted request kept whole.
fn fields(line: &str) -> Vec<String> {
    let (head, request) = match line.find(" \"") {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let mut out: Vec<String> = head.split(' ').map(str::to_owned).collect();
    out.extend(request.map(str::to_owned));
    out
}

fn timers(field: &str) -> Vec<i64> {
    field.split('/').map(|t| t.parse().unwrap()).collect()
}

fn is_date(field: &str) -> bool {
    // [27/Nov/2025:09:07:58.123]
    let b = field.as_bytes();
    b.len() == 26
        && b[0] == b'['
        && b[25] == b']'
        && b[3] == b'/'
        && b[7] == b'/'
        && b[12] == b':'
        && b[21] == b'.'
}

#[test]
fn http_requests_get_httplog_lines_without_secrets() {
    let up = Upstream::start("s1");
    let (_dead, dead) = refusing_addr();
    let p = Proc::start(&config(&up, dead));
    let lb = p.addr("chatty", "frontend:web");
    let reply = raw(
        lb,
        b"GET /live/x.m3u8?token=hunter2&v=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c2VjcmV0dXNlcjpzZWNyZXRwYXNz\r\nCookie: JSESSIONID=cookievalue42\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let line = wait_line(&p, "chatty", "/live/x.m3u8");
    let f = fields(&line);
    assert_eq!(f[0], format!("chatty[{}]:", p.pid()), "{line}");
    assert!(f[1].starts_with("127.0.0.1:"), "{line}");
    assert!(is_date(&f[2]), "{line}");
    assert_eq!(f[3], "web");
    assert_eq!(f[4], "be/s1");
    let t = timers(&f[5]);
    assert_eq!(t.len(), 5, "Tq/Tw/Tc/Tr/Tt: {line}");
    assert!(t.iter().all(|&t| t >= 0), "{line}");
    assert!(t[4] >= t[2] + t[3], "Tt covers Tc and Tr: {line}");
    assert_eq!(f[6], "200");
    assert_eq!(f[7].parse::<usize>().unwrap(), reply.len(), "bytes sent");
    assert_eq!(&f[8..10], ["-", "-"]);
    assert_eq!(f[10], "----");
    assert!(
        f[11].ends_with("/1/1/0") && f[11].split('/').count() == 5,
        "{line}"
    );
    assert_eq!(f[12], "0/0");
    assert_eq!(f[13], "\"GET /live/x.m3u8?token=***&v=1 HTTP/1.1\"");
    // No secret anywhere in the process's output.
    let all = p.stderr();
    for secret in [
        "hunter2",
        "c2VjcmV0dXNlcjpzZWNyZXRwYXNz",
        "secretpass",
        "cookievalue42",
    ] {
        assert!(!all.contains(secret), "`{secret}` logged:\n{all}");
    }
}

#[test]
fn errors_carry_haproxy_termination_states() {
    let up = Upstream::start("s1");
    let (_dead, dead) = refusing_addr();
    let p = Proc::start(&config(&up, dead));
    let lb = p.addr("chatty", "frontend:web");
    // The only server of `gone` refuses connections: 503 after the retry, state SC.
    let reply = raw(
        lb,
        b"GET /dead/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    let line = wait_line(&p, "chatty", "GET /dead/x");
    let f = fields(&line);
    assert_eq!(f[4], "gone/nobody", "{line}");
    assert_eq!(f[6], "503", "{line}");
    assert_eq!(f[10], "SC--", "{line}");
    assert_eq!(f[11].split('/').count(), 5, "{line}");
    let t = timers(&f[5]);
    assert_eq!(
        (t[2], t[3]),
        (-1, -1),
        "never connected, no response: {line}"
    );
    // A smuggling attempt is refused by the proxy: 400, state PR, <BADREQ>.
    let reply = raw(
        lb,
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let line = wait_line(&p, "chatty", "\"<BADREQ>\"");
    let f = fields(&line);
    assert_eq!(
        (f[4].as_str(), f[6].as_str(), f[10].as_str()),
        ("<NOSRV>/<NOSRV>", "400", "PR--"),
        "{line}"
    );
}

#[test]
fn http2_requests_are_logged_with_the_tls_marker() {
    let up = Upstream::start("s1");
    let dir = tempfile::tempdir().unwrap();
    let (pem, ca) = write_cert(dir.path(), "localhost", &["localhost"]);
    let yaml = format!(
        "cluster: {{store: embedded, heartbeat: 200ms, node_timeout: 2s}}\nshutdown_grace: 2s\nnodes:\n  - role: lb\n    name: lb1\n    frontends:\n      - {{name: tls, mode: http, bind: [\"127.0.0.1:0\"], tls: {{certs: [\"{}\"]}}, backend: be}}\n    backends:\n      - {{name: be, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n",
        pem.display(),
        up.addr
    );
    let p = Proc::start_in(dir, &yaml);
    let lb = p.addr("lb1", "frontend:tls");
    let url = format!("https://localhost:{}/h2path", lb.port());
    let resolve = format!("localhost:{}:127.0.0.1", lb.port());
    let out = curl(&[
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s1");
    let line = wait_line(&p, "lb1", "/h2path");
    let f = fields(&line);
    assert_eq!(f[3], "tls~", "{line}");
    assert_eq!(f[6], "200", "{line}");
    assert_eq!(f[13], "\"GET /h2path HTTP/2.0\"", "{line}");
}

#[test]
fn tcp_sessions_get_tcplog_lines() {
    let up = Upstream::start("s1");
    let (_dead, dead) = refusing_addr();
    let p = Proc::start(&config(&up, dead));
    let lb = p.addr("chatty", "frontend:pipe");
    let reply = raw(lb, b"ping");
    assert_eq!(reply, "pong");
    let line = wait_line(&p, "chatty", " pipe tcp_be/t1 ");
    let f = fields(&line);
    assert!(is_date(&f[2]), "{line}");
    assert_eq!(timers(&f[5]).len(), 3, "Tw/Tc/Tt: {line}");
    assert_eq!(
        f[6].parse::<usize>().unwrap(),
        reply.len(),
        "bytes from the server: {line}"
    );
    assert_eq!(f[7], "--", "{line}");
    assert_eq!(f[8].split('/').count(), 5, "{line}");
    assert_eq!(f[9], "0/0", "{line}");
    assert_eq!(f.len(), 10, "no request in tcplog: {line}");
}

#[test]
fn dontlognull_skips_connections_that_sent_nothing() {
    let up = Upstream::start("s1");
    let (_dead, dead) = refusing_addr();
    let p = Proc::start(&config(&up, dead));
    for node in ["quiet", "chatty"] {
        for frontend in ["web", "pipe"] {
            // Connect, send nothing, close.
            drop(TcpStream::connect(p.addr(node, &format!("frontend:{frontend}"))).unwrap());
            wait_closed(&p, node, frontend, 1);
            // A connection that did send something is logged either way.
            let mut s = TcpStream::connect(p.addr(node, &format!("frontend:{frontend}"))).unwrap();
            s.write_all(
                format!("GET /marker-{frontend} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            drop(s);
            wait_closed(&p, node, frontend, 2);
        }
    }
    // Lines are written in order: once a last request's line is out, every line before it is.
    for node in ["quiet", "chatty"] {
        raw(
            p.addr(node, "frontend:web"),
            b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        wait_line(&p, node, "\"GET /last HTTP/1.1\"");
    }
    let quiet = lines(&p, "quiet");
    let chatty = lines(&p, "chatty");
    let count =
        |lines: &[String], needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(&chatty, "<BADREQ>"), 1, "{chatty:#?}");
    assert_eq!(count(&quiet, "<BADREQ>"), 0, "{quiet:#?}");
    assert_eq!(count(&chatty, " pipe "), 2, "{chatty:#?}");
    assert_eq!(count(&quiet, " pipe "), 1, "{quiet:#?}");
    let null_line = chatty.iter().find(|l| l.contains("<BADREQ>")).unwrap();
    assert!(null_line.contains(" CR-- "), "{null_line}");
}
