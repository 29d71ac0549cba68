//! Ant Media-compatible webhooks end to end: a small HTTP receiver in the test records what the
//! nodes post while ffmpeg publishes. Two origins on a real MongoDB-compatible store send each
//! event once (only the stream's owner does), signed, with Ant Media's form fields; a receiver
//! that fails once still gets the event, retried under the same delivery id.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, KeyInit, Mac};

use crate::common::cluster::{broadcast, cluster, wait_broadcasting};
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::secantus::Secantus;
use crate::common::{Proc, wait_for};

/// The apps' webhook secret (it must never reach a log).
const SECRET: &str = "webhook-secret-0123456789";
/// A query parameter of the webhook URL (logs show the URL without its query).
const QUERY: &str = "token=hook-query-token";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hook {
    /// Headers, names lowercased.
    headers: HashMap<String, String>,
    /// The raw body.
    body: String,
    /// What the receiver answered.
    answered: u16,
    /// When it arrived.
    at: Instant,
}

impl Hook {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The form fields of the body, decoded.
    fn form(&self) -> HashMap<String, String> {
        self.body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8()
                        .unwrap()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect()
    }

    fn field(&self, name: &str) -> String {
        self.form().remove(name).unwrap_or_default()
    }
}

/// A webhook receiver on a port the OS picks: records every request, answers the queued
/// statuses first, then 200.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    fn start(first_answers: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(
            first_answers.iter().copied().collect::<VecDeque<_>>(),
        ));
        let record = got.clone();
        // Lives as long as the test process; one request per connection.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                if let Some(hook) = serve(conn, status) {
                    record.lock().unwrap().push(hook);
                }
            }
        });
        Receiver { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}/hook?{QUERY}", self.addr)
    }

    fn hooks(&self) -> Vec<Hook> {
        self.got.lock().unwrap().clone()
    }

    /// Requests for stream `id` with `action` (every attempt).
    fn attempts(&self, id: &str, action: &str) -> Vec<Hook> {
        self.hooks()
            .into_iter()
            .filter(|h| h.field("id") == id && h.field("action") == action)
            .collect()
    }

    /// Waits until an attempt for `id` with `action` was answered 200.
    fn wait_delivered(&self, id: &str, action: &str) {
        wait_for(
            &format!("{action} for {id} to be delivered"),
            Duration::from_secs(20),
            || {
                self.attempts(id, action)
                    .iter()
                    .any(|h| h.answered == 200)
                    .then_some(())
            },
        );
    }

    /// Delivered events (answered 200), one per delivery id, in arrival order.
    fn delivered(&self) -> Vec<Hook> {
        let mut seen = Vec::new();
        self.hooks()
            .into_iter()
            .filter(|h| h.answered == 200)
            .filter(|h| {
                let id = h.header("x-streamfleet-delivery").to_owned();
                let fresh = !seen.contains(&id);
                seen.push(id);
                fresh
            })
            .collect()
    }
}

/// Reads one HTTP/1.1 request (bounded) and answers `status`; `None` when it is unreadable.
fn serve(mut conn: TcpStream, status: u16) -> Option<Hook> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > 64 * 1024 {
            return None;
        }
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    assert!(
        lines
            .next()?
            .starts_with(&format!("POST /hook?{QUERY} HTTP/1.1")),
        "{head}"
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    assert!(len < 4096, "body of {len} bytes");
    while data.len() < head_end + len {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8(data[head_end..head_end + len].to_vec()).ok()?;
    let answer = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Unavailable" }
    );
    conn.write_all(answer.as_bytes()).ok()?;
    Some(Hook {
        headers,
        body,
        answered: status,
        at: Instant::now(),
    })
}

/// The `live` app, open, with its webhook to `url`.
fn apps(url: &str) -> String {
    format!(
        "apps: [{{name: live, security: {{publish: open}}, webhook: {{url: \"{url}\", secret: {SECRET}}}}}]"
    )
}

