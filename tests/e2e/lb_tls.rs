//! TLS termination, one test per behaviour: SNI-chosen certificates with the first as default,
//! ALPN h2 proxied to HTTP/1.1 upstreams (bodies both ways, un-chunking), TLS 1.2/1.3 only,
//! handshakes that never block the accept loop, startup errors naming the file, the
//! self-signed development certificate, and compliance with Mozilla's intermediate profile
//! (sslyze).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::common::lb::{Behaviour, Upstream, chunked_body, curl, lb_config, write_cert};
use crate::common::{Proc, wait_for};

fn tls_config(up: &Upstream, certs: &[&std::path::Path], extra: &str) -> String {
    let certs: Vec<String> = certs
        .iter()
        .map(|c| format!("\"{}\"", c.display()))
        .collect();
    lb_config(&format!(
        "    timeouts: {{client: 2s}}\n    frontends:\n      - {{name: tls, mode: http, bind: [\"127.0.0.1:0\"], backend: b, tls: {{certs: [{}]{extra}}}}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n",
        certs.join(", "),
        up.addr
    ))
}

/// curl to `https://<host>:<port><path>` resolved to the LB, trusting `ca`; returns (body, http_version).
fn curl_tls(
    lb: SocketAddr,
    host: &str,
    path: &str,
    ca: &std::path::Path,
    extra: &[&str],
) -> (String, String, i32) {
    let resolve = format!("{host}:{}:127.0.0.1", lb.port());
    let url = format!("https://{host}:{}{path}", lb.port());
    let marker = "\n--http-version:";
    let mut args = vec![
        "--resolve",
        &resolve,
        "--cacert",
        ca.to_str().unwrap(),
        "-w",
        "\n--http-version:%{http_version}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, version) = text
        .rsplit_once(marker)
        .map(|(b, v)| (b.to_owned(), v.to_owned()))
        .unwrap_or((text.clone(), String::new()));
    (body, version, out.status.code().unwrap_or(-1))
}

/// The DNS names of the certificate the LB presents for `sni`.
fn served_names(lb: SocketAddr, sni: &str) -> String {
    let script = format!(
        "openssl s_client -connect {lb} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn certificates_are_chosen_by_sni_and_the_first_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_ca) = write_cert(dir.path(), "a", &["a.example"]);
    let (b, b_ca) = write_cert(dir.path(), "b", &["b.example", "*.b.example"]);
    let up = Upstream::start("s1");
    let p = Proc::start(&tls_config(&up, &[&a, &b], ""));
    let lb = p.addr("lb1", "frontend:tls");
    assert_eq!(curl_tls(lb, "a.example", "/", &a_ca, &[]).0, "s1");
    assert_eq!(curl_tls(lb, "b.example", "/", &b_ca, &[]).0, "s1");
    assert_eq!(
        curl_tls(lb, "x.b.example", "/", &b_ca, &[]).0,
        "s1",
        "wildcard SAN"
    );
    assert!(
        served_names(lb, "unknown.example").contains("DNS:a.example"),
        "default certificate for unknown names"
    );
    assert!(served_names(lb, "b.example").contains("DNS:b.example"));
    let r = &up.requests()[0];
    assert_eq!(r.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn alpn_h2_clients_are_proxied_to_http1_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ca) = write_cert(dir.path(), "a", &["a.example"]);
    let up = Upstream::start("s1");
    let p = Proc::start(&tls_config(&up, &[&a], ""));
    let lb = p.addr("lb1", "frontend:tls");

    let (body, version, code) = curl_tls(
        lb,
        "a.example",
        "/h2?x=1",
        &ca,
        &["--http2", "-H", "Cookie: a=1", "-H", "Cookie: b=2"],
    );
    assert_eq!((body.as_str(), version.as_str(), code), ("s1", "2", 0));
    let (body, version, _) = curl_tls(lb, "a.example", "/h1", &ca, &["--http1.1"]);
    assert_eq!((body.as_str(), version.as_str()), ("s1", "1.1"));

    // A request body of known length, and one of unknown length (chunked upstream).
    let (body, _, _) = curl_tls(
        lb,
        "a.example",
        "/post",
        &ca,
        &["--http2", "--data-binary", "hello h2"],
    );
    assert_eq!(body, "s1");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![b'q'; 200_000]).unwrap();
    let script = format!(
        "cat {} | curl -s --http2 --resolve a.example:{port}:127.0.0.1 --cacert {} -T - https://a.example:{port}/stream",
        file.path().display(),
        ca.display(),
        port = lb.port()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s1");

    // A large chunked response is un-chunked into DATA frames, flow control respected.
    up.set(Behaviour::Chunked(1_000_000));
    let (body, version, _) = curl_tls(lb, "a.example", "/big", &ca, &["--http2"]);
    assert_eq!(version, "2");
    assert!(
        body.as_bytes() == chunked_body(1_000_000),
        "body of {} bytes differs",
        body.len()
    );

    let reqs = up.requests();
    let h2 = &reqs[0];
    assert_eq!(
        (h2.version.as_str(), h2.path.as_str()),
        ("HTTP/1.1", "/h2?x=1")
    );
    assert_eq!(
        h2.header("host"),
        Some(format!("a.example:{}", lb.port()).as_str()),
        ":authority becomes Host"
    );
    assert_eq!(h2.all("cookie"), ["a=1; b=2"], "cookie fields are joined");
    assert_eq!(h2.all("x-forwarded-for"), ["127.0.0.1"]);
    let post = reqs.iter().find(|r| r.path == "/post").unwrap();
    assert_eq!(post.body, b"hello h2");
    let stream = reqs.iter().find(|r| r.path == "/stream").unwrap();
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(stream.body.len(), 200_000);
}

#[test]
fn only_tls_1_2_and_1_3_are_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ca) = write_cert(dir.path(), "a", &["a.example"]);
    let up = Upstream::start("s1");
    let p = Proc::start(&tls_config(&up, &[&a], ""));
    let lb = p.addr("lb1", "frontend:tls");
    assert_eq!(
        curl_tls(
            lb,
            "a.example",
            "/",
            &ca,
            &["--tlsv1.2", "--tls-max", "1.2"]
        )
        .0,
        "s1"
    );
    assert_eq!(curl_tls(lb, "a.example", "/", &ca, &["--tlsv1.3"]).0, "s1");
    let script = format!(
        "openssl s_client -connect {lb} -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("BEGIN CERTIFICATE") && !out.status.success(),
        "TLS 1.1 must fail: {text}"
    );
    // A cipher outside Mozilla's intermediate list (CBC) is refused.
    let out = curl(&[
        "--resolve",
        &format!("a.example:{}:127.0.0.1", lb.port()),
        "--cacert",
        ca.to_str().unwrap(),
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA",
        &format!("https://a.example:{}/", lb.port()),
    ]);
    assert!(!out.status.success(), "CBC suites are not offered");
}

