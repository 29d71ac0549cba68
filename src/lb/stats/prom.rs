//! The LB's families in the node's metrics registry: the counters of the stats page, named
//! after HAProxy's own Prometheus exporter (`..._frontend_current_sessions`,
//! `..._server_bytes_in_total`, ...) under the `streamfleet_lb_` prefix, with the `proxy` and
//! `server` labels it uses (and `code` for HTTP responses by status class).
//!
//! Data flow: [`LbCollector::register`] puts one collector into the node's [`Registry`] while
//! the node starts; at each scrape of `/metrics` the registry calls it, it reads the live rows
//! ([`LbObjects::collect`]) and writes one family per metric (descriptor, then one sample per
//! frontend, backend or server that has the value; a family no row has is left out) through
//! prometheus-client's encoder, next to the node's own families (build info, uptime, cluster
//! store health). That encoder writes OpenMetrics text: a counter's family is declared without
//! `_total` (`# TYPE streamfleet_lb_frontend_sessions counter`) and its samples carry it
//! (`streamfleet_lb_frontend_sessions_total{proxy="web"} 9`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::model::{LbObjects, Proxy, Row, RowKind};
use crate::config::ProxyMode;

/// Prefix of every family, under the registry's `streamfleet`.
const PREFIX: &str = "lb";

/// The LB's families, read from the live objects at each scrape.
#[derive(Debug)]
pub struct LbCollector {
    /// What the stats page shows, read again at every scrape.
    objects: LbObjects,
}

impl LbCollector {
    /// Registers the families under `streamfleet_lb_` in the node's registry.
    pub fn register(objects: LbObjects, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix(PREFIX)
            .register_collector(Box::new(LbCollector { objects }));
    }
}

impl Collector for LbCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_rows(&self.objects.collect(), &mut encoder)
    }
}

/// A sample's value: counts stay integers, durations are seconds.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A count, a weight, a 0/1 state.
    Int(u64),
    /// Seconds.
    Seconds(f64),
}

/// Whether a family is a counter or a gauge.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// How a family reads a row: `None` when the row has no such value.
type Read = fn(&Row) -> Option<Value>;

/// One metric family, written once per object kind it applies to.
struct Family {
    /// Which rows it describes (one family per kind).
    objects: &'static [RowKind],
    /// Name after `streamfleet_lb_<frontend|backend|server>_`; a counter's without the
    /// `_total` its samples get from the encoder.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: Read,
}

const fn counter(
    objects: &'static [RowKind],
    name: &'static str,
    help: &'static str,
    read: Read,
) -> Family {
    Family {
        objects,
        name,
        kind: Kind::Counter,
        help,
        read,
    }
}

const fn gauge(
    objects: &'static [RowKind],
    name: &'static str,
    help: &'static str,
    read: Read,
) -> Family {
    Family {
        objects,
        name,
        kind: Kind::Gauge,
        help,
        read,
    }
}

fn int(v: u64) -> Option<Value> {
    Some(Value::Int(v))
}

fn seconds(d: std::time::Duration) -> Value {
    Value::Seconds(d.as_secs_f64())
}

fn http(r: &Row, v: u64) -> Option<Value> {
    (r.mode == ProxyMode::Http).then_some(Value::Int(v))
}

fn up(r: &Row) -> Option<Value> {
    int(u64::from(r.state.is_up()))
}

use RowKind::{Backend as B, Frontend as F, Server as S};

