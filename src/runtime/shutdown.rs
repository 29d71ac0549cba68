//! Process-wide shutdown: stop accepting, drain for a grace period, then force.
//!
//! Three signals flow from one [`Shutdown`] clone held by every task:
//! - `draining`: listeners stop accepting; HTTP connections finish their current request; the
//!   node reports `draining` to the cluster and 503 on `/readyz`.
//! - `stopped`: the grace period is over (or everything drained): connections still open are
//!   closed, background loops (heartbeats, health checks) end.
//! - the trackers: `connections` holds per-connection tasks (waited for during the grace
//!   period), `services` holds background loops (waited for after `stopped`).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cloneable shutdown handle.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    stopped: CancellationToken,
    connections: TaskTracker,
    services: TaskTracker,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished within the grace period.
    Clean,
    /// The grace period ran out; this many connections were closed by force.
    Forced(usize),
}

impl Shutdown {
    /// A fresh handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once draining has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves when draining begins.
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Resolves when connections must close now.
    pub async fn stopped(&self) {
        self.stopped.cancelled().await
    }

    /// True once the grace period is over.
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_cancelled()
    }

    /// Spawns a connection task: waited for during the grace period.
    pub fn spawn_connection<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.connections.spawn(fut)
    }

    /// Spawns a background service loop: it must end on `stopped()`.
    pub fn spawn_service<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.services.spawn(fut)
    }

    /// Open connections right now.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Begins draining and waits up to `grace` for connections, then stops everything and
    /// waits (briefly) for tasks to observe it.
    pub async fn shutdown(&self, grace: Duration) -> Drain {
        self.draining.cancel();
        self.connections.close();
        let outcome = match tokio::time::timeout(grace, self.connections.wait()).await {
            Ok(()) => Drain::Clean,
            Err(_) => Drain::Forced(self.connections.len()),
        };
        self.stopped.cancel();
        self.services.close();
        // Tasks close their sockets as soon as they see `stopped`; bound the wait anyway so a
        // stuck task cannot hold the process.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.connections.wait().await;
            self.services.wait().await;
        })
        .await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drains_then_forces() {
        let s = Shutdown::new();
        let quick = s.clone();
        s.spawn_connection(async move {
            quick.draining().await;
        });
        let stubborn = s.clone();
        s.spawn_connection(async move {
            stubborn.stopped().await;
        });
        let outcome = s.shutdown(Duration::from_secs(10)).await;
        assert_eq!(outcome, Drain::Forced(1));
        assert!(s.is_stopped());
    }

    #[tokio::test(start_paused = true)]
    async fn clean_when_connections_finish() {
        let s = Shutdown::new();
        let c = s.clone();
        s.spawn_connection(async move {
            c.draining().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        assert_eq!(s.shutdown(Duration::from_secs(10)).await, Drain::Clean);
    }
}
