//! `balance: stream`: viewers placed by the stream they watch. The stream id is read from the
//! request ([`http_stream`], [`rtmp_stream`]) and hashed onto a consistent-hash [`Ring`] of the
//! backend's servers; the stream goes to the first server clockwise from its point whose load is
//! under the bound (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam;
//! HAProxy's `hash-balance-factor`). A stream's viewers therefore share one server until it is
//! full, then spill to the next on the ring, and only as many servers pull the stream from the
//! origin as its audience needs. Renditions hash like their stream.
//!
//! Load: a mode tcp (RTMP) server's load is its open connections. A mode http server's load is
//! its viewers seen within `viewer_idle` ([`Sessions`]: sticky sessions, and cookieless players
//! by client address and stream).
//!
//! The ring is built from server *names* (and weights), so adding or removing a server moves only
//! the streams whose points it owns; the ring of a backend's edges and of another backend with
//! the same edges (RTMP and HLS viewers) agree.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamfleet_proto::names::{PlayerName, hls_file_name};

use super::backend::{Server, ServerSet};

/// Points per unit of weight on the ring (at the backend's highest weight).
const POINTS: u64 = 160;
/// A server with fewer viewers than this always takes one more: with a handful of viewers,
/// 1.25 x the average would spread the first viewers of every stream over every server.
pub const MIN_BOUNDED_LOAD: u64 = 8;
/// Viewers tracked per backend: beyond it, new ones are not counted until others go idle.
const MAX_SESSIONS: usize = 1 << 18;
/// Shards of the session table (one mutex each).
const SHARDS: usize = 64;

/// A stable 64-bit hash (SipHash with fixed keys: the same input maps to the same point for the
/// process's life, and in every LB process).
fn hash64(parts: &[&[u8]]) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x7374_7265_616d, 0x0066_6c65_6574);
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// The ring point of stream `stream` of application `app`.
pub fn stream_point(app: &str, stream: &str) -> u64 {
    hash64(&[app.as_bytes(), stream.as_bytes()])
}

/// The stream a viewer's HTTP request is for: HLS (`/{app}/streams/{id}.m3u8`,
/// `{id}_{h}p.m3u8`, `{id}_adaptive.m3u8`, `{id}_{h}p-{seq}.ts`), LL-HLS
/// (`/{app}/streams/ll-hls/{id}/...`, the alias `/{app}/ll/{id}.m3u8`) and WHEP
/// (`/{app}/whep/{id}`). Anything else (REST, console) has none and is balanced round robin;
/// WebSocket signalling, whose stream is in a message, is placed by [`websocket_stream`] once
/// that message is read.
pub fn http_stream(path_and_query: &str) -> Option<u64> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    let mut parts = path.strip_prefix('/')?.split('/');
    let app = parts.next().filter(|a| !a.is_empty())?;
    let (kind, rest) = (parts.next()?, parts.next()?);
    let file = match (kind, rest, parts.next(), parts.next()) {
        ("streams", "ll-hls", Some(id), Some(_)) => return point_of(app, id),
        ("streams", file, None, None) => file,
        ("ll", file, None, None) => file,
        ("whep", id, _, _) => return point_of(app, id),
        _ => return None,
    };
    point_of(app, hls_file_name(file)?)
}

/// The application of an Ant Media WebSocket signalling request (`/{app}/websocket`, any
/// query), whose stream is named in its first messages (`l7::ws_place`).
pub fn websocket_app(path_and_query: &str) -> Option<&str> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    let (app, rest) = path.strip_prefix('/')?.split_once('/')?;
    (!app.is_empty() && rest == "websocket").then_some(app)
}

/// The stream point of a WebSocket signalling message's `streamId` in application `app`; a
/// rendition name hashes like its stream.
pub fn websocket_stream(app: &str, stream_id: &str) -> Option<u64> {
    point_of(app, stream_id)
}

/// The stream an RTMP `play` (or `publish`) is for: the app from `connect` and the name, each
/// without a query (`?token=...`) or trailing slash; a rendition name (`demo_240p`) hashes like
/// its stream.
pub fn rtmp_stream(app: &str, name: &str) -> Option<u64> {
    let app = app.split('?').next().unwrap_or_default().trim_matches('/');
    let name = name.split('?').next().unwrap_or_default();
    if app.is_empty() {
        return None;
    }
    point_of(app, name)
}

