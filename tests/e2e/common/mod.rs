//! Shared harness for end-to-end tests: start the real `streamfleet` binary with a generated
//! config (every port 0), wait for its machine-readable readiness lines, and talk to it with
//! real clients. Nothing here sleeps to synchronise: waits are "until this line / condition,
//! or fail after a deadline".

pub mod browser;
pub mod cluster;
pub mod conformance;
pub mod lb;
pub mod media;
pub mod netns;
pub mod secantus;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streamfleet"))
}

/// A running `streamfleet run` process.
pub struct Proc {
    child: Option<Child>,
    /// (node, listener) -> bound address.
    pub listeners: HashMap<(String, String), SocketAddr>,
    /// Keeps the config file (and anything beside it) alive.
    pub dir: tempfile::TempDir,
    stderr_path: PathBuf,
    lines: mpsc::Receiver<String>,
}

/// How long a process may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Proc {
    /// Writes `yaml` to a temp dir and starts the binary on it; returns once `ready` is printed.
    pub fn start(yaml: &str) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, yaml)
    }

    /// Like [`Proc::start`] in a given directory (which may hold certificates, errorfiles...).
    pub fn start_in(dir: tempfile::TempDir, yaml: &str) -> Proc {
        let mut p = Self::spawn_in(dir, yaml);
        p.wait_ready();
        p
    }

    /// Like [`Proc::start`] on another machine (a network namespace, [`netns`]).
    pub fn start_on(host: &netns::Host, yaml: &str) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Self::spawn(dir, yaml, Some(host));
        p.wait_ready();
        p
    }

    /// Starts the binary without waiting for readiness.
    pub fn spawn_in(dir: tempfile::TempDir, yaml: &str) -> Proc {
        Self::spawn(dir, yaml, None)
    }

    fn spawn(dir: tempfile::TempDir, yaml: &str, host: Option<&netns::Host>) -> Proc {
        let config = dir.path().join("streamfleet.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut command = match host {
            Some(host) => {
                let mut c = host.nsenter();
                c.arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let mut child = command
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("STREAMFLEET_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn streamfleet");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            listeners: HashMap::new(),
            dir,
            stderr_path,
            lines: rx,
        }
    }

    /// Reads readiness lines until `{"event":"ready"}`.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!(
                    "streamfleet did not become ready; stderr:\n{}",
                    self.stderr()
                ),
            };
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            match v["event"].as_str() {
                Some("listening") => {
                    let key = (
                        v["node"].as_str().unwrap().to_owned(),
                        v["listener"].as_str().unwrap().to_owned(),
                    );
                    self.listeners
                        .insert(key, v["addr"].as_str().unwrap().parse().unwrap());
                }
                Some("ready") => return,
                _ => panic!("unexpected stdout line: {line}"),
            }
        }
    }

    /// The bound address of a node's listener.
    pub fn addr(&self, node: &str, listener: &str) -> SocketAddr {
        *self
            .listeners
            .get(&(node.to_owned(), listener.to_owned()))
            .unwrap_or_else(|| {
                panic!(
                    "no listener {listener} on node {node}: {:?}",
                    self.listeners
                )
            })
    }

    /// `http://addr` of a node's HTTP listener.
    pub fn http(&self, node: &str) -> String {
        format!("http://{}", self.addr(node, "http"))
    }

    /// Everything the process logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`, `"STOP"`, `"CONT"`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An address that refuses TCP connections for as long as the returned socket lives: the port
/// is bound, so no other test can take it meanwhile, but nothing listens on it.
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let socket = hold_port("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// A TCP socket bound to `addr` that does not listen: connects to it are refused and other
/// processes cannot bind the port. With `reuse` (`SO_REUSEADDR`, as std's listeners set it),
/// a listener can still be started on the port while the socket is held.
pub fn hold_port(addr: SocketAddr, reuse: bool) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(reuse)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A plain-HTTP response.
pub struct Http {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Http {
    /// The body as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// First header with that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GET a URL with a real HTTP client; any status is returned, never an error.
pub fn get(url: &str) -> Http {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp.body_mut().read_to_vec().expect("body");
    Http {
        status,
        headers,
        body,
    }
}

/// A response printed by `curl -i` (status line, headers, blank line, body).
pub fn parse_curl_response(text: &str) -> Http {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 JWT with these claims, signed with `key`.
pub fn jwt_with(key: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// An Ant Media stream token: `streamId`, `type` (`publish` | `play`), `exp` this many seconds
/// from now (negative: already expired).
pub fn stream_token(key: &str, stream: &str, kind: &str, exp_from_now: i64) -> String {
    let exp = unix_now() as i64 + exp_from_now;
    jwt_with(
        key,
        serde_json::json!({"streamId": stream, "type": kind, "exp": exp}),
    )
}
