//! Per-node Prometheus metrics (`prometheus-client`), the one metrics stack of every role.
//!
//! Every node owns a [`NodeMetrics`] registry: build info and uptime here, then each component
//! registers its own families while the node is being built (counters and gauges it updates
//! itself, or collectors that read their state at scrape time, like the cluster store's health
//! and the LB's per-server statistics). The registry is then frozen and shared with the
//! `/metrics` handler (the media node's HTTP listener, the LB's stats listener), which encodes
//! it as OpenMetrics text and answers with [`CONTENT_TYPE`].

use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`NodeMetrics::render`]'s output: the OpenMetrics text format that
/// prometheus-client's text encoder writes (counters' samples end in `_total`, `# EOF` last).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry of one node, with the families every role has.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
}

/// Seconds since the node started, read at scrape time.
#[derive(Debug)]
struct Uptime(Instant);

impl Collector for Uptime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut encoder,
            "uptime_seconds",
            "Seconds since this node started",
            self.0.elapsed().as_secs_f64(),
        )
    }
}

/// Encodes one unlabelled gauge family, for collectors.
pub fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl NodeMetrics {
    /// Registers build info (`streamfleet_build_info{version,node,role}`) and uptime.
    pub fn new(node: &str, role: &str) -> Self {
        Self::with_identity(vec![
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ("node".to_owned(), node.to_owned()),
            ("role".to_owned(), role.to_owned()),
        ])
    }

    /// Like [`NodeMetrics::new`], but the build info has no `version` label: for an LB whose
    /// stats listener is configured with `hide_version`, so that `/metrics` does not give the
    /// version away either.
    pub fn without_version(node: &str, role: &str) -> Self {
        Self::with_identity(vec![
            ("node".to_owned(), node.to_owned()),
            ("role".to_owned(), role.to_owned()),
        ])
    }

    fn with_identity(build: Vec<(String, String)>) -> Self {
        let mut registry = Registry::with_prefix("streamfleet");
        registry.register(
            "build",
            "streamfleet build and node identity",
            Info::new(build),
        );
        registry.register_collector(Box::new(Uptime(Instant::now())));
        NodeMetrics { registry }
    }

    /// For components registering their own metrics while the node is built.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and every collector here writes through it.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_identity_and_collected_gauges_with_the_prefix() {
        let metrics = NodeMetrics::new("edge-1", "edge");
        let text = metrics.render();
        assert!(
            text.contains("streamfleet_build_info{version=\"")
                && text.contains("node=\"edge-1\",role=\"edge\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE streamfleet_uptime_seconds gauge\nstreamfleet_uptime_seconds "),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_version_can_be_left_out_of_the_build_info() {
        let text = NodeMetrics::without_version("lb-1", "lb").render();
        assert!(
            text.contains("streamfleet_build_info{node=\"lb-1\",role=\"lb\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("version"), "{text}");
    }
}
