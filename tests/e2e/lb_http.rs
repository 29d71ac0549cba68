//! `mode: http` behaviours of the LB, one test each: forwarding headers and hop-by-hop
//! stripping, the HTTPS redirect, path routes, errorfiles, upstream keep-alive pooling versus
//! `http_server_close`, request hardening (400/431), timeouts (408/504), retries and 503.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::Proc;
use crate::common::lb::{Behaviour, Upstream, chunked_body, curl, lb_config, raw, read_response};

fn one_backend(
    up: &Upstream,
    extra_backend: &str,
    extra_frontend: &str,
    extra_node: &str,
) -> String {
    lb_config(&format!(
        "{extra_node}    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b{extra_frontend}}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{}\"}}]{extra_backend}}}\n",
        up.addr
    ))
}

#[test]
fn forwarded_for_and_proto_are_added_and_hop_by_hop_headers_dropped() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    let reply = raw(
        lb,
        b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\
Connection: close, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("s1"), "{reply}");
    assert!(
        reply.contains("Connection: close\r\n"),
        "the client asked to close: {reply}"
    );
    let r = &up.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.version.as_str()),
        ("GET", "/a?b=1", "HTTP/1.1")
    );
    assert_eq!(r.header("host"), Some("example.com"));
    assert_eq!(
        r.all("x-forwarded-for"),
        ["10.0.0.1", "127.0.0.1"],
        "the client's value is kept, ours appended"
    );
    assert_eq!(
        r.all("x-forwarded-proto"),
        ["http"],
        "ours replaces the client's"
    );
    for hop in ["x-private", "keep-alive", "te", "proxy-connection"] {
        assert_eq!(
            r.header(hop),
            None,
            "{hop} must not be forwarded: {:?}",
            r.headers
        );
    }
    assert_eq!(
        r.all("connection"),
        ["keep-alive"],
        "the LB's own upstream Connection header"
    );
    assert_eq!(r.header("accept"), Some("*/*"));
}

#[test]
fn redirect_https_answers_302_with_the_host_verbatim() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", ", redirect_https: true", ""));
    let lb = p.addr("lb1", "frontend:web");
    let out = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Host: Example.COM:8443",
        &format!("http://{lb}/live/x.m3u8?t=1"),
    ]);
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(head.starts_with("HTTP/1.1 302 Found\r\n"), "{head}");
    assert!(
        head.contains("Location: https://Example.COM:8443/live/x.m3u8?t=1\r\n"),
        "{head}"
    );
    assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
    assert!(head.contains("Content-Length: 0\r\n"), "{head}");
    assert!(
        up.requests().is_empty(),
        "redirected requests never reach a server"
    );
}

#[test]
fn routes_pick_the_first_matching_prefix_else_the_default_backend() {
    let (a, b, c) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
    );
    let yaml = lb_config(&format!(
        "    frontends:\n      - name: web\n        mode: http\n        bind: [\"127.0.0.1:0\"]\n        backend: ba\n        routes:\n          - {{path_prefix: /live/streams/, backend: bb}}\n          - {{path_prefix: /live/, backend: bc}}\n    backends:\n      - {{name: ba, mode: http, servers: [{{name: a, addr: \"{}\"}}]}}\n      - {{name: bb, mode: http, servers: [{{name: b, addr: \"{}\"}}]}}\n      - {{name: bc, mode: http, servers: [{{name: c, addr: \"{}\"}}]}}\n",
        a.addr, b.addr, c.addr
    ));
    let p = Proc::start(&yaml);
    let lb = format!("http://{}", p.addr("lb1", "frontend:web"));
    assert_eq!(
        crate::common::get(&format!("{lb}/live/streams/s.m3u8")).text(),
        "b"
    );
    assert_eq!(crate::common::get(&format!("{lb}/live/other")).text(), "c");
    assert_eq!(crate::common::get(&format!("{lb}/rest/v2")).text(), "a");
}

#[test]
fn errorfiles_replace_the_lbs_own_errors_only() {
    let (_dead, dead) = crate::common::refusing_addr();
    let dir = tempfile::tempdir().unwrap();
    let page = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\nall busy sorry";
    std::fs::write(dir.path().join("503.http"), page).unwrap();
    let yaml = lb_config(&format!(
        "    errorfiles: {{503: 503.http}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{dead}\"}}]}}\n"
    ));
    let p = Proc::start_in(dir, &yaml);
    let reply = raw(
        p.addr("lb1", "frontend:web"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(reply, page, "the errorfile is sent byte for byte");

    // A server's own 503 passes through untouched.
    let up = Upstream::start("s1");
    up.set(Behaviour::Status(503));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("503.http"), page).unwrap();
    let yaml = lb_config(&format!(
        "    errorfiles: {{503: 503.http}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n",
        up.addr
    ));
    let p = Proc::start_in(dir, &yaml);
    let reply = raw(
        p.addr("lb1", "frontend:web"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 503 Upstream\r\n") && reply.ends_with("upstream says 503"),
        "{reply}"
    );
}

#[test]
fn a_broken_errorfile_stops_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad503.http"),
        "HTTP/1.1 503 X\r\nContent-Length: 99\r\n\r\nshort",
    )
    .unwrap();
    let yaml = lb_config(
        "    errorfiles: {503: bad503.http}\n    frontends:\n      - {name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}\n    backends:\n      - {name: b, mode: http, servers: [{name: s1, addr: \"127.0.0.1:9\"}]}\n",
    );
    let mut p = Proc::spawn_in(dir, &yaml);
    let status = p.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(p.stderr().contains("bad503.http"), "{}", p.stderr());
}

