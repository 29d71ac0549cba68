//! A real MongoDB-compatible server for tests: SecantusDB (`secantusd-py`, PyPI `SecantusDB`,
//! installed by `.ci/secantus-install`) with authentication on.
//!
//! [`Secantus::start`] runs the server once without auth on a fresh storage directory, creates a
//! root user through the `mongodb` driver, stops it, and starts it again on the same storage
//! with `--auth`. Every start asks for port 0 and reads the real port from the server's
//! `secantus listening on HOST:PORT` line; waits are "until that line, or fail after a
//! deadline". Tests can then stop the server (an outage) and restart it, on a new port or on
//! the same one. The process is killed when the handle drops.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use super::netns::Host;

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the server prints once it accepts connections, followed by `HOST:PORT`.
const LISTENING: &str = "secantus listening on ";

/// Root user created by [`Secantus::start`].
pub const USER: &str = "streamfleet-root";

/// A running SecantusDB server with authentication on.
pub struct Secantus {
    /// The server process; `None` while stopped.
    child: Option<Child>,
    /// The port it listens on (kept across a stop, for a same-port restart).
    port: u16,
    /// The root user's password (contains `:` and `@`, so URIs must percent-encode it).
    password: String,
    /// Storage (WiredTiger home) and an empty config file, both deleted on drop.
    dir: tempfile::TempDir,
    /// Every line the server printed, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
    /// The machine it runs on (a network namespace), or `None` for this one (127.0.0.1).
    host: Option<Host>,
}

impl Secantus {
    /// Starts a fresh server, provisions the root user and restarts it with `--auth`.
    pub fn start() -> Secantus {
        Self::start_with(None)
    }

    /// [`Secantus::start`] on another machine (a network namespace).
    pub fn start_on(host: &Host) -> Secantus {
        Self::start_with(Some(host.clone()))
    }

    fn start_with(host: Option<Host>) -> Secantus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secantusd.toml"), "").expect("write empty config");
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut server = Secantus {
            child: None,
            port: 0,
            password: format!("pw:{nanos:x}@sf"),
            dir,
            log: Arc::new(Mutex::new(Vec::new())),
            host,
        };
        server.launch(None, false);
        create_root_user(server.ip(), server.port, &server.password);
        // A graceful stop: SecantusDB loses recent writes (the user too) when killed before
        // a checkpoint unless it syncs on commit.
        server.terminate();
        server.launch(None, true);
        server
    }

    /// `mongodb://USER:PASSWORD@127.0.0.1:PORT/?authSource=admin`.
    pub fn uri(&self) -> String {
        self.uri_with_password(&self.password)
    }

    /// The same URI with another password (for wrong-credential tests).
    pub fn uri_with_password(&self, password: &str) -> String {
        format!(
            "mongodb://{USER}:{}@{}:{}/?authSource=admin",
            encode_userinfo(password),
            self.ip(),
            self.port
        )
    }

    /// The address it listens on.
    fn ip(&self) -> &str {
        self.host.as_ref().map_or("127.0.0.1", |h| h.ip.as_str())
    }

    /// The root user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Kills the server with SIGKILL (an outage as abrupt as a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its sockets stay open but nothing answers, like a hung
    /// machine. [`Secantus::thaw`] resumes it.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Stops the server with SIGTERM and waits for a clean exit (SIGKILL after a deadline).
    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + START_TIMEOUT;
        while sent.as_ref().is_ok_and(|s| s.success()) && Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same storage and the same port, with auth, so
    /// clients holding the old address reconnect by themselves.
    pub fn restart_same_port(&mut self) {
        self.stop();
        self.launch(Some(self.port), true);
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Spawns the server and waits for its listening line; retries a start whose process
    /// exits early (a same-port restart can race the old socket's release) until the deadline.
    fn launch(&mut self, port: Option<u16>, auth: bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_once(port, auth, deadline) {
                Ok((child, bound)) => {
                    self.child = Some(child);
                    self.port = bound;
                    return;
                }
                Err(why) if Instant::now() < deadline && port.is_some() => {
                    self.log
                        .lock()
                        .expect("log")
                        .push(format!("(harness) retrying start: {why}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(why) => panic!("secantusd did not start: {why}; output:\n{}", self.output()),
            }
        }
    }

    fn spawn_once(
        &self,
        port: Option<u16>,
        auth: bool,
        deadline: Instant,
    ) -> Result<(Child, u16), String> {
        let mut cmd = match &self.host {
            Some(host) => {
                let mut c = host.nsenter();
                c.arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        cmd.arg("--config")
            .arg(self.dir.path().join("secantusd.toml"))
            // Durable writes, as a real mongod's journal gives: an outage test kills the
            // server and expects acknowledged writes to be there after the restart.
            .arg("--sync-on-commit")
            .args(["--log-level", "INFO", "--host", self.ip(), "--port"])
            .arg(port.unwrap_or(0).to_string())
            .arg("--storage-path")
            .arg(self.dir.path().join("data"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if auth {
            cmd.arg("--auth");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
        let (tx, rx) = mpsc::channel();
        forward_lines(
            child.stdout.take().expect("piped stdout"),
            tx.clone(),
            self.log.clone(),
        );
        forward_lines(
            child.stderr.take().expect("piped stderr"),
            tx,
            self.log.clone(),
        );
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no `{LISTENING}` line ({e})"));
                }
            };
            if let Some(bound) = listening_port(&line) {
                return Ok((child, bound));
            }
        }
    }
}

impl Drop for Secantus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port of a `... secantus listening on 127.0.0.1:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    let (_, addr) = line.split_once(LISTENING)?;
    let (_, port) = addr.trim().rsplit_once(':')?;
    port.parse().ok()
}

/// Sends each line of `stream` to `tx` and keeps it in `log`, until the process closes it.
fn forward_lines(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
    log: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut log) = log.lock() {
                log.push(line.clone());
            }
            // The receiver is gone once the server started; keep draining the pipe anyway.
            let _ = tx.send(line);
        }
    });
}

/// `SECANTUSD`, else `secantusd-py` on the PATH, else the venv `.ci/secantus-install` makes.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SECANTUSD") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("secantusd-py"))
        .find(|p| p.is_file());
    let venv = PathBuf::from("/opt/secantus-venv/bin/secantusd-py");
    match on_path {
        Some(p) => p,
        None if venv.is_file() => venv,
        None => panic!(
            "secantusd-py not found (PATH, /opt/secantus-venv, SECANTUSD): run .ci/secantus-install"
        ),
    }
}

/// Creates the root user on a server running without auth, through the real driver. Runs on
/// its own thread and runtime so that it works from sync and async tests alike.
fn create_root_user(ip: &str, port: u16, password: &str) {
    let (ip, password) = (ip.to_owned(), password.to_owned());
    let created = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let uri = format!("mongodb://{ip}:{port}/?serverSelectionTimeoutMS=10000");
            let client = mongodb::Client::with_uri_str(uri).await?;
            let command = mongodb::bson::doc! {
                "createUser": USER,
                "pwd": password,
                "roles": [{ "role": "root", "db": "admin" }],
            };
            client
                .database("admin")
                .run_command(command)
                .await
                .map(drop)
        })
    })
    .join()
    .expect("createUser thread");
    if let Err(e) = created {
        panic!("createUser failed: {e}");
    }
}

/// Percent-encodes what a URI's user-info cannot hold as is.
fn encode_userinfo(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ':' | '/' | '?' | '#' | '[' | ']' | '@' | '%' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}
