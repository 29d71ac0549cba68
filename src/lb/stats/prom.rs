//! `/metrics` on the stats listener: the counters of the stats page in the Prometheus text
//! format (version 0.0.4), named after HAProxy's own Prometheus exporter
//! (`..._frontend_current_sessions`, `..._server_bytes_in_total`, ...) under the
//! `streamfleet_lb_` prefix, with the `proxy` and `server` labels it uses.
//!
//! Data flow: [`Proxy`] rows -> one family per metric (`# HELP`, `# TYPE`, then one sample
//! per frontend, backend or server that has the value) -> text.

use std::fmt::Write as _;

use super::model::{Proxy, Row, RowKind};
use crate::config::ProxyMode;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prefix of every metric.
const PREFIX: &str = "streamfleet_lb";

/// How a metric reads a row: `None` when the row has no such value.
type Read = fn(&Row) -> Option<f64>;

/// One metric family, written once per object kind it applies to.
struct Family {
    /// Which rows it describes (one family per kind).
    kinds: &'static [RowKind],
    /// Name after `<prefix>_<frontend|backend|server>_`.
    name: &'static str,
    /// `counter` or `gauge`.
    kind_name: &'static str,
    help: &'static str,
    read: Read,
}

const fn family(
    kinds: &'static [RowKind],
    name: &'static str,
    kind_name: &'static str,
    help: &'static str,
    read: Read,
) -> Family {
    Family {
        kinds,
        name,
        kind_name,
        help,
        read,
    }
}

fn n(v: u64) -> Option<f64> {
    Some(v as f64)
}

fn http(r: &Row, v: u64) -> Option<f64> {
    (r.mode == ProxyMode::Http).then_some(v as f64)
}

use RowKind::{Backend as B, Frontend as F, Server as S};

const FAMILIES: &[Family] = &[
    family(
        &[F],
        "status",
        "gauge",
        "1 while the frontend accepts connections (0 while draining).",
        |r| Some(f64::from(u8::from(r.state.is_up()))),
    ),
    family(
        &[F, B, S],
        "current_sessions",
        "gauge",
        "Current number of active sessions.",
        |r| n(r.counters.current),
    ),
    family(
        &[F, B, S],
        "max_sessions",
        "gauge",
        "Maximum observed number of active sessions.",
        |r| n(r.counters.max),
    ),
    family(
        &[F],
        "limit_sessions",
        "gauge",
        "Configured session limit.",
        |r| r.limit.map(|l| l as f64),
    ),
    family(
        &[F, B, S],
        "sessions_total",
        "counter",
        "Total number of sessions.",
        |r| n(r.counters.total),
    ),
    family(
        &[F, B, S],
        "bytes_in_total",
        "counter",
        "Current total of incoming bytes.",
        |r| n(r.counters.bytes_in),
    ),
    family(
        &[F, B, S],
        "bytes_out_total",
        "counter",
        "Current total of outgoing bytes.",
        |r| n(r.counters.bytes_out),
    ),
    family(
        &[F, B],
        "requests_denied_total",
        "counter",
        "Total number of denied requests.",
        |r| n(r.counters.denied),
    ),
    family(
        &[F],
        "request_errors_total",
        "counter",
        "Total number of request errors.",
        |r| n(r.counters.request_errors),
    ),
    family(
        &[F, B],
        "http_requests_total",
        "counter",
        "Total number of HTTP requests received.",
        |r| http(r, r.counters.requests),
    ),
    family(
        &[B],
        "status",
        "gauge",
        "1 while at least one server is UP.",
        |r| Some(f64::from(u8::from(r.state.is_up()))),
    ),
    family(
        &[B, S],
        "connection_errors_total",
        "counter",
        "Total number of connection errors.",
        |r| n(r.counters.connection_errors),
    ),
    family(
        &[B, S],
        "response_errors_total",
        "counter",
        "Total number of response errors.",
        |r| n(r.counters.response_errors),
    ),
    family(
        &[B, S],
        "retry_warnings_total",
        "counter",
        "Total number of retry warnings.",
        |r| n(r.counters.retries),
    ),
    family(
        &[B, S],
        "redispatch_warnings_total",
        "counter",
        "Total number of redispatch warnings.",
        |r| n(r.counters.redispatches),
    ),
    family(
        &[B, S],
        "client_aborts_total",
        "counter",
        "Total number of data transfers aborted by the client.",
        |r| n(r.counters.client_aborts),
    ),
    family(
        &[B, S],
        "server_aborts_total",
        "counter",
        "Total number of data transfers aborted by the server.",
        |r| n(r.counters.server_aborts),
    ),
    family(
        &[B, S],
        "connection_attempts_total",
        "counter",
        "Total number of connection establishment attempts.",
        |r| n(r.counters.connects),
    ),
    family(
        &[B, S],
        "connection_reuses_total",
        "counter",
        "Total number of connection reuses.",
        |r| n(r.counters.reuses),
    ),
    family(
        &[B],
        "active_servers",
        "gauge",
        "Current number of active (UP) servers.",
        |r| r.active.map(|a| a as f64),
    ),
    family(
        &[B],
        "weight",
        "gauge",
        "Total weight of the UP servers.",
        |r| r.weight.map(|w| w as f64),
    ),
    family(
        &[B],
        "check_up_down_total",
        "counter",
        "Total number of transitions to every server DOWN.",
        |r| r.down_transitions.map(|d| d as f64),
    ),
    family(
        &[B, S],
        "check_last_change_seconds",
        "gauge",
        "Seconds since the last UP<->DOWN transition.",
        |r| r.last_change.map(|d| d.as_secs_f64()),
    ),
    family(
        &[B],
        "downtime_seconds_total",
        "counter",
        "Total time with every server DOWN.",
        |r| r.downtime.map(|d| d.as_secs_f64()),
    ),
    family(
        &[S],
        "status",
        "gauge",
        "1 while the server takes traffic (UP, going down, or no check).",
        |r| Some(f64::from(u8::from(r.state.is_up()))),
    ),
    family(
        &[S],
        "idle_connections_current",
        "gauge",
        "Current number of idle pooled connections.",
        |r| r.idle_connections.map(|i| i as f64),
    ),
    family(&[S], "weight", "gauge", "Server weight.", |r| {
        r.weight.map(|w| w as f64)
    }),
    family(
        &[S],
        "check_failures_total",
        "counter",
        "Total number of failed health checks.",
        |r| r.check.as_ref().map(|c| c.failures as f64),
    ),
    family(
        &[S],
        "check_up_down_total",
        "counter",
        "Total number of UP->DOWN transitions.",
        |r| r.down_transitions.map(|d| d as f64),
    ),
    family(
        &[S],
        "check_duration_seconds",
        "gauge",
        "Duration of the last health check.",
        |r| {
            r.check
                .as_ref()
                .and_then(|c| c.last.as_ref())
                .map(|l| l.duration.as_secs_f64())
        },
    ),
    family(
        &[S],
        "downtime_seconds_total",
        "counter",
        "Total time DOWN.",
        |r| r.downtime.map(|d| d.as_secs_f64()),
    ),
];

