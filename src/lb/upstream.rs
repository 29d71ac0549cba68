//! Getting a connection to a server of a backend: reuse a pooled one or connect under
//! `timeouts.connect`; on a failed connect try another server, up to `retries` more attempts,
//! then give up (the caller answers 503).
//!
//! Data flow: the caller loads the backend's server set once, maybe names a sticky server, and
//! calls [`connect`]; the result is the chosen server (for counters, cookies and the pool) and
//! the stream. Counters: `econ` per failed attempt, `wretr` per retry, `wredis` when a retry
//! lands on another server than the first pick, `connect` per new connection, `reuse` per
//! pooled one. What happened is also left in a [`ConnectTrace`] for the access log.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::backend::{Backend, Server, ServerSet};
use super::counters::inc;
use super::error::ProxyError;
use super::l7::pool::MAX_IDLE_TIME;
use super::select::pick;

/// A connection to a server.
#[derive(Debug)]
pub struct Upstream {
    /// The server.
    pub server: Arc<Server>,
    /// The connection.
    pub stream: TcpStream,
    /// Taken from the pool (the server may have closed it meanwhile).
    pub reused: bool,
}

/// How to choose and reach the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPlan {
    /// Server to try first (a sticky cookie naming a server that is UP).
    pub preferred: Option<usize>,
    /// Client address, for `balance: source`.
    pub client: IpAddr,
    /// The request's stream point, for `balance: stream`.
    pub stream: Option<u64>,
    /// `timeouts.connect`.
    pub timeout: Duration,
    /// Whether a pooled connection may be used.
    pub pooled: bool,
}

/// What a [`connect`] call did, for the access log (filled even when it fails).
#[derive(Debug, Clone, Default)]
pub struct ConnectTrace {
    /// Attempts after the first.
    pub retries: u32,
    /// Whether a retry went to another server than the first pick.
    pub redispatched: bool,
    /// The last server tried.
    pub server: Option<Arc<Server>>,
}

