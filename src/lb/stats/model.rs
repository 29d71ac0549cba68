//! What the stats page, the CSV export and `/metrics` show, read once per request from the
//! live objects: one [`Proxy`] per frontend and per backend, each with HAProxy's rows
//! (`FRONTEND`; or one row per server then `BACKEND`).
//!
//! Data flow: [`LbObjects`] (the node's frontends, backends and connection limit) ->
//! [`LbObjects::collect`] loads every counter, server state and check history -> the page and
//! CSV renderers (`html`, `csv`) turn the rows into text, and the node's metrics registry
//! encodes them through the collector in `prom` at each scrape. Nothing here is on the request
//! path of proxied traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Balance, HealthConfig, ProxyMode};
use crate::lb::Frontend;
use crate::lb::backend::{Backend, CheckOutcome, Server};
use crate::lb::counters::CounterSnapshot;
use crate::runtime::ConnLimit;

/// Whether a row describes a frontend, a backend or a server (HAProxy's `type` 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// `FRONTEND`.
    Frontend,
    /// `BACKEND`.
    Backend,
    /// One server of a backend.
    Server,
}

impl RowKind {
    /// HAProxy's numeric `type`.
    pub fn code(self) -> u8 {
        match self {
            RowKind::Frontend => 0,
            RowKind::Backend => 1,
            RowKind::Server => 2,
        }
    }
}

/// A server's or backend's state as the stats show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A frontend that accepts connections (`OPEN`).
    Open,
    /// A frontend that stopped accepting because the node is draining (`STOP`).
    Stopped,
    /// Taking traffic; checks (if any) agree.
    Up,
    /// Taking no traffic; checks (if any) agree.
    Down,
    /// Still UP, but `failed` of the `fall` failures that take it DOWN have happened.
    GoingDown {
        /// Consecutive failed checks so far.
        failed: u32,
        /// Failures needed.
        fall: u32,
    },
    /// Still DOWN, but `passed` of the `rise` successes that bring it UP have happened.
    GoingUp {
        /// Consecutive passed checks so far.
        passed: u32,
        /// Successes needed.
        rise: u32,
    },
    /// A server of a backend without health checks (always taking traffic).
    NoCheck,
}

impl State {
    /// HAProxy's status text: `UP`, `DOWN`, `UP 1/3` (one check left before DOWN, counted as
    /// HAProxy does: remaining health out of `fall`), `DOWN 1/2` (one good check of two),
    /// `no check`, `OPEN`, `STOP`.
    pub fn text(self) -> String {
        match self {
            State::Open => "OPEN".into(),
            State::Stopped => "STOP".into(),
            State::Up => "UP".into(),
            State::Down => "DOWN".into(),
            State::GoingDown { failed, fall } => {
                format!("UP {}/{fall}", fall.saturating_sub(failed))
            }
            State::GoingUp { passed, rise } => format!("DOWN {passed}/{rise}"),
            State::NoCheck => "no check".into(),
        }
    }

    /// Whether the object takes traffic.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            State::Open | State::Up | State::GoingDown { .. } | State::NoCheck
        )
    }

    /// HAProxy's check health value, `0 ..= rise + fall - 1` (`check_health`).
    fn health(self, rise: u32, fall: u32) -> u32 {
        let full = (rise + fall).saturating_sub(1);
        match self {
            State::Up => full,
            State::GoingDown { failed, .. } => full.saturating_sub(failed),
            State::GoingUp { passed, .. } => passed,
            _ => 0,
        }
    }
}

/// Health-check facts of a server row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// The last check's result, if one ran.
    pub last: Option<CheckOutcome>,
    /// `chkfail`: failed checks.
    pub failures: u64,
    /// `check_rise`.
    pub rise: u32,
    /// `check_fall`.
    pub fall: u32,
    /// `check_health`.
    pub health: u32,
}

