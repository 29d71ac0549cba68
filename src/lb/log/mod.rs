//! The access log: one line per HTTP request in HAProxy's `httplog` layout, one line per
//! TCP/RTMP connection in its `tcplog` layout, `dontlognull` honoured, written on stderr by a
//! buffered writer thread ([`sink`]) so it can stay on under load.
//!
//! ```text
//! lb1[4242]: 127.0.0.1:40012 [27/Nov/2025:09:07:58.123] web backend_http/ams1 0/0/1/2/3 200 130 - - ---- 4/4/1/1/0 0/0 "GET /live/x.m3u8 HTTP/1.1"
//! lb1[4242]: 127.0.0.1:40014 [27/Nov/2025:09:07:58.200] rtmp_lb backend_rtmp/ams1 0/1/5007 212 -- 4/1/1/1/0 0/0
//! ```
//!
//! Fields (httplog): tag (node name and pid, as HAProxy's `log-tag[pid]`), client ip:port,
//! request date (UTC, ms), frontend (`~` after it on TLS), backend/server (`<NOSRV>` when
//! none was reached), `Tq/Tw/Tc/Tr/Tt` in ms (-1 for a phase never reached), status (-1 when
//! none was sent), bytes sent to the client, captured cookies (none: `- -`), termination state
//! (4 characters), `actconn/feconn/beconn/srvconn/retries` (`+` before retries when the
//! request was redispatched), queues (`0/0`: there are none), the request line. tcplog has
//! `Tw/Tc/Tt`, bytes from the server, a 2-character termination state and no request.
//!
//! Secrets never reach the log: only the request line is logged (no headers, so no
//! Authorization and no cookies), and in its query the values of parameters that usually carry
//! credentials (`token`, `password`, `secret`, `key`, `sig`, ...) are replaced by `***`.
//!
//! Data flow: the connection task fills an [`HttpEntry`] or [`TcpEntry`] as the exchange goes
//! through its phases, then hands it to [`AccessLog::http`] / [`AccessLog::tcp`], which
//! formats the line into a small buffer and appends it to the sink.

pub mod sink;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use self::sink::Sink;
use crate::config::AccessLogConfig;

/// Longest request line logged; longer ones are cut (HAProxy's default capture length).
pub const MAX_REQUEST_LINE: usize = 1024;

/// Query parameters whose values are replaced by `***`.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "auth",
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "key",
    "api_key",
    "apikey",
    "sig",
    "signature",
];

/// The node's access log.
#[derive(Debug, Clone)]
pub struct AccessLog {
    config: AccessLogConfig,
    /// `<node>[<pid>]: `.
    tag: String,
    /// Wall clock at `anchor`: request dates are derived from `Instant`s without a second
    /// clock read per request.
    wall: SystemTime,
    anchor: Instant,
    sink: Option<Arc<Sink>>,
}

/// In which phase an HTTP exchange ended (the second termination character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (or reading) the client's request: `R`.
    Request,
    /// Connecting to a server: `C`.
    Connect,
    /// Waiting for the server's response head: `H`.
    Headers,
    /// Sending the response body (or tunnelling): `D`.
    Data,
}

impl Phase {
    fn code(self) -> u8 {
        match self {
            Phase::Request => b'R',
            Phase::Connect => b'C',
            Phase::Headers => b'H',
            Phase::Data => b'D',
        }
    }
}

/// What ended a session (the first termination character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Normal end: `-`.
    Normal,
    /// The client aborted or broke the connection: `C`.
    ClientAbort,
    /// The client timed out: `c`.
    ClientTimeout,
    /// The server aborted, refused or answered garbage: `S`.
    ServerAbort,
    /// The server timed out: `s`.
    ServerTimeout,
    /// The proxy refused the request (invalid HTTP): `P`.
    Proxy,
    /// The proxy answered itself (redirect): `L`.
    Local,
    /// The process stopped while the session was open: `K`.
    Killed,
}

impl Cause {
    fn code(self) -> u8 {
        match self {
            Cause::Normal => b'-',
            Cause::ClientAbort => b'C',
            Cause::ClientTimeout => b'c',
            Cause::ServerAbort => b'S',
            Cause::ServerTimeout => b's',
            Cause::Proxy => b'P',
            Cause::Local => b'L',
            Cause::Killed => b'K',
        }
    }
}

