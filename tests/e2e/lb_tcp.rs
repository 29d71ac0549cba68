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
