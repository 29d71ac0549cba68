//! Traffic counters of frontends, backends and servers, shaped after the columns of HAProxy's
//! stats CSV (management guide §9.1) so the stats page, `/metrics` and the access log can read
//! them without translation.
//!
//! Data flow: connection tasks bump relaxed atomics on the hot path (no locks, no allocation);
//! readers take a [`CounterSnapshot`] whenever they render. Current-session gauges are kept
//! with a drop guard ([`SessionGuard`]) so an early return can never leak a session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters one proxy object (frontend, backend or server) keeps.
#[derive(Debug, Default)]
pub struct Counters {
    /// `scur`: sessions (TCP connections, or HTTP requests in flight) open now.
    pub current: AtomicU64,
    /// `smax`: the highest `current` seen.
    pub max: AtomicU64,
    /// `stot`: sessions since start (for servers, HAProxy's `lbtot` too).
    pub total: AtomicU64,
    /// `bin`: bytes received from the downstream side.
    pub bytes_in: AtomicU64,
    /// `bout`: bytes sent to the downstream side.
    pub bytes_out: AtomicU64,
    /// `dreq`: requests denied (maxconn refusals, protocol refusals before routing).
    pub denied: AtomicU64,
    /// `ereq`: request errors (invalid requests, client timeouts, client aborts).
    pub request_errors: AtomicU64,
    /// `econ`: failed connections to a server.
    pub connection_errors: AtomicU64,
    /// `eresp`: response errors (server timeouts, invalid or truncated responses).
    pub response_errors: AtomicU64,
    /// `wretr`: connection attempts retried.
    pub retries: AtomicU64,
    /// `wredis`: requests moved to another server than the one first picked.
    pub redispatches: AtomicU64,
    /// `req_tot`: HTTP requests seen.
    pub requests: AtomicU64,
    /// `hrsp_1xx` .. `hrsp_5xx`, then `hrsp_other`.
    pub responses: [AtomicU64; 6],
    /// `cli_abrt`: transfers the client aborted after the server was reached.
    pub client_aborts: AtomicU64,
    /// `srv_abrt`: transfers the server aborted (also counted in `response_errors`).
    pub server_aborts: AtomicU64,
    /// `connect`: new connections opened to servers.
    pub connects: AtomicU64,
    /// `reuse`: requests sent on a pooled (kept-alive) server connection.
    pub reuses: AtomicU64,
    /// Connects to this server in progress (not a stats column): counted in a server's load
    /// for `balance: stream`, so clients connecting at the same moment see each other.
    pub connecting: AtomicU64,
    /// Frontends of `mode: rtmp`: clients closed because they had not said `publish` or
    /// `play` within the frontend's `handshake_timeout` (slowloris on the RTMP port).
    pub handshake_timeouts: AtomicU64,
    /// Connections closed at accept because their source address already had
    /// `maxconn_per_source` open on the frontend.
    pub source_refusals: AtomicU64,
}

/// A consistent-enough copy of [`Counters`] for rendering.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// See [`Counters::current`].
    pub current: u64,
    /// See [`Counters::max`].
    pub max: u64,
    /// See [`Counters::total`].
    pub total: u64,
    /// See [`Counters::bytes_in`].
    pub bytes_in: u64,
    /// See [`Counters::bytes_out`].
    pub bytes_out: u64,
    /// See [`Counters::denied`].
    pub denied: u64,
    /// See [`Counters::request_errors`].
    pub request_errors: u64,
    /// See [`Counters::connection_errors`].
    pub connection_errors: u64,
    /// See [`Counters::response_errors`].
    pub response_errors: u64,
    /// See [`Counters::retries`].
    pub retries: u64,
    /// See [`Counters::redispatches`].
    pub redispatches: u64,
    /// See [`Counters::requests`].
    pub requests: u64,
    /// See [`Counters::responses`].
    pub responses: [u64; 6],
    /// See [`Counters::client_aborts`].
    pub client_aborts: u64,
    /// See [`Counters::server_aborts`].
    pub server_aborts: u64,
    /// See [`Counters::connects`].
    pub connects: u64,
    /// See [`Counters::reuses`].
    pub reuses: u64,
    /// See [`Counters::handshake_timeouts`].
    pub handshake_timeouts: u64,
    /// See [`Counters::source_refusals`].
    pub source_refusals: u64,
}

/// Bumps a counter by one.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    /// Opens a session: `current` and `total` go up, `max` follows; the guard closes it.
    pub fn open(self: &Arc<Self>) -> SessionGuard {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(now, Ordering::Relaxed);
        inc(&self.total);
        SessionGuard {
            counters: Some(self.clone()),
        }
    }

    /// Counts a response by status class.
    pub fn response(&self, status: u16) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        // `class` is 0..=5 and the array has six entries.
        if let Some(c) = self.responses.get(class) {
            inc(c);
        }
    }

    /// Marks a connect in progress until the guard drops.
    pub fn connecting(self: &Arc<Self>) -> ConnectingGuard {
        self.connecting.fetch_add(1, Ordering::Relaxed);
        ConnectingGuard(self.clone())
    }

    /// Sessions open now plus connects in progress.
    pub fn current_or_connecting(&self) -> u64 {
        self.current.load(Ordering::Relaxed) + self.connecting.load(Ordering::Relaxed)
    }

    /// Sessions open now.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            current: l(&self.current),
            max: l(&self.max),
            total: l(&self.total),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
            denied: l(&self.denied),
            request_errors: l(&self.request_errors),
            connection_errors: l(&self.connection_errors),
            response_errors: l(&self.response_errors),
            retries: l(&self.retries),
            redispatches: l(&self.redispatches),
            requests: l(&self.requests),
            responses: std::array::from_fn(|i| self.responses.get(i).map_or(0, l)),
            client_aborts: l(&self.client_aborts),
            server_aborts: l(&self.server_aborts),
            connects: l(&self.connects),
            reuses: l(&self.reuses),
            handshake_timeouts: l(&self.handshake_timeouts),
            source_refusals: l(&self.source_refusals),
        }
    }
}

/// An open session; dropping it decrements `current`.
#[derive(Debug)]
pub struct SessionGuard {
    counters: Option<Arc<Counters>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(c) = self.counters.take() {
            c.current.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connect in progress; dropping it decrements `connecting`.
#[derive(Debug)]
pub struct ConnectingGuard(Arc<Counters>);

impl Drop for ConnectingGuard {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_track_current_max_and_total() {
        let c = Arc::new(Counters::default());
        let a = c.open();
        let b = c.open();
        assert_eq!((c.snapshot().current, c.snapshot().max), (2, 2));
        drop(a);
        drop(b);
        let _d = c.open();
        let s = c.snapshot();
        assert_eq!((s.current, s.max, s.total), (1, 2, 3));
    }

    #[test]
    fn responses_by_class() {
        let c = Counters::default();
        for status in [101, 200, 204, 302, 404, 503, 600] {
            c.response(status);
        }
        assert_eq!(c.snapshot().responses, [1, 2, 1, 1, 1, 1]);
    }
}