#[test]
fn a_stalled_handshake_does_not_block_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ca) = write_cert(dir.path(), "a", &["a.example"]);
    let up = Upstream::start("s1");
    let p = Proc::start(&tls_config(&up, &[&a], ""));
    let lb = p.addr("lb1", "frontend:tls");
    let silent: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(lb).unwrap())
        .collect();
    let started = std::time::Instant::now();
    assert_eq!(curl_tls(lb, "a.example", "/", &ca, &[]).0, "s1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served while three handshakes stall"
    );
    drop(silent);
}

#[test]
fn missing_or_mismatched_certificate_files_stop_startup_naming_the_file() {
    let up = Upstream::start("s1");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.pem");
    let mut p = Proc::spawn_in(dir, &tls_config(&up, &[&missing], ""));
    assert_eq!(
        p.wait_exit(Duration::from_secs(20)).expect("exits").code(),
        Some(1)
    );
    assert!(p.stderr().contains("nowhere.pem"), "{}", p.stderr());

    let dir = tempfile::tempdir().unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
    let two = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
    let bad = dir.path().join("mixed.pem");
    std::fs::write(
        &bad,
        format!("{}{}", one.cert.pem(), two.signing_key.serialize_pem()),
    )
    .unwrap();
    let mut p = Proc::spawn_in(dir, &tls_config(&up, &[&bad], ""));
    assert_eq!(
        p.wait_exit(Duration::from_secs(20)).expect("exits").code(),
        Some(1)
    );
    assert!(
        p.stderr().contains("mixed.pem") && p.stderr().contains("does not match"),
        "{}",
        p.stderr()
    );
}

