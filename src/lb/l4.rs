//! `mode: tcp` frontends: pick a server of the backend (retrying other servers when a connect
//! fails), then copy bytes both ways until both sides close or the tunnel idles out.
//!
//! Data flow: accepted socket -> [`serve`] -> `upstream::connect` -> `pipe::run` with the
//! frontend's, backend's and server's counters. A client for which no server can be reached is
//! closed at once (there is no protocol to say why). One `tcplog` line per connection when it
//! ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::Frontend;
use super::backend::{Backend, Server};
use super::counters::{Counters, inc};
use super::log::{Cause, Conns, Phase, TcpEntry, Termination};
use super::pipe::{self, PipeEnd, PipeTimeouts};
use super::upstream::{ConnectPlan, ConnectTrace, connect};
use crate::runtime::ConnPermit;

/// Serves one client of a TCP frontend.
pub async fn serve(fe: Arc<Frontend>, client: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let start = Instant::now();
    let _fe_session = fe.counters.open();
    let Some(backend) = fe
        .config
        .backend
        .or(fe.config.publish_backend)
        .and_then(|i| fe.backend(i))
    else {
        return;
    };
    // This session's own bytes, for the access log.
    let session = Arc::new(Counters::default());
    let mut entry = TcpEntry {
        client: peer,
        start,
        frontend: &fe.config.name,
        backend: Some(&backend.name),
        server: None,
        t_queue: Some(Duration::ZERO),
        t_connect: None,
        bytes_in: 0,
        bytes_out: 0,
        termination: Termination::NORMAL,
        conns: Conns::default(),
    };
    let set = backend.servers();
    let plan = ConnectPlan {
        preferred: None,
        client: peer.ip(),
        stream: None,
        timeout: fe.timeouts.connect,
        pooled: false,
    };
    let mut trace = ConnectTrace::default();
    let connect_started = Instant::now();
    let upstream = match connect(backend, &set, plan, &mut trace).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(frontend = %fe.config.name, backend = %backend.name, %peer, error = %e, "no server reachable; closing");
            entry.server = trace.server.as_deref().map(|s| s.name.as_str());
            entry.termination = Termination {
                cause: Cause::ServerAbort,
                phase: Phase::Connect,
            };
            entry.conns = conns(&fe, Some(backend), None, &trace);
            fe.log.tcp(&entry, Instant::now());
            return;
        }
    };
    entry.t_connect = Some(connect_started.elapsed());
    entry.server = Some(&upstream.server.name);
    let _be_session = backend.counters.open();
    let _srv_session = upstream.server.counters.open();
    let timeouts = PipeTimeouts {
        idle: fe.timeouts.tunnel,
        client_fin: fe.timeouts.client_fin,
    };
    let counters = [
        &fe.counters,
        &backend.counters,
        &upstream.server.counters,
        &session,
    ];
    let server = upstream.server.clone();
    entry.termination = match pipe::run(
        client,
        upstream.stream,
        b"",
        b"",
        timeouts,
        &counters,
        &fe.shutdown,
    )
    .await
    {
        Ok(end) => {
            tracing::debug!(frontend = %fe.config.name, %peer, ?end, "tcp session ended");
            pipe_termination(&end)
        }
        Err(e) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "tcp session failed");
            Termination {
                cause: Cause::ClientAbort,
                phase: Phase::Data,
            }
        }
    };
    let bytes = session.snapshot();
    entry.bytes_in = bytes.bytes_in;
    entry.bytes_out = bytes.bytes_out;
    entry.conns = conns(&fe, Some(backend), Some(&server), &trace);
    fe.log.tcp(&entry, Instant::now());
}

/// The termination state of a pipe that ended without an error.
pub fn pipe_termination(end: &PipeEnd) -> Termination {
    match end {
        PipeEnd::Closed => Termination::NORMAL,
        PipeEnd::Timeout => Termination {
            cause: Cause::ClientTimeout,
            phase: Phase::Data,
        },
        PipeEnd::Stopped => Termination {
            cause: Cause::Killed,
            phase: Phase::Data,
        },
    }
}

/// The connection counts of a log line (sessions of this one included).
pub fn conns(
    fe: &Frontend,
    backend: Option<&Backend>,
    server: Option<&Server>,
    trace: &ConnectTrace,
) -> Conns {
    Conns {
        active: fe.limit.active() as u64,
        frontend: fe.counters.current(),
        backend: backend.map_or(0, |b| b.counters.current()),
        server: server.map_or(0, |s| s.counters.current()),
        retries: trace.retries,
        redispatched: trace.redispatched,
    }
}