/// One row of the stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Frontend, backend or server.
    pub kind: RowKind,
    /// `pxname`: the frontend's or backend's name.
    pub proxy: String,
    /// `svname`: `FRONTEND`, `BACKEND` or the server's name.
    pub name: String,
    /// `mode`.
    pub mode: ProxyMode,
    /// `iid`: the proxy's number (frontends first, then backends, from 1).
    pub iid: usize,
    /// `sid`: the server's number in its backend (from 1; 0 on other rows).
    pub sid: usize,
    /// Traffic counters.
    pub counters: CounterSnapshot,
    /// `slim`: session limit (frontends: the node's `maxconn`).
    pub limit: Option<u64>,
    /// `status`.
    pub state: State,
    /// `weight`: the server's weight, or the sum of the UP servers' weights.
    pub weight: Option<u64>,
    /// `act`: 1 for a server taking traffic, or the number of UP servers.
    pub active: Option<u64>,
    /// Check facts (servers of backends with checks).
    pub check: Option<CheckRow>,
    /// `chkdown`: transitions to DOWN.
    pub down_transitions: Option<u64>,
    /// `lastchg`: time since the last state change.
    pub last_change: Option<Duration>,
    /// `downtime`: total time DOWN.
    pub downtime: Option<Duration>,
    /// `addr`: the server's address.
    pub addr: Option<SocketAddr>,
    /// `cookie`: the server's cookie value, or the backend's cookie name.
    pub cookie: Option<String>,
    /// `algo`: the backend's balance algorithm.
    pub algo: Option<Balance>,
    /// `srv_icur`: idle pooled connections to the server.
    pub idle_connections: Option<u64>,
    /// `balance: stream`: the server's load as the balancer counts it (viewers on mode http,
    /// open connections on mode tcp).
    pub balance_load: Option<u64>,
}

/// A frontend or backend with its rows in HAProxy's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Name.
    pub name: String,
    /// Whether it is a frontend (one `FRONTEND` row) or a backend (servers, then `BACKEND`).
    pub kind: RowKind,
    /// Rows.
    pub rows: Vec<Row>,
}

/// The config spelling of a mode, as HAProxy's `mode` column has it.
pub fn mode_name(mode: ProxyMode) -> &'static str {
    match mode {
        ProxyMode::Tcp => "tcp",
        ProxyMode::Http => "http",
        ProxyMode::Rtmp => "rtmp",
    }
}

/// The config spelling of an algorithm.
pub fn algo_name(algo: Balance) -> &'static str {
    match algo {
        Balance::RoundRobin => "roundrobin",
        Balance::LeastConn => "leastconn",
        Balance::Source => "source",
        Balance::Stream { .. } => "stream",
    }
}

/// The live objects the stats read: shared by the stats listener (page, CSV) and the
/// `/metrics` collector, which both read them on each request.
#[derive(Debug, Clone)]
pub struct LbObjects {
    /// Frontends, in config order.
    pub frontends: Vec<Arc<Frontend>>,
    /// Backends, in config order.
    pub backends: Arc<[Arc<Backend>]>,
    /// The node's connection limit (`maxconn`, and the connections open now).
    pub limit: Arc<ConnLimit>,
}

impl LbObjects {
    /// The node's `maxconn`.
    pub fn maxconn(&self) -> usize {
        self.limit.max()
    }

    /// Reads every frontend and backend of the node, frontends first, each in config order.
    pub fn collect(&self) -> Vec<Proxy> {
        let mut out = Vec::with_capacity(self.frontends.len() + self.backends.len());
        let draining = self
            .frontends
            .first()
            .is_some_and(|f| f.shutdown.is_draining());
        for (i, fe) in self.frontends.iter().enumerate() {
            out.push(Proxy {
                name: fe.config.name.clone(),
                kind: RowKind::Frontend,
                rows: vec![Row {
                    kind: RowKind::Frontend,
                    proxy: fe.config.name.clone(),
                    name: "FRONTEND".into(),
                    mode: fe.config.mode,
                    iid: i + 1,
                    sid: 0,
                    counters: fe.counters.snapshot(),
                    limit: Some(self.maxconn() as u64),
                    state: if draining {
                        State::Stopped
                    } else {
                        State::Open
                    },
                    weight: None,
                    active: None,
                    check: None,
                    down_transitions: None,
                    last_change: None,
                    downtime: None,
                    addr: None,
                    cookie: None,
                    algo: None,
                    idle_connections: None,
                    balance_load: None,
                }],
            });
        }
        let first_backend = self.frontends.len() + 1;
        for (i, b) in self.backends.iter().enumerate() {
            out.push(backend_proxy(b, first_backend + i));
        }
        out
    }
}

