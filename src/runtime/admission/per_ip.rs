//! Connections (pending and open) per client address, against `--max-connections-per-ip`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Connections (pending and open) per client address, against a limit.
pub(crate) struct PerIp {
    pub(super) limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's share of its address's count; dropping it gives the share back.
pub(crate) struct IpSlot {
    ip: IpAddr,
    table: Arc<PerIp>,
}

impl PerIp {
    /// A table allowing `limit` connections per address (0: no limit).
    pub(crate) fn new(limit: usize) -> Self {
        PerIp {
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// A share for `ip`, unless the address is at its limit.
    pub(super) fn take(table: &Arc<PerIp>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = table.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if table.limit != 0 && *count >= table.limit {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            table: Arc::clone(table),
        })
    }

    /// Connections `ip` holds now.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_address_limit_counts_every_share_until_it_is_dropped() {
        let table = Arc::new(PerIp::new(2));
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let one = PerIp::take(&table, a).expect("first");
        let two = PerIp::take(&table, a).expect("second");
        assert!(
            PerIp::take(&table, a).is_none(),
            "a third from the same address"
        );
        let other = PerIp::take(&table, b).expect("another address is not affected");
        assert_eq!(table.count(a), 2);
        drop(one);
        assert_eq!(table.count(a), 1);
        assert!(PerIp::take(&table, a).is_some());
        drop((two, other));
        assert_eq!(table.count(b), 0);
        // No limit.
        let open = Arc::new(PerIp::new(0));
        let shares: Vec<_> = (0..100).filter_map(|_| PerIp::take(&open, a)).collect();
        assert_eq!(shares.len(), 100);
    }
}