fn point_of(app: &str, player_name: &str) -> Option<u64> {
    if player_name.is_empty() {
        return None;
    }
    Some(stream_point(app, PlayerName::parse(player_name).stream))
}

/// The consistent-hash ring of a [`ServerSet`]: `POINTS` points per unit of weight for each
/// server with weight > 0, sorted.
#[derive(Debug, Default)]
pub struct Ring {
    points: Vec<(u64, u16)>,
    /// Servers with points.
    servers: usize,
}

impl Ring {
    /// Builds the ring of `servers` (indices as in the set).
    pub fn new(servers: &[Arc<Server>]) -> Ring {
        let max_weight = servers.iter().map(|s| s.weight).max().unwrap_or(0);
        let mut points = Vec::new();
        if max_weight > 0 {
            for (i, s) in servers.iter().enumerate() {
                let n = (POINTS * u64::from(s.weight)).div_ceil(u64::from(max_weight));
                for replica in 0..n {
                    // `i` < MAX_SERVERS <= u16::MAX (the set truncates).
                    points.push((
                        hash64(&[s.name.as_bytes(), &replica.to_le_bytes()]),
                        i as u16,
                    ));
                }
            }
        }
        points.sort_unstable();
        let servers = servers.iter().filter(|s| s.weight > 0).count();
        Ring { points, servers }
    }

    /// Server indices in ring order from `point`, each once.
    pub fn walk(&self, point: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|&(p, _)| p < point);
        let len = self.points.len();
        let servers = self
            .points
            .iter()
            .map(|&(_, i)| usize::from(i) + 1)
            .max()
            .unwrap_or(0);
        let mut seen = vec![false; servers];
        let mut left = self.servers;
        let mut k = 0;
        std::iter::from_fn(move || {
            while left > 0 && k < len {
                let i = usize::from(self.points[(start + k) % len].1);
                k += 1;
                if !std::mem::replace(&mut seen[i], true) {
                    left -= 1;
                    return Some(i);
                }
            }
            None
        })
    }
}

/// Whether a server with `load` (and `weight`, of `total_weight` among the eligible servers)
/// may take one more viewer when the eligible servers carry `total_load`: its load after taking
/// it stays within `factor_percent` of the weighted average before the newcomer (a little
/// stricter than HAProxy's, which counts the newcomer in the average, so that no server ends
/// above the factor), or it is below [`MIN_BOUNDED_LOAD`].
pub fn under_bound(
    load: u64,
    weight: u32,
    total_load: u64,
    total_weight: u64,
    factor_percent: u32,
) -> bool {
    if load < MIN_BOUNDED_LOAD {
        return true;
    }
    // load + 1 <= total * factor/100 * weight/total_weight, without division.
    u128::from(load + 1) * u128::from(total_weight) * 100
        <= u128::from(total_load) * u128::from(factor_percent) * u128::from(weight)
}

/// Picks the server for the stream at `point`: the first eligible one on the ring that is under
/// the bound, else (every one full, which the bound makes impossible unless loads changed
/// meanwhile) the first eligible one.
pub fn pick(
    set: &ServerSet,
    point: u64,
    factor_percent: u32,
    load: impl Fn(&Server) -> u64,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let (total_load, total_weight) = set
        .servers
        .iter()
        .enumerate()
        .filter(|&(i, _)| eligible(i))
        .fold((0u64, 0u64), |(l, w), (_, s)| {
            (l + load(s), w + u64::from(s.weight))
        });
    if total_weight == 0 {
        return None;
    }
    let mut first = None;
    for i in set.ring().walk(point).filter(|&i| eligible(i)) {
        let s = &set.servers[i];
        if under_bound(load(s), s.weight, total_load, total_weight, factor_percent) {
            return Some(i);
        }
        first.get_or_insert(i);
    }
    first
}

/// A server's viewer load for `balance: stream` on mode http: the viewers [`Sessions`] counts
/// on it.
#[derive(Debug, Default)]
pub struct ViewerLoad(AtomicU64);

impl ViewerLoad {
    /// Viewers counted on the server.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, valid after any panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Entry {
    server: Arc<Server>,
    seen: Instant,
}

impl Entry {
    fn new(server: &Arc<Server>, seen: Instant) -> Entry {
        server.viewers.0.fetch_add(1, Ordering::Relaxed);
        Entry {
            server: server.clone(),
            seen,
        }
    }