const FAMILIES: &[Family] = &[
    gauge(
        &[F],
        "status",
        "1 while the frontend accepts connections (0 while draining).",
        up,
    ),
    gauge(
        &[F, B, S],
        "current_sessions",
        "Current number of active sessions.",
        |r| int(r.counters.current),
    ),
    gauge(
        &[F, B, S],
        "max_sessions",
        "Maximum observed number of active sessions.",
        |r| int(r.counters.max),
    ),
    gauge(&[F], "limit_sessions", "Configured session limit.", |r| {
        r.limit.map(Value::Int)
    }),
    counter(&[F, B, S], "sessions", "Total number of sessions.", |r| {
        int(r.counters.total)
    }),
    counter(
        &[F, B, S],
        "bytes_in",
        "Current total of incoming bytes.",
        |r| int(r.counters.bytes_in),
    ),
    counter(
        &[F, B, S],
        "bytes_out",
        "Current total of outgoing bytes.",
        |r| int(r.counters.bytes_out),
    ),
    counter(
        &[F, B],
        "requests_denied",
        "Total number of denied requests.",
        |r| int(r.counters.denied),
    ),
    counter(
        &[F],
        "request_errors",
        "Total number of request errors.",
        |r| int(r.counters.request_errors),
    ),
    counter(
        &[F],
        "rtmp_handshake_timeouts",
        "Total number of RTMP clients closed for not choosing publish or play within handshake_timeout.",
        |r| (r.mode == ProxyMode::Rtmp).then_some(Value::Int(r.counters.handshake_timeouts)),
    ),
    counter(
        &[F],
        "source_limit_refusals",
        "Total number of connections closed because their source address was at maxconn_per_source.",
        |r| int(r.counters.source_refusals),
    ),
    counter(
        &[F, B],
        "http_requests",
        "Total number of HTTP requests received.",
        |r| http(r, r.counters.requests),
    ),
    gauge(&[B], "status", "1 while at least one server is UP.", up),
    counter(
        &[B, S],
        "connection_errors",
        "Total number of connection errors.",
        |r| int(r.counters.connection_errors),
    ),
    counter(
        &[B, S],
        "response_errors",
        "Total number of response errors.",
        |r| int(r.counters.response_errors),
    ),
    counter(
        &[B, S],
        "retry_warnings",
        "Total number of retry warnings.",
        |r| int(r.counters.retries),
    ),
    counter(
        &[B, S],
        "redispatch_warnings",
        "Total number of redispatch warnings.",
        |r| int(r.counters.redispatches),
    ),
    counter(
        &[B, S],
        "client_aborts",
        "Total number of data transfers aborted by the client.",
        |r| int(r.counters.client_aborts),
    ),
    counter(
        &[B, S],
        "server_aborts",
        "Total number of data transfers aborted by the server.",
        |r| int(r.counters.server_aborts),
    ),
    counter(
        &[B, S],
        "connection_attempts",
        "Total number of connection establishment attempts.",
        |r| int(r.counters.connects),
    ),
    counter(
        &[B, S],
        "connection_reuses",
        "Total number of connection reuses.",
        |r| int(r.counters.reuses),
    ),
    gauge(
        &[B],
        "active_servers",
        "Current number of active (UP) servers.",
        |r| r.active.map(Value::Int),
    ),
    gauge(&[B], "weight", "Total weight of the UP servers.", |r| {
        r.weight.map(Value::Int)
    }),
    counter(
        &[B],
        "check_up_down",
        "Total number of transitions to every server DOWN.",
        |r| r.down_transitions.map(Value::Int),
    ),
    gauge(
        &[B, S],
        "check_last_change_seconds",
        "Seconds since the last UP<->DOWN transition.",
        |r| r.last_change.map(seconds),
    ),
    counter(
        &[B],
        "downtime_seconds",
        "Total time with every server DOWN.",
        |r| r.downtime.map(seconds),
    ),
    gauge(
        &[S],
        "status",
        "1 while the server takes traffic (UP, going down, or no check).",
        up,
    ),
    gauge(
        &[S],
        "idle_connections_current",
        "Current number of idle pooled connections.",
        |r| r.idle_connections.map(Value::Int),
    ),
    gauge(
        &[S],
        "balance_load",
        "balance: stream: the load the balancer counts (viewers on http, connections on tcp).",
        |r| r.balance_load.map(Value::Int),
    ),
    gauge(&[S], "weight", "Server weight.", |r| {
        r.weight.map(Value::Int)
    }),
    counter(
        &[S],
        "check_failures",
        "Total number of failed health checks.",
        |r| r.check.as_ref().map(|c| Value::Int(c.failures)),
    ),
    counter(
        &[S],
        "check_up_down",
        "Total number of UP->DOWN transitions.",
        |r| r.down_transitions.map(Value::Int),
    ),
    gauge(
        &[S],
        "check_duration_seconds",
        "Duration of the last health check.",
        |r| {
            r.check
                .as_ref()
                .and_then(|c| c.last.as_ref())
                .map(|l| seconds(l.duration))
        },
    ),
    counter(&[S], "downtime_seconds", "Total time DOWN.", |r| {
        r.downtime.map(seconds)
    }),
];