/// HTTP response classes, with their `code` label values.
const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Renders every family; `version` adds a build-info gauge (left out with `hide_version`).
pub fn render(proxies: &[Proxy], node: &str, version: Option<&str>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    if let Some(v) = version {
        let _ = writeln!(
            out,
            "# HELP {PREFIX}_build_info streamfleet version of this node.\n# TYPE {PREFIX}_build_info gauge\n{PREFIX}_build_info{{node=\"{}\",version=\"{}\"}} 1",
            escape(node),
            escape(v)
        );
    }
    let rows = || proxies.iter().flat_map(|p| p.rows.iter());
    for (f, &kind) in FAMILIES
        .iter()
        .flat_map(|f| f.kinds.iter().map(move |k| (f, k)))
    {
        let object = object_name(kind);
        let mut header = false;
        for r in rows().filter(|r| r.kind == kind) {
            let Some(value) = (f.read)(r) else { continue };
            if !header {
                let _ = writeln!(
                    out,
                    "# HELP {PREFIX}_{object}_{} {}\n# TYPE {PREFIX}_{object}_{} {}",
                    f.name, f.help, f.name, f.kind_name
                );
                header = true;
            }
            let _ = writeln!(
                out,
                "{PREFIX}_{object}_{}{} {value}",
                f.name,
                labels(r, None)
            );
        }
    }
    for kind in [RowKind::Frontend, RowKind::Backend, RowKind::Server] {
        let object = object_name(kind);
        let mut header = false;
        for r in rows().filter(|r| r.kind == kind && r.mode == ProxyMode::Http) {
            if !header {
                let _ = writeln!(
                    out,
                    "# HELP {PREFIX}_{object}_http_responses_total Total number of HTTP responses, by status class.\n# TYPE {PREFIX}_{object}_http_responses_total counter"
                );
                header = true;
            }
            for (code, count) in CODES.iter().zip(r.counters.responses) {
                let _ = writeln!(
                    out,
                    "{PREFIX}_{object}_http_responses_total{} {count}",
                    labels(r, Some(code))
                );
            }
        }
    }
    out
}

fn object_name(kind: RowKind) -> &'static str {
    match kind {
        RowKind::Frontend => "frontend",
        RowKind::Backend => "backend",
        RowKind::Server => "server",
    }
}

fn labels(r: &Row, code: Option<&str>) -> String {
    let mut l = format!("{{proxy=\"{}\"", escape(&r.proxy));
    if r.kind == RowKind::Server {
        let _ = write!(l, ",server=\"{}\"", escape(&r.name));
    }
    if let Some(c) = code {
        let _ = write!(l, ",code=\"{c}\"");
    }
    l.push('}');
    l
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lb::counters::CounterSnapshot;
    use crate::lb::stats::model::State;

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
        }
    }

    #[test]
    fn samples_are_labelled_and_typed() {
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
        let text = render(&proxies, "lb1", Some("0.1.0"));
        assert!(text.contains("streamfleet_lb_build_info{node=\"lb1\",version=\"0.1.0\"} 1\n"));
        assert!(text.contains("# TYPE streamfleet_lb_frontend_sessions_total counter\n"));
        assert!(text.contains("streamfleet_lb_frontend_sessions_total{proxy=\"web\"} 9\n"));
        assert!(text.contains(
            "streamfleet_lb_server_bytes_in_total{proxy=\"rtmp\",server=\"o\\\"1\"} 123\n"
        ));
        assert!(
            text.contains("streamfleet_lb_server_status{proxy=\"rtmp\",server=\"o\\\"1\"} 0\n")
        );
        assert!(text.contains(
            "streamfleet_lb_server_downtime_seconds_total{proxy=\"rtmp\",server=\"o\\\"1\"} 1.5\n"
        ));
        assert!(text.contains(
            "streamfleet_lb_frontend_http_responses_total{proxy=\"web\",code=\"2xx\"} 8\n"
        ));
        assert!(
            !text.contains("streamfleet_lb_backend_http_responses_total"),
            "tcp proxies have no HTTP responses"
        );
        // Every sample line belongs to a family announced just before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "undeclared sample {line}");
            }
        }
        let hidden = render(&proxies, "lb1", None);
        assert!(
            !hidden.contains("version"),
            "hide_version hides it here too"
        );
    }
}