/// Sends `n` GETs on one client connection; returns the bodies.
fn keepalive_gets(lb: std::net::SocketAddr, n: usize) -> Vec<String> {
    let s = TcpStream::connect(lb).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    (0..n)
        .map(|i| {
            w.write_all(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let (head, body) = read_response(&mut r);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(!head.contains("Connection: close"), "{head}");
            body
        })
        .collect()
}

#[test]
fn upstream_connections_are_pooled_by_default() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    keepalive_gets(lb, 5);
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection carried the client's requests"
    );
    // A second client connection reuses it too once the LB has seen the first one leave (it
    // keeps a client's upstream connection until then): at most one more connection when the
    // second client is faster than that.
    keepalive_gets(lb, 2);
    assert_eq!(up.requests().len(), 7);
    assert!(
        up.connections() <= 2,
        "pooled upstream connections: {}",
        up.connections()
    );
    assert!(
        up.requests()
            .iter()
            .all(|r| r.header("connection") == Some("keep-alive"))
    );
}

#[test]
fn large_response_bodies_arrive_byte_exact_on_one_kept_alive_connection() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    let dir = tempfile::tempdir().unwrap();
    // Sizes around the LB's read and coalescing sizes, and far beyond them.
    for (behaviour, n) in [
        (Behaviour::Sized(100 * 1024), 100 * 1024),
        (Behaviour::Sized(1_000_000), 1_000_000),
        (Behaviour::Chunked(1_000_000), 1_000_000),
        (Behaviour::Sized(1), 1),
    ] {
        up.set(behaviour);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let url = format!("http://{lb}/big");
        let out = curl(&[
            "-s",
            "-w",
            "%{num_connects}",
            "-o",
            a.to_str().unwrap(),
            &url,
            "-o",
            b.to_str().unwrap(),
            &url,
        ]);
        assert!(out.status.success(), "{out:?}");
        // Two responses, one client connection: the second starts right after the first.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "10",
            "connects per URL"
        );
        for f in [&a, &b] {
            let body = std::fs::read(f).unwrap();
            assert!(
                body == chunked_body(n),
                "{n} bytes expected, {} differ",
                body.len()
            );
        }
    }
    assert_eq!(up.connections(), 1, "the upstream connection was reused");
}

#[test]
fn http_server_close_uses_one_upstream_connection_per_request() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, ", http_server_close: true", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    keepalive_gets(lb, 4);
    assert_eq!(up.connections(), 4);
    assert!(
        up.requests()
            .iter()
            .all(|r| r.header("connection") == Some("close"))
    );
}

#[test]
fn an_upstream_that_closes_its_keepalive_connection_is_handled() {
    let up = Upstream::start("s1");
    up.set(Behaviour::CloseAfter);
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    assert_eq!(keepalive_gets(lb, 3), ["s1", "s1", "s1"]);
    assert_eq!(up.connections(), 3);
}

#[test]
fn smuggling_attempts_get_400_and_oversized_heads_431_never_forwarded() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    for attack in [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        let reply = raw(lb, attack.as_bytes());
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad request\r\n"),
            "{attack:?} -> {reply}"
        );
    }
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let reply = raw(lb, big.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    assert!(
        up.requests().is_empty(),
        "nothing reached the server: {:?}",
        up.requests()
    );
}

#[test]
fn a_slow_request_head_gets_408_and_a_silent_server_504() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(
        &up,
        "",
        "",
        "    timeouts: {client: 500ms, server: 500ms}\n",
    ));
    let lb = p.addr("lb1", "frontend:web");
    let reply = raw(lb, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Time-out\r\n"),
        "{reply}"
    );
    up.set(Behaviour::Stall);
    let reply = raw(lb, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 504 Gateway Time-out\r\n"),
        "{reply}"
    );
}

