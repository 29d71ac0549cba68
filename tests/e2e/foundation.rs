//! The process contract: readiness lines, health/readiness/metrics endpoints, the cluster REST,
//! graceful shutdown, and the `check`/`mode` commands on real files.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Proc, binary, get};

const THREE_NODES: &str = r#"
cluster:
  store: embedded
  heartbeat: 200ms
  node_timeout: 1s
shutdown_grace: 5s
nodes:
  - {role: origin, name: origin-1, rtmp: "127.0.0.1:0", http: "127.0.0.1:0", relay: "127.0.0.1:0", apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]}
  - {role: edge, name: edge-1, rtmp: "127.0.0.1:0", http: "127.0.0.1:0"}
  - {role: edge, name: edge-2, http: "127.0.0.1:0"}
"#;

#[test]
fn readiness_health_metrics_cluster_rest_and_sigterm() {
    let mut p = Proc::start(THREE_NODES);

    // One listening line per listener, real ports.
    for (node, listener) in [
        ("origin-1", "rtmp"),
        ("origin-1", "http"),
        ("origin-1", "relay"),
        ("edge-1", "rtmp"),
        ("edge-1", "http"),
        ("edge-2", "http"),
    ] {
        assert_ne!(
            p.addr(node, listener).port(),
            0,
            "{node}/{listener} reports its real port"
        );
    }
    assert_eq!(p.listeners.len(), 6);

    let origin = p.http("origin-1");
    let r = get(&format!("{origin}/healthz"));
    assert_eq!(r.status, 200);
    let r = get(&format!("{origin}/readyz"));
    assert_eq!(r.status, 200, "{}", r.text());

    let m = get(&format!("{origin}/metrics")).text();
    assert!(
        m.contains("streamfleet_build_info{version=\"0.1.0\",node=\"origin-1\",role=\"origin\"} 1"),
        "{m}"
    );
    assert!(m.contains("streamfleet_uptime_seconds "), "{m}");
    let age: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("streamfleet_heartbeat_age_seconds "))
        .expect("heartbeat age")
        .parse()
        .unwrap();
    assert!((0.0..5.0).contains(&age), "heartbeat age {age}");

    // Every node sees every node, alive, with the fields of DESIGN.md §4.
    let nodes = get(&format!("{}/rest/v2/cluster/nodes/0/10", p.http("edge-2"))).json();
    let nodes = nodes.as_array().expect("array");
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["edge-1", "edge-2", "origin-1"]);
    for n in nodes {
        assert_eq!(n["alive"], true);
        assert_eq!(n["state"], "active");
        for field in [
            "role",
            "advertise",
            "version",
            "started_at",
            "last_seen",
            "cpu",
            "mem_used",
            "mem_total",
            "streams",
            "viewers",
            "egress_bps",
        ] {
            assert!(!n[field].is_null(), "field {field} in {n}");
        }
    }
    let o = nodes.iter().find(|n| n["name"] == "origin-1").unwrap();
    assert_eq!(o["role"], "origin");
    assert_eq!(
        o["relay"].as_str().unwrap(),
        p.addr("origin-1", "relay").to_string()
    );
    assert_eq!(
        o["http"].as_str().unwrap(),
        p.addr("origin-1", "http").to_string()
    );
    let page = get(&format!("{origin}/rest/v2/cluster/nodes/1/1")).json();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["name"], "edge-2");
    let count = get(&format!("{origin}/rest/v2/cluster/node-count")).json();
    assert_eq!(count["number"], 3);
    assert_eq!(
        get(&format!("{origin}/rest/v2/cluster/nodes/x/1")).status,
        400
    );

    p.signal("TERM");
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("exits within the grace period");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", p.stderr());
}

#[test]
fn sigterm_closes_idle_keepalive_connections_and_exits_zero() {
    use std::io::{Read, Write};
    let mut p = Proc::start(&THREE_NODES.replace("shutdown_grace: 5s", "shutdown_grace: 30s"));
    let mut conn = std::net::TcpStream::connect(p.addr("edge-1", "http")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("{\"status\":\"ready\"}") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "response before EOF");
        seen.extend_from_slice(&buf[..n]);
    }
    // The keep-alive connection is idle: draining closes it at once instead of waiting 30s.
    let started = std::time::Instant::now();
    p.signal("TERM");
    assert_eq!(
        conn.read(&mut buf).unwrap(),
        0,
        "server closed the idle connection"
    );
    let status = p.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", p.stderr());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn failed_bind_names_node_listener_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!("nodes:\n  - {{role: edge, name: e9, http: \"{addr}\"}}\n"),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("node e9: cannot bind listener http on {addr}")),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no readiness line on failure"
    );
}

