//! Store look-ups of streams an edge does not carry yet, kept from becoming a way to flood the
//! cluster store: every request for a playlist of a stream the edge lacks makes it read that
//! stream's record, so a client asking for random `.m3u8` names would otherwise turn each
//! request into store reads (several per request, as a player's first request keeps looking
//! for a stream about to start).
//!
//! Two defences, both in memory and cheap:
//! - a negative cache: a stream found absent is not looked up again for [`ABSENT_FOR`], however
//!   many requests ask for it (they wait, or get their 404);
//! - a token bucket over the look-ups of streams not pulled yet ([`COLD_LOOKUPS_PER_SECOND`],
//!   bursts of [`COLD_LOOKUP_BURST`]): past it the edge answers 503 at once instead of asking
//!   the store.
//!
//! It also remembers where each stream it found was live ([`Upstream`]: origin, relay address,
//! epoch), so that an edge can still reach a stream's origin while the store does not answer.
//!
//! Time is an argument so the rules are tested without a clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::model::StreamKey;

/// How long a stream found absent is not looked up again.
pub const ABSENT_FOR: Duration = Duration::from_millis(500);
/// Look-ups per second of streams this edge does not pull (sustained).
pub const COLD_LOOKUPS_PER_SECOND: f64 = 200.0;
/// Look-ups allowed at once after a quiet spell.
pub const COLD_LOOKUP_BURST: f64 = 400.0;
/// Most streams remembered as absent (bounded memory whatever the names asked for).
pub const MAX_ABSENT: usize = 10_000;
/// Most streams whose last known origin is remembered.
pub const MAX_KNOWN: usize = 10_000;

/// Where a stream was last found live: enough to subscribe to it without the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The origin's node name (for logs).
    pub origin: String,
    /// Its relay address, `host:port`.
    pub relay: String,
    /// The stream's epoch (its publish session's owner change count).
    pub epoch: u64,
}

/// What to do about a stream the edge does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Look it up.
    Go,
    /// It was absent a moment ago: answer that without asking the store.
    Absent,
    /// Too many look-ups of unknown streams right now: refuse without asking the store.
    Busy,
}

/// The negative cache and the rate limit of one edge.
#[derive(Debug)]
pub struct Lookups {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    absent: HashMap<StreamKey, Instant>,
    /// Last known origin of streams found live, with when it was learnt.
    known: HashMap<StreamKey, (Upstream, Instant)>,
    tokens: f64,
    refilled: Instant,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups::new(Instant::now())
    }
}

impl Lookups {
    /// A full bucket and an empty cache at `now`.
    pub fn new(now: Instant) -> Self {
        Lookups {
            inner: Mutex::new(Inner {
                absent: HashMap::new(),
                known: HashMap::new(),
                tokens: COLD_LOOKUP_BURST,
                refilled: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before looking `key` up in the store at `now`: whether to.
    pub fn gate(&self, key: &StreamKey, now: Instant) -> Gate {
        let mut inner = self.lock();
        if inner
            .absent
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < ABSENT_FOR)
        {
            return Gate::Absent;
        }
        let elapsed = now.saturating_duration_since(inner.refilled).as_secs_f64();
        inner.tokens = (inner.tokens + elapsed * COLD_LOOKUPS_PER_SECOND).min(COLD_LOOKUP_BURST);
        inner.refilled = now;
        if inner.tokens >= 1.0 {
            inner.tokens -= 1.0;
            Gate::Go
        } else {
            Gate::Busy
        }
    }

    /// Whether `key` was found absent within [`ABSENT_FOR`] of `now`.
    pub fn is_absent(&self, key: &StreamKey, now: Instant) -> bool {
        self.lock()
            .absent
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < ABSENT_FOR)
    }

    /// The store has no record of `key` (at `now`).
    pub fn absent(&self, key: &StreamKey, now: Instant) {
        let mut inner = self.lock();
        if inner.absent.len() >= MAX_ABSENT && !inner.absent.contains_key(key) {
            inner
                .absent
                .retain(|_, t| now.saturating_duration_since(*t) < ABSENT_FOR);
            if inner.absent.len() >= MAX_ABSENT {
                // Every entry is fresh: a flood. Forgetting them costs a look-up each, which
                // the token bucket still bounds.
                inner.absent.clear();
            }
        }
        inner.absent.insert(key.clone(), now);
    }

    /// The store has a record of `key`.
    pub fn present(&self, key: &StreamKey) {
        self.lock().absent.remove(key);
    }

    /// The store found `key` live on `upstream` at `now`: remembered for store outages.
    pub fn live_on(&self, key: &StreamKey, upstream: Upstream, now: Instant) {
        let mut inner = self.lock();
        if inner.known.len() >= MAX_KNOWN && !inner.known.contains_key(key) {
            // Forget the oldest (a full scan, once per MAX_KNOWN new streams at worst).
            let oldest = inner
                .known
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.known.remove(&oldest);
            }
        }
        inner.known.insert(key.clone(), (upstream, now));
    }

    /// The store says `key` is not live (ended, or gone): its last origin is forgotten.
    pub fn not_live(&self, key: &StreamKey) {
        self.lock().known.remove(key);
    }

    /// Where `key` was last found live, for when the store does not answer.
    pub fn last_known(&self, key: &StreamKey) -> Option<Upstream> {
        self.lock().known.get(key).map(|(u, _)| u.clone())
    }

    /// Streams remembered as absent.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.lock().absent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> StreamKey {
        StreamKey::new("live", format!("s{i}"))
    }

