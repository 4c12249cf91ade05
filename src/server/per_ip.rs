//! The per-address connection limit (`--max-connections-per-ip`): how many
//! connections each client address holds, so that one address cannot take
//! every slot of `--max-connections`.
//!
//! The address is the client's as the server knows it: the TCP peer, or the
//! PROXY protocol header's source behind a load balancer, counted as the
//! [`Subscriber`] it belongs to (an IPv6 address by its prefix, a mapped
//! one as IPv4). A connection claims an [`AddressSlot`] once its address is
//! known and gives it back when the slot is dropped, when its thread ends.

use super::address::Subscriber;
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
    /// The IPv6 prefix length a subscriber is counted by.
    v6_prefix: u8,
    open: Mutex<HashMap<Subscriber, usize>>,
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub struct AddressSlot<'a> {
    limits: &'a AddressLimits,
    address: Subscriber,
}

impl AddressLimits {
    /// Limits of `max_per_address` connections per subscriber (an IPv6
    /// client's `v6_prefix`); 0 is no limit.
    pub fn new(max_per_address: usize, v6_prefix: u8) -> Self {
        Self {
            max_per_address,
            v6_prefix,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `address`, or the subscriber
    /// that already holds the most allowed. Always a slot when there is no
    /// limit.
    pub fn claim(&self, address: IpAddr) -> Result<AddressSlot<'_>, Subscriber> {
        let subscriber = Subscriber::of(address, self.v6_prefix);
        if self.max_per_address > 0 {
            let mut open = self.open.lock();
            let count = open.entry(subscriber).or_default();
            if *count >= self.max_per_address {
                return Err(subscriber);
            }
            *count += 1;
        }
        Ok(AddressSlot {
            limits: self,
            address: subscriber,
        })
    }

    fn release(&self, address: Subscriber) {
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
        let limits = AddressLimits::new(2, 64);
        let a1 = limits.claim(ip("192.0.2.1")).expect("first");
        let _a2 = limits.claim(ip("::ffff:192.0.2.1")).expect("second");
        let full = limits.claim(ip("192.0.2.1")).unwrap_err();
        assert_eq!(full.to_string(), "192.0.2.1");
        let _b = limits.claim(ip("192.0.2.2")).expect("another address");
        drop(a1);
        let _a3 = limits.claim(ip("192.0.2.1")).expect("a slot given back");
        assert!(limits.claim(ip("192.0.2.1")).is_err());
    }

    #[test]
    fn an_ipv6_prefix_is_one_subscriber() {
        let limits = AddressLimits::new(1, 64);
        let _a = limits.claim(ip("2001:db8:1:2::1")).expect("first");
        let full = limits.claim(ip("2001:db8:1:2::2")).unwrap_err();
        assert_eq!(full.to_string(), "2001:db8:1:2::/64");
        let _b = limits.claim(ip("2001:db8:1:3::1")).expect("the next /64");
        let per_address = AddressLimits::new(1, 128);
        let _c = per_address.claim(ip("2001:db8:1:2::1")).expect("first");
        let _d = per_address
            .claim(ip("2001:db8:1:2::2"))
            .expect("another address");
    }

    #[test]
    fn released_addresses_are_forgotten() {
        let limits = AddressLimits::new(1, 64);
        drop(limits.claim(ip("::1")).unwrap());
        assert!(limits.open.lock().is_empty());
    }

    #[test]
    fn zero_is_no_limit() {
        let limits = AddressLimits::new(0, 64);
        let slots: Vec<_> = (0..100).map(|_| limits.claim(ip("192.0.2.1"))).collect();
        assert!(slots.iter().all(Result::is_ok));
        assert!(limits.open.lock().is_empty());
    }
}