fn millis_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Asserts `hook` is `action` for stream `live/{id}` at lease `epoch`, signed with [`SECRET`],
/// stamped between `since` and now (ms).
fn assert_event(hook: &Hook, action: &str, id: &str, epoch: u64, since: u64) {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(hook.body.as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hook.header("x-streamfleet-signature"), expected, "{hook:?}");
    assert_eq!(
        hook.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(hook.header("x-streamfleet-event"), action);
    assert_eq!(
        hook.header("x-streamfleet-delivery"),
        format!("live/{id}/{epoch}/{action}")
    );
    let form = hook.form();
    for (name, value) in [
        ("action", action),
        ("id", id),
        ("streamName", id),
        ("category", ""),
        ("app", "live"),
        ("epoch", &epoch.to_string()),
    ] {
        assert_eq!(
            form.get(name).map(String::as_str),
            Some(value),
            "{name} in {}",
            hook.body
        );
    }
    let at: u64 = form["timestamp"].parse().unwrap();
    assert!(
        (since..=millis_now()).contains(&at),
        "timestamp {at} not since {since}"
    );
}

/// Stops `p` gracefully (it sends what it still has) and checks that its log never showed the
/// secret or the URL's query.
fn stop_and_check_logs(mut p: Proc) {
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(15)).is_some(), "no exit");
    let log = p.stderr();
    assert!(!log.contains(SECRET), "secret in the log:\n{log}");
    assert!(!log.contains(QUERY), "webhook query in the log:\n{log}");
}

#[test]
fn two_origins_send_started_and_ended_once() {
    require_ffmpeg();
    let since = millis_now();
    let db = Secantus::start();
    let receiver = Receiver::start(&[]);
    let origin = |name: &str| {
        Proc::start(&format!(
            "{}  - {{role: origin, name: {name}, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", {}, hls: {{segment: 1s, window: 6}}}}\n",
            cluster(&db.uri(), "test-secret-0123456"),
            apps(&receiver.url())
        ))
    };
    let o1 = origin("origin-1");
    let o2 = origin("origin-2");

    let publisher = Publisher::start(
        &format!("rtmp://{}/live/hooked", o1.addr("origin-1", "rtmp")),
        Source {
            seconds: 6,
            ..Source::default()
        },
    );
    wait_broadcasting(&o2, "origin-2", "hooked", "origin-1");
    let epoch = broadcast(&o2, "origin-2", "hooked")["epoch"]
        .as_u64()
        .unwrap();
    receiver.wait_delivered("hooked", "liveStreamStarted");

    // The same stream published to the other origin meanwhile is refused there: no event.
    let (ok, _) = Publisher::start(
        &format!("rtmp://{}/live/hooked", o2.addr("origin-2", "rtmp")),
        Source {
            seconds: 2,
            ..Source::default()
        },
    )
    .wait();
    assert!(!ok, "origin-2 accepted a stream origin-1 owns");

    let (ok, err) = publisher.wait();
    assert!(ok, "publisher: {err}");
    receiver.wait_delivered("hooked", "liveStreamEnded");

    // Once both nodes have stopped nothing more can come: exactly one of each, in order.
    stop_and_check_logs(o1);
    stop_and_check_logs(o2);
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 2, "{hooks:#?}");
    assert_event(&hooks[0], "liveStreamStarted", "hooked", epoch, since);
    assert_event(&hooks[1], "liveStreamEnded", "hooked", epoch, since);
    let stamp = |h: &Hook| h.field("timestamp").parse::<u64>().unwrap();
    assert!(stamp(&hooks[0]) <= stamp(&hooks[1]));
}

#[test]
fn a_failed_delivery_is_retried_under_the_same_id() {
    require_ffmpeg();
    let since = millis_now();
    // The first request is answered 503, every other one 200.
    let receiver = Receiver::start(&[503]);
    let p = Proc::start(&format!(
        r#"
cluster: {{heartbeat: 300ms, node_timeout: 2s}}
shutdown_grace: 2s
nodes:
  - role: standalone
    name: s1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    hls: {{segment: 1s, window: 6}}
    {}
"#,
        apps(&receiver.url())
    ));
    let (ok, err) = Publisher::start(
        &format!("rtmp://{}/live/retried", p.addr("s1", "rtmp")),
        Source {
            seconds: 3,
            ..Source::default()
        },
    )
    .wait();
    assert!(ok, "publisher: {err}");
    receiver.wait_delivered("retried", "liveStreamEnded");
    stop_and_check_logs(p);

    // Two attempts at the start, the same request each time, the second after the backoff.
    let started = receiver.attempts("retried", "liveStreamStarted");
    assert_eq!(
        started.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [503, 200],
        "{started:#?}"
    );
    assert_eq!(started[0].body, started[1].body);
    for name in ["x-streamfleet-delivery", "x-streamfleet-signature"] {
        assert_eq!(started[0].header(name), started[1].header(name), "{name}");
    }
    let gap = started[1].at - started[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");

    // Deduplicated by delivery id, the receiver saw each event once, in order.
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    let epoch = delivered[0].field("epoch").parse().unwrap();
    assert_event(&delivered[0], "liveStreamStarted", "retried", epoch, since);
    assert_event(&delivered[1], "liveStreamEnded", "retried", epoch, since);
}