    #[test]
    fn an_absent_stream_is_not_looked_up_again_for_a_moment() {
        let t0 = Instant::now();
        let l = Lookups::new(t0);
        assert_eq!(l.gate(&key(1), t0), Gate::Go);
        l.absent(&key(1), t0);
        assert_eq!(l.gate(&key(1), t0 + ABSENT_FOR / 2), Gate::Absent);
        assert!(l.is_absent(&key(1), t0 + ABSENT_FOR / 2));
        assert_eq!(
            l.gate(&key(2), t0),
            Gate::Go,
            "other streams are not affected"
        );
        assert_eq!(
            l.gate(&key(1), t0 + ABSENT_FOR),
            Gate::Go,
            "looked up again later"
        );
        l.absent(&key(1), t0);
        l.present(&key(1));
        assert_eq!(
            l.gate(&key(1), t0),
            Gate::Go,
            "a stream that appeared is looked up"
        );
    }

    #[test]
    fn a_flood_of_names_is_held_to_the_rate() {
        let t0 = Instant::now();
        let l = Lookups::new(t0);
        // One instant: the burst, then refusals.
        let go = (0..1000)
            .filter(|i| l.gate(&key(*i), t0) == Gate::Go)
            .count();
        assert_eq!(go, COLD_LOOKUP_BURST as usize);
        // A second later: the sustained rate.
        let t1 = t0 + Duration::from_secs(1);
        let go = (1000..2000)
            .filter(|i| l.gate(&key(*i), t1) == Gate::Go)
            .count();
        assert_eq!(go, COLD_LOOKUPS_PER_SECOND as usize);
        assert_eq!(l.gate(&key(5000), t1), Gate::Busy);
    }

    fn upstream(epoch: u64) -> Upstream {
        Upstream {
            origin: "origin-1".into(),
            relay: "127.0.0.1:4433".into(),
            epoch,
        }
    }

    #[test]
    fn the_last_known_origin_is_kept_until_the_stream_ends() {
        let t0 = Instant::now();
        let l = Lookups::new(t0);
        assert_eq!(l.last_known(&key(1)), None);
        l.live_on(&key(1), upstream(1), t0);
        l.live_on(&key(1), upstream(2), t0);
        assert_eq!(l.last_known(&key(1)), Some(upstream(2)), "the latest epoch");
        assert_eq!(l.last_known(&key(2)), None);
        l.not_live(&key(1));
        assert_eq!(l.last_known(&key(1)), None, "an ended stream is forgotten");
    }

    #[test]
    fn known_origins_stay_bounded_and_the_oldest_goes_first() {
        let t0 = Instant::now();
        let l = Lookups::new(t0);
        for i in 0..MAX_KNOWN + 10 {
            l.live_on(&key(i), upstream(1), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(l.lock().known.len(), MAX_KNOWN);
        assert_eq!(l.last_known(&key(0)), None, "the oldest was forgotten");
        assert!(l.last_known(&key(MAX_KNOWN + 9)).is_some());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let t0 = Instant::now();
        let l = Lookups::new(t0);
        for i in 0..MAX_ABSENT * 3 {
            l.absent(&key(i), t0);
        }
        assert!(l.remembered() <= MAX_ABSENT);
        // Old entries go first once they are stale.
        let later = t0 + ABSENT_FOR;
        l.absent(&key(usize::MAX), later);
        assert_eq!(l.remembered(), 1);
    }
}
