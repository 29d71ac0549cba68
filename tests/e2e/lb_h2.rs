//! HTTP/2 against hostile clients (issue 17), driven by `tests/h2/flood.py` (the Python `h2`
//! package's frame and HPACK libraries, installed by `.ci/deps test`): in-flight streams count
//! against `maxconn`, floods (CONTINUATION, SETTINGS, PING) and window overflows end the
//! connection, malformed requests end their stream, and a normal client is served meanwhile.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::lb::{Behaviour, Upstream, curl, lb_config, write_cert};
use crate::common::{Proc, wait_for};

/// Starts the probe in `mode`; stdout piped, stdin piped.
fn probe(lb: SocketAddr, mode: &[&str]) -> Child {
    let venv = std::env::var("SECANTUS_VENV").unwrap_or_else(|_| "/opt/secantus-venv".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/flood.py");
    Command::new(format!("{venv}/bin/python"))
        .args([script, "127.0.0.1", &lb.port().to_string()])
        .args(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python with h2 (.ci/deps test)")
}

/// Runs the probe to its end; returns its findings (the lines before `end`).
fn findings(lb: SocketAddr, mode: &[&str]) -> Vec<String> {
    let out = probe(lb, mode).wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("end\n"), "{mode:?}: {text}");
    text.lines()
        .take_while(|l| *l != "end")
        .map(str::to_owned)
        .collect()
}

/// A normal HTTP/2 request on a connection of its own: the status curl saw.
fn h2_get(lb: SocketAddr, path: &str) -> String {
    let out = curl(&[
        "-k",
        "--http2",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &format!("https://127.0.0.1:{}{path}", lb.port()),
    ]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// An LB whose TLS frontend sends `/slow` to a server that never answers and everything else
/// to a normal one; plain-HTTP frontend `web` on the normal server too.
struct Setup {
    p: Proc,
    normal: Upstream,
    stall: Upstream,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(frontend_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (pem, _) = write_cert(dir.path(), "site", &["localhost"]);
        let normal = Upstream::start("s1");
        let stall = Upstream::start("slow");
        stall.set(Behaviour::Stall);
        let p = Proc::start(&lb_config(&format!(
            "    timeouts: {{client: 2s, server: 60s}}\n    stats: {{bind: \"127.0.0.1:0\", uri: /stats}}\n    frontends:\n      - {{name: tls, mode: http, bind: [\"127.0.0.1:0\"], backend: b, tls: {{certs: [\"{}\"]}}, routes: [{{path_prefix: /slow, backend: slow}}]{frontend_extra}}}\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n      - {{name: slow, mode: http, servers: [{{name: slow, addr: \"{}\"}}]}}\n",
            pem.display(),
            normal.addr,
            stall.addr
        )));
        Setup {
            p,
            normal,
            stall,
            _dir: dir,
        }
    }

    fn tls(&self) -> SocketAddr {
        self.p.addr("lb1", "frontend:tls")
    }

    /// Column `col` (0-based) of the stats CSV row starting with `row`.
    fn stat(&self, row: &str, col: usize) -> Option<u64> {
        let stats = self.p.addr("lb1", "stats");
        let out = curl(&[&format!("http://{stats}/stats;csv")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(row))
            .and_then(|l| l.split(',').nth(col).map(str::to_owned))
            .and_then(|v| v.parse().ok())
    }
}

/// One connection opening 30 streams on a frontend with `maxconn: 10`: the streams past the
/// frontend's free slots are refused with REFUSED_STREAM (and counted as denied), so no more
/// than 10 requests reach the server; a client of another frontend is served meanwhile, and
/// the slots come back when the streams end. Before, all 30 reached the server (each holding a
/// server connection), whatever `maxconn` said.
#[test]
fn in_flight_streams_count_against_maxconn() {
    let s = Setup::start(", maxconn: 10");
    let mut held = probe(s.tls(), &["streams", "30"]);
    let mut out = std::io::BufReader::new(held.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{lines:?}");
        if line.trim() == "held" {
            break;
        }
        lines.push(line.trim().to_owned());
    }
    let count = |key: &str| -> u64 {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in {lines:?}"))
    };
    let refused = count("refused ");
    assert_eq!(count("reset "), 0, "{lines:?}");
    assert!(refused >= 20, "streams past maxconn are refused: {lines:?}");
    let reached = wait_for(
        "the admitted streams at the server",
        Duration::from_secs(10),
        || {
            let n = s.stall.requests().len() as u64;
            (n + refused == 30).then_some(n)
        },
    );
    assert!(
        (1..=10).contains(&reached),
        "{reached} requests reached the server"
    );
    assert_eq!(s.stat("tls,FRONTEND,", 10), Some(refused), "dreq");

    // Another frontend is served while this one is full.
    let web = s.p.addr("lb1", "frontend:web");
    let body = curl(&[&format!("http://{web}/other")]);
    assert_eq!(String::from_utf8_lossy(&body.stdout), "s1");

    // The client goes: its streams end and their slots come back.
    held.stdin.take().unwrap().write_all(b"done\n").unwrap();
    let _ = held.wait();
    wait_for(
        "the slow backend's sessions to end",
        Duration::from_secs(10),
        || (s.stat("slow,BACKEND,", 4) == Some(0)).then_some(()),
    );
    assert_eq!(h2_get(s.tls(), "/after"), "2 200");
}

/// Floods, window overflows and malformed requests, each on its own connection: the answer the
/// LB gives, then a normal HTTP/2 request on a new connection that is served. Requests that
/// were refused never reach a server. Before: a request without `:path` (and with a Host field
/// instead of `:authority`) reached the server as `GET /` (200), and SETTINGS/PING floods from a
/// client that never reads held their connection for ever (the GOAWAY after `timeouts.client`
/// could not be written; the probe gave up after 35 s). The other answers come from `h2` and
/// the h2 -> HTTP/1 conversion and were already right: they are checked so they stay so.
#[test]
fn floods_and_malformed_requests_get_protocol_answers() {
    let s = Setup::start("");
    let table: &[(&[&str], &str)] = &[
        // `h2` counts CONTINUATION frames per header block.
        (&["continuation", "100"], "goaway ENHANCE_YOUR_CALM"),
        // A window past 2^31-1.
        (&["window"], "goaway FLOW_CONTROL_ERROR"),
        (&["window-stream"], "rst FLOW_CONTROL_ERROR"),
        // RFC 9113 §8.3.1: `:path` is mandatory (the LB checks it; `h2` does not when there
        // is no `:authority`).
        (&["no-path"], "rst PROTOCOL_ERROR"),
        // RFC 9113 §8.2: header names are lowercase (`h2`'s HPACK decoder refuses others).
        (&["uppercase"], "goaway PROTOCOL_ERROR"),
        // RFC 9113 §8.2.2: connection-specific header fields are malformed.
        (&["connection-header"], "rst PROTOCOL_ERROR"),
        (&["transfer-encoding"], "rst PROTOCOL_ERROR"),
        // No tunnels over HTTP/2.
        (&["connect"], "status 405"),
    ];
    let mut served = 0;
    for (mode, answer) in table {
        let found = findings(s.tls(), mode);
        assert_eq!(found, [answer.to_string()], "{mode:?}");
        assert_eq!(h2_get(s.tls(), "/ok"), "2 200", "after {mode:?}");
        served += 1;
    }
    // 2,000,000 SETTINGS (PING) frames, answers never read: the LB stops reading once its
    // ACKs fill the socket, and drops the connection `timeouts.client` (2 s) after the GOAWAY
    // it could not send; a normal client is served during the flood.
    for mode in ["settings", "ping"] {
        let flood = probe(s.tls(), &[mode, "2000000"]);
        assert_eq!(h2_get(s.tls(), "/during"), "2 200", "during {mode}");
        served += 1;
        let out = flood.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let seconds: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("closed-after "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{mode} flood: the LB kept the connection: {text}"));
        assert!(seconds < 10.0, "{mode} flood: closed after {seconds} s");
    }
    let paths: Vec<String> = s.normal.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.len(), served, "only the normal requests: {paths:?}");
    assert!(
        paths.iter().all(|p| p == "/ok" || p == "/during"),
        "{paths:?}"
    );
    assert!(
        s.stall.requests().len() <= 1,
        "only window-stream's request"
    );
}