#[test]
fn self_signed_creates_a_missing_development_certificate() {
    let up = Upstream::start("s1");
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("certs/dev.pem");
    let p = Proc::start_in(dir, &tls_config(&up, &[&cert], ", self_signed: true"));
    let lb = p.addr("lb1", "frontend:tls");
    assert!(cert.exists());
    let out = curl(&[
        "-k",
        &format!("https://localhost:{}/", lb.port()),
        "--resolve",
        &format!("localhost:{}:127.0.0.1", lb.port()),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s1");
    // The generated file is a valid CA for its own names.
    let (body, _, _) = curl_tls(lb, "localhost", "/", &cert, &[]);
    assert_eq!(body, "s1");
    assert!(
        p.stderr().contains("self-signed"),
        "its location is logged: {}",
        p.stderr()
    );
}

/// Certificate renewal: SIGHUP re-reads the files; new handshakes get the new certificate, a
/// connection opened before keeps working, and a broken file keeps the current certificate
/// with one error line.
#[test]
fn sighup_rereads_certificates_without_dropping_connections() {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = write_cert(dir.path(), "site", &["old.example"]);
    let up = Upstream::start("s1");
    let p = Proc::start(&tls_config(&up, &[&pem], ""));
    let lb = p.addr("lb1", "frontend:tls");
    assert!(served_names(lb, "old.example").contains("DNS:old.example"));

    // A client connected before the renewal.
    let mut before = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &lb.to_string()])
        .args(["-servername", "old.example"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = before.stdin.take().unwrap();
    stdin
        .write_all(b"GET /first HTTP/1.1\r\nHost: old.example\r\n\r\n")
        .unwrap();
    wait_for("the first answer", Duration::from_secs(10), || {
        (up.requests().len() == 1).then_some(())
    });

    // certbot renews: the same path, a new certificate; then SIGHUP.
    write_cert(dir.path(), "site", &["new.example"]);
    p.signal("HUP");
    wait_for("the new certificate", Duration::from_secs(10), || {
        served_names(lb, "new.example")
            .contains("DNS:new.example")
            .then_some(())
    });
    assert!(
        p.stderr().contains("TLS certificates re-read"),
        "{}",
        p.stderr()
    );

    // The old connection still carries requests.
    stdin
        .write_all(b"GET /second HTTP/1.1\r\nHost: old.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    before
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    let _ = before.wait();

    // A broken renewal keeps the current certificate, with one error line.
    std::fs::write(&pem, "not a certificate\n").unwrap();
    p.signal("HUP");
    let errors = wait_for("the reload error", Duration::from_secs(10), || {
        let n = p.stderr().matches("TLS certificates not re-read").count();
        (n > 0).then_some(n)
    });
    assert_eq!(errors, 1);
    assert!(served_names(lb, "new.example").contains("DNS:new.example"));
    assert!(served_names(lb, "x").contains("DNS:new.example"));
}

/// HTTP/2 streams the client resets stop their upstream requests: 50 requests reach a server
/// that never answers, the client resets them, and the backend holds no session for them any
/// more (before, each waited for the server timeout on its server connection); a rapid reset
/// of 200 more (reset as soon as opened) leaves nothing behind either.
#[test]
fn reset_streams_stop_their_upstream_requests() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = write_cert(dir.path(), "site", &["localhost"]);
    let up = Upstream::start("s1");
    up.set(Behaviour::Stall);
    let p = Proc::start(&lb_config(&format!(
        "    timeouts: {{client: 30s, server: 60s}}\n    stats: {{bind: \"127.0.0.1:0\", uri: /stats}}\n    frontends:\n      - {{name: tls, mode: http, bind: [\"127.0.0.1:0\"], backend: b, tls: {{certs: [\"{}\"]}}}}\n    backends:\n      - {{name: b, mode: http, servers: [{{name: s1, addr: \"{}\"}}]}}\n",
        pem.display(),
        up.addr
    )));
    let lb = p.addr("lb1", "frontend:tls");
    let stats = p.addr("lb1", "stats");
    // The backend's current sessions, from the stats CSV.
    let sessions = || {
        let out = curl(&[&format!("http://{stats}/stats;csv")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("b,BACKEND,"))
            .and_then(|l| l.split(',').nth(4).map(str::to_owned))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let venv = std::env::var("SECANTUS_VENV").unwrap_or_else(|_| "/opt/secantus-venv".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/rapid_reset.py");
    let probe = |count: &str, wait: bool| {
        let mut cmd = Command::new(format!("{venv}/bin/python"));
        cmd.args([script, "127.0.0.1", &lb.port().to_string(), count]);
        if wait {
            cmd.arg("--wait");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with h2 (.ci/deps test)")
    };

    let mut slow = probe("50", true);
    let mut out = std::io::BufReader::new(slow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "opened 50");
    wait_for("50 requests at the server", Duration::from_secs(10), || {
        (up.requests().len() == 50).then_some(())
    });
    assert_eq!(sessions(), Some(50));
    slow.stdin.take().unwrap().write_all(b"reset\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "reset-done 50");
    wait_for(
        "the reset streams' sessions to end",
        Duration::from_secs(10),
        || (sessions() == Some(0)).then_some(()),
    );

    // 200 streams opened and reset at once: the client gets through them all, or the LB ends
    // the flood (GOAWAY and a close) first; either way no request is left at the server.
    let mut rapid = probe("200", false);
    let mut line = String::new();
    std::io::BufReader::new(rapid.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.trim() == "reset-done 200" || line.starts_with("closed-by-server "),
        "{line}"
    );
    wait_for(
        "no session left by the rapid resets",
        Duration::from_secs(10),
        || (sessions() == Some(0)).then_some(()),
    );
    for mut c in [slow, rapid] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `sslyze --mozilla_config=intermediate` finds the TLS frontend compliant with Mozilla's
/// intermediate profile (protocols, ciphers, curves, certificate), with a P-256 certificate
/// issued by a test CA that sslyze is given as its trust store.
#[test]
fn tls_frontend_is_compliant_with_mozilla_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .current_dir(d)
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 30 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign",
    );
    sh(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
        -out leaf.csr -subj /CN=localhost",
    );
    sh(
        "printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n\
keyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
        -days 30 -extfile ext.cnf && cat leaf.pem ca.pem leaf.key > site.pem",
    );
    let up = Upstream::start("s1");
    let p = Proc::start(&tls_config(&up, &[&d.join("site.pem")], ""));
    let lb = p.addr("lb1", "frontend:tls");
    let venv = std::env::var("SECANTUS_VENV").unwrap_or_else(|_| "/opt/secantus-venv".into());
    let out = Command::new(format!("{venv}/bin/sslyze"))
        .arg("--mozilla_config=intermediate")
        .arg(format!("--certinfo_ca_file={}", d.join("ca.pem").display()))
        .arg(format!("localhost:{}{{127.0.0.1}}", lb.port()))
        .output()
        .expect("sslyze (.ci/deps test)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(": OK - Compliant."),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
