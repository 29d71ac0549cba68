//! The stats listener: Basic auth with the realm (401), 503 on other paths, `hide_version`,
//! the HTML page (one table per proxy, one row per server, transitional states while a
//! server goes down and comes back), the HAProxy 2.0 CSV read back as CSV, `/metrics`, and
//! the page's refresh.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::lb::{Behaviour, Upstream, raw};
use crate::common::{Proc, wait_for};

/// `admin:s3cret`.
const GOOD: &str = "YWRtaW46czNjcmV0";
/// `admin:wrong`.
const BAD: &str = "YWRtaW46d3Jvbmc=";

/// HAProxy 2.0's CSV header line.
const HEADER: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,";

/// Two LB nodes in one process: `lb1` hides its version and refreshes every 5 s, `lb2` shows
/// its version. Both front servers `a` and `b` with HTTP checks every `interval`.
fn config(a: &Upstream, b: &Upstream, interval: &str) -> String {
    let node = |name: &str, stats_extra: &str| {
        format!(
            "  - role: lb\n    name: {name}\n    timeouts: {{connect: 1s}}\n    stats: {{bind: \"127.0.0.1:0\", uri: /haproxy_stats, realm: \"Haproxy Statistics\", auth: {{user: admin, password: s3cret}}{stats_extra}}}\n    frontends:\n      - {{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: be}}\n      - {{name: rtmp_lb, mode: tcp, bind: [\"127.0.0.1:0\"], backend: rtmp_be}}\n    backends:\n      - name: be\n        mode: http\n        sticky: {{cookie: JSESSIONID, mode: prefix}}\n        health: {{kind: http, path: /healthz, interval: {interval}, rise: 2, fall: 3}}\n        servers: [{{name: a, addr: \"{}\", cookie: a}}, {{name: b, addr: \"{}\", cookie: b}}]\n      - {{name: rtmp_be, mode: tcp, servers: [{{name: r1, addr: \"{}\"}}]}}\n",
            a.addr, b.addr, a.addr
        )
    };
    format!(
        "cluster: {{store: embedded, heartbeat: 200ms, node_timeout: 2s}}\nshutdown_grace: 2s\nnodes:\n{}{}",
        node("lb1", ", hide_version: true, refresh: 5s"),
        node("lb2", "")
    )
}

/// A response read to the end of the connection.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> Reply {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    let text = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: lb\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Parses CSV (RFC 4180 quoting, as HAProxy writes it) into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => record.push(std::mem::take(&mut field)),
            '\n' if !quoted => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    records
}

/// The CSV as (column name -> value) maps, one per row, in order.
fn csv_rows(stats: SocketAddr) -> Vec<std::collections::HashMap<String, String>> {
    let r = get(stats, "/haproxy_stats;csv", Some(GOOD));
    assert_eq!(r.status, 200, "{}", r.head);
    let records = parse_csv(&r.body);
    let columns: Vec<String> = records[0]
        .iter()
        .map(|c| c.trim_start_matches("# ").to_owned())
        .collect();
    records[1..]
        .iter()
        .map(|rec| {
            assert_eq!(
                rec.len(),
                columns.len(),
                "every row has every column: {rec:?}"
            );
            columns.iter().cloned().zip(rec.iter().cloned()).collect()
        })
        .collect()
}

fn server_status(stats: SocketAddr, proxy: &str, server: &str) -> String {
    csv_rows(stats)
        .into_iter()
        .find(|r| r["pxname"] == proxy && r["svname"] == server)
        .map(|r| r["status"].clone())
        .unwrap_or_default()
}

#[test]
fn credentials_realm_other_paths_and_version() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "1s"));
    let stats = p.addr("lb1", "stats");

    let r = get(stats, "/haproxy_stats", None);
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Haproxy Statistics\"")
    );
    assert_eq!(get(stats, "/haproxy_stats;csv", Some(BAD)).status, 401);
    assert_eq!(get(stats, "/metrics", None).status, 401);
    assert_eq!(
        get(stats, "/haproxy_stats", Some("bm90LWJhc2U2NA!!")).status,
        401,
        "garbage credentials"
    );

    for path in ["/", "/other", "/haproxy_stat", "/favicon.ico"] {
        assert_eq!(get(stats, path, Some(GOOD)).status, 503, "{path}");
        assert_eq!(
            get(stats, path, None).status,
            503,
            "{path} without credentials"
        );
    }

    // `uri` is a prefix.
    let page = get(stats, "/haproxy_stats?stats", Some(GOOD));
    assert_eq!(page.status, 200, "{}", page.head);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.body.contains(env!("CARGO_PKG_VERSION")),
        "hide_version"
    );
    let shown = get(p.addr("lb2", "stats"), "/haproxy_stats", Some(GOOD));
    assert_eq!(shown.status, 200);
    assert!(
        shown
            .body
            .contains(&format!("streamfleet {}", env!("CARGO_PKG_VERSION"))),
        "lb2 shows its version"
    );
    // Neither the password nor the credentials appear in the logs.
    let log = p.stderr();
    assert!(!log.contains("s3cret") && !log.contains(GOOD), "{log}");
}

