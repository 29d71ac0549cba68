//! `<uri>;csv`: the stats as HAProxy 2.0 writes them (management guide §9.1), so tools written
//! for HAProxy (exporters, `hatop`-style scripts, monitoring plugins) read them unchanged.
//!
//! Data flow: [`Proxy`] rows -> one line per row in HAProxy's order (`FRONTEND`; servers then
//! `BACKEND`), every line holding the 99 static fields of HAProxy 2.0 in its column order,
//! each followed by a comma as HAProxy does. Fields HAProxy leaves empty for a row type (or
//! that this LB does not track, such as queues and rates) are empty.

use std::fmt::Write as _;

use super::model::{Proxy, Row, RowKind, algo_name, check_description, mode_name};
use crate::config::ProxyMode;

/// HAProxy 2.0's static columns, in order (fields 0 to 98 of management guide §9.1).
pub const COLUMNS: [&str; 99] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
];

/// The header line: `# pxname,svname,...,need_conn_est,` and a newline.
pub fn header() -> String {
    let mut out = String::from("# ");
    for c in COLUMNS {
        out.push_str(c);
        out.push(',');
    }
    out.push('\n');
    out
}

/// The whole CSV document: the header, then every row of every proxy.
pub fn render(proxies: &[Proxy], up_only: bool) -> String {
    let mut out = header();
    for p in proxies {
        for r in &p.rows {
            if up_only && r.kind == RowKind::Server && !r.state.is_up() {
                continue;
            }
            push_row(&mut out, r);
        }
    }
    out
}

/// One row's fields, by column index.
struct Fields(Vec<String>);

impl Fields {
    fn new() -> Fields {
        Fields(vec![String::new(); COLUMNS.len()])
    }

    /// Sets a column by its HAProxy name; names are the constants above (a test renders every
    /// row kind, so a misspelt name fails there).
    fn put(&mut self, column: &str, value: impl ToString) {
        let index = COLUMNS.iter().position(|c| *c == column);
        debug_assert!(index.is_some(), "unknown stats column {column}");
        if let Some(slot) = index.and_then(|i| self.0.get_mut(i)) {
            *slot = value.to_string();
        }
    }
}

fn push_row(out: &mut String, r: &Row) {
    let mut f = Fields::new();
    let c = &r.counters;
    let is_server = r.kind == RowKind::Server;
    let is_frontend = r.kind == RowKind::Frontend;
    f.put("pxname", &r.proxy);
    f.put("svname", &r.name);
    if !is_frontend {
        f.put("qcur", 0);
        f.put("qmax", 0);
    }
    f.put("scur", c.current);
    f.put("smax", c.max);
    if let Some(l) = r.limit {
        f.put("slim", l);
    }
    f.put("stot", c.total);
    f.put("bin", c.bytes_in);
    f.put("bout", c.bytes_out);
    if !is_server {
        f.put("dreq", c.denied);
    }
    f.put("dresp", 0);
    if is_frontend {
        f.put("ereq", c.request_errors);
    } else {
        f.put("econ", c.connection_errors);
        f.put("eresp", c.response_errors);
        f.put("wretr", c.retries);
        f.put("wredis", c.redispatches);
    }
    f.put("status", r.state.text());
    if let Some(w) = r.weight {
        f.put("weight", w);
    }
    if let Some(a) = r.active {
        f.put("act", a);
        f.put("bck", 0);
    }
    if let Some(check) = &r.check {
        f.put("chkfail", check.failures);
    }
    if let Some(d) = r.down_transitions {
        f.put("chkdown", d);
    }
    if let Some(l) = r.last_change {
        f.put("lastchg", l.as_secs());
    }
    if let Some(d) = r.downtime {
        f.put("downtime", d.as_secs());
    }
    f.put("pid", 1);
    f.put("iid", r.iid);
    f.put("sid", r.sid);
    if !is_frontend {
        f.put("lbtot", c.total);
    }
    f.put("type", r.kind.code());
    if let Some(check) = &r.check {
        if let Some(last) = &check.last {
            f.put("check_status", last.status);
            if let Some(code) = last.code {
                f.put("check_code", code);
            }
            f.put("check_duration", last.duration.as_millis());
            f.put("check_desc", check_description(last.status));
        }
        f.put("check_rise", check.rise);
        f.put("check_fall", check.fall);
        f.put("check_health", check.health);
    }
    if r.mode == ProxyMode::Http {
        for (column, n) in ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx"]
            .iter()
            .chain(&["hrsp_other"])
            .zip(c.responses)
        {
            f.put(column, n);
        }
        if !is_server {
            f.put("req_tot", c.requests);
        }
    }
    if !is_frontend {
        f.put("cli_abrt", c.client_aborts);
        f.put("srv_abrt", c.server_aborts);
    }
    if let Some(a) = r.addr {
        f.put("addr", a);
    }
    if let Some(cookie) = &r.cookie {
        f.put("cookie", cookie);
    }
    f.put("mode", mode_name(r.mode));
    if let Some(a) = r.algo {
        f.put("algo", algo_name(a));
    }
    if is_frontend {
        f.put("conn_tot", c.total);
        f.put("dcon", 0);
        f.put("dses", 0);
    } else {
        f.put("connect", c.connects);
        f.put("reuse", c.reuses);
    }
    f.put("wrew", 0);
    f.put("eint", 0);
    if let Some(idle) = r.idle_connections {
        f.put("srv_icur", idle);
        f.put("src_ilim", crate::lb::l7::pool::MAX_IDLE_PER_SERVER);
        f.put("idle_conn_cur", idle);
        f.put("safe_conn_cur", 0);
        f.put("used_conn_cur", c.current);
    }
    for value in &f.0 {
        push_field(out, value);
        out.push(',');
    }
    out.push('\n');
}

