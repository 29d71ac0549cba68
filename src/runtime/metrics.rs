//! Per-node Prometheus metrics (`prometheus-client`). Every node owns a registry; components
//! register their families while the node is being built, then the registry is frozen and shared
//! with the `/metrics` handler, which refreshes the time-based gauges before encoding.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::cluster::heartbeat::StoreHealth;

/// The registry of one node and the gauges every role has.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
    heartbeat_age: Gauge<f64, AtomicU64>,
    store_up: Gauge,
}

impl NodeMetrics {
    /// Registers build info, uptime, heartbeat age and store reachability.
    pub fn new(node: &str, role: &str) -> Self {
        let mut registry = Registry::with_prefix("streamfleet");
        registry.register(
            "build",
            "streamfleet build and node identity",
            Info::new(vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ("node".to_owned(), node.to_owned()),
                ("role".to_owned(), role.to_owned()),
            ]),
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "uptime_seconds",
            "Seconds since this node started",
            uptime.clone(),
        );
        let heartbeat_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "heartbeat_age_seconds",
            "Seconds since this node last wrote its record to the cluster store (-1: never)",
            heartbeat_age.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 when the last cluster store operation succeeded",
            store_up.clone(),
        );
        NodeMetrics {
            registry,
            started: Instant::now(),
            uptime,
            heartbeat_age,
            store_up,
        }
    }

    /// For components registering their own metrics while the node is built.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Prometheus text exposition, with time-based gauges refreshed from `health`.
    pub fn render(&self, health: &StoreHealth) -> String {
        let snap = health.snapshot();
        self.uptime.set(self.started.elapsed().as_secs_f64());
        self.heartbeat_age
            .set(snap.heartbeat_age.map_or(-1.0, |a| a.as_secs_f64()));
        self.store_up.set(i64::from(snap.reachable));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
