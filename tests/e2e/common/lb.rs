//! Helpers for the load-balancer end-to-end tests: an HTTP upstream that records what it
//! received and can be told to stall, close or die; a WebSocket echo (tungstenite); raw
//! socket clients; curl; certificates made with rcgen; nginx with its RTMP module as an RTMP
//! server. Everything binds port 0 (nginx, which cannot, gets a port the OS just handed out,
//! retried on a bind race). No sleeps as synchronisation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Target.
    pub path: String,
    /// `HTTP/1.1`.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Decoded body.
    pub body: Vec<u8>,
    /// When its head had arrived.
    pub at: Instant,
}

impl Recorded {
    /// First header with that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every header with that name.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the upstream does with requests (health checks to `/healthz` always get 200).
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// `200`, body = server name, `X-Server: name`.
    Normal,
    /// Like `Normal` plus this `Set-Cookie` header.
    SetCookie(String),
    /// Read the request, never answer.
    Stall,
    /// Read the request, close without answering.
    Close,
    /// Answer `Connection: close` after each response.
    CloseAfter,
    /// This status with body `upstream says <status>`.
    Status(u16),
    /// `200` with a chunked body of this many bytes (`0123456789` repeated), in 1000-byte chunks.
    Chunked(usize),
    /// `200` with the same body as [`Behaviour::Chunked`] behind a `Content-Length`.
    Sized(usize),
}

/// The body [`Behaviour::Chunked`] sends.
pub fn chunked_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'0' + (i % 10) as u8).collect()
}

struct Shared {
    name: String,
    requests: Mutex<Vec<Recorded>>,
    behaviour: Mutex<Behaviour>,
    connections: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
    dead: AtomicBool,
    unhealthy: AtomicBool,
    /// After a kill: the port, bound but not listening, so that no other test takes it before
    /// [`Upstream::start_on`] brings the server back (both sides use `SO_REUSEADDR`).
    held: Mutex<Option<socket2::Socket>>,
}

/// A recording HTTP/1.1 upstream with keep-alive and a WebSocket echo on `Upgrade`.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts on a port picked by the OS.
    pub fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    /// Starts on `addr` (to bring a killed upstream back on its port).
    pub fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind upstream {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.into(),
            requests: Mutex::default(),
            behaviour: Mutex::new(Behaviour::Normal),
            connections: AtomicUsize::new(0),
            open: Mutex::default(),
            dead: AtomicBool::new(false),
            unhealthy: AtomicBool::new(false),
            held: Mutex::default(),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.dead.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = stream.try_clone() {
                    s.open.lock().unwrap().push(c);
                }
                let s = s.clone();
                std::thread::spawn(move || serve(s, stream));
            }
            drop(listener);
            *s.held.lock().unwrap() = super::hold_port(addr, true).ok();
        });
        Upstream { addr, shared }
    }

    /// Requests received so far, health checks left out.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path != "/healthz")
            .cloned()
            .collect()
    }

    /// Changes what it does with the next requests.
    pub fn set(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = b;
    }

    /// Makes `/healthz` answer 503 (`false`) or 200 (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and resets every open connection: the server is gone.
    pub fn kill(&self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `dead` and drops the listener.
        let _ = TcpStream::connect(self.addr);
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // The listener is closed once a connect is refused.
        super::wait_for(
            "killed upstream to stop listening",
            Duration::from_secs(5),
            || TcpStream::connect(self.addr).is_err().then_some(()),
        );
    }
}