/// HTTP response classes, with their `code` label values.
const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Help of the `http_responses` families.
const RESPONSES_HELP: &str = "Total number of HTTP responses, by status class.";

/// Writes every family the rows have values for.
fn encode_rows(proxies: &[Proxy], encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let rows = || proxies.iter().flat_map(|p| p.rows.iter());
    for (f, &object) in FAMILIES
        .iter()
        .flat_map(|f| f.objects.iter().map(move |o| (f, o)))
    {
        let of_object = || rows().filter(move |r| r.kind == object);
        if !of_object().any(|r| (f.read)(r).is_some()) {
            continue;
        }
        let name = format!("{}_{}", object_name(object), f.name);
        let metric_type = match f.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(&name, f.help, None, metric_type)?;
        for r in of_object() {
            if let Some(value) = (f.read)(r) {
                sample(&mut family, f.kind, &Labels::of(r, None), value)?;
            }
        }
    }
    for object in [RowKind::Frontend, RowKind::Backend, RowKind::Server] {
        let http_rows = || rows().filter(move |r| r.kind == object && r.mode == ProxyMode::Http);
        if http_rows().next().is_none() {
            continue;
        }
        let name = format!("{}_http_responses", object_name(object));
        let mut family =
            encoder.encode_descriptor(&name, RESPONSES_HELP, None, MetricType::Counter)?;
        for r in http_rows() {
            for (code, count) in CODES.iter().zip(r.counters.responses) {
                sample(
                    &mut family,
                    Kind::Counter,
                    &Labels::of(r, Some(*code)),
                    Value::Int(count),
                )?;
            }
        }
    }
    Ok(())
}

/// Writes one labelled sample of a family.
fn sample(
    family: &mut MetricEncoder,
    kind: Kind,
    labels: &Labels,
    value: Value,
) -> Result<(), std::fmt::Error> {
    let encoder = family.encode_family(labels)?;
    match (kind, value) {
        (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(encoder),
        (Kind::Counter, Value::Seconds(v)) => ConstCounter::new(v).encode(encoder),
        (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(encoder),
        (Kind::Gauge, Value::Seconds(v)) => ConstGauge::new(v).encode(encoder),
    }
}

fn object_name(kind: RowKind) -> &'static str {
    match kind {
        RowKind::Frontend => "frontend",
        RowKind::Backend => "backend",
        RowKind::Server => "server",
    }
}

/// The labels of one sample: `proxy`, then `server` on server rows, then `code` on HTTP
/// response counts (the encoder escapes the values).
struct Labels<'a> {
    proxy: &'a str,
    server: Option<&'a str>,
    code: Option<&'static str>,
}