    fn moved_to(&mut self, server: &Arc<Server>, now: Instant) {
        self.seen = now;
        if !Arc::ptr_eq(&self.server, server) {
            server.viewers.0.fetch_add(1, Ordering::Relaxed);
            self.server.viewers.0.fetch_sub(1, Ordering::Relaxed);
            self.server = server.clone();
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.server.viewers.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Entry>,
    swept: Option<Instant>,
}

/// The viewers of a mode http backend with `balance: stream`, each counted once on the server
/// its requests last went to, until it is idle for `idle`. A viewer is its sticky session (the
/// session cookie's value, counted only when the cookie named the server the request went to,
/// so a forged cookie cannot load another server), or, before it has a cookie (or for a
/// player that never keeps one), its client address and stream. A browser's first, cookieless
/// request is folded into its session when the cookie comes back. Sharded, swept lazily and
/// when the stats are read; keys are hashed with a per-process random key.
pub struct Sessions {
    idle: Duration,
    keys: (u64, u64),
    shards: Vec<Mutex<Shard>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// Who a request's viewer is.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// The session value of a sticky cookie that named the server the request went to.
    pub session: Option<&'a [u8]>,
    /// The client's address.
    pub client: IpAddr,
    /// The stream's ring point.
    pub stream: u64,
}

impl Sessions {
    /// An empty table.
    pub fn new(idle: Duration) -> Sessions {
        let mut seed = [0u8; 16];
        // Without OS randomness the keys stay fixed: still correct, only more predictable.
        let _ = getrandom::fill(&mut seed);
        let (a, b) = seed.split_at(8);
        let key = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or_default());
        Sessions {
            idle,
            keys: (key(a), key(b)),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.keys.0, self.keys.1);
        for p in parts {
            p.hash(&mut h);
        }
        h.finish()
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        lock(&self.shards[(key % SHARDS as u64) as usize])
    }

    /// A server's current load.
    pub fn load(&self, server: &Server) -> u64 {
        server.viewers.get()
    }

    /// Records that a request of `viewer` went to `server`.
    pub fn record(&self, viewer: Viewer<'_>, server: &Arc<Server>) {
        self.record_at(viewer, server, Instant::now());
    }

    fn record_at(&self, viewer: Viewer<'_>, server: &Arc<Server>, now: Instant) {
        let ip = match viewer.client.to_canonical() {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let anonymous = self.hash(&[&ip, &viewer.stream.to_le_bytes()]);
        let key = match viewer.session {
            Some(session) => self.hash(&[b"s", session]),
            None => anonymous,
        };
        let mut shard = self.shard(key);
        self.sweep(&mut shard, now, false);
        if let Some(e) = shard.map.get_mut(&key) {
            e.moved_to(server, now);
            return;
        }
        if shard.map.len() >= MAX_SESSIONS / SHARDS {
            return;
        }
        shard.map.insert(key, Entry::new(server, now));
        drop(shard);
        if viewer.session.is_some() {
            // A new session: the same client's cookieless requests for this stream were most
            // likely its first ones.
            let mut shard = self.shard(anonymous);
            if shard
                .map
                .get(&anonymous)
                .is_some_and(|e| Arc::ptr_eq(&e.server, server))
            {
                shard.map.remove(&anonymous);
            }
        }
    }

    fn sweep(&self, shard: &mut Shard, now: Instant, force: bool) {
        if force
            || shard
                .swept
                .is_none_or(|t| now.duration_since(t) >= self.idle / 4)
        {
            shard.swept = Some(now);
            let idle = self.idle;
            shard.map.retain(|_, e| now.duration_since(e.seen) < idle);
        }
    }

    /// Drops every idle viewer (for the stats, so a quiet backend shows current loads).
    pub fn sweep_all(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            self.sweep(&mut lock(shard), now, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    fn servers(names: &[&str]) -> Vec<Arc<Server>> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Server::new(&ServerConfig {
                    name: (*n).into(),
                    addr: format!("127.0.0.1:{}", 2000 + i).parse().unwrap(),
                    cookie: Some((*n).into()),
                    weight: 1,
                })
            })
            .collect()
    }

    #[test]
    fn stream_ids_come_from_every_viewer_url_and_renditions_hash_like_their_stream() {
        let demo = stream_point("live", "demo");
        for path in [
            "/live/streams/demo.m3u8",
            "/live/streams/demo.m3u8?token=x",
            "/live/streams/demo_adaptive.m3u8",
            "/live/streams/demo_480p.m3u8",
            "/live/streams/demo-17.ts",
            "/live/streams/demo_240p-17.ts",
            "/live/streams/ll-hls/demo/demo__master.m3u8",
            "/live/streams/ll-hls/demo/demo_240p-3.2.m4s?x=1",
            "/live/ll/demo.m3u8",
            "/live/whep/demo",
            "/live/whep/demo/session-1",
        ] {
            assert_eq!(http_stream(path), Some(demo), "{path}");
        }
        assert_eq!(rtmp_stream("live", "demo"), Some(demo));
        assert_eq!(rtmp_stream("live/?x=1", "demo_720p?token=t"), Some(demo));
        assert_eq!(rtmp_stream("/live", "demo"), Some(demo));
        // Same name in another app, or another stream: another point.
        assert_ne!(http_stream("/other/streams/demo.m3u8"), Some(demo));
        assert_ne!(http_stream("/live/streams/demo2.m3u8"), Some(demo));
        for path in [
            "/",
            "/live/websocket",
            "/live/rest/v2/broadcasts/demo",
            "/rest/v2/cluster/nodes/0/10",
            "/live/streams/",
            "/live/streams/demo",
            "/live/streams/a/b/c",
            "/live/streams/.m3u8",
            "//streams/demo.m3u8",
            "/metrics",
        ] {
            assert_eq!(http_stream(path), None, "{path}");
        }
        assert_eq!(rtmp_stream("", "demo"), None);
        assert_eq!(rtmp_stream("live", ""), None);
        // WebSocket signalling: the app from the path, the stream from a message; it hashes
        // like the stream's HLS and RTMP viewers.
        assert_eq!(websocket_app("/live/websocket?target=edge"), Some("live"));
        assert_eq!(websocket_app("/LiveApp/websocket"), Some("LiveApp"));
        for path in [
            "/live/websocket/x",
            "//websocket",
            "/live/streams/websocket",
            "/websocket",
        ] {
            assert_eq!(websocket_app(path), None, "{path}");
        }
        assert_eq!(websocket_stream("live", "demo_240p"), Some(demo));
        assert_eq!(websocket_stream("live", ""), None);
    }

    #[test]
    fn removing_a_server_moves_only_its_streams_and_adding_one_takes_a_fair_share() {
        let names: Vec<String> = (0..8).map(|i| format!("edge-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let all = servers(&refs);
        let first = |servers: &[Arc<Server>], p: u64| {
            let ring = Ring::new(servers);
            let i = ring.walk(p).next().unwrap();
            servers[i].name.clone()
        };
        let streams: Vec<u64> = (0..4000)
            .map(|i| stream_point("live", &format!("s{i}")))
            .collect();
        let before: Vec<String> = streams.iter().map(|&p| first(&all, p)).collect();
        // Every server owns a fair share (160 points each).
        for n in &names {
            let share = before.iter().filter(|b| *b == n).count();
            assert!((300..=700).contains(&share), "{n}: {share} of 4000");
        }
        let without: Vec<Arc<Server>> =
            all.iter().filter(|s| s.name != "edge-3").cloned().collect();
        for (p, b) in streams.iter().zip(&before) {
            let now = first(&without, *p);
            if b != "edge-3" {
                assert_eq!(&now, b, "a stream not on the removed server moved");
            }
        }
        let mut more = all.clone();
        more.extend(servers(&["edge-8"]));
        let moved: Vec<_> = streams
            .iter()
            .zip(&before)
            .filter(|(p, b)| first(&more, **p) != **b)
            .collect();
        assert!(
            moved.iter().all(|(p, _)| first(&more, **p) == "edge-8"),
            "streams moved between old servers"
        );
        assert!((250..=750).contains(&moved.len()), "{}", moved.len());
    }

    #[test]
    fn bounded_loads_keep_every_server_within_the_factor_and_streams_on_few_servers() {
        // 2,000 viewers of 50 streams with Zipf popularity (s = 1) onto 8 servers.
        let set = ServerSet::new(servers(&["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]));
        let harmonic: f64 = (1..=50).map(|k| 1.0 / k as f64).sum();
        let mut viewers: Vec<usize> = Vec::new();
        for k in 0..50 {
            let n = (2000.0 / ((k + 1) as f64 * harmonic)).round() as usize;
            viewers.extend(std::iter::repeat_n(k, n));
        }
        // Deterministic shuffle: joins in mixed order.
        let mut x = 0x2545_f491_u64;
        for i in (1..viewers.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            viewers.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut load = [0u64; 8];
        let mut pulls = std::collections::HashSet::new();
        for &k in &viewers {
            let point = stream_point("live", &format!("s{k}"));
            let loads = load;
            let i = pick(&set, point, 125, |s| loads[s_index(&set, s)], |_| true).unwrap();
            load[i] += 1;
            pulls.insert((k, i));
        }
        let total: u64 = load.iter().sum();
        let avg = total as f64 / 8.0;
        let max = *load.iter().max().unwrap() as f64;
        assert!(max <= avg * 1.25, "loads {load:?}");
        // Round robin would put almost every stream on every server: 50 x 8 = 400 pulls.
        assert!(
            pulls.len() <= 400 / 3,
            "{} (stream, server) pulls",
            pulls.len()
        );
        // And a server that is DOWN (not eligible) takes nothing.
        let point = stream_point("live", "s0");
        let i = pick(&set, point, 125, |_| 0, |_| true).unwrap();
        let j = pick(&set, point, 125, |_| 0, |k| k != i).unwrap();
        assert_ne!(i, j);
        assert_eq!(pick(&set, point, 125, |_| 0, |_| false), None);
    }

    fn s_index(set: &ServerSet, s: &Server) -> usize {
        set.servers
            .iter()
            .position(|x| std::ptr::eq(x.as_ref(), s))
            .unwrap()
    }

    #[test]
    fn under_bound_follows_the_factor_above_the_floor() {
        assert!(under_bound(0, 1, 0, 8, 125));
        assert!(under_bound(MIN_BOUNDED_LOAD - 1, 1, 0, 8, 125));
        // 8 servers, 2,000 viewers: the bound is 1.25 x 250 = 312.
        assert!(under_bound(311, 1, 2000, 8, 125));
        assert!(!under_bound(312, 1, 2000, 8, 125));
        // Weight 2 of 9: twice the share.
        assert!(under_bound(500, 2, 2000, 9, 125));
        assert!(!under_bound(600, 2, 2000, 9, 125));
    }

    #[test]
    fn viewers_count_once_move_with_their_requests_and_expire() {
        let s = servers(&["a", "b"]);
        let table = Sessions::new(Duration::from_secs(1));
        let now = Instant::now();
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n));
        let viewer = |session: Option<&'static [u8]>, n: u8, stream: u64| Viewer {
            session,
            client: ip(n),
            stream,
        };
        let load = || (s[0].viewers.get(), s[1].viewers.get());
        // A browser: its first request has no cookie, then its session comes back.
        table.record_at(viewer(None, 1, 7), &s[0], now);
        assert_eq!(load(), (1, 0));
        table.record_at(viewer(Some(b"1"), 1, 7), &s[0], now);
        table.record_at(viewer(Some(b"1"), 1, 7), &s[0], now);
        assert_eq!(load(), (1, 0), "one viewer, counted once");
        // A player without cookies counts once per stream however often it asks.
        for _ in 0..10 {
            table.record_at(viewer(None, 2, 7), &s[0], now);
        }
        assert_eq!(load(), (2, 0));
        table.record_at(viewer(None, 2, 8), &s[1], now);
        assert_eq!(load(), (2, 1), "another stream, another viewer");
        // The session's server went down: its next request went to b.
        table.record_at(viewer(Some(b"1"), 1, 7), &s[1], now);
        assert_eq!(load(), (1, 2));
        // Idle viewers stop counting at the next sweep.
        let later = now + Duration::from_secs(5);
        for k in 0..4096u32 {
            // Touch every shard so each sweeps.
            let session = format!("x{k}");
            table.record_at(
                Viewer {
                    session: Some(session.as_bytes()),
                    client: ip(3),
                    stream: 1,
                },
                &s[1],
                later,
            );
        }
        assert_eq!(load(), (0, 4096));
        drop(table);
        assert_eq!(load(), (0, 0), "a dropped table leaves no counts behind");
    }
}
