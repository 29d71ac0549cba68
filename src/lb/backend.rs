//! Backends and their servers: each server's UP/DOWN state, health-check history and counters,
//! and the backend's current server list as an atomically swapped snapshot.
//!
//! Data flow: static servers are built at start; `discovery` builds a new [`ServerSet`] when
//! the cluster store changes and swaps it in, keeping the [`Server`] objects (state, counters,
//! pooled connections) of servers that are still there. A request loads the snapshot once and
//! picks from it (`select`), so a change affects new requests only. `health` feeds check
//! results into [`Server::record_check`], the only place a server changes state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::counters::Counters;
use super::l7::pool::Pool;
use super::placement::{Ring, Sessions, ViewerLoad};
use crate::config::{BackendConfig, Balance, HealthConfig, ProxyMode, ServerConfig};

/// One upstream server.
#[derive(Debug)]
pub struct Server {
    /// Name (stats, logs).
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Sticky-cookie value (`ams1` in `JSESSIONID=ams1~abc`).
    pub cookie: Option<String>,
    /// Round-robin weight; 0 takes no balanced traffic.
    pub weight: u32,
    /// Traffic counters.
    pub counters: Arc<Counters>,
    /// Idle keep-alive connections to this server.
    pub pool: Pool,
    /// `balance: stream` on mode http: the viewers counted on this server.
    pub viewers: ViewerLoad,
    /// Fast path of the state: read by every request.
    up: AtomicBool,
    /// Consecutive check results counted towards the next transition (stats: "UP 1/3").
    streak: AtomicU32,
    /// Check history for the stats page.
    health: Mutex<HealthState>,
    /// Cancelled when the server leaves its backend: its health checker stops.
    retired: CancellationToken,
}

/// What the stats page shows about a server's checks and state changes.
#[derive(Debug, Clone)]
pub struct HealthState {
    /// When the server last changed state (or was created).
    pub last_change: Instant,
    /// Time spent DOWN before the current state.
    pub downtime: Duration,
    /// The last check, if any ran.
    pub last_check: Option<CheckOutcome>,
    /// `chkfail`: failed checks.
    pub check_failures: u64,
    /// `chkdown`: UP -> DOWN transitions.
    pub down_transitions: u64,
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether it passed.
    pub passed: bool,
    /// HAProxy-style check status: `L4OK`, `L4CON`, `L4TOUT`, `L7OK`, `L7STS`, `L7RSP`, `L7TOUT`.
    pub status: &'static str,
    /// HTTP status of an `http` check.
    pub code: Option<u16>,
    /// How long it took.
    pub duration: Duration,
}

/// A state change caused by a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The server went DOWN.
    Down,
    /// The server came back UP.
    Up,
}

impl Server {
    /// A server in state UP (HAProxy starts servers UP).
    pub fn new(config: &ServerConfig) -> Arc<Server> {
        Arc::new(Server {
            name: config.name.clone(),
            addr: config.addr,
            cookie: config.cookie.clone(),
            weight: config.weight,
            counters: Arc::default(),
            pool: Pool::default(),
            viewers: ViewerLoad::default(),
            up: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            health: Mutex::new(HealthState {
                last_change: Instant::now(),
                downtime: Duration::ZERO,
                last_check: None,
                check_failures: 0,
                down_transitions: 0,
            }),
            retired: CancellationToken::new(),
        })
    }

    /// Whether the server takes traffic.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Consecutive results counted towards the next transition.
    pub fn streak(&self) -> u32 {
        self.streak.load(Ordering::Relaxed)
    }

