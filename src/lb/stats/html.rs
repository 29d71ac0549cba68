//! The HTML stats page, shaped like HAProxy's: a process summary, then one table per frontend
//! and per backend with one row per server, coloured by state (UP, DOWN, "UP 1/3" going
//! down, "DOWN 1/2" coming up). No external assets: the style sheet is inline.
//!
//! Data flow: [`Proxy`] rows + [`PageInfo`] (node, version, uptime, links) -> one HTML
//! document. Every name from the config is escaped.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::{Proxy, Row, RowKind, State, algo_name, check_description};
use crate::config::ProxyMode;

/// What the page says about the node and how it links to itself.
#[derive(Debug, Clone)]
pub struct PageInfo<'a> {
    /// Node name.
    pub node: &'a str,
    /// Version, unless `hide_version`.
    pub version: Option<&'a str>,
    /// Time since the node started.
    pub uptime: Duration,
    /// Connections open on the node's frontends.
    pub connections: usize,
    /// The node's `maxconn`.
    pub maxconn: usize,
    /// The stats `uri` (links are built from it).
    pub uri: &'a str,
    /// Auto-refresh period when it is on (configured and not `;norefresh`).
    pub refresh: Option<Duration>,
    /// Whether auto-refresh is configured at all (to offer the link that turns it back on).
    pub refresh_configured: bool,
    /// `;up`: servers that are not UP are hidden.
    pub up_only: bool,
}

const STYLE: &str = "body{font-family:arial,helvetica,sans-serif;font-size:12px;color:#000;background:#fff}\
h1{font-size:xx-large;margin-bottom:.5em;color:#fff;background:#20408f}\
h2{font-size:x-large;margin-bottom:.5em;background:#e8e8d0}\
h3{font-size:16px;margin:.5em 0}\
a{color:#3030a0}\
table.tbl{border-collapse:collapse;border-style:none;margin-bottom:1.5em}\
table.tbl td,table.tbl th{text-align:right;border:1px solid #aaa;white-space:nowrap;padding:2px 4px}\
table.tbl th{background:#b0b0b0;font-weight:normal}\
table.tbl th.pxname{background:#b00040;color:#ffff40;font-weight:bold;text-align:left;font-size:14px}\
table.tbl th.empty{border-style:none;background:#fff}\
table.tbl td.ac{text-align:center}\
table.tbl td.al{text-align:left}\
tr.titre th{background:#20408f;color:#fff}\
.frontend{background:#e8e8d0}.backend{background:#e8e8d0;font-weight:bold}\
.active_up{background:#c0ffc0}.active_down{background:#ff9090}\
.active_going_down{background:#ffffa0}.active_going_up{background:#ffd020}\
.active_no_check{background:#e0e0e0}.backend_down{background:#ff9090;font-weight:bold}\
.legend td{padding:2px 6px;border:1px solid #aaa}";

/// Renders the page.
pub fn render(proxies: &[Proxy], info: &PageInfo<'_>) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let title = match info.version {
        Some(v) => format!(
            "Statistics Report for streamfleet {v} (node {})",
            esc(info.node)
        ),
        None => format!("Statistics Report for node {}", esc(info.node)),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body>\n<h1>streamfleet</h1>\n<h2>{title}</h2>\n"
    );
    out.push_str("<hr><h3>&gt; General process information</h3>\n<table><tr><td class=\"al\">");
    let _ = write!(
        out,
        "node = {}<br>uptime = {}<br>current conns = {}; maxconn = {}<br>",
        esc(info.node),
        human(info.uptime),
        info.connections,
        info.maxconn
    );
    if let Some(v) = info.version {
        let _ = write!(out, "version = {}<br>", esc(v));
    }
    out.push_str("</td><td>");
    legend(&mut out);
    out.push_str("</td><td class=\"al\"><b>Display option:</b><ul>");
    let base = esc(info.uri);
    let norefresh = if info.refresh.is_none() && info.refresh_configured {
        ";norefresh"
    } else {
        ""
    };
    if info.up_only {
        let _ = write!(
            out,
            "<li><a href=\"{base}{norefresh}\">Show all servers</a></li>"
        );
    } else {
        let _ = write!(
            out,
            "<li><a href=\"{base};up{norefresh}\">Hide 'DOWN' servers</a></li>"
        );
    }
    let up = if info.up_only { ";up" } else { "" };
    if info.refresh.is_some() {
        let _ = write!(
            out,
            "<li><a href=\"{base}{up};norefresh\">Disable refresh</a></li>"
        );
    } else if info.refresh_configured {
        let _ = write!(out, "<li><a href=\"{base}{up}\">Enable refresh</a></li>");
    }
    let _ = writeln!(
        out,
        "<li><a href=\"{base}{up}{norefresh}\">Refresh now</a></li><li><a href=\"{base};csv\">CSV export</a></li></ul></td></tr></table>"
    );
    for p in proxies {
        table(&mut out, p, info.up_only);
    }
    out.push_str("</body></html>\n");
    out
}