fn serve(s: Arc<Shared>, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || s.dead.load(Ordering::SeqCst) {
            return;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let (method, path, version) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap_or((h, ""));
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let mut rec = Recorded {
            method,
            path,
            version,
            headers,
            body: Vec::new(),
            at: Instant::now(),
        };
        if rec
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                rec.body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = rec
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            if rec
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            {
                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            }
            rec.body = vec![0; n];
            reader.read_exact(&mut rec.body).unwrap();
        }
        let websocket = rec
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let health = rec.path == "/healthz";
        let behaviour = s.behaviour.lock().unwrap().clone();
        s.requests.lock().unwrap().push(rec.clone());
        if websocket {
            return websocket_echo(&s, rec, writer);
        }
        if health {
            let reply: &[u8] = if s.unhealthy.load(Ordering::SeqCst) {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nsick"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            let _ = writer.write_all(reply);
            continue;
        }
        let mut extra = String::new();
        match behaviour {
            Behaviour::Stall => {
                // Holds the connection until the peer or the test gives up.
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
                return;
            }
            Behaviour::Close => {
                // `kill` keeps a clone of the socket: shut it down rather than just drop it.
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Behaviour::SetCookie(c) => extra = format!("Set-Cookie: {c}\r\n"),
            Behaviour::CloseAfter => extra = "Connection: close\r\n".into(),
            Behaviour::Status(code) => {
                let body = format!("upstream says {code}");
                let response = format!(
                    "HTTP/1.1 {code} Upstream\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Chunked(n) => {
                let body = chunked_body(n);
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for c in body.chunks(1000) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                if writer.write_all(&out).is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Sized(n) => {
                let mut out =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
                out.extend_from_slice(&chunked_body(n));
                if writer.write_all(&out).is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Normal => {}
        }
        let body = if rec.method == "HEAD" {
            String::new()
        } else {
            s.name.clone()
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Server: {}\r\n{extra}\r\n{body}",
            s.name.len(),
            s.name
        );
        let client_closes = rec
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if writer.write_all(response.as_bytes()).is_err()
            || extra.starts_with("Connection: close")
            || client_closes
        {
            return;
        }
    }
}

fn websocket_echo(s: &Shared, rec: Recorded, mut stream: TcpStream) {
    let key = rec.header("sec-websocket-key").unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nX-Server: {}\r\n\r\n",
        s.name
    );
    stream.write_all(response.as_bytes()).unwrap();
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Server, None);
    while let Ok(msg) = ws.read() {
        if msg.is_close() {
            break;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            break;
        }
    }
}

/// Sends raw bytes, reads until the peer closes (or 10 s pass), returns what came back.
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response with a Content-Length body from a kept-alive connection.
pub fn read_response(s: &mut BufReader<TcpStream>) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            s.read_line(&mut line).unwrap() > 0,
            "connection closed; head so far: {head}"
        );
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Runs curl with `args` (`-s` added), returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .arg("-s")
        .args(args)
        .output()
        .expect("run curl")
}

/// Writes `<name>.pem` (certificate then key) for `names` into `dir`; returns (pem file,
/// certificate-only file for `curl --cacert`).
pub fn write_cert(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let g =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(
        &pem,
        format!("{}{}", g.cert.pem(), g.signing_key.serialize_pem()),
    )
    .unwrap();
    let ca = dir.join(format!("{name}.crt"));
    std::fs::write(&ca, g.cert.pem()).unwrap();
    (pem, ca)
}

/// nginx with the RTMP module, serving `application live { live on; }`.
pub struct Nginx {
    /// RTMP port on 127.0.0.1.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx in `dir`; retries with another port if the one picked was taken meanwhile.
    pub fn start(dir: &Path) -> Nginx {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = dir.join("nginx.conf");
            std::fs::write(
                &conf,
                format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/nginx-error.log info;\npid {d}/nginx.pid;\n\
                     load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\nevents {{}}\n\
                     rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096; application live {{ live on; record off; }} }} }}\n",
                    d = dir.display()
                ),
            )
            .unwrap();
            let mut child = Command::new("nginx")
                .args(["-c"])
                .arg(&conf)
                .args(["-p"])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(addr).is_ok() {
                    return Nginx {
                        addr,
                        child,
                        dir: dir.to_owned(),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // Most likely the port was taken: try another.
                }
                assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "nginx could not start; log:\n{}",
            std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
        );
    }

    /// nginx's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx-error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small FLV test source: `ffmpeg` arguments producing 10 s of 320x240 H.264 + AAC.
pub const TEST_SOURCE: &[&str] = &[
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=320x240:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=44100",
    "-t",
    "10",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-g",
    "25",
    "-c:a",
    "aac",
    "-f",
    "flv",
];

/// A one-LB config: `node` is the YAML of the LB node's keys (indented by four spaces).
pub fn lb_config(node: &str) -> String {
    format!(
        "cluster: {{store: embedded, heartbeat: 200ms, node_timeout: 2s}}\nshutdown_grace: 2s\nnodes:\n  - role: lb\n    name: lb1\n{node}"
    )
}