#[test]
fn html_page_tables_rows_and_transitional_states() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "500ms"));
    let stats = p.addr("lb1", "stats");
    let page = get(stats, "/haproxy_stats", Some(GOOD));
    assert_eq!(page.status, 200);
    let body = &page.body;
    assert_eq!(
        body.matches("<table class=\"tbl\"").count(),
        4,
        "one table per frontend and backend"
    );
    for id in ["fe-web", "fe-rtmp_lb", "be-be", "be-rtmp_be"] {
        assert!(body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    for server in ["a", "b", "r1", "FRONTEND", "BACKEND"] {
        assert!(
            body.contains(&format!("data-server=\"{server}\"")),
            "row {server}"
        );
    }
    for column in [
        "Sessions",
        "Bytes",
        "Denied",
        "Errors",
        "Warnings",
        "Responses",
        "LastChk",
        "Dwntme",
        "Wght",
        "Retr",
        "Redis",
        "2xx",
    ] {
        assert!(body.contains(&format!(">{column}<")), "column {column}");
    }
    assert!(
        body.contains("<td class=\"ac\">no check</td>"),
        "r1 is not checked"
    );
    assert!(
        !body.contains("src=") && !body.contains("<link") && !body.contains("http://"),
        "no external assets"
    );

    // The row of server `a` goes UP -> UP 2/3 -> UP 1/3 -> DOWN -> DOWN 1/2 -> UP.
    let a_row = |html: &str| {
        let start = html[..html.find("data-server=\"a\"")?].rfind("<tr")?;
        let end = html[start..].find("</tr>")? + start;
        Some(html[start..end].to_owned())
    };
    let wait_row = |state: &str, also: &str| {
        wait_for(
            &format!("server a to show {state}"),
            Duration::from_secs(10),
            || {
                let html = get(stats, "/haproxy_stats;norefresh", Some(GOOD)).body;
                let row = a_row(&html)?;
                (row.contains(&format!("<td class=\"ac\">{state}</td>")) && row.contains(also))
                    .then_some(row)
            },
        )
    };
    let wait_state = |state: &str| wait_row(state, "");
    // The last check's result and duration appear once one has run.
    wait_row("UP", "L7OK/200 in ");
    a.set_healthy(false);
    let row = wait_state("UP 2/3");
    assert!(row.contains("active_going_down"), "{row}");
    assert!(row.contains("L7STS/503"), "{row}");
    wait_state("UP 1/3");
    let row = wait_state("DOWN");
    assert!(row.contains("active_down"), "{row}");
    a.set_healthy(true);
    let row = wait_state("DOWN 1/2");
    assert!(row.contains("active_going_up"), "{row}");
    wait_state("UP");
    // Once back UP, the outage shows in Chk (failed checks), Dwn (transitions) and Dwntme.
    let rows = csv_rows(stats);
    let a_csv = rows.iter().find(|r| r["svname"] == "a").unwrap();
    assert_eq!(a_csv["chkdown"], "1");
    assert_eq!(a_csv["chkfail"], "3");
    assert_eq!(a_csv["status"], "UP");
}

#[test]
fn csv_is_haproxy_2_0s_and_counts_traffic() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "1s"));
    let lb = p.addr("lb1", "frontend:web");
    let stats = p.addr("lb1", "stats");
    for _ in 0..4 {
        let reply = raw(
            lb,
            b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    b.set(Behaviour::Status(404));
    a.set(Behaviour::Status(404));
    let reply = raw(
        lb,
        b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");

    let r = get(stats, "/haproxy_stats;csv", Some(GOOD));
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(r.body.lines().next(), Some(HEADER));
    let rows = csv_rows(stats);
    let order: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["pxname"].clone(), r["svname"].clone()))
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        order,
        [
            pair("web", "FRONTEND"),
            pair("rtmp_lb", "FRONTEND"),
            pair("be", "a"),
            pair("be", "b"),
            pair("be", "BACKEND"),
            pair("rtmp_be", "r1"),
            pair("rtmp_be", "BACKEND"),
        ]
    );
    let row = |px: &str, sv: &str| {
        rows.iter()
            .find(|r| r["pxname"] == px && r["svname"] == sv)
            .unwrap()
            .clone()
    };
    let fe = row("web", "FRONTEND");
    assert_eq!(fe["status"], "OPEN");
    assert_eq!(fe["type"], "0");
    assert_eq!(fe["stot"], "5", "five connections");
    assert_eq!(fe["req_tot"], "5");
    assert_eq!(fe["hrsp_2xx"], "4");
    assert_eq!(fe["hrsp_4xx"], "1");
    assert_eq!(fe["mode"], "http");
    assert!(fe["bin"].parse::<u64>().unwrap() > 100);
    let be = row("be", "BACKEND");
    assert_eq!(be["type"], "1");
    assert_eq!(be["status"], "UP");
    assert_eq!(be["act"], "2");
    assert_eq!(be["weight"], "2");
    assert_eq!(be["stot"], "5");
    assert_eq!(be["algo"], "roundrobin");
    assert_eq!(be["cookie"], "JSESSIONID");
    let (sa, sb) = (row("be", "a"), row("be", "b"));
    assert_eq!(sa["type"], "2");
    assert_eq!(sa["sid"], "1");
    assert_eq!(sb["sid"], "2");
    assert_eq!(sa["addr"], a.addr.to_string());
    assert_eq!(sa["cookie"], "a");
    assert_eq!(
        sa["stot"].parse::<u64>().unwrap() + sb["stot"].parse::<u64>().unwrap(),
        5,
        "every request went to one server"
    );
    assert_eq!(sa["check_rise"], "2");
    assert_eq!(sa["check_fall"], "3");
    assert_eq!(row("rtmp_be", "r1")["status"], "no check");
    assert_eq!(
        row("rtmp_be", "r1")["hrsp_2xx"],
        "",
        "no HTTP counters in tcp mode"
    );
    // `;up` hides servers that are not UP.
    a.kill();
    wait_for("a DOWN", Duration::from_secs(15), || {
        (server_status(stats, "be", "a") == "DOWN").then_some(())
    });
    let up_only = get(stats, "/haproxy_stats;csv;up", Some(GOOD)).body;
    assert!(!up_only.contains("\nbe,a,"), "{up_only}");
    assert!(up_only.contains("\nbe,b,"), "{up_only}");
}

