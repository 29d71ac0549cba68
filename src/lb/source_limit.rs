//! Per-source-address connection limits of a frontend (`maxconn_per_source`), HAProxy's
//! `tcp-request connection reject if { src_conn_cur ge N }` stick-table idiom in one key: one
//! client address cannot take the frontend's whole `maxconn` (a slowloris from one machine
//! leaves room for everybody else).
//!
//! Data flow: each accepted connection asks [`SourceLimit::admit`] with its peer address; the
//! returned [`SourceGuard`] lives as long as the connection and gives its slot back on drop.
//! A refused connection is closed at once by the caller. Only addresses with open connections
//! have an entry, so the table never holds more than the node's `maxconn` entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open connections per source address of one frontend.
#[derive(Debug)]
pub struct SourceLimit {
    /// Connections one address may hold at once.
    max: usize,
    /// Open connections by address (entries at zero are removed).
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SourceGuard {
    limit: Arc<SourceLimit>,
    addr: IpAddr,
}

impl SourceLimit {
    /// A limit of `max` connections per address.
    pub fn new(max: usize) -> Arc<SourceLimit> {
        Arc::new(SourceLimit {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The table holds plain counts, valid whatever a panicking holder was doing.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more connection from `addr`, or `None` when it already has `max` open.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<SourceGuard> {
        // An IPv4 client on a dual-stack listener is the same client as on an IPv4 one.
        let addr = addr.to_canonical();
        let mut table = self.table();
        let n = table.entry(addr).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceGuard {
            limit: self.clone(),
            addr,
        })
    }

    /// Connections open now from `addr`.
    pub fn current(&self, addr: IpAddr) -> usize {
        self.table().get(&addr.to_canonical()).copied().unwrap_or(0)
    }

    /// Addresses with open connections (the table's size).
    pub fn sources(&self) -> usize {
        self.table().len()
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut table = self.limit.table();
        if let Some(n) = table.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_limit_and_slots_come_back() {
        let limit = SourceLimit::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = limit.admit(a).unwrap();
        let a2 = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none(), "third from one address");
        let b1 = limit.admit(b).unwrap();
        assert_eq!((limit.current(a), limit.current(b)), (2, 1));
        drop(a1);
        let a3 = limit.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(
            limit.sources(),
            0,
            "no entry for addresses without connections"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let limit = SourceLimit::new(1);
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let _g = limit.admit(v4).unwrap();
        assert!(limit.admit(mapped).is_none());
    }
}
