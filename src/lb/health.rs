//! Active health checks: every `interval` each server of a backend with a `health` section is
//! checked (`tcp`: connect; `http`: `GET path`, 2xx/3xx pass) within the check timeout. Results
//! go to [`Server::record_check`]: DOWN after `fall` consecutive failures, UP after `rise`
//! successes; each change is logged once, HAProxy-style.
//!
//! Data flow: one checker task per server, started with the server (static or discovered) and
//! ended when the server is retired or the process stops. Checks never touch request traffic.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend::{Backend, CheckOutcome, Server, Transition};
use crate::config::{HealthConfig, HealthKind};
use crate::runtime::Shutdown;
use streamfleet_proto::http::{HeadLimits, ResponseParser};

/// Largest response head an HTTP check reads.
const MAX_CHECK_HEAD: usize = 16 * 1024;

/// Starts the checker of `server` if `backend` has checks.
pub fn spawn_checker(backend: &Arc<Backend>, server: &Arc<Server>, shutdown: &Shutdown) {
    let Some(health) = backend.health.clone() else {
        return;
    };
    let backend = backend.clone();
    let server = server.clone();
    let shutdown2 = shutdown.clone();
    shutdown.spawn_service(async move {
        let mut ticker = tokio::time::interval(health.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the first check waits one interval, as the server
        // starts UP anyway.
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = server.retired() => return,
                () = shutdown2.stopped() => return,
            }
            let outcome = check(&server, &health).await;
            let (status, code) = (outcome.status, outcome.code);
            let duration = outcome.duration;
            if let Some(t) = server.record_check(outcome, health.rise, health.fall) {
                backend.refresh_history();
                let left = backend
                    .servers()
                    .servers
                    .iter()
                    .filter(|s| s.is_up())
                    .count();
                let state = match t {
                    Transition::Down => "DOWN",
                    Transition::Up => "UP",
                };
                tracing::warn!(
                    backend = %backend.name,
                    server = %server.name,
                    check = status,
                    code = ?code,
                    duration_ms = duration.as_millis() as u64,
                    active_left = left,
                    "Server {}/{} is {state}",
                    backend.name,
                    server.name
                );
            }
        }
    });
}

/// Runs one check.
pub async fn check(server: &Server, health: &HealthConfig) -> CheckOutcome {
    let started = Instant::now();
    let outcome = |passed, status, code| CheckOutcome {
        passed,
        status,
        code,
        duration: started.elapsed(),
    };
    let deadline = tokio::time::Instant::now() + health.timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(server.addr)).await {
        Err(_) => return outcome(false, "L4TOUT", None),
        Ok(Err(_)) => return outcome(false, "L4CON", None),
        Ok(Ok(s)) => s,
    };
    let path = match &health.kind {
        HealthKind::Tcp => return outcome(true, "L4OK", None),
        HealthKind::Http { path } => path,
    };
    match tokio::time::timeout_at(deadline, http_status(stream, server, path)).await {
        Err(_) => outcome(false, "L7TOUT", None),
        Ok(None) => outcome(false, "L7RSP", None),
        Ok(Some(code)) if (200..400).contains(&code) => outcome(true, "L7OK", Some(code)),
        Ok(Some(code)) => outcome(false, "L7STS", Some(code)),
    }
}

/// Sends `GET path` and returns the response status, `None` for no or a broken response.
async fn http_status(mut stream: TcpStream, server: &Server, path: &str) -> Option<u16> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: streamfleet-check\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut parser = ResponseParser::new(HeadLimits {
        max_head_bytes: MAX_CHECK_HEAD,
        ..HeadLimits::default()
    });
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match parser.parse(&buf) {
            // `100 Continue` and friends: the final answer follows.
            Ok(Some(head)) if head.is_interim() => buf.advance(head.head_len()),
            Ok(Some(head)) => return Some(head.status()),
            Ok(None) => {
                if stream.read_buf(&mut buf).await.ok()? == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use std::time::Duration;

    use super::*;
    use crate::config::ServerConfig;

    fn health(kind: HealthKind) -> HealthConfig {
        HealthConfig {
            kind,
            interval: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            timeout: Duration::from_secs(2),
        }
    }

    async fn answer(listener: TcpListener, response: &'static [u8]) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
        s.write_all(response).await.unwrap();
    }

    #[tokio::test]
    async fn http_checks_pass_on_2xx_3xx_and_fail_otherwise() {
        for (response, passed, status) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
                true,
                "L7OK",
            ),
            (
                b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n",
                true,
                "L7OK",
            ),
            (
                b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
                false,
                "L7STS",
            ),
            (b"garbage\r\n\r\n", false, "L7RSP"),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = Server::new(&ServerConfig {
                name: "s".into(),
                addr: l.local_addr().unwrap(),
                cookie: None,
                weight: 1,
            });
            let t = tokio::spawn(answer(l, response));
            let o = check(
                &server,
                &health(HealthKind::Http {
                    path: "/healthz".into(),
                }),
            )
            .await;
            t.await.unwrap();
            assert_eq!(
                (o.passed, o.status),
                (passed, status),
                "{}",
                String::from_utf8_lossy(response)
            );
        }
    }

    #[tokio::test]
    async fn tcp_checks_connect() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = Server::new(&ServerConfig {
            name: "s".into(),
            addr,
            cookie: None,
            weight: 1,
        });
        assert_eq!(
            check(&server, &health(HealthKind::Tcp)).await.status,
            "L4OK"
        );
        drop(l);
        assert_eq!(
            check(&server, &health(HealthKind::Tcp)).await.status,
            "L4CON"
        );
    }
}
