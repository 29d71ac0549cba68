//! `mode: tcp`: a byte-exact pipe with half-close, and real RTMP through it: ffmpeg publishes
//! to nginx-rtmp through the LB, and ffmpeg plays the stream back through the LB.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::lb::{Nginx, TEST_SOURCE, Upstream, lb_config};
use crate::common::{Proc, wait_for};

fn tcp_config(server: std::net::SocketAddr) -> String {
    lb_config(&format!(
        "    timeouts: {{tunnel: 30s, client_fin: 2s}}\n    frontends:\n      - {{name: rtmp, mode: tcp, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, mode: tcp, health: {{kind: tcp, interval: 1s}}, servers: [{{name: s1, addr: \"{server}\"}}]}}\n"
    ))
}

#[test]
fn bytes_pass_unchanged_and_a_half_close_is_passed_on() {
    let up = Upstream::start("s1");
    let p = Proc::start(&tcp_config(up.addr));
    let lb = p.addr("lb1", "frontend:rtmp");
    let mut s = TcpStream::connect(lb).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // No HTTP processing in tcp mode: hop-by-hop headers and all arrive as sent.
    s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(
        reply, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Server: s1\r\n\r\ns1",
        "answered after the client's FIN"
    );
    let r = &up.requests()[0];
    assert_eq!(r.header("x-hop"), Some("1"));
    assert_eq!(r.header("x-forwarded-for"), None);
}

#[test]
fn ffmpeg_publishes_and_plays_rtmp_through_mode_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path());
    let p = Proc::start(&tcp_config(nginx.addr));
    let lb = p.addr("lb1", "frontend:rtmp");
    let url = format!("rtmp://{lb}/live/tcptest");
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(TEST_SOURCE)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let streams = wait_for(
        "the stream to play through the LB",
        Duration::from_secs(30),
        || {
            let out = Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-rw_timeout",
                    "3000000",
                    "-show_entries",
                    "stream=codec_name",
                    "-of",
                    "csv=p=0",
                    &url,
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success() && text.contains("h264")).then_some(text)
        },
    );
    assert!(streams.contains("aac"), "{streams}");
    let play = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "5000000",
            "-i",
            &url,
            "-t",
            "2",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        play.status.success(),
        "player failed: {}",
        String::from_utf8_lossy(&play.stderr)
    );
    let status = publisher.wait().unwrap();
    let mut err = String::new();
    publisher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "publisher failed: {err}\nnginx: {}",
        nginx.log()
    );
}

/// A frontend's own `maxconn`: at its limit that frontend stops accepting (a new client waits
/// in the backlog, unserved), the node's other frontends serve on, and the waiting client is
/// served once the frontend's connections go below 90 % of the limit.
#[test]
fn a_full_frontend_waits_alone_and_resumes_below_its_maxconn() {
    let up = Upstream::start("s1");
    let web = Upstream::start("w1");
    let p = Proc::start(&lb_config(&format!(
        "    maxconn: 1000\n    timeouts: {{tunnel: 30s, client: 30s, client_fin: 2s}}\n    frontends:\n      - {{name: slow, mode: tcp, bind: [\"127.0.0.1:0\"], backend: b, maxconn: 3}}\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: w}}\n    backends:\n      - {{name: b, mode: tcp, servers: [{{name: s1, addr: \"{}\"}}]}}\n      - {{name: w, mode: http, servers: [{{name: w1, addr: \"{}\"}}]}}\n",
        up.addr, web.addr
    )));
    let slow = p.addr("lb1", "frontend:slow");
    let web_fe = p.addr("lb1", "frontend:web");
    // Three clients that send nothing hold the frontend's three slots.
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(slow).unwrap()).collect();
    wait_for("three piped connections", Duration::from_secs(10), || {
        (up.connections() == 3).then_some(())
    });
    // A fourth is not served while they stay.
    let mut fourth = TcpStream::connect(slow).unwrap();
    fourth
        .write_all(b"GET /fourth HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(fourth.read(&mut byte).is_err(), "the fourth waits unserved");
    assert_eq!(up.connections(), 3);
    // The node's other frontend is not affected.
    let reply = crate::common::lb::raw(
        web_fe,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Two of the three leave (below 90 % of 3): the fourth is served.
    drop(held);
    fourth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The upstream keeps the connection: read the whole response (Content-Length 2, `s1`).
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while !reply.ends_with(b"\r\n\r\ns1") {
        let n = fourth.read(&mut buf).expect("the fourth is served");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(reply.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(
        up.requests().last().map(|r| r.path.as_str()),
        Some("/fourth")
    );
}
