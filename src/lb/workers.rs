//! The LB's data path on its own event-loop threads, like HAProxy's `nbthread`: each of the
//! node's `threads` runs a single-threaded tokio runtime with an accept loop on every frontend
//! listener, and serves the connections it accepted to their end. A connection never moves
//! between threads, so its reads, writes and timers wake only the thread that owns it (on the
//! process's work-stealing runtime, most of the LB's CPU time went to waking and switching
//! between runtime threads). The process's multi-threaded runtime keeps everything else:
//! health checks, discovery, the stats listener, the heartbeat.
//!
//! Data flow: [`start`] duplicates each bound listener once per thread (the copies share one
//! listening socket, so the kernel hands each new connection to one waiting thread, the least
//! busy one in practice) and builds every runtime, then starts the threads -> each thread
//! registers its copies and runs one accept loop per listener -> on `draining` the accept loops
//! end and the connections finish (the process's shutdown waits for them as before) -> on
//! `stopped` the thread waits up to [`STOP_WAIT`] for its connections to close, then exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::counters::inc;
use super::{Frontend, l4, l7, rtmp};
use crate::config::ProxyMode;
use crate::runtime::listener::accept_loop;
use crate::runtime::{ConnLimit, ConnPermit, Shutdown};

/// How long a thread waits, after `stopped`, for its connections to close.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// One frontend listener to serve.
pub struct Listener {
    /// The frontend its connections belong to.
    pub frontend: Arc<Frontend>,
    /// The bound, listening socket (non-blocking).
    pub socket: std::net::TcpListener,
    /// Name for logs (`node/frontend:name@addr`).
    pub name: String,
}

/// What one event-loop thread gets: its runtime and its copies of the listeners.
struct Work {
    runtime: tokio::runtime::Runtime,
    listeners: Vec<(Arc<Frontend>, std::net::TcpListener, String)>,
}

/// Serves one accepted connection by its frontend's mode, after the frontend's
/// per-source-address limit: a client address already at `maxconn_per_source` has this
/// connection closed at once (counted as denied and in `source_refusals`).
pub async fn serve(fe: Arc<Frontend>, stream: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _source = match &fe.sources {
        Some(limit) => match limit.admit(peer.ip()) {
            Some(guard) => Some(guard),
            None => {
                inc(&fe.counters.denied);
                inc(&fe.counters.source_refusals);
                tracing::debug!(frontend = %fe.config.name, %peer, "maxconn_per_source reached; closing");
                drop((stream, permit));
                return;
            }
        },
        None => None,
    };
    match fe.config.mode {
        ProxyMode::Tcp => l4::serve(fe, stream, peer, permit).await,
        ProxyMode::Rtmp => rtmp::serve(fe, stream, peer, permit).await,
        ProxyMode::Http => l7::serve(fe, stream, peer, permit).await,
    }
}

/// Starts `threads` event-loop threads serving `listeners`. Fails when a runtime, a listener
/// copy or a thread cannot be made: the node then stops the process (the threads that did
/// start end with it), since it would not serve with the capacity it was configured with.
pub fn start(
    threads: usize,
    listeners: &[Listener],
    limit: &Arc<ConnLimit>,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let mut work = Vec::with_capacity(threads);
    for _ in 0..threads.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut copies = Vec::with_capacity(listeners.len());
        for l in listeners {
            copies.push((l.frontend.clone(), l.socket.try_clone()?, l.name.clone()));
        }
        work.push(Work {
            runtime,
            listeners: copies,
        });
    }
    for (i, w) in work.into_iter().enumerate() {
        let (limit, shutdown) = (limit.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name(format!("lb-{i}"))
            .spawn(move || run(w, limit, shutdown))?;
    }
    Ok(())
}

/// Runs the accept loops of one thread on the current runtime, each connection tracked by
/// `local` as well as by the process's shutdown.
fn spawn_accept_loops(
    listeners: Vec<(Arc<Frontend>, TcpListener, String)>,
    limit: &Arc<ConnLimit>,
    shutdown: &Shutdown,
    local: &TaskTracker,
) {
    for (fe, listener, name) in listeners {
        let local = local.clone();
        let own = fe.own_limit.clone();
        shutdown.spawn_service(accept_loop(
            listener,
            limit.clone(),
            own,
            shutdown.clone(),
            name,
            move |s, peer, permit| local.track_future(serve(fe.clone(), s, peer, permit)),
        ));
    }
}

/// One event-loop thread: registers its listeners, serves until `stopped`, then gives its
/// connections [`STOP_WAIT`] to close.
fn run(w: Work, limit: Arc<ConnLimit>, shutdown: Shutdown) {
    let Work { runtime, listeners } = w;
    let local = TaskTracker::new();
    runtime.block_on(async {
        let mut registered = Vec::with_capacity(listeners.len());
        for (fe, socket, name) in listeners {
            match TcpListener::from_std(socket) {
                Ok(l) => registered.push((fe, l, name)),
                Err(e) => tracing::error!(listener = %name, error = %e, "LB thread cannot poll its listener"),
            }
        }
        spawn_accept_loops(registered, &limit, &shutdown, &local);
        shutdown.stopped().await;
        local.close();
        let _ = tokio::time::timeout(STOP_WAIT, local.wait()).await;
    });
}
