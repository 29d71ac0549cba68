//! `mode: rtmp`: the LB reads the client's `publish` or `play` and sends publishers to
//! `publish_backend` and players to `play_backend`. Two nginx-rtmp servers tell the routes
//! apart: ffmpeg publishes a 320x240 stream through the LB (it must land on the publish
//! server), another 160x120 stream of the same name is published straight to the play server,
//! and ffprobe/ffmpeg playing through the LB must get the 160x120 one.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::lb::{Nginx, TEST_SOURCE, lb_config};
use crate::common::{Proc, wait_for};

fn publish(url: &str, size: &str) -> Child {
    let args: Vec<String> = TEST_SOURCE
        .iter()
        .map(|a| {
            if a.starts_with("testsrc=") {
                format!("testsrc=size={size}:rate=25")
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(&args)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

/// The video width ffprobe sees at `url`, once it plays.
fn width(url: &str) -> String {
    wait_for(&format!("{url} to play"), Duration::from_secs(30), || {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "3000000",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=width",
                "-of",
                "csv=p=0",
                url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    })
}

#[test]
fn publishers_and_players_go_to_their_own_backends() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (publish_server, play_server) = (Nginx::start(dir_a.path()), Nginx::start(dir_b.path()));
    let yaml = lb_config(&format!(
        "    frontends:\n      - {{name: rtmp, mode: rtmp, bind: [\"127.0.0.1:0\"], publish_backend: origins, play_backend: edges}}\n    backends:\n      - {{name: origins, mode: tcp, servers: [{{name: o1, addr: \"{}\"}}]}}\n      - {{name: edges, mode: tcp, servers: [{{name: e1, addr: \"{}\"}}]}}\n",
        publish_server.addr, play_server.addr
    ));
    let p = Proc::start(&yaml);
    let lb = p.addr("lb1", "frontend:rtmp");
    let mut through_lb = publish(&format!("rtmp://{lb}/live/cam"), "320x240");
    let mut direct = publish(&format!("rtmp://{}/live/cam", play_server.addr), "160x120");

    assert_eq!(
        width(&format!("rtmp://{}/live/cam", publish_server.addr)),
        "320",
        "the LB's publisher landed on the publish backend"
    );
    assert_eq!(
        width(&format!("rtmp://{lb}/live/cam")),
        "160",
        "players through the LB reach the play backend"
    );
    let play = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "5000000",
            "-i",
            &format!("rtmp://{lb}/live/cam"),
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
        "ffmpeg player through the LB: {}",
        String::from_utf8_lossy(&play.stderr)
    );
    let status = through_lb.wait().unwrap();
    assert!(
        status.success(),
        "publisher through the LB failed; LB log:\n{}\nnginx:\n{}",
        p.stderr(),
        publish_server.log()
    );
    let _ = direct.wait();
}

/// A client that sends one byte and then nothing is closed at the frontend's
/// `handshake_timeout` (1 s here; `timeouts.client` is 30 s, so only the deadline can close
/// it) and counted in `streamfleet_lb_frontend_rtmp_handshake_timeouts_total`, while ffmpeg
/// publishes through the same frontend for longer than the deadline. Before, a slow client
/// held its slot until `timeouts.client` after each byte it trickled.
#[test]
fn slow_clients_are_closed_at_the_handshake_deadline() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Nginx::start(dir.path());
    let yaml = lb_config(&format!(
        "    timeouts: {{client: 30s}}\n    stats: {{bind: \"127.0.0.1:0\", uri: /stats}}\n    frontends:\n      - {{name: rtmp, mode: rtmp, bind: [\"127.0.0.1:0\"], backend: origins, handshake_timeout: 1s}}\n    backends:\n      - {{name: origins, mode: tcp, servers: [{{name: o1, addr: \"{}\"}}]}}\n",
        server.addr
    ));
    let p = Proc::start(&yaml);
    let lb = p.addr("lb1", "frontend:rtmp");
    let mut publisher = publish(&format!("rtmp://{lb}/live/cam"), "320x240");

    let mut slow = std::net::TcpStream::connect(lb).unwrap();
    let started = std::time::Instant::now();
    slow.write_all(&[3]).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = loop {
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let took = started.elapsed();
    assert!(closed, "the slow client is still connected after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    assert_eq!(
        width(&format!("rtmp://{}/live/cam", server.addr)),
        "320",
        "the publisher through the LB reached the server"
    );
    let status = publisher.wait().unwrap();
    assert!(
        status.success(),
        "publisher through the LB failed; LB log:\n{}",
        p.stderr()
    );
    let stats = p.addr("lb1", "stats");
    let metrics = crate::common::get(&format!("http://{stats}/metrics")).text();
    assert!(
        metrics.contains("streamfleet_lb_frontend_rtmp_handshake_timeouts_total{proxy=\"rtmp\"} 1"),
        "{metrics}"
    );
}