#[test]
fn metrics_on_the_stats_bind() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "1s"));
    let lb = p.addr("lb2", "frontend:web");
    for _ in 0..3 {
        raw(
            lb,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
    }
    let r = get(p.addr("lb2", "stats"), "/metrics", Some(GOOD));
    assert_eq!(r.status, 200, "{}", r.head);
    // The node's registry, as on media nodes: OpenMetrics text.
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let m = &r.body;
    let build = format!(
        "streamfleet_build_info{{version=\"{}\",node=\"lb2\",role=\"lb\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for line in [
        "streamfleet_lb_frontend_http_requests_total{proxy=\"web\"} 3",
        "streamfleet_lb_frontend_sessions_total{proxy=\"web\"} 3",
        "streamfleet_lb_frontend_http_responses_total{proxy=\"web\",code=\"2xx\"} 3",
        "streamfleet_lb_backend_http_responses_total{proxy=\"be\",code=\"2xx\"} 3",
        "streamfleet_lb_backend_active_servers{proxy=\"be\"} 2",
        "streamfleet_lb_server_status{proxy=\"be\",server=\"a\"} 1",
        "streamfleet_lb_server_status{proxy=\"rtmp_be\",server=\"r1\"} 1",
        // A counter's family is declared without `_total`; its samples carry it.
        "# TYPE streamfleet_lb_server_bytes_out counter",
        // The node's own gauges, as every node has them.
        &build,
        "# TYPE streamfleet_uptime_seconds gauge",
        "streamfleet_store_up 1",
        "# EOF",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
    // lb1 hides its version in its metrics as on its page.
    let hidden = get(p.addr("lb1", "stats"), "/metrics", Some(GOOD)).body;
    assert!(hidden.contains("streamfleet_lb_frontend_status{proxy=\"web\"} 1"));
    assert!(
        hidden.contains("streamfleet_build_info{node=\"lb1\",role=\"lb\"} 1"),
        "{hidden}"
    );
    assert!(!hidden.contains("version="), "{hidden}");
    assert!(!hidden.contains(env!("CARGO_PKG_VERSION")), "{hidden}");
}

#[test]
fn refresh_and_norefresh() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let p = Proc::start(&config(&a, &b, "1s"));
    let stats = p.addr("lb1", "stats");
    let page = get(stats, "/haproxy_stats", Some(GOOD));
    assert_eq!(page.header("refresh").as_deref(), Some("5"));
    assert!(
        page.body
            .contains("href=\"/haproxy_stats;norefresh\">Disable refresh")
    );
    let still = get(stats, "/haproxy_stats;norefresh", Some(GOOD));
    assert_eq!(still.status, 200);
    assert_eq!(still.header("refresh"), None);
    assert!(
        still
            .body
            .contains("href=\"/haproxy_stats\">Enable refresh")
    );
    // lb2 has no refresh configured.
    let lb2 = get(p.addr("lb2", "stats"), "/haproxy_stats", Some(GOOD));
    assert_eq!(lb2.header("refresh"), None);
    assert!(!lb2.body.contains("refresh</a>"));
}