fn legend(out: &mut String) {
    out.push_str("<table class=\"legend\">");
    for (class, text) in [
        ("active_up", "active UP"),
        ("active_going_down", "active UP, going down"),
        ("active_going_up", "active DOWN, going up"),
        ("active_down", "active or backup DOWN"),
        ("active_no_check", "not checked"),
    ] {
        let _ = write!(
            out,
            "<tr><td class=\"{class}\">&nbsp;&nbsp;&nbsp;&nbsp;</td><td class=\"al\">{text}</td></tr>"
        );
    }
    out.push_str("</table>");
}

/// One proxy's table: a title row, two header rows, then its rows.
fn table(out: &mut String, p: &Proxy, up_only: bool) {
    let id = match p.kind {
        RowKind::Frontend => "fe",
        _ => "be",
    };
    let algo = p
        .rows
        .iter()
        .find_map(|r| r.algo)
        .map_or(String::new(), |a| format!("balance: {}", algo_name(a)));
    let _ = write!(
        out,
        "<table class=\"tbl\" id=\"{id}-{}\" data-proxy=\"{}\">\n<tr class=\"titre\"><th class=\"pxname\" colspan=\"2\">{}</th><th class=\"empty\" colspan=\"30\">{algo}</th></tr>\n",
        esc(&p.name),
        esc(&p.name),
        esc(&p.name)
    );
    out.push_str(
        "<tr class=\"titre\"><th rowspan=\"2\"></th><th colspan=\"4\">Sessions</th><th colspan=\"2\">Bytes</th>\
<th colspan=\"2\">Denied</th><th colspan=\"3\">Errors</th><th colspan=\"2\">Warnings</th>\
<th colspan=\"6\">Responses</th><th colspan=\"9\">Server</th></tr>\n\
<tr class=\"titre\"><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>In</th><th>Out</th>\
<th>Req</th><th>Resp</th><th>Req</th><th>Conn</th><th>Resp</th><th>Retr</th><th>Redis</th>\
<th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>other</th>\
<th>Status</th><th>LastChg</th><th>LastChk</th><th>Wght</th><th>Act</th><th>Bck</th><th>Chk</th><th>Dwn</th><th>Dwntme</th></tr>\n",
    );
    for r in &p.rows {
        if up_only && r.kind == RowKind::Server && !r.state.is_up() {
            continue;
        }
        row(out, r);
    }
    out.push_str("</table>\n");
}

fn row(out: &mut String, r: &Row) {
    let class = match (r.kind, r.state) {
        (RowKind::Frontend, _) => "frontend",
        (RowKind::Backend, State::Down) => "backend_down",
        (RowKind::Backend, _) => "backend",
        (_, State::Up) => "active_up",
        (_, State::GoingDown { .. }) => "active_going_down",
        (_, State::GoingUp { .. }) => "active_going_up",
        (_, State::NoCheck) => "active_no_check",
        (_, _) => "active_down",
    };
    let c = &r.counters;
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    let server_side = r.kind != RowKind::Frontend;
    let blank_if = |cond: bool, v: u64| if cond { v.to_string() } else { String::new() };
    let load = r.balance_load.map_or(String::new(), |n| {
        format!(" title=\"balance: stream, load {n}\" data-load=\"{n}\"")
    });
    let _ = write!(
        out,
        "<tr class=\"{class}\" data-server=\"{}\"><td class=\"al\"{load}>{}</td>",
        esc(&r.name),
        esc(&r.name)
    );
    for cell in [
        c.current.to_string(),
        c.max.to_string(),
        opt(r.limit),
        c.total.to_string(),
        c.bytes_in.to_string(),
        c.bytes_out.to_string(),
        blank_if(r.kind != RowKind::Server, c.denied),
        "0".into(),
        blank_if(!server_side, c.request_errors),
        blank_if(server_side, c.connection_errors),
        blank_if(server_side, c.response_errors),
        blank_if(server_side, c.retries),
        blank_if(server_side, c.redispatches),
    ] {
        let _ = write!(out, "<td>{cell}</td>");
    }
    for n in c.responses {
        let _ = write!(out, "<td>{}</td>", blank_if(r.mode == ProxyMode::Http, n));
    }
    let last_check = r
        .check
        .as_ref()
        .and_then(|ch| ch.last.as_ref())
        .map_or(String::new(), |l| {
            let code = l.code.map_or(String::new(), |c| format!("/{c}"));
            format!(
                "<span title=\"{}\">{}{code} in {}ms</span>",
                check_description(l.status),
                l.status,
                l.duration.as_millis()
            )
        });
    let _ = writeln!(
        out,
        "<td class=\"ac\">{}</td><td>{}</td><td class=\"al\">{last_check}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        r.state.text(),
        r.last_change.map_or(String::new(), human),
        opt(r.weight),
        opt(r.active),
        if r.active.is_some() { "0" } else { "" },
        r.check
            .as_ref()
            .map_or(String::new(), |ch| ch.failures.to_string()),
        opt(r.down_transitions),
        r.downtime.map_or(String::new(), human),
    );
}

