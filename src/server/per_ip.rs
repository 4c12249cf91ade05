//! The per-address connection limit (`--max-connections-per-ip`): how many
//! connections each client address holds, so that one address cannot take
//! every slot of `--max-connections`.
//!
//! The address is the client's as the server knows it: the TCP peer, or the
//! PROXY protocol header's source behind a load balancer. A connection
//! claims an [`AddressSlot`] once its address is known and gives it back
//! when the slot is dropped, when its thread ends.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

/// Open connections per address. Claimed and released by connection threads,
/// once each; a parking_lot mutex, as the critical sections are one map
/// lookup.
#[derive(Debug)]
pub struct AddressLimits {
    /// 0: no limit, nothing counted.
    max_per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub struct AddressSlot<'a> {
    limits: &'a AddressLimits,
    address: IpAddr,
}

impl AddressLimits {
    /// Limits of `max_per_address` connections per address; 0 is no limit.
    pub fn new(max_per_address: usize) -> Self {
        Self {
            max_per_address,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `address`, or `None` when it
    /// already holds the most allowed. Always a slot when there is no limit.
    pub fn claim(&self, address: IpAddr) -> Option<AddressSlot<'_>> {
        if self.max_per_address > 0 {
            let mut open = self.open.lock();
            let count = open.entry(address).or_default();
            if *count >= self.max_per_address {
                return None;
            }
            *count += 1;
        }
        Some(AddressSlot {
            limits: self,
            address,
        })
    }

    fn release(&self, address: IpAddr) {
        if self.max_per_address == 0 {
            return;
        }
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                // Forget the address, so the map holds only live ones.
                open.remove(&address);
            }
        }
    }
}

impl Drop for AddressSlot<'_> {
    fn drop(&mut self) {
        self.limits.release(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_at_its_limit_is_refused_others_are_not() {
        let limits = AddressLimits::new(2);
        let a1 = limits.claim(ip("192.0.2.1")).expect("first");
        let _a2 = limits.claim(ip("192.0.2.1")).expect("second");
        assert!(limits.claim(ip("192.0.2.1")).is_none());
        let _b = limits.claim(ip("192.0.2.2")).expect("another address");
        drop(a1);
        let _a3 = limits.claim(ip("192.0.2.1")).expect("a slot given back");
        assert!(limits.claim(ip("192.0.2.1")).is_none());
    }

    #[test]
    fn released_addresses_are_forgotten() {
        let limits = AddressLimits::new(1);
        drop(limits.claim(ip("::1")).unwrap());
        assert!(limits.open.lock().is_empty());
    }

    #[test]
    fn zero_is_no_limit() {
        let limits = AddressLimits::new(0);
        let slots: Vec<_> = (0..100).map(|_| limits.claim(ip("192.0.2.1"))).collect();
        assert!(slots.iter().all(Option::is_some));
        assert!(limits.open.lock().is_empty());
    }
}
