//! Which servers carry which streams now, for `balance: stream`: a server carries a stream while
//! viewers of it are placed there (HLS and WebSocket viewers counted by `Sessions`, RTMP and TCP
//! connections while they last). Placement prefers, among the servers under the load bound, one
//! that carries the stream already, so a stream that spilled to a second server while its first
//! was full keeps using those two instead of reaching a third and a fourth as the bound moves
//! with the average load (every server a stream reaches pulls it from its origin).
//!
//! One table per process, shared by every stream-balanced backend: servers are named by their
//! node name (`servers_from`), the same for a node's HTTP and RTMP listeners, so an edge that
//! pulls a stream for its HLS viewers is preferred for its RTMP viewers too.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

const SHARDS: usize = 16;

type Shard = HashMap<u64, Vec<(String, u32)>>;

/// The table: stream point -> servers carrying it, with their viewer counts.
pub struct Carriers {
    shards: Vec<Mutex<Shard>>,
}

static CARRIERS: LazyLock<Carriers> = LazyLock::new(|| Carriers {
    shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
});

/// The process's table.
pub fn carriers() -> &'static Carriers {
    &CARRIERS
}

impl Carriers {
    fn shard(&self, stream: u64) -> MutexGuard<'_, Shard> {
        // Plain counts, valid after any panic.
        self.shards[(stream % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// One more viewer of `stream` on `server`.
    pub fn add(&self, stream: u64, server: &str) {
        let mut shard = self.shard(stream);
        let servers = shard.entry(stream).or_default();
        match servers.iter_mut().find(|(name, _)| name == server) {
            Some((_, n)) => *n += 1,
            None => servers.push((server.to_owned(), 1)),
        }
    }

    /// One viewer of `stream` on `server` fewer.
    pub fn remove(&self, stream: u64, server: &str) {
        let mut shard = self.shard(stream);
        let Some(servers) = shard.get_mut(&stream) else {
            return;
        };
        if let Some(i) = servers.iter().position(|(name, _)| name == server) {
            servers[i].1 -= 1;
            if servers[i].1 == 0 {
                servers.swap_remove(i);
            }
        }
        if servers.is_empty() {
            shard.remove(&stream);
        }
    }

    /// The servers carrying `stream` now (names).
    pub fn of(&self, stream: u64) -> Vec<String> {
        self.shard(stream)
            .get(&stream)
            .map(|s| s.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default()
    }
}

/// A viewer of a stream on a server, counted while it is held (RTMP and TCP connections).
#[derive(Debug)]
pub struct Carried {
    stream: u64,
    server: String,
}

impl Carried {
    /// Counts a viewer of `stream` on `server` until dropped.
    pub fn new(stream: u64, server: &str) -> Carried {
        carriers().add(stream, server);
        Carried {
            stream,
            server: server.to_owned(),
        }
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        carriers().remove(self.stream, &self.server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_carry_a_stream_while_its_viewers_are_there() {
        let t = carriers();
        let stream = 0x5eed_0001;
        assert!(t.of(stream).is_empty());
        let a = Carried::new(stream, "edge-1");
        t.add(stream, "edge-2");
        t.add(stream, "edge-2");
        let mut of = t.of(stream);
        of.sort();
        assert_eq!(of, ["edge-1", "edge-2"]);
        drop(a);
        t.remove(stream, "edge-2");
        assert_eq!(t.of(stream), ["edge-2"]);
        t.remove(stream, "edge-2");
        assert!(t.of(stream).is_empty());
        t.remove(stream, "edge-2");
        assert!(t.of(stream).is_empty(), "an extra remove is harmless");
    }
}