impl<'a> Labels<'a> {
    fn of(r: &'a Row, code: Option<&'static str>) -> Self {
        Labels {
            proxy: &r.proxy,
            server: (r.kind == RowKind::Server).then_some(r.name.as_str()),
            code,
        }
    }
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabel::encode(&("proxy", self.proxy), encoder.encode_label())?;
        if let Some(server) = self.server {
            EncodeLabel::encode(&("server", server), encoder.encode_label())?;
        }
        if let Some(code) = self.code {
            EncodeLabel::encode(&("code", code), encoder.encode_label())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::lb::counters::CounterSnapshot;
    use crate::lb::stats::model::State;
    use crate::runtime::metrics::NodeMetrics;

    /// Fixed rows instead of live objects.
    #[derive(Debug)]
    struct Fixed(Vec<Proxy>);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_rows(&self.0, &mut encoder)
        }
    }

    fn row(kind: RowKind, proxy: &str, name: &str, mode: ProxyMode) -> Row {
        Row {
            kind,
            proxy: proxy.into(),
            name: name.into(),
            mode,
            iid: 1,
            sid: 1,
            counters: CounterSnapshot {
                current: 2,
                total: 9,
                bytes_in: 123,
                responses: [0, 8, 0, 1, 0, 0],
                ..CounterSnapshot::default()
            },
            limit: Some(2000),
            state: State::Down,
            weight: Some(1),
            active: Some(0),
            check: None,
            down_transitions: Some(1),
            last_change: Some(Duration::from_secs(5)),
            downtime: Some(Duration::from_millis(1500)),
            addr: None,
            cookie: None,
            algo: None,
            idle_connections: None,
            balance_load: None,
        }
    }

    /// A node registry holding the LB families of one HTTP frontend and one TCP backend with
    /// a server whose name needs escaping.
    fn render() -> String {
        let proxies = vec![
            Proxy {
                name: "web".into(),
                kind: RowKind::Frontend,
                rows: vec![row(RowKind::Frontend, "web", "FRONTEND", ProxyMode::Http)],
            },
            Proxy {
                name: "rtmp".into(),
                kind: RowKind::Backend,
                rows: vec![
                    row(RowKind::Server, "rtmp", "o\"1", ProxyMode::Tcp),
                    row(RowKind::Backend, "rtmp", "BACKEND", ProxyMode::Tcp),
                ],
            },
        ];
        let mut metrics = NodeMetrics::new("lb1", "lb");
        metrics
            .registry_mut()
            .sub_registry_with_prefix(PREFIX)
            .register_collector(Box::new(Fixed(proxies)));
        metrics.render()
    }

    #[test]
    fn samples_are_labelled_and_typed() {
        let text = render();
        for line in [
            "# TYPE streamfleet_lb_frontend_sessions counter",
            "streamfleet_lb_frontend_sessions_total{proxy=\"web\"} 9",
            "# TYPE streamfleet_lb_frontend_current_sessions gauge",
            "streamfleet_lb_frontend_current_sessions{proxy=\"web\"} 2",
            "streamfleet_lb_frontend_limit_sessions{proxy=\"web\"} 2000",
            "streamfleet_lb_server_bytes_in_total{proxy=\"rtmp\",server=\"o\\\"1\"} 123",
            "streamfleet_lb_server_status{proxy=\"rtmp\",server=\"o\\\"1\"} 0",
            "streamfleet_lb_server_downtime_seconds_total{proxy=\"rtmp\",server=\"o\\\"1\"} 1.5",
            "streamfleet_lb_backend_check_last_change_seconds{proxy=\"rtmp\"} 5.0",
            "# TYPE streamfleet_lb_frontend_http_responses counter",
            "streamfleet_lb_frontend_http_responses_total{proxy=\"web\",code=\"2xx\"} 8",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert!(
            !text.contains("streamfleet_lb_backend_http_responses"),
            "tcp proxies have no HTTP responses"
        );
        assert!(
            !text.contains("streamfleet_lb_server_check_failures"),
            "a family no row has is left out"
        );
        // The node's own families are in the same exposition, which ends once.
        assert!(text.contains("streamfleet_build_info{"), "{text}");
        assert!(text.contains("streamfleet_uptime_seconds "), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_sample_belongs_to_a_family_declared_once() {
        let text = render();
        let mut declared = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    declared.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{name} declared twice"
                );
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = [("", "gauge"), ("_total", "counter"), ("_info", "info")]
                    .iter()
                    .find_map(|(suffix, kind)| {
                        let base = name.strip_suffix(suffix)?;
                        (declared.get(base).map(String::as_str) == Some(*kind)).then_some(base)
                    });
                assert!(family.is_some(), "undeclared sample {line}");
            }
        }
    }
}