#[test]
fn failed_connects_retry_other_servers_then_503() {
    let up = Upstream::start("live");
    let (_dead1, dead1) = crate::common::refusing_addr();
    let (_dead2, dead2) = crate::common::refusing_addr();
    let yaml = lb_config(&format!(
        "    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n      - {{name: none, mode: http, bind: [\"127.0.0.1:0\"], backend: dead}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: d1, addr: \"{dead1}\"}}, {{name: d2, addr: \"{dead2}\"}}, {{name: live, addr: \"{}\"}}]}}\n      - {{name: dead, mode: http, servers: [{{name: d1, addr: \"{dead1}\"}}, {{name: d2, addr: \"{dead2}\"}}]}}\n",
        up.addr
    ));
    let p = Proc::start(&yaml);
    let lb = format!("http://{}", p.addr("lb1", "frontend:web"));
    for _ in 0..6 {
        let r = crate::common::get(&lb);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "live"),
            "every request lands on the live server"
        );
    }
    let r = crate::common::get(&format!("http://{}", p.addr("lb1", "frontend:none")));
    assert_eq!(r.status, 503);
    assert!(r.text().contains("No server is available"), "{}", r.text());
}

#[test]
fn request_bodies_are_forwarded_verbatim_including_chunked_and_expect_continue() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    let reply = raw(lb, b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = vec![b'z'; 300 * 1024];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let out = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", file.path().display()),
        &format!("http://{lb}/big"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s1");
    let reqs = up.requests();
    assert_eq!(reqs[0].body, b"hello world");
    assert_eq!(
        reqs[0].header("transfer-encoding"),
        Some("chunked"),
        "chunked stays chunked"
    );
    assert_eq!(reqs[1].body.len(), body.len());
    assert_eq!(reqs[1].header("expect"), Some("100-continue"));
}

#[test]
fn the_stats_listener_is_bound_and_announced() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(
        &up,
        "",
        "",
        "    stats: {bind: \"127.0.0.1:0\", uri: /haproxy_stats}\n",
    ));
    let stats = p.addr("lb1", "stats");
    assert_ne!(stats.port(), 0);
    // Until the stats page exists (issue 4) every path answers 503, as unknown paths will.
    let reply = raw(stats, b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
}

#[test]
fn pipelined_requests_and_http_1_0_clients_are_answered_in_order() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    let s = TcpStream::connect(lb).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..2 {
        let (head, body) = read_response(&mut r);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "s1");
    }
    let (head, _) = read_response(&mut r);
    assert!(
        head.contains("Connection: keep-alive\r\n"),
        "an HTTP/1.0 client kept alive is told so: {head}"
    );
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/1", "/2", "/3"]);
    // HTTP/1.0 without keep-alive: answered, then closed.
    let reply = raw(lb, b"GET /4 HTTP/1.0\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 200")
            && reply.contains("Connection: close\r\n")
            && reply.ends_with("s1"),
        "{reply}"
    );
}

/// Request smuggling, a raw-socket table: each ambiguous or malformed framing gets 400 and
/// nothing reaches the server, neither the request nor the one hidden behind it.
#[test]
fn smuggling_table_every_ambiguous_framing_is_refused_before_the_server() {
    let up = Upstream::start("s1");
    let p = Proc::start(&one_backend(&up, "", "", ""));
    let lb = p.addr("lb1", "frontend:web");
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: &[(&str, String)] = &[
        (
            "CL.TE",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\n{hidden}\r\n0\r\n\r\n"
            ),
        ),
        (
            "TE unknown coding",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE space before colon",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE twice",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE chunked not last",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "TE vertical tab",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
        (
            "CL twice, different",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n{hidden}"
            ),
        ),
        (
            "CL list",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 44\r\n\r\n{hidden}"),
        ),
        (
            "CL negative",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{hidden}"),
        ),
        (
            "CL overflow",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n{hidden}"
            ),
        ),
        (
            "bare LF",
            format!("POST / HTTP/1.1\nHost: x\nContent-Length: 0\n\n{hidden}"),
        ),
        (
            "obs-fold",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n{hidden}"
            ),
        ),
        (
            "chunk-size overflow",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n{hidden}\r\n0\r\n\r\n"
            ),
        ),
        (
            "chunk-size junk",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n{hidden}\r\n0\r\n\r\n"
            ),
        ),
        (
            "NUL in a header",
            format!("POST / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n{hidden}"),
        ),
        (
            "CR in a header",
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 44\r\nContent-Length: 0\r\n\r\n{hidden}"
            ),
        ),
        (
            "space in the target",
            format!("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n{hidden}"),
        ),
        (
            "HTTP/1.0 with TE",
            format!(
                "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            ),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, attack) in cases {
        let reply = raw(lb, attack.as_bytes());
        if !reply.starts_with("HTTP/1.1 400 ") {
            wrong.push(format!("{name}: {:?}", reply.lines().next()));
        }
    }
    assert!(wrong.is_empty(), "not refused with 400: {wrong:#?}");
    assert!(
        up.requests().is_empty(),
        "nothing reached the server: {:?}",
        up.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}