/// Writes one field, quoted (quotes doubled) only when it holds a comma, a quote or a line
/// break, as HAProxy does.
fn push_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        for ch in value.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        // Writing into a String cannot fail.
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lb::backend::CheckOutcome;
    use crate::lb::counters::CounterSnapshot;
    use crate::lb::stats::model::{CheckRow, State};

    /// HAProxy 2.0's header line, verbatim.
    const HAPROXY_2_0_HEADER: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,\n";

    fn row(kind: RowKind, name: &str, state: State) -> Row {
        Row {
            kind,
            proxy: "web,1".into(),
            name: name.into(),
            mode: ProxyMode::Http,
            iid: 2,
            sid: usize::from(kind == RowKind::Server),
            counters: CounterSnapshot {
                current: 1,
                max: 3,
                total: 7,
                bytes_in: 100,
                bytes_out: 2000,
                responses: [0, 5, 1, 1, 0, 0],
                requests: 7,
                connection_errors: 2,
                ..CounterSnapshot::default()
            },
            limit: None,
            state,
            weight: Some(1),
            active: Some(1),
            check: (kind == RowKind::Server).then(|| CheckRow {
                last: Some(CheckOutcome {
                    passed: true,
                    status: "L7OK",
                    code: Some(200),
                    duration: Duration::from_millis(3),
                }),
                failures: 1,
                rise: 2,
                fall: 3,
                health: 3,
            }),
            down_transitions: Some(0),
            last_change: Some(Duration::from_secs(42)),
            downtime: Some(Duration::ZERO),
            addr: (kind == RowKind::Server).then(|| "127.0.0.1:8080".parse().unwrap()),
            cookie: Some("s\"1".into()),
            algo: None,
            idle_connections: (kind == RowKind::Server).then_some(4),
            balance_load: None,
        }
    }

    fn column(line: &str, name: &str) -> String {
        // The test rows quote only `pxname` and `cookie`; split on the quoted parts by hand.
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(ch),
            }
        }
        let i = COLUMNS.iter().position(|c| *c == name).unwrap();
        fields[i].clone()
    }

    #[test]
    fn header_is_haproxy_2_0s() {
        assert_eq!(header(), HAPROXY_2_0_HEADER);
    }

    #[test]
    fn rows_have_every_column_in_order() {
        let proxies = vec![Proxy {
            name: "web,1".into(),
            kind: RowKind::Backend,
            rows: vec![
                row(
                    RowKind::Server,
                    "a",
                    State::GoingDown { failed: 1, fall: 3 },
                ),
                row(RowKind::Backend, "BACKEND", State::Up),
            ],
        }];
        let text = render(&proxies, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let server = lines[1];
        assert!(
            server.starts_with("\"web,1\",a,0,0,1,3,,7,100,2000,"),
            "{server}"
        );
        assert_eq!(column(server, "status"), "UP 2/3");
        assert_eq!(column(server, "check_status"), "L7OK");
        assert_eq!(column(server, "check_code"), "200");
        assert_eq!(column(server, "check_duration"), "3");
        assert_eq!(column(server, "hrsp_2xx"), "5");
        assert_eq!(column(server, "lastchg"), "42");
        assert_eq!(column(server, "addr"), "127.0.0.1:8080");
        assert_eq!(column(server, "cookie"), "s\"1");
        assert_eq!(column(server, "type"), "2");
        assert_eq!(column(server, "econ"), "2");
        assert_eq!(column(server, "srv_icur"), "4");
        assert_eq!(column(server, "req_tot"), "", "req_tot is [.FB.]");
        assert_eq!(column(lines[2], "req_tot"), "7");
        assert_eq!(column(lines[2], "svname"), "BACKEND");
        for line in &lines[1..] {
            // 99 fields, each followed by a comma, outside quotes.
            let mut commas = 0;
            let mut quoted = false;
            for ch in line.chars() {
                match ch {
                    '"' => quoted = !quoted,
                    ',' if !quoted => commas += 1,
                    _ => {}
                }
            }
            assert_eq!(commas, COLUMNS.len(), "{line}");
        }
    }

    #[test]
    fn up_only_hides_servers_that_are_down() {
        let proxies = vec![Proxy {
            name: "b".into(),
            kind: RowKind::Backend,
            rows: vec![
                row(RowKind::Server, "down", State::Down),
                row(RowKind::Server, "up", State::Up),
                row(RowKind::Backend, "BACKEND", State::Up),
            ],
        }];
        let text = render(&proxies, true);
        assert!(!text.contains(",down,"), "{text}");
        assert!(text.contains(",up,"), "{text}");
        assert!(text.contains(",BACKEND,"), "{text}");
    }

    #[test]
    fn quoting_follows_haproxy() {
        let mut out = String::new();
        push_field(&mut out, "plain");
        push_field(&mut out, "a,b");
        push_field(&mut out, "say \"hi\"");
        assert_eq!(out, "plain\"a,b\"\"say \"\"hi\"\"\"");
    }
}
