//! Picking a server: `roundrobin` (smooth weighted), `leastconn` (fewest open sessions per
//! unit of weight), `source` (client-IP hash over the UP servers' weights) and `stream`
//! (the request's stream on a consistent-hash ring with bounded loads, see `placement`;
//! round robin for requests that name no stream).
//!
//! Data flow: a request loads its backend's [`ServerSet`] once and calls [`pick`] with the
//! servers it has already tried (retries go elsewhere); the answer is an index into that set.
//! Servers that are DOWN, have weight 0 or were tried are never picked. Lock-free.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use super::backend::{Backend, ServerSet};
use super::placement;
use crate::config::Balance;

/// Picks a server of `set` for a client, skipping `tried`; `stream` is the request's stream
/// point (`balance: stream`). Indices come from `0..len` of the set or from its wheel (built
/// for the same servers), so the indexing below is in range.
pub fn pick(
    backend: &Backend,
    set: &ServerSet,
    client: IpAddr,
    stream: Option<u64>,
    tried: &[usize],
) -> Option<usize> {
    let eligible = |i: usize| {
        !tried.contains(&i)
            && set
                .servers
                .get(i)
                .is_some_and(|s| s.is_up() && s.weight > 0)
    };
    let round_robin = || {
        let len = set.wheel.len();
        if len == 0 {
            return None;
        }
        let start = backend.next_cursor();
        (0..len)
            .map(|k| usize::from(set.wheel[(start + k) % len]))
            .find(|&i| eligible(i))
    };
    match backend.balance {
        Balance::RoundRobin => round_robin(),
        Balance::Stream { factor_percent, .. } => match stream {
            Some(point) => {
                placement::pick(set, point, factor_percent, |s| backend.load(s), eligible)
            }
            None => round_robin(),
        },
        Balance::LeastConn => {
            // Rotating the scan start spreads ties instead of always favouring the first server.
            let n = set.servers.len();
            let start = if n == 0 { 0 } else { backend.next_cursor() % n };
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| eligible(i))
                .min_by(|&a, &b| {
                    let load = |i: usize| {
                        let s = &set.servers[i];
                        // Compare current/weight without division: a.cur * b.w vs b.cur * a.w.
                        (s.counters.current(), u64::from(s.weight))
                    };
                    let ((ca, wa), (cb, wb)) = (load(a), load(b));
                    (u128::from(ca) * u128::from(wb)).cmp(&(u128::from(cb) * u128::from(wa)))
                })
        }
        Balance::Source => {
            let total: u64 = (0..set.servers.len())
                .filter(|&i| eligible(i))
                .map(|i| u64::from(set.servers[i].weight))
                .sum();
            if total == 0 {
                return None;
            }
            let mut slot = hash_ip(client) % total;
            (0..set.servers.len()).filter(|&i| eligible(i)).find(|&i| {
                let w = u64::from(set.servers[i].weight);
                if slot < w {
                    true
                } else {
                    slot -= w;
                    false
                }
            })
        }
    }
}

/// A stable hash of the client address (IPv4-mapped IPv6 hashed as IPv4).
fn hash_ip(ip: IpAddr) -> u64 {
    // SipHash with fixed keys: the same client maps to the same server for the process's life.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x5f37_59df, 0x2545_f491);
    ip.to_canonical().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{BackendConfig, ProxyMode, ServerConfig};
    use crate::lb::backend::{CheckOutcome, Server};

    fn backend(balance: Balance, weights: &[u32]) -> Backend {
        Backend::new(&BackendConfig {
            name: "b".into(),
            mode: ProxyMode::Http,
            balance,
            health: None,
            sticky_cookie: None,
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| ServerConfig {
                    name: format!("s{i}"),
                    addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    cookie: None,
                    weight,
                })
                .collect(),
            servers_from: None,
            retries: 3,
            http_server_close: false,
        })
    }

    fn take_down(s: &Arc<Server>) {
        for _ in 0..3 {
            s.record_check(
                CheckOutcome {
                    passed: false,
                    status: "L4CON",
                    code: None,
                    duration: Default::default(),
                },
                2,
                3,
            );
        }
        assert!(!s.is_up());
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn roundrobin_follows_weights_and_skips_down_and_tried() {
        let b = backend(Balance::RoundRobin, &[2, 1]);
        let set = b.servers();
        let picks: Vec<_> = (0..6)
            .map(|_| pick(&b, &set, CLIENT, None, &[]).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 4);
        assert_eq!(pick(&b, &set, CLIENT, None, &[0]), Some(1));
        take_down(&set.servers[1]);
        assert!((0..4).all(|_| pick(&b, &set, CLIENT, None, &[]) == Some(0)));
        assert_eq!(pick(&b, &set, CLIENT, None, &[0]), None);
    }

    #[test]
    fn leastconn_prefers_the_idle_server() {
        let b = backend(Balance::LeastConn, &[1, 1, 1]);
        let set = b.servers();
        let _busy0 = set.servers[0].counters.open();
        let _busy2 = set.servers[2].counters.open();
        assert!((0..5).all(|_| pick(&b, &set, CLIENT, None, &[]) == Some(1)));
        let _busy1 = set.servers[1].counters.open();
        let _busy1b = set.servers[1].counters.open();
        assert_ne!(pick(&b, &set, CLIENT, None, &[]), Some(1));
    }

    #[test]
    fn source_is_sticky_per_client_and_spreads_clients() {
        let b = backend(Balance::Source, &[1, 1, 1]);
        let set = b.servers();
        let first = pick(&b, &set, CLIENT, None, &[]);
        assert!((0..10).all(|_| pick(&b, &set, CLIENT, None, &[]) == first));
        let spread: std::collections::HashSet<_> = (0..64u8)
            .map(|i| {
                pick(
                    &b,
                    &set,
                    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i)),
                    None,
                    &[],
                )
                .unwrap()
            })
            .collect();
        assert_eq!(spread.len(), 3);
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(pick(&b, &set, mapped, None, &[]), first);
    }

    #[test]
    fn weight_zero_takes_no_balanced_traffic() {
        let b = backend(Balance::RoundRobin, &[0, 1]);
        let set = b.servers();
        assert!((0..4).all(|_| pick(&b, &set, CLIENT, None, &[]) == Some(1)));
    }
}