/// HAProxy's termination state: cause and phase (`--` for a normal end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    /// What ended it.
    pub cause: Cause,
    /// Where it was (ignored for a normal end, which prints `-`).
    pub phase: Phase,
}

impl Termination {
    /// A normal end.
    pub const NORMAL: Termination = Termination {
        cause: Cause::Normal,
        phase: Phase::Data,
    };

    fn codes(self) -> [u8; 2] {
        if self.cause == Cause::Normal {
            [b'-', b'-']
        } else {
            [self.cause.code(), self.phase.code()]
        }
    }
}

/// Connection counts at log time: `actconn/feconn/beconn/srvconn/retries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conns {
    /// Connections open on the node.
    pub active: u64,
    /// Sessions of the frontend.
    pub frontend: u64,
    /// Sessions of the backend.
    pub backend: u64,
    /// Sessions of the server.
    pub server: u64,
    /// Connect retries of this session.
    pub retries: u32,
    /// Whether a retry went to another server than the first pick.
    pub redispatched: bool,
}

/// The request line as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// Method.
    pub method: &'a [u8],
    /// Target (path and query).
    pub target: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'a str,
}

/// One HTTP exchange.
#[derive(Debug, Clone)]
pub struct HttpEntry<'a> {
    /// Client address.
    pub client: SocketAddr,
    /// When the request started (the accept for a connection's first request).
    pub start: Instant,
    /// Frontend name.
    pub frontend: &'a str,
    /// Whether the client came over TLS (`~` after the frontend).
    pub tls: bool,
    /// Backend, once routed.
    pub backend: Option<&'a str>,
    /// Server, once one was chosen.
    pub server: Option<&'a str>,
    /// `Tq`: until the whole request head was read.
    pub t_request: Option<Duration>,
    /// `Tc`: connecting to the server (0 for a pooled connection).
    pub t_connect: Option<Duration>,
    /// `Tr`: from the request sent to the response head received.
    pub t_response: Option<Duration>,
    /// Status sent to the client.
    pub status: Option<u16>,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Bytes received from the client (`dontlognull` skips exchanges with none).
    pub bytes_in: u64,
    /// How it ended.
    pub termination: Termination,
    /// Persistence cookie sent by the client: `-` (no persistence), `N`, `I`, `D`, `V`.
    pub cookie_request: u8,
    /// Persistence cookie in the response: `-`, `N` (none), `R` (server cookie prefixed).
    pub cookie_response: u8,
    /// Connection counts.
    pub conns: Conns,
    /// The request line; `None` when no valid request head was read (`<BADREQ>`).
    pub request: Option<RequestLine<'a>>,
}

/// One TCP (or RTMP) connection.
#[derive(Debug, Clone)]
pub struct TcpEntry<'a> {
    /// Client address.
    pub client: SocketAddr,
    /// When it was accepted.
    pub start: Instant,
    /// Frontend name.
    pub frontend: &'a str,
    /// Backend, once chosen.
    pub backend: Option<&'a str>,
    /// Server, once reached.
    pub server: Option<&'a str>,
    /// `Tw`: 0 once the backend was chosen.
    pub t_queue: Option<Duration>,
    /// `Tc`: connecting to the server.
    pub t_connect: Option<Duration>,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// How it ended.
    pub termination: Termination,
    /// Connection counts.
    pub conns: Conns,
}