/// Connects to a server of `backend` chosen from `set`.
pub async fn connect(
    backend: &Backend,
    set: &ServerSet,
    plan: ConnectPlan,
    trace: &mut ConnectTrace,
) -> Result<Upstream, ProxyError> {
    let mut failed: Vec<usize> = Vec::new();
    let mut first_pick = None;
    let mut last_error = None;
    for attempt in 0..=backend.retries {
        let index = match plan.preferred.filter(|_| attempt == 0) {
            Some(i) => Some(i),
            None => pick(backend, set, plan.client, plan.stream, &failed),
        };
        let Some(index) = index else { break };
        let Some(server) = set.servers.get(index) else {
            break;
        };
        if attempt > 0 {
            inc(&backend.counters.retries);
            inc(&server.counters.retries);
            trace.retries = attempt;
            if first_pick != Some(index) {
                inc(&backend.counters.redispatches);
                inc(&server.counters.redispatches);
                trace.redispatched = true;
            }
        }
        first_pick.get_or_insert(index);
        trace.server = Some(server.clone());
        if plan.pooled
            && let Some(stream) = server.pool.take()
        {
            inc(&backend.counters.reuses);
            inc(&server.counters.reuses);
            return Ok(Upstream {
                server: server.clone(),
                stream,
                reused: true,
            });
        }
        inc(&backend.counters.connects);
        inc(&server.counters.connects);
        // Counted in the server's load while connecting: simultaneous clients see each other.
        let _connecting = server.counters.connecting();
        match connect_addr(server, plan.timeout).await {
            Ok(stream) => {
                return Ok(Upstream {
                    server: server.clone(),
                    stream,
                    reused: false,
                });
            }
            Err(e) => {
                inc(&server.counters.connection_errors);
                inc(&backend.counters.connection_errors);
                tracing::debug!(backend = %backend.name, server = %server.name, error = %e, "connect failed");
                failed.push(index);
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or(ProxyError::NoServer))
}

/// An upstream connection an HTTP/1 client connection keeps between its requests: its next
/// request to the same server uses it without going through the server's pool (no lock, no
/// probe, no move between threads). At most one per client connection, so `maxconn` bounds
/// them; given back to the pool when the next request goes elsewhere or the client leaves.
#[derive(Debug)]
pub struct Held {
    /// The server.
    pub server: Arc<Server>,
    /// The idle connection.
    pub stream: TcpStream,
    /// When its last response ended.
    pub since: Instant,
}

impl Held {
    /// Whether it may still carry a request ([`MAX_IDLE_TIME`], like pooled connections).
    fn fresh(&self) -> bool {
        self.since.elapsed() <= MAX_IDLE_TIME
    }

    /// Whether the server has neither closed it nor written to it (one `recv` call).
    fn quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Gives the connection back to its server's pool, if it is still worth keeping.
    pub fn release(self) {
        if self.fresh() && self.server.is_up() {
            self.server.pool.put(self.stream);
        }
    }
}

/// [`connect`], trying `held` first: when the server this request goes to is the held
/// connection's, it is used as a pooled one would be (`reuses` counted); else it goes back to
/// its pool and the request connects as usual to the server already picked (the pick is not
/// repeated, so round-robin and load counts see one pick). Without `probe` a held connection
/// is used without checking that the server kept it open: the caller must be able to replay
/// the request on a new connection (a bodiless one).
pub async fn connect_held(
    backend: &Backend,
    set: &ServerSet,
    plan: ConnectPlan,
    trace: &mut ConnectTrace,
    held: &mut Option<Held>,
    probe: bool,
) -> Result<Upstream, ProxyError> {
    let Some(h) = held.take() else {
        return connect(backend, set, plan, trace).await;
    };
    if !(plan.pooled && h.fresh()) {
        return connect(backend, set, plan, trace).await;
    }
    let index = match plan.preferred {
        Some(i) => Some(i),
        None => pick(backend, set, plan.client, plan.stream, &[]),
    };
    let Some((index, server)) = index.and_then(|i| Some((i, set.servers.get(i)?))) else {
        h.release();
        return connect(backend, set, plan, trace).await;
    };
    if Arc::ptr_eq(server, &h.server) && (!probe || h.quiet()) {
        inc(&backend.counters.reuses);
        inc(&server.counters.reuses);
        trace.server = Some(server.clone());
        return Ok(Upstream {
            server: h.server,
            stream: h.stream,
            reused: true,
        });
    }
    if Arc::ptr_eq(server, &h.server) {
        // The server closed it (or broke the protocol on it): not worth pooling.
        drop(h);
    } else {
        h.release();
    }
    let plan = ConnectPlan {
        preferred: Some(index),
        ..plan
    };
    connect(backend, set, plan, trace).await
}

/// Connects to one server, bounded by `timeout`, with TCP_NODELAY.
pub async fn connect_addr(server: &Server, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let addr = server.addr;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
        Err(_) => {
            return Err(ProxyError::Connect {
                addr,
                source: io::ErrorKind::TimedOut.into(),
            });
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%addr, error = %e, "set_nodelay failed");
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{BackendConfig, Balance, ProxyMode, ServerConfig};

    async fn dead_addr() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_failed_connect_moves_to_another_server() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let servers = vec![
            ServerConfig {
                name: "dead".into(),
                addr: dead_addr().await,
                cookie: None,
                weight: 1,
            },
            ServerConfig {
                name: "live".into(),
                addr: live.local_addr().unwrap(),
                cookie: None,
                weight: 1,
            },
        ];
        let b = Backend::new(&BackendConfig {
            name: "b".into(),
            mode: ProxyMode::Tcp,
            balance: Balance::RoundRobin,
            health: None,
            sticky_cookie: None,
            servers,
            servers_from: None,
            retries: 3,
            http_server_close: false,
        });
        let set = b.servers();
        let plan = ConnectPlan {
            preferred: Some(0),
            client: "127.0.0.1".parse().unwrap(),
            stream: None,
            timeout: Duration::from_secs(5),
            pooled: false,
        };
        let mut trace = ConnectTrace::default();
        let up = connect(&b, &set, plan, &mut trace).await.unwrap();
        assert_eq!(up.server.name, "live");
        let s = b.counters.snapshot();
        assert_eq!((s.connection_errors, s.retries, s.redispatches), (1, 1, 1));
        assert_eq!(s.connects, 2);
        assert_eq!((trace.retries, trace.redispatched), (1, true));
        assert_eq!(trace.server.as_ref().map(|s| s.name.as_str()), Some("live"));

        let only_dead = ServerSet::new(vec![set.servers[0].clone()]);
        let e = connect(
            &b,
            &only_dead,
            ConnectPlan {
                preferred: None,
                ..plan
            },
            &mut ConnectTrace::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ProxyError::Connect { .. }), "{e:?}");
        assert_eq!(e.status(), Some(503));
    }

    #[tokio::test]
    async fn simultaneous_connects_for_one_stream_respect_the_bounded_load() {
        let mut listeners = Vec::new();
        let mut servers = Vec::new();
        for i in 0..4 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            servers.push(ServerConfig {
                name: format!("s{i}"),
                addr: l.local_addr().unwrap(),
                cookie: None,
                weight: 1,
            });
            listeners.push(l);
        }
        let b = Backend::new(&BackendConfig {
            name: "b".into(),
            mode: ProxyMode::Tcp,
            balance: Balance::Stream {
                factor_percent: 125,
                viewer_idle: Duration::from_secs(30),
            },
            health: None,
            sticky_cookie: None,
            servers,
            servers_from: None,
            retries: 0,
            http_server_close: false,
        });
        let set = b.servers();
        let plan = ConnectPlan {
            preferred: None,
            client: "127.0.0.1".parse().unwrap(),
            stream: crate::lb::placement::rtmp_stream("live", "cam"),
            timeout: Duration::from_secs(5),
            pooled: false,
        };
        // 64 players of one stream connect at the same moment (no session opened yet when the
        // others pick): each pick sees the connects in progress.
        let connects = (0..64).map(|_| async {
            let up = connect(&b, &set, plan, &mut ConnectTrace::default())
                .await
                .unwrap();
            up.server.name.clone()
        });
        let mut per_server = std::collections::HashMap::new();
        for name in futures_util::future::join_all(connects).await {
            *per_server.entry(name).or_insert(0u32) += 1;
        }
        let most = per_server.values().copied().max().unwrap();
        assert!(
            most <= 64 * 125 / 100 / 4 + 1,
            "one server took {most} of 64 simultaneous connects: {per_server:?}"
        );
    }
}
