//! One LL-HLS client: a keep-alive HTTP/1.1 connection (hyper) doing blocking playlist reloads
//! for the next part, what it measured, and the few lines of playlist reading it needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::FirstAnswers;

/// Where the clients go.
#[derive(Debug, Clone)]
pub struct Target {
    /// host:port to connect to.
    addr: String,
    /// Path of the media playlist.
    path: String,
}

impl Target {
    /// Reads `http://host:port/path.m3u8`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url}: only http:// URLs"));
        }
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Self {
            addr: format!("{host}:{port}"),
            path: uri.path().to_owned(),
        })
    }

    /// The directory of the playlist, for relative part URIs.
    fn dir(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(d, _)| d)
    }
}

/// What a client counted (inside the window only, except `live_at_start`).
#[derive(Debug, Default)]
pub struct Tally {
    pub answers: u64,
    pub at_once: u64,
    pub parts: u64,
    pub part_bytes: u64,
    pub held_ms: Vec<f32>,
    pub spread_ms: Vec<f32>,
    pub failures: BTreeMap<String, u64>,
    pub live_at_start: bool,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.answers += other.answers;
        self.at_once += other.at_once;
        self.parts += other.parts;
        self.part_bytes += other.part_bytes;
        self.held_ms.extend(other.held_ms);
        self.spread_ms.extend(other.spread_ms);
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
    }

    fn fail(&mut self, inside: bool, why: String) {
        if inside {
            *self.failures.entry(why).or_default() += 1;
        }
    }
}

/// The live edge a playlist shows: the next part to wait for, and the URI of the newest part.
#[derive(Debug, PartialEq, Eq)]
struct Edge {
    next: (u64, u64),
    newest_part: Option<String>,
}

/// Reads a (full, not delta) LL-HLS media playlist's live edge.
fn edge(playlist: &str) -> Option<Edge> {
    let mut sequence = None;
    let mut complete = 0u64;
    let mut open_parts = 0u64;
    let mut newest_part = None;
    for line in playlist.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            sequence = v.trim().parse::<u64>().ok();
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
            open_parts += 1;
            newest_part = attrs
                .split("URI=\"")
                .nth(1)
                .and_then(|u| u.split('"').next())
                .map(str::to_owned);
        } else if line.starts_with("#EXTINF:") {
            complete += 1;
            open_parts = 0;
        }
    }
    Some(Edge {
        next: (sequence? + complete, open_parts),
        newest_part,
    })
}

type Sender = SendRequest<Empty<Bytes>>;

async fn connect(addr: &str) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// GET `path`; the status, the JSESSIONID pair it set if any, and the body.
async fn get(
    send: &mut Sender,
    addr: &str,
    path: &str,
    cookie: Option<&str>,
) -> Result<(StatusCode, Option<String>, Bytes), String> {
    send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut req = Request::get(path).header(header::HOST, addr);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let set = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.trim_start().starts_with("JSESSIONID="))
        .map(|p| p.trim().to_owned());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, set, body))
}

/// Runs one client from `at` until the window's end.
pub async fn run(
    target: Target,
    at: Instant,
    (start, end): (Instant, Instant),
    fetch_parts: bool,
    firsts: Arc<FirstAnswers>,
) -> Tally {
    tokio::time::sleep_until(at.into()).await;
    let mut t = Tally::default();
    let mut cookie: Option<String> = None;
    let mut next: Option<(u64, u64)> = None;
    let mut conn: Option<Sender> = None;
    while Instant::now() < end {
        let inside = Instant::now() >= start;
        let send = match &mut conn {
            Some(s) => s,
            None => match connect(&target.addr).await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    t.fail(inside, e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let path = match next {
            Some((msn, part)) => format!("{}?_HLS_msn={msn}&_HLS_part={part}", target.path),
            None => target.path.clone(),
        };
        let asked = Instant::now();
        let got = get(send, &target.addr, &path, cookie.as_deref()).await;
        let now = Instant::now();
        let inside = asked >= start && now < end;
        match got {
            Ok((StatusCode::OK, set, body)) => {
                if set.is_some() {
                    cookie = set;
                }
                let Some(e) = std::str::from_utf8(&body).ok().and_then(edge) else {
                    t.fail(inside, "unreadable playlist".into());
                    next = None;
                    continue;
                };
                if now < start {
                    t.live_at_start = true;
                }
                if let Some(waited_for) = next {
                    let first = firsts.first(waited_for, now);
                    if inside {
                        t.answers += 1;
                        let held = now.duration_since(asked).as_secs_f32() * 1e3;
                        // Under a millisecond: the part existed when asked (a client that fell
                        // behind, or the first reload after a plain one).
                        if held < 1.0 {
                            t.at_once += 1;
                        }
                        t.held_ms.push(held);
                        t.spread_ms
                            .push(now.duration_since(first).as_secs_f32() * 1e3);
                    }
                }
                if fetch_parts && let Some(uri) = &e.newest_part {
                    let path = format!("{}/{uri}", target.dir());
                    match get(send, &target.addr, &path, cookie.as_deref()).await {
                        Ok((StatusCode::OK, _, bytes)) if inside => {
                            t.parts += 1;
                            t.part_bytes += bytes.len() as u64;
                        }
                        Ok((StatusCode::OK, ..)) => {}
                        Ok((status, ..)) => t.fail(inside, format!("part {}", status.as_u16())),
                        Err(why) => {
                            t.fail(inside, why);
                            conn = None;
                        }
                    }
                }
                next = Some(e.next);
            }
            Ok((status, ..)) => {
                t.fail(inside, format!("playlist {}", status.as_u16()));
                // A 503 (the part never came, or too many waiting) or 404: start over.
                next = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(why) => {
                t.fail(inside, why);
                conn = None;
                next = None;
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_edge_is_the_part_after_the_newest() {
        let open = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-PART:DURATION=0.3,URI=\"a-7.0.m4s\"\n\
            #EXTINF:1.0,\na-7.m4s\n#EXT-X-PART:DURATION=0.3,URI=\"a-8.0.m4s\"\n\
            #EXT-X-PART:DURATION=0.3,URI=\"a-8.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a-8.2.m4s\"\n";
        assert_eq!(
            edge(open),
            Some(Edge {
                next: (8, 2),
                newest_part: Some("a-8.1.m4s".into())
            })
        );
        let closed = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\na-7.m4s\n";
        assert_eq!(
            edge(closed),
            Some(Edge {
                next: (8, 0),
                newest_part: None
            })
        );
        assert_eq!(edge("#EXTM3U\n"), None);
    }
}