impl AccessLog {
    /// The access log of node `node`, writing on stderr when enabled.
    pub fn start(node: &str, config: AccessLogConfig) -> AccessLog {
        let sink = if config.enabled {
            match Sink::start(Box::new(std::io::stderr())) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(node, error = %e, "cannot start the access log writer; access log off");
                    None
                }
            }
        } else {
            None
        };
        AccessLog::with_sink(node, config, sink)
    }

    /// An access log writing into `sink` (`None`: off).
    pub fn with_sink(node: &str, config: AccessLogConfig, sink: Option<Arc<Sink>>) -> AccessLog {
        AccessLog {
            config,
            tag: format!("{node}[{}]: ", std::process::id()),
            wall: SystemTime::now(),
            anchor: Instant::now(),
            sink,
        }
    }

    /// Whether lines are written at all (callers skip gathering what would not be logged).
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Writes what is pending and stops the writer (at shutdown).
    pub fn close(&self) {
        if let Some(s) = &self.sink {
            s.close();
        }
    }

    /// Logs an HTTP exchange, unless `dontlognull` applies.
    pub fn http(&self, e: &HttpEntry<'_>, now: Instant) {
        let Some(sink) = &self.sink else { return };
        if self.config.dontlognull && e.bytes_in == 0 {
            return;
        }
        let mut line = String::with_capacity(256);
        self.format_http(&mut line, e, now);
        sink.push(line.as_bytes());
    }

    /// Logs a TCP or RTMP session, unless `dontlognull` applies.
    pub fn tcp(&self, e: &TcpEntry<'_>, now: Instant) {
        let Some(sink) = &self.sink else { return };
        if self.config.dontlognull && e.bytes_in == 0 {
            return;
        }
        let mut line = String::with_capacity(192);
        self.format_tcp(&mut line, e, now);
        sink.push(line.as_bytes());
    }

    fn prefix(&self, out: &mut String, client: SocketAddr, start: Instant) {
        out.push_str(&self.tag);
        let _ = write!(out, "{}:{} [", client.ip(), client.port());
        let wall = self.wall + start.saturating_duration_since(self.anchor);
        push_date(out, wall);
        out.push_str("] ");
    }

    /// Formats an httplog line (with its newline).
    pub fn format_http(&self, out: &mut String, e: &HttpEntry<'_>, now: Instant) {
        self.prefix(out, e.client, e.start);
        push_name(out, e.frontend);
        if e.tls {
            out.push('~');
        }
        out.push(' ');
        push_name(out, e.backend.unwrap_or("<NOSRV>"));
        out.push('/');
        push_name(out, e.server.unwrap_or("<NOSRV>"));
        out.push(' ');
        let routed = e.backend.is_some();
        let _ = write!(
            out,
            "{}/{}/{}/{}/{} ",
            ms(e.t_request),
            if routed { "0" } else { "-1" },
            ms(e.t_connect),
            ms(e.t_response),
            now.saturating_duration_since(e.start).as_millis()
        );
        match e.status {
            Some(s) => {
                let _ = write!(out, "{s} ");
            }
            None => out.push_str("-1 "),
        }
        let [t0, t1] = e.termination.codes();
        let _ = write!(
            out,
            "{} - - {}{}{}{} ",
            e.bytes_out,
            char::from(t0),
            char::from(t1),
            char::from(e.cookie_request),
            char::from(e.cookie_response)
        );
        push_conns(out, &e.conns);
        out.push_str(" 0/0 \"");
        match &e.request {
            Some(r) => push_request_line(out, r),
            None => out.push_str("<BADREQ>"),
        }
        out.push_str("\"\n");
    }

    /// Formats a tcplog line (with its newline).
    pub fn format_tcp(&self, out: &mut String, e: &TcpEntry<'_>, now: Instant) {
        self.prefix(out, e.client, e.start);
        push_name(out, e.frontend);
        out.push(' ');
        push_name(out, e.backend.unwrap_or("<NOSRV>"));
        out.push('/');
        push_name(out, e.server.unwrap_or("<NOSRV>"));
        let [t0, t1] = e.termination.codes();
        let _ = write!(
            out,
            " {}/{}/{} {} {}{} ",
            ms(e.t_queue),
            ms(e.t_connect),
            now.saturating_duration_since(e.start).as_millis(),
            e.bytes_out,
            char::from(t0),
            char::from(t1)
        );
        push_conns(out, &e.conns);
        out.push_str(" 0/0\n");
    }
}

fn ms(d: Option<Duration>) -> i128 {
    d.map_or(-1, |d| d.as_millis() as i128)
}

fn push_conns(out: &mut String, c: &Conns) {
    let _ = write!(
        out,
        "{}/{}/{}/{}/{}{}",
        c.active,
        c.frontend,
        c.backend,
        c.server,
        if c.redispatched { "+" } else { "" },
        c.retries
    );
}

/// Config names, with anything that would break the line's fields (spaces, controls) escaped.
fn push_name(out: &mut String, name: &str) {
    for b in name.bytes() {
        push_escaped(out, b, b" ");
    }
}

/// Writes `b`, or `#XX` for controls, bytes past ASCII, `#`, `"` and the `extra` bytes
/// (HAProxy's log escaping).
fn push_escaped(out: &mut String, b: u8, extra: &[u8]) {
    if !(0x20..0x7f).contains(&b) || b == b'#' || b == b'"' || extra.contains(&b) {
        let _ = write!(out, "#{b:02X}");
    } else {
        out.push(char::from(b));
    }
}