    /// Check history (a copy).
    pub fn health(&self) -> HealthState {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, HealthState> {
        // Plain data, valid after any panic.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one check result: DOWN after `fall` consecutive failures while UP, UP after
    /// `rise` consecutive successes while DOWN. Returns the transition, if any.
    pub fn record_check(&self, outcome: CheckOutcome, rise: u32, fall: u32) -> Option<Transition> {
        let mut h = self.lock();
        let passed = outcome.passed;
        if !passed {
            h.check_failures += 1;
        }
        h.last_check = Some(outcome);
        let up = self.is_up();
        // A result that agrees with the state resets the streak; one that disagrees extends it.
        let streak = if passed == up { 0 } else { self.streak() + 1 };
        let threshold = if up { fall } else { rise };
        if streak < threshold {
            self.streak.store(streak, Ordering::Relaxed);
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        let now = Instant::now();
        if up {
            h.down_transitions += 1;
        } else {
            let outage = now.duration_since(h.last_change);
            h.downtime += outage;
        }
        h.last_change = now;
        self.up.store(!up, Ordering::Relaxed);
        if up {
            // Idle connections to a dead server are useless.
            self.pool.clear();
        }
        Some(if up { Transition::Down } else { Transition::Up })
    }

    /// Total time DOWN, the current outage included.
    pub fn downtime(&self) -> Duration {
        let h = self.lock();
        if self.is_up() {
            h.downtime
        } else {
            h.downtime + h.last_change.elapsed()
        }
    }

    /// Resolves when the server has left its backend.
    pub async fn retired(&self) {
        self.retired.cancelled().await
    }

    /// Marks the server as gone from its backend.
    pub fn retire(&self) {
        self.retired.cancel();
        self.pool.clear();
    }
}

/// The servers of a backend at one moment, with the round-robin schedule built for them.
#[derive(Debug, Default)]
pub struct ServerSet {
    /// Servers, in config order then discovery order.
    pub servers: Vec<Arc<Server>>,
    /// Weighted round-robin schedule: indices into `servers`, interleaved by weight.
    pub(super) wheel: Vec<u16>,
    /// `balance: stream`: the consistent-hash ring, built at the first use.
    ring: OnceLock<Ring>,
}

/// Most servers in one backend: the schedule stores indices as `u16`.
pub const MAX_SERVERS: usize = 4096;

impl ServerSet {
    /// Builds the set and its schedule (smooth weighted round robin, computed once).
    pub fn new(mut servers: Vec<Arc<Server>>) -> ServerSet {
        servers.truncate(MAX_SERVERS);
        let wheel = smooth_wheel(&servers.iter().map(|s| s.weight).collect::<Vec<_>>());
        ServerSet {
            servers,
            wheel,
            ring: OnceLock::new(),
        }
    }

    /// The consistent-hash ring of these servers (`balance: stream`).
    pub fn ring(&self) -> &Ring {
        self.ring.get_or_init(|| Ring::new(&self.servers))
    }

    /// Finds a server by name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Finds a server by its sticky-cookie value.
    pub fn by_cookie(&self, cookie: &[u8]) -> Option<(usize, &Arc<Server>)> {
        self.servers
            .iter()
            .enumerate()
            .find(|(_, s)| s.cookie.as_deref().is_some_and(|c| c.as_bytes() == cookie))
    }
}

/// nginx's smooth weighted round robin, unrolled over one full cycle (sum of weights, capped):
/// weights 5,1,1 give `a a b a c a a` rather than `a a a a a b c`.
fn smooth_wheel(weights: &[u32]) -> Vec<u16> {
    const MAX_WHEEL: u64 = 1 << 16;
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let len = total.min(MAX_WHEEL);
    // `current` has one slot per weight, so every index below (from `enumerate`) is in range.
    let mut current = vec![0i64; weights.len()];
    let mut wheel = Vec::with_capacity(len as usize);
    for _ in 0..len {
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            current[i] += i64::from(w);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        current[b] -= total as i64;
        // `b` < MAX_SERVERS <= u16::MAX.
        wheel.push(b as u16);
    }
    wheel
}

/// A backend: its settings, its current servers and its counters.
#[derive(Debug)]
pub struct Backend {
    /// Name.
    pub name: String,
    /// `Tcp` or `Http`.
    pub mode: ProxyMode,
    /// Algorithm.
    pub balance: Balance,
    /// Active checks.
    pub health: Option<HealthConfig>,
    /// Prefix-mode session cookie name.
    pub sticky_cookie: Option<String>,
    /// Connect attempts after the first failure.
    pub retries: u32,
    /// No upstream keep-alive.
    pub http_server_close: bool,
    /// Static servers (kept when discovery replaces the rest).
    pub static_servers: Vec<Arc<Server>>,
    /// Traffic counters.
    pub counters: Arc<Counters>,
    /// `balance: stream` on mode http: the viewers' sticky sessions, for the servers' loads.
    pub sessions: Option<Sessions>,
    servers: ArcSwap<ServerSet>,
    /// Round-robin position, shared by every request.
    cursor: AtomicUsize,
    /// Whole-backend availability history, for the stats page.
    history: Mutex<BackendHistory>,
}

/// When a backend as a whole (at least one server UP) changed state: HAProxy's backend
/// `chkdown`, `lastchg` and `downtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendHistory {
    /// Whether at least one server was UP at the last change.
    pub up: bool,
    /// When the backend last changed state (or was created).
    pub last_change: Instant,
    /// Time spent with every server DOWN, the current outage included by [`Backend::history`].
    pub downtime: Duration,
    /// Transitions to "every server DOWN".
    pub down_transitions: u64,
}

impl Backend {
    /// A backend with its static servers, all UP.
    pub fn new(config: &BackendConfig) -> Backend {
        let static_servers: Vec<_> = config.servers.iter().map(Server::new).collect();
        Backend {
            name: config.name.clone(),
            mode: config.mode,
            balance: config.balance,
            health: config.health.clone(),
            sticky_cookie: config.sticky_cookie.clone(),
            retries: config.retries,
            http_server_close: config.http_server_close,
            servers: ArcSwap::from_pointee(ServerSet::new(static_servers.clone())),
            static_servers,
            counters: Arc::default(),
            sessions: match config.balance {
                Balance::Stream { viewer_idle, .. } if config.mode == ProxyMode::Http => {
                    Some(Sessions::new(viewer_idle))
                }
                _ => None,
            },
            cursor: AtomicUsize::new(0),
            history: Mutex::new(BackendHistory {
                up: true,
                last_change: Instant::now(),
                downtime: Duration::ZERO,
                down_transitions: 0,
            }),
        }
    }

    /// A server's load for `balance: stream`: its viewers on mode http, its open connections
    /// and connects in progress on mode tcp.
    pub fn load(&self, server: &Server) -> u64 {
        match &self.sessions {
            Some(sessions) => sessions.load(server),
            None => server.counters.current_or_connecting(),
        }
    }

    /// The current servers.
    pub fn servers(&self) -> Arc<ServerSet> {
        self.servers.load_full()
    }

    /// Replaces the server list; new requests see it at once.
    pub fn replace_servers(&self, set: ServerSet) {
        self.servers.store(Arc::new(set));
        self.refresh_history();
    }

    fn lock_history(&self) -> MutexGuard<'_, BackendHistory> {
        // Plain data, valid after any panic.
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a change of the whole backend's state, if the servers' states amount to one.
    /// Called after every server transition and server-list change.
    pub fn refresh_history(&self) {
        let up = self.has_up_server();
        let mut h = self.lock_history();
        if h.up == up {
            return;
        }
        let now = Instant::now();
        if up {
            let outage = now.duration_since(h.last_change);
            h.downtime += outage;
        } else {
            h.down_transitions += 1;
        }
        h.up = up;
        h.last_change = now;
    }

    /// Availability history, the current outage counted in `downtime`.
    pub fn history(&self) -> BackendHistory {
        let mut h = *self.lock_history();
        if !h.up {
            h.downtime += h.last_change.elapsed();
        }
        h
    }

    /// Next round-robin position.
    pub(super) fn next_cursor(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether at least one server is UP.
    pub fn has_up_server(&self) -> bool {
        self.servers.load().servers.iter().any(|s| s.is_up())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Arc<Server> {
        Server::new(&ServerConfig {
            name: "s".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            cookie: None,
            weight: 1,
        })
    }

    fn outcome(passed: bool) -> CheckOutcome {
        CheckOutcome {
            passed,
            status: if passed { "L4OK" } else { "L4CON" },
            code: None,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn down_after_fall_failures_up_after_rise_successes() {
        let s = server();
        assert!(s.is_up(), "servers start UP");
        assert_eq!(s.record_check(outcome(false), 2, 3), None);
        assert_eq!(s.record_check(outcome(false), 2, 3), None);
        assert_eq!(s.streak(), 2);
        assert_eq!(s.record_check(outcome(false), 2, 3), Some(Transition::Down));
        assert!(!s.is_up());
        assert_eq!(s.record_check(outcome(false), 2, 3), None, "logged once");
        assert_eq!(s.record_check(outcome(true), 2, 3), None);
        assert_eq!(s.record_check(outcome(true), 2, 3), Some(Transition::Up));
        assert!(s.is_up());
        let h = s.health();
        assert_eq!((h.check_failures, h.down_transitions), (4, 1));
    }

    #[test]
    fn an_agreeing_result_resets_the_streak() {
        let s = server();
        s.record_check(outcome(false), 2, 3);
        s.record_check(outcome(false), 2, 3);
        s.record_check(outcome(true), 2, 3);
        assert_eq!(s.streak(), 0);
        assert_eq!(s.record_check(outcome(false), 2, 3), None);
        assert!(s.is_up());
    }

    #[test]
    fn backend_history_counts_whole_backend_outages() {
        let b = Backend::new(&BackendConfig {
            name: "b".into(),
            mode: ProxyMode::Http,
            balance: Balance::RoundRobin,
            health: None,
            sticky_cookie: None,
            servers: vec![ServerConfig {
                name: "s".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                cookie: None,
                weight: 1,
            }],
            servers_from: None,
            retries: 3,
            http_server_close: false,
        });
        let s = b.servers().servers[0].clone();
        b.refresh_history();
        assert_eq!(
            b.history().down_transitions,
            0,
            "no change, nothing recorded"
        );
        for _ in 0..3 {
            s.record_check(outcome(false), 2, 3);
        }
        b.refresh_history();
        b.refresh_history();
        let h = b.history();
        assert!(!h.up);
        assert_eq!(h.down_transitions, 1, "one outage, counted once");
        for _ in 0..2 {
            s.record_check(outcome(true), 2, 3);
        }
        b.refresh_history();
        let h = b.history();
        assert!(h.up);
        let frozen = h.downtime;
        assert_eq!(
            b.history().downtime,
            frozen,
            "downtime stops growing once UP"
        );
    }

    #[test]
    fn smooth_weighted_wheel() {
        assert_eq!(smooth_wheel(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_wheel(&[1, 1]), [0, 1]);
        assert_eq!(smooth_wheel(&[0, 2]), [1, 1]);
        assert!(smooth_wheel(&[0, 0]).is_empty());
    }
}