/// Under every limit on open files, from too few to start anything up to enough, a node either
/// becomes ready or stops with exit code 1 and an error naming what could not start, before
/// saying it is ready; it never panics. Just below the limit that is enough, the last socket the
/// node makes (the client endpoint that pulls streams from origins) is what fails.
#[test]
fn whatever_cannot_start_stops_the_process_before_ready() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "cluster: {store: embedded}\nnodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}]}\n",
    )
    .unwrap();
    let mut last_failure = None;
    let mut ready_at = None;
    for limit in 4..=256 {
        let mut child = Command::new("timeout")
            .args(["-k", "5", "20", "sh", "-c"])
            .arg("ulimit -n \"$0\" && exec \"$1\" run --config \"$2\"")
            .arg(limit.to_string())
            .arg(binary())
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = stdout
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("\"ready\""));
        if ready {
            // SIGTERM to `timeout`, which passes it on to the node and waits for it: a SIGKILL
            // would end `timeout` alone and leave the node running, orphaned.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            ready_at = Some(limit);
            break;
        }
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!err.contains("panicked"), "limit {limit}: {err}");
        assert_eq!(status.code(), Some(1), "limit {limit}: {err}");
        assert!(
            err.contains("node s1")
                || err.contains("cannot start the async runtime")
                || err.contains("cannot install the signal handlers"),
            "limit {limit}: {err}"
        );
        last_failure = Some(err);
    }
    assert!(ready_at.is_some(), "never ready under 256 open files");
    let err = last_failure.expect("some limit is too low to start");
    assert!(
        err.contains("node s1: role standalone: cannot start the relay client that pulls streams from origins"),
        "just below {ready_at:?} open files: {err}"
    );
}

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&cfg.display().to_string(), "FILE");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        stderr,
    )
}

#[test]
fn check_reports_an_unknown_key_three_levels_deep() {
    let (code, _, err) = check(
        "nodes:\n  - role: edge\n    name: e\n    http: \"127.0.0.1:0\"\n    hls:\n      segment: 2s\n      windw: 6\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("FILE:7:7: nodes[0].hls.windw: unknown field `windw`"),
        "{err}"
    );
    let (code, out, _) = check("nodes:\n  - {role: edge, name: e, http: \"127.0.0.1:0\"}\n");
    assert_eq!(code, 0, "{out}");
}

/// `check` on a file: exit code and stderr.
fn check_file(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one-box demo passes `check` as shipped; the role files ship placeholders (`change-me...`)
/// that `check` refuses, naming each key, until an operator puts real secrets in.
#[test]
fn check_accepts_the_demo_and_refuses_role_files_until_their_placeholders_are_replaced() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, err) = check_file(&root.join("config.example.yaml"));
    assert_eq!(code, Some(0), "config.example.yaml: {err}");
    let dir = tempfile::tempdir().unwrap();
    let mut roles = 0;
    for e in std::fs::read_dir(root.join("roles")).unwrap() {
        let path = e.unwrap().path();
        roles += 1;
        let (code, err) = check_file(&path);
        assert_eq!(code, Some(2), "{}: {err}", path.display());
        for line in err.lines() {
            assert!(
                line.contains("still the placeholder from the example files"),
                "{}: only placeholders may fail: {line}",
                path.display()
            );
        }
        assert!(
            err.contains("cluster.secret: still the placeholder"),
            "{err}"
        );
        assert!(err.contains("cluster.store: the MongoDB password"), "{err}");
        assert!(!err.contains("change-me"), "a secret was echoed: {err}");
        // The same file with random values where the placeholders were.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut filled = String::new();
        let mut rest = text.as_str();
        let mut n = 0;
        while let Some(i) = rest.find("change-me") {
            filled.push_str(&rest[..i]);
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| c.is_whitespace() || "@,}".contains(c))
                .unwrap_or(tail.len());
            n += 1;
            filled.push_str(&format!("r4nd0m-value-{n:04}-9f3c2a17"));
            rest = &tail[end..];
        }
        filled.push_str(rest);
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, filled).unwrap();
        let (code, err) = check_file(&copy);
        assert_eq!(code, Some(0), "{} with real secrets: {err}", path.display());
    }
    assert!(roles >= 4, "four role files");
}