/// `METHOD TARGET VERSION`, escaped, secrets in the query masked, cut at
/// [`MAX_REQUEST_LINE`] bytes.
fn push_request_line(out: &mut String, r: &RequestLine<'_>) {
    let start = out.len();
    for &b in r.method {
        push_escaped(out, b, b" ");
    }
    out.push(' ');
    let (path, query) = match r.target.iter().position(|&b| b == b'?') {
        Some(i) => (&r.target[..i], Some(&r.target[i + 1..])),
        None => (r.target, None),
    };
    for &b in path {
        push_escaped(out, b, b" ");
    }
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split(|&b| b == b'&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], Some(&pair[eq + 1..])),
                None => (pair, None),
            };
            for &b in name {
                push_escaped(out, b, b" ");
            }
            if let Some(v) = value {
                out.push('=');
                if is_secret_param(name) {
                    out.push_str("***");
                } else {
                    for &b in v {
                        push_escaped(out, b, b" ");
                    }
                }
            }
        }
    }
    out.push(' ');
    out.push_str(r.version);
    if out.len() - start > MAX_REQUEST_LINE {
        // Escapes are ASCII, so every byte is a char boundary.
        out.truncate(start + MAX_REQUEST_LINE);
    }
}

fn is_secret_param(name: &[u8]) -> bool {
    SECRET_PARAMS
        .iter()
        .any(|s| s.as_bytes().eq_ignore_ascii_case(name))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `06/Feb/2009:12:14:14.655` (UTC): the RFC 3339 form `humantime` writes
/// (`2009-02-06T12:14:14.655Z`), the process's one date formatter, rearranged.
fn push_date(out: &mut String, t: SystemTime) {
    // humantime writes nothing before 1970 (a clock gone wrong): the epoch then.
    let t = t.max(std::time::UNIX_EPOCH);
    let mut buf = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = std::io::Write::write_fmt(
        &mut cursor,
        format_args!("{}", humantime::format_rfc3339_millis(t)),
    )
    .map(|()| cursor.position() as usize);
    let iso = written
        .ok()
        .and_then(|n| std::str::from_utf8(buf.get(..n)?).ok())
        .unwrap_or_default();
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: fixed positions for years 0000-9999.
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)));
    match (iso.get(0..4), month, iso.get(8..10), iso.get(11..23)) {
        (Some(year), Some(month), Some(day), Some(time)) if iso.len() == 24 => {
            let _ = write!(out, "{day}/{month}/{year}:{time}");
        }
        _ => out.push_str(iso),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn log() -> AccessLog {
        let mut l = AccessLog::with_sink(
            "lb1",
            AccessLogConfig {
                enabled: true,
                dontlognull: false,
            },
            None,
        );
        l.tag = "lb1[7]: ".into();
        // 06/Feb/2009:12:14:14.655 UTC.
        l.wall = UNIX_EPOCH + Duration::from_millis(1_233_922_454_655);
        l
    }

    #[test]
    fn dates_are_haproxy_style_utc() {
        let mut s = String::new();
        push_date(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_233_922_454_655),
        );
        assert_eq!(s, "06/Feb/2009:12:14:14.655");
        s.clear();
        push_date(&mut s, UNIX_EPOCH);
        assert_eq!(s, "01/Jan/1970:00:00:00.000");
        s.clear();
        // 2024-02-29 23:59:59.999, a leap day.
        push_date(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_709_251_199_999),
        );
        assert_eq!(s, "29/Feb/2024:23:59:59.999");
    }

    #[test]
    fn httplog_line() {
        let l = log();
        let start = l.anchor;
        let e = HttpEntry {
            client: "10.0.1.2:33317".parse().unwrap(),
            start,
            frontend: "http-in",
            tls: true,
            backend: Some("static"),
            server: Some("srv1"),
            t_request: Some(Duration::from_millis(10)),
            t_connect: Some(Duration::from_millis(30)),
            t_response: Some(Duration::from_millis(69)),
            status: Some(200),
            bytes_out: 2750,
            bytes_in: 80,
            termination: Termination::NORMAL,
            cookie_request: b'V',
            cookie_response: b'R',
            conns: Conns {
                active: 1,
                frontend: 1,
                backend: 1,
                server: 1,
                retries: 1,
                redispatched: true,
            },
            request: Some(RequestLine {
                method: b"GET",
                target: b"/index.html?token=abc&x=1&Password=p&flag",
                version: "HTTP/1.1",
            }),
        };
        let mut out = String::new();
        l.format_http(&mut out, &e, start + Duration::from_millis(109));
        assert_eq!(
            out,
            "lb1[7]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in~ static/srv1 10/0/30/69/109 200 2750 - - --VR 1/1/1/1/+1 0/0 \"GET /index.html?token=***&x=1&Password=***&flag HTTP/1.1\"\n"
        );
    }

    #[test]
    fn httplog_bad_request_and_escapes() {
        let l = log();
        let start = l.anchor;
        let e = HttpEntry {
            client: "[::1]:5000".parse().unwrap(),
            start,
            frontend: "web",
            tls: false,
            backend: None,
            server: None,
            t_request: None,
            t_connect: None,
            t_response: None,
            status: Some(408),
            bytes_out: 110,
            bytes_in: 3,
            termination: Termination {
                cause: Cause::ClientTimeout,
                phase: Phase::Request,
            },
            cookie_request: b'-',
            cookie_response: b'-',
            conns: Conns::default(),
            request: None,
        };
        let mut out = String::new();
        l.format_http(&mut out, &e, start + Duration::from_secs(5));
        assert_eq!(
            out,
            "lb1[7]: ::1:5000 [06/Feb/2009:12:14:14.655] web <NOSRV>/<NOSRV> -1/-1/-1/-1/5000 408 110 - - cR-- 0/0/0/0/0 0/0 \"<BADREQ>\"\n"
        );
        let mut line = String::new();
        push_request_line(
            &mut line,
            &RequestLine {
                method: b"GET",
                target: b"/a\"b#c\x01\xff",
                version: "HTTP/1.0",
            },
        );
        assert_eq!(line, "GET /a#22b#23c#01#FF HTTP/1.0");
        let long = vec![b'a'; 5000];
        line.clear();
        push_request_line(
            &mut line,
            &RequestLine {
                method: b"GET",
                target: &long,
                version: "HTTP/1.1",
            },
        );
        assert_eq!(line.len(), MAX_REQUEST_LINE);
    }

    #[test]
    fn tcplog_line() {
        let l = log();
        let start = l.anchor;
        let e = TcpEntry {
            client: "10.0.1.2:33313".parse().unwrap(),
            start,
            frontend: "fnt",
            backend: Some("bck"),
            server: Some("srv1"),
            t_queue: Some(Duration::ZERO),
            t_connect: Some(Duration::from_millis(1)),
            bytes_in: 10,
            bytes_out: 212,
            termination: Termination::NORMAL,
            conns: Conns {
                active: 0,
                frontend: 0,
                backend: 0,
                server: 0,
                retries: 3,
                redispatched: false,
            },
        };
        let mut out = String::new();
        l.format_tcp(&mut out, &e, start + Duration::from_millis(5007));
        assert_eq!(
            out,
            "lb1[7]: 10.0.1.2:33313 [06/Feb/2009:12:14:14.655] fnt bck/srv1 0/1/5007 212 -- 0/0/0/0/3 0/0\n"
        );
    }

    #[test]
    fn dontlognull_skips_silent_clients() {
        let rec = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::start(Box::new(W(rec.clone()))).unwrap();
        let l = AccessLog::with_sink(
            "lb1",
            AccessLogConfig {
                enabled: true,
                dontlognull: true,
            },
            Some(sink),
        );
        let mut e = TcpEntry {
            client: "10.0.0.1:1".parse().unwrap(),
            start: Instant::now(),
            frontend: "silent",
            backend: None,
            server: None,
            t_queue: None,
            t_connect: None,
            bytes_in: 0,
            bytes_out: 0,
            termination: Termination::NORMAL,
            conns: Conns::default(),
        };
        l.tcp(&e, Instant::now());
        e.frontend = "talker";
        e.bytes_in = 1;
        l.tcp(&e, Instant::now());
        l.close();
        let text = String::from_utf8(rec.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("silent"), "{text}");
        assert!(text.contains(" talker "), "{text}");
    }
}