fn backend_proxy(b: &Backend, iid: usize) -> Proxy {
    if let Some(sessions) = &b.sessions {
        sessions.sweep_all();
    }
    let set = b.servers();
    let mut rows = Vec::with_capacity(set.servers.len() + 1);
    for (i, s) in set.servers.iter().enumerate() {
        rows.push(server_row(b, s, iid, i + 1));
    }
    let up: Vec<&Row> = rows.iter().filter(|r| r.state.is_up()).collect();
    let history = b.history();
    let backend_up = !up.is_empty();
    rows.push(Row {
        kind: RowKind::Backend,
        proxy: b.name.clone(),
        name: "BACKEND".into(),
        mode: b.mode,
        iid,
        sid: 0,
        counters: b.counters.snapshot(),
        limit: None,
        state: if backend_up { State::Up } else { State::Down },
        weight: Some(up.iter().filter_map(|r| r.weight).sum()),
        active: Some(up.len() as u64),
        check: None,
        down_transitions: Some(history.down_transitions),
        last_change: Some(history.last_change.elapsed()),
        downtime: Some(history.downtime),
        addr: None,
        cookie: b.sticky_cookie.clone(),
        algo: Some(b.balance),
        idle_connections: None,
        balance_load: None,
    });
    Proxy {
        name: b.name.clone(),
        kind: RowKind::Backend,
        rows,
    }
}

fn server_row(b: &Backend, s: &Server, iid: usize, sid: usize) -> Row {
    let history = s.health();
    let state = server_state(s.is_up(), s.streak(), b.health.as_ref());
    let check = b.health.as_ref().map(|h| CheckRow {
        last: history.last_check.clone(),
        failures: history.check_failures,
        rise: h.rise,
        fall: h.fall,
        health: state.health(h.rise, h.fall),
    });
    Row {
        kind: RowKind::Server,
        proxy: b.name.clone(),
        name: s.name.clone(),
        mode: b.mode,
        iid,
        sid,
        counters: s.counters.snapshot(),
        limit: None,
        state,
        weight: Some(u64::from(s.weight)),
        active: Some(u64::from(state.is_up())),
        check,
        down_transitions: Some(history.down_transitions),
        last_change: Some(history.last_change.elapsed()),
        downtime: Some(s.downtime()),
        addr: Some(s.addr),
        cookie: s.cookie.clone(),
        algo: None,
        idle_connections: Some(s.pool.len() as u64),
        balance_load: matches!(b.balance, Balance::Stream { .. }).then(|| b.load(s)),
    }
}

/// A server's state from its UP flag and the streak of checks disagreeing with it.
pub fn server_state(up: bool, streak: u32, health: Option<&HealthConfig>) -> State {
    let Some(h) = health else {
        return if up { State::NoCheck } else { State::Down };
    };
    match (up, streak) {
        (true, 0) => State::Up,
        (true, failed) => State::GoingDown {
            failed,
            fall: h.fall,
        },
        (false, 0) => State::Down,
        (false, passed) => State::GoingUp {
            passed,
            rise: h.rise,
        },
    }
}

/// HAProxy's check description (`check_desc`) for a check status.
pub fn check_description(status: &str) -> &'static str {
    match status {
        "L4OK" => "Layer4 check passed",
        "L4TOUT" => "Layer4 timeout",
        "L4CON" => "Layer4 connection problem",
        "L7OK" => "Layer7 check passed",
        "L7TOUT" => "Layer7 timeout",
        "L7RSP" => "Layer7 invalid response",
        "L7STS" => "Layer7 wrong status",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthKind;

    fn health() -> HealthConfig {
        HealthConfig {
            kind: HealthKind::Tcp,
            interval: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn server_states_read_like_haproxy() {
        let h = health();
        let text = |up, streak| server_state(up, streak, Some(&h)).text();
        assert_eq!(text(true, 0), "UP");
        // One failure of three: two more checks before DOWN.
        assert_eq!(text(true, 1), "UP 2/3");
        assert_eq!(text(true, 2), "UP 1/3");
        assert_eq!(text(false, 0), "DOWN");
        assert_eq!(text(false, 1), "DOWN 1/2");
        assert_eq!(server_state(true, 0, None).text(), "no check");
        assert!(server_state(true, 2, Some(&h)).is_up());
        assert!(!server_state(false, 1, Some(&h)).is_up());
    }

    #[test]
    fn check_health_spans_rise_plus_fall() {
        let h = health();
        let health_of = |up, streak| server_state(up, streak, Some(&h)).health(2, 3);
        assert_eq!(health_of(true, 0), 4);
        assert_eq!(health_of(true, 2), 2);
        assert_eq!(health_of(false, 0), 0);
        assert_eq!(health_of(false, 1), 1);
    }
}