/// Runs `streamfleet mode ARGS`, with `stdin` written to its standard input and
/// STREAMFLEET_MONGODB_PASSWORD set to `env` (unset when `None`): exit code, stdout, stderr.
fn mode(args: &[&str], stdin: Option<&str>, env: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("mode")
        .args(args)
        .env_remove("STREAMFLEET_MONGODB_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(env) = env {
        cmd.env("STREAMFLEET_MONGODB_PASSWORD", env);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(stdin) = stdin {
        std::io::Write::write_all(&mut input, stdin.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MODE_ORIGINAL: &str = "# my cluster\ncluster:\n  store: embedded  # one box\n  secret: s3cr3t-shared-0123456789\nnodes:\n  - {role: edge, name: e, http: \"127.0.0.1:0\"}  # keep me\n";

/// A config file holding [`MODE_ORIGINAL`] with mode 0600 and, when the test runs as root, an
/// owner that is not root's (so a rewrite that forgot the owner shows); returns its
/// (mode, uid, gid).
fn private_config(path: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::write(path, MODE_ORIGINAL).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if std::fs::metadata(path).unwrap().uid() == 0 {
        std::os::unix::fs::chown(path, Some(4321), Some(4322)).unwrap();
    }
    mode_and_owner(path)
}

fn mode_and_owner(path: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn mode_switches_the_store_in_place_keeping_mode_and_owner_without_echoing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let kept = private_config(&cfg);
    let c = cfg.to_str().unwrap();
    let (code, stdout, stderr) = mode(
        &["cluster", "db.internal", "admin", "pa$$word", "--config", c],
        None,
        None,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "cluster.store: embedded -> mongodb://admin:***@db.internal:27017/?authSource=admin"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("pa$$word") && !stderr.contains("pa$$word"));
    // The positional password works, with one warning naming the alternatives.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("visible to other users in the process list and shell history")
            && stderr.contains("--password-stdin")
            && stderr.contains("STREAMFLEET_MONGODB_PASSWORD"),
        "{stderr}"
    );
    let edited = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        edited.contains(
            "store: mongodb://admin:pa%24%24word@db.internal:27017/?authSource=admin  # one box"
        ),
        "{edited}"
    );
    assert!(edited.contains("# keep me") && edited.starts_with("# my cluster\n"));
    assert_eq!(mode_and_owner(&cfg), kept, "mode and owner kept");

    let (code, _, stderr) = mode(&["standalone", "--config", c], None, None);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        MODE_ORIGINAL,
        "round trip restores the file byte for byte"
    );
    assert_eq!(mode_and_owner(&cfg), kept, "mode and owner kept");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["c.yaml"], "no temporary file left");
}

#[test]
fn mode_takes_the_password_from_stdin_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let c = cfg.to_str().unwrap();
    for (stdin, env, flag) in [
        // The flag wins over the environment.
        (
            Some("pa$$ word\n"),
            Some("not-this-one"),
            Some("--password-stdin"),
        ),
        (None, Some("pa$$ word"), None),
    ] {
        let kept = private_config(&cfg);
        let mut args = vec!["cluster", "db.internal", "admin", "--config", c];
        args.extend(flag);
        let (code, stdout, stderr) = mode(&args, stdin, env);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(stderr, "", "no warning without a password in argv");
        assert!(!stdout.contains("pa$$"), "{stdout}");
        let edited = std::fs::read_to_string(&cfg).unwrap();
        assert!(
            edited.contains(
                "store: mongodb://admin:pa%24%24%20word@db.internal:27017/?authSource=admin  # one box"
            ),
            "{edited}"
        );
        assert_eq!(mode_and_owner(&cfg), kept);
    }
    // A user and no password anywhere: refused, the file untouched.
    private_config(&cfg);
    let (code, _, stderr) = mode(
        &["cluster", "db.internal", "admin", "--config", c],
        None,
        None,
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), MODE_ORIGINAL);
}

#[test]
fn mode_accepts_a_full_mongodb_srv_uri() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let c = cfg.to_str().unwrap();

    // As Ant Media's change_server_mode.sh takes it: used as it is, with a warning.
    let kept = private_config(&cfg);
    let uri = "mongodb+srv://sf:Xy%40secret9@cluster0.ab1cd.mongodb.net/streamfleet?retryWrites=true&w=majority";
    let (code, stdout, stderr) = mode(&["cluster", uri, "--config", c], None, None);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("embedded -> mongodb+srv://sf:***@cluster0.ab1cd.mongodb.net/streamfleet?"),
        "{stdout}"
    );
    assert!(
        stderr.contains("--password-stdin") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(!stdout.contains("secret9") && !stderr.contains("secret9"));
    let edited = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        edited.contains(&format!("  store: {uri}  # one box\n")),
        "{edited}"
    );
    assert_eq!(mode_and_owner(&cfg), kept);

    // The user in the URI, the password from stdin.
    private_config(&cfg);
    let (code, _, stderr) = mode(
        &[
            "cluster",
            "mongodb+srv://sf@cluster0.ab1cd.mongodb.net/",
            "--password-stdin",
            "--config",
            c,
        ],
        Some("Xy@secret9\n"),
        None,
    );
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let edited = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        edited.contains("store: mongodb+srv://sf:Xy%40secret9@cluster0.ab1cd.mongodb.net/  #"),
        "{edited}"
    );

    // Not a MongoDB URI, or one the driver would split elsewhere: a clear error that quotes
    // nothing, and the file untouched.
    for bad in [
        "https://sf:secret9@cluster0.example.net/",
        "mongodb+srv://sf:secret9@cluster0.example.net:27017/",
        "mongodb://sf:sec?ret9@cluster0.example.net/",
    ] {
        private_config(&cfg);
        let (code, stdout, stderr) = mode(&["cluster", bad, "--config", c], None, None);
        assert_eq!(code, Some(2), "{bad}: {stdout}");
        assert!(
            stderr.contains("invalid MongoDB address"),
            "{bad}: {stderr}"
        );
        assert!(
            !stderr.contains("ret9") && !stdout.contains("ret9"),
            "{bad}: {stderr}"
        );
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), MODE_ORIGINAL);
    }
}

#[test]
fn version_flag() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        concat!("streamfleet ", env!("CARGO_PKG_VERSION"))
    );
}
