//! The heartbeat: every `cluster.heartbeat` a node writes its record (addresses, machine load,
//! streams, viewers, state) to the store. The outcome feeds [`StoreHealth`], which `/readyz`
//! reads and `/metrics` collects. Failures are logged once per outage and retried with backoff;
//! serving never depends on the store being up. Every role starts its heartbeat the same way,
//! with [`Heartbeat::start`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::model::{NodeRecord, NodeState, StreamViewers};
use super::store::{Store, StoreError};
use super::sysstat::SysStat;
use crate::config::Role;
use crate::runtime::Shutdown;
use crate::runtime::metrics::gauge;

/// Upper bound for one store operation made by the heartbeat, so a hung store cannot stall it.
const STORE_OP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a node is doing, reported in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Streams ingested or served.
    pub streams: u64,
    /// Viewers connected.
    pub viewers: u64,
    /// Egress, bits per second.
    pub egress_bps: u64,
    /// Viewers per stream served here.
    pub stream_viewers: Vec<StreamViewers>,
}

/// Source of a node's [`Activity`].
pub trait ActivitySource: Send + Sync + 'static {
    /// The current activity.
    fn activity(&self) -> Activity;
}

/// A node with nothing to report (the LB).
#[derive(Debug, Default)]
pub struct Idle;

impl ActivitySource for Idle {
    fn activity(&self) -> Activity {
        Activity::default()
    }
}

/// The fixed part of a node's record.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Node name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Host for other nodes.
    pub advertise: String,
    /// `host:port` of listeners, with real ports.
    pub rtmp: Option<String>,
    /// HTTP listener.
    pub http: Option<String>,
    /// Relay listener.
    pub relay: Option<String>,
    /// Start time.
    pub started_at: SystemTime,
}

/// The store as one node sees it.
#[derive(Debug, Default)]
pub struct StoreHealth {
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    last_ok: Option<Instant>,
    last_error: Option<String>,
    failing: bool,
}

/// A snapshot of [`StoreHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// The last operation succeeded.
    pub reachable: bool,
    /// Time since the last successful heartbeat write.
    pub heartbeat_age: Option<Duration>,
    /// The last error, when failing.
    pub error: Option<String>,
}

impl StoreHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // Plain data, valid after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful store operation. Returns true when this ends an outage.
    pub fn record_ok(&self) -> bool {
        let mut s = self.lock();
        s.last_ok = Some(Instant::now());
        s.last_error = None;
        std::mem::replace(&mut s.failing, false)
    }

    /// Records a failure. Returns true when this starts an outage.
    pub fn record_err(&self, e: &StoreError) -> bool {
        let mut s = self.lock();
        s.last_error = Some(e.to_string());
        !std::mem::replace(&mut s.failing, true)
    }

    /// The current view.
    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.lock();
        HealthSnapshot {
            reachable: s.last_ok.is_some() && !s.failing,
            heartbeat_age: s.last_ok.map(|t| t.elapsed()),
            error: s.last_error.clone(),
        }
    }
}

/// `/metrics` reads the store's health at scrape time.
impl Collector for StoreHealth {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.snapshot();
        gauge(
            &mut encoder,
            "heartbeat_age_seconds",
            "Seconds since this node last wrote its record to the cluster store (-1: never)",
            snap.heartbeat_age.map_or(-1.0, |a| a.as_secs_f64()),
        )?;
        gauge(
            &mut encoder,
            "store_up",
            "1 when the last cluster store operation succeeded",
            i64::from(snap.reachable),
        )
    }
}

/// One node's heartbeat loop.
pub struct Heartbeat {
    /// Where records go.
    pub store: Arc<dyn Store>,
    /// Fixed record fields.
    pub identity: NodeIdentity,
    /// Period.
    pub interval: Duration,
    /// Shared with `/readyz`.
    pub health: Arc<StoreHealth>,
    /// Streams and viewers.
    pub activity: Arc<dyn ActivitySource>,
    /// Draining and stop signals.
    pub shutdown: Shutdown,
    /// Machine load sampler.
    pub sys: SysStat,
}

impl Heartbeat {
    fn record(&mut self) -> NodeRecord {
        let load = self.sys.sample();
        let activity = self.activity.activity();
        let id = &self.identity;
        NodeRecord {
            name: id.name.clone(),
            role: id.role,
            advertise: id.advertise.clone(),
            rtmp: id.rtmp.clone(),
            http: id.http.clone(),
            relay: id.relay.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: id.started_at,
            last_seen: SystemTime::now(),
            cpu: (load.cpu * 10.0).round() / 10.0,
            mem_used: load.mem_used,
            mem_total: load.mem_total,
            streams: activity.streams,
            viewers: activity.viewers,
            egress_bps: activity.egress_bps,
            stream_viewers: activity.stream_viewers,
            state: if self.shutdown.is_draining() {
                NodeState::Draining
            } else {
                NodeState::Active
            },
        }
    }

    /// Writes the record once and records the outcome.
    pub async fn beat(&mut self) -> Result<(), StoreError> {
        let record = self.record();
        let result =
            match tokio::time::timeout(STORE_OP_TIMEOUT, self.store.upsert_node(&record)).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unavailable {
                    source: "heartbeat write timed out".into(),
                }),
            };
        match &result {
            Ok(()) => {
                if self.health.record_ok() {
                    tracing::info!(node = %self.identity.name, "cluster store reachable again");
                }
            }
            Err(e) => {
                if self.health.record_err(e) {
                    tracing::warn!(node = %self.identity.name, error = %e, "cluster store unreachable; serving goes on, retrying");
                }
            }
        }
        result
    }

    /// Writes the node's first record (a failure is logged: the store may come later), then
    /// beats in the background until the process stops.
    pub async fn start(mut self) {
        if let Err(e) = self.beat().await {
            tracing::warn!(node = %self.identity.name, error = %e, "first heartbeat failed");
        }
        let shutdown = self.shutdown.clone();
        shutdown.spawn_service(self.run());
    }

    /// Beats until the process stops, then removes the node's record.
    async fn run(mut self) {
        let mut failures = 0u32;
        let mut announced_drain = false;
        loop {
            // Backoff while the store is down: interval, 2x, 4x, capped at 4x.
            let delay = self.interval * 2u32.pow(failures.min(2));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.draining(), if !announced_drain => { announced_drain = true; }
                () = self.shutdown.stopped() => break,
            }
            failures = match self.beat().await {
                Ok(()) => 0,
                Err(_) => failures.saturating_add(1),
            };
        }
        match tokio::time::timeout(
            STORE_OP_TIMEOUT,
            self.store.remove_node(&self.identity.name),
        )
        .await
        {
            Ok(Ok(())) => tracing::debug!(node = %self.identity.name, "left the cluster"),
            Ok(Err(e)) => {
                tracing::warn!(node = %self.identity.name, error = %e, "could not remove node record")
            }
            Err(_) => {
                tracing::warn!(node = %self.identity.name, "could not remove node record: store timed out")
            }
        }
    }
}