/// HAProxy's short durations: `1d2h`, `3h4m`, `5m6s`, `7s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::backend::CheckOutcome;
    use crate::lb::counters::CounterSnapshot;
    use crate::lb::stats::model::CheckRow;

    fn server(name: &str, state: State) -> Row {
        Row {
            kind: RowKind::Server,
            proxy: "be".into(),
            name: name.into(),
            mode: ProxyMode::Http,
            iid: 2,
            sid: 1,
            counters: CounterSnapshot {
                total: 12,
                responses: [0, 11, 0, 0, 1, 0],
                ..CounterSnapshot::default()
            },
            limit: None,
            state,
            weight: Some(3),
            active: Some(1),
            check: Some(CheckRow {
                last: Some(CheckOutcome {
                    passed: false,
                    status: "L4CON",
                    code: None,
                    duration: Duration::from_millis(1),
                }),
                failures: 2,
                rise: 2,
                fall: 3,
                health: 2,
            }),
            down_transitions: Some(0),
            last_change: Some(Duration::from_secs(65)),
            downtime: Some(Duration::ZERO),
            addr: None,
            cookie: None,
            algo: None,
            idle_connections: None,
            balance_load: None,
        }
    }

    fn info(refresh: Option<Duration>) -> PageInfo<'static> {
        PageInfo {
            node: "lb<1>",
            version: None,
            uptime: Duration::from_secs(3700),
            connections: 3,
            maxconn: 2000,
            uri: "/stats",
            refresh,
            refresh_configured: true,
            up_only: false,
        }
    }

    #[test]
    fn one_table_per_proxy_one_row_per_server() {
        let proxies = vec![Proxy {
            name: "be".into(),
            kind: RowKind::Backend,
            rows: vec![
                server("<s1>", State::GoingDown { failed: 2, fall: 3 }),
                server("s2", State::GoingUp { passed: 1, rise: 2 }),
                Row {
                    kind: RowKind::Backend,
                    name: "BACKEND".into(),
                    ..server("x", State::Up)
                },
            ],
        }];
        let page = render(&proxies, &info(Some(Duration::from_secs(5))));
        assert_eq!(page.matches("<table class=\"tbl\"").count(), 1);
        assert!(
            page.contains("data-server=\"&lt;s1&gt;\""),
            "names are escaped"
        );
        assert!(page.contains("<td class=\"ac\">UP 1/3</td>"));
        assert!(page.contains("<td class=\"ac\">DOWN 1/2</td>"));
        assert!(page.contains("class=\"active_going_down\""));
        assert!(page.contains("L4CON in 1ms"));
        assert!(page.contains("<td>1m5s</td>"), "last change");
        assert!(page.contains("node lb&lt;1&gt;"));
        assert!(page.contains("href=\"/stats;norefresh\">Disable refresh"));
        assert!(!page.contains("streamfleet 0."), "no version without one");
        assert!(
            !page.contains("src=") && !page.contains("<link"),
            "no external assets"
        );
    }

    #[test]
    fn norefresh_offers_to_turn_it_back_on() {
        let page = render(&[], &info(None));
        assert!(page.contains("href=\"/stats\">Enable refresh"), "{page}");
        assert!(
            page.contains("href=\"/stats;norefresh\">Refresh now"),
            "{page}"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(7)), "7s");
        assert_eq!(human(Duration::from_secs(65)), "1m5s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 240)), "3h4m");
        assert_eq!(human(Duration::from_secs(86_400 + 7200)), "1d2h");
    }
}
