//! Client addresses as the subscribers they are, and the networks whose
//! PROXY headers are believed.
//!
//! A client is known by one address whatever way it reaches the server: an
//! IPv4-mapped IPv6 address (`::ffff:192.0.2.9`, what a dual-stack listener
//! or a `TCP6` PROXY header shows for an IPv4 client) is its IPv4 address,
//! for the limits, the logs and the metrics alike ([`canonical`]). And one
//! IPv6 subscriber usually holds a whole /64 (RFC 6177's advice to ISPs), so
//! the per-address limit counts an IPv6 client by its prefix
//! ([`Subscriber`]): otherwise it could rotate through 2^64 addresses.
//!
//! [`TrustedProxies`] is the operator's statement of who may claim another
//! address (style rule 17: trust is configured, not assumed): only a
//! connection from those networks must, and may, begin with a PROXY header.
//! All of this is pure: addresses in, decisions out.

use ipnet::{IpNet, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The IPv6 prefix length the per-address limit counts by, unless
/// `--max-connections-per-ip-v6-prefix` says otherwise: a /64 is one LAN,
/// the least an ISP gives a subscriber.
pub const DEFAULT_V6_PREFIX: u8 = 64;

/// The range `--max-connections-per-ip-v6-prefix` accepts: a /48 is the
/// most a single site is usually given; 128 counts every address alone.
pub const V6_PREFIX_RANGE: std::ops::RangeInclusive<u8> = 48..=128;

/// `address`, with an IPv4-mapped IPv6 address turned into its IPv4 one.
pub fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// [`canonical`] for a socket address, keeping its port.
pub fn canonical_socket(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(address.ip()), address.port())
}

/// What the per-address limit counts: an IPv4 address, or the IPv6 prefix
/// an address belongs to. Displays as the address (`192.0.2.9`) or the
/// prefix (`2001:db8:1:2::/64`; `/128` shows as the bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subscriber(IpNet);

impl Subscriber {
    /// The subscriber `address` belongs to when IPv6 clients are counted
    /// per `v6_prefix` bits (clamped to [`V6_PREFIX_RANGE`]).
    pub fn of(address: IpAddr, v6_prefix: u8) -> Self {
        match canonical(address) {
            IpAddr::V4(v4) => Self(IpNet::V4(v4.into())),
            IpAddr::V6(v6) => {
                let bits = v6_prefix.clamp(*V6_PREFIX_RANGE.start(), *V6_PREFIX_RANGE.end());
                let net = Ipv6Net::new(v6, bits).expect("prefix clamped to 48..=128");
                Self(IpNet::V6(net.trunc()))
            }
        }
    }

    /// Whether this is more than one address (an IPv6 prefix shorter than
    /// /128), which the refusal names.
    pub fn is_network(&self) -> bool {
        self.0.prefix_len() < self.0.max_prefix_len()
    }
}

impl fmt::Display for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_network() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}", self.0.addr())
        }
    }
}

/// How the server tells clients apart, beyond [`ServerConfig`]: whose PROXY
/// headers it believes (`--proxy-protocol-from`) and the IPv6 prefix the
/// per-address limit counts by (`--max-connections-per-ip-v6-prefix`).
/// Passed to [`Server::start_with`] rather than added to `ServerConfig`, so
/// that code which builds a `ServerConfig` literal keeps compiling.
///
/// [`ServerConfig`]: super::ServerConfig
/// [`Server::start_with`]: super::Server::start_with
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    /// Connections from these networks must begin with a PROXY header and
    /// only theirs is believed; others are direct clients. Empty:
    /// `ServerConfig::proxy_protocol` decides.
    pub proxy_protocol_from: Vec<IpNet>,
    /// The prefix length an IPv6 client is counted by.
    pub v6_prefix: u8,
}

impl Default for Addressing {
    fn default() -> Self {
        Self {
            proxy_protocol_from: Vec::new(),
            v6_prefix: DEFAULT_V6_PREFIX,
        }
    }
}

/// Which connections must begin with a PROXY header, whose address is then
/// believed: none, every one (`--proxy-protocol`: a port only load
/// balancers reach), or those from named networks
/// (`--proxy-protocol-from`), the others being direct clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustedProxies {
    /// No PROXY protocol: a header is just the bytes of a line.
    #[default]
    None,
    /// Every connection must send a header.
    Everyone,
    /// Connections from these networks must send a header; others are
    /// direct clients. Never empty.
    From(Vec<IpNet>),
}

impl TrustedProxies {
    /// The policy of `--proxy-protocol` (`everyone`) and
    /// `--proxy-protocol-from` (`from`, which wins when both are given).
    pub fn new(everyone: bool, from: Vec<IpNet>) -> Self {
        match (everyone, from.is_empty()) {
            (_, false) => Self::From(from),
            (true, true) => Self::Everyone,
            (false, true) => Self::None,
        }
    }

    /// Whether a connection from `peer` (the TCP peer) must begin with a
    /// PROXY header, and only then is its header believed.
    pub fn expects_header(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        match self {
            Self::None => false,
            Self::Everyone => true,
            Self::From(networks) => networks.iter().any(|net| net.contains(&peer)),
        }
    }

    /// Whether any connection may send a header.
    pub fn is_on(&self) -> bool {
        *self != Self::None
    }
}

impl fmt::Display for TrustedProxies {
    /// The start-up line's words for the policy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("no PROXY protocol"),
            Self::Everyone => f.write_str("PROXY protocol required"),
            Self::From(networks) => {
                f.write_str("PROXY protocol required from ")?;
                for (i, net) in networks.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{net}")?;
                }
                f.write_str(" (others are direct clients)")
            }
        }
    }
}

/// Parses `--proxy-protocol-from`'s comma-separated list: CIDRs
/// (`10.0.0.0/8`, `2001:db8::/32`) or bare addresses (one host). Host bits
/// set in a CIDR are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    let mut networks = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("{text:?}: an empty item in the list"));
        }
        let net = match item.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => match item.parse::<IpAddr>() {
                Ok(address) => IpNet::from(canonical(address)),
                Err(_) => {
                    return Err(format!(
                        "{item:?} is not a network (expected CIDRs such as 10.0.0.0/8 or 2001:db8::/32, comma-separated)"
                    ));
                }
            },
        };
        networks.push(net);
    }
    Ok(networks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        assert_eq!(canonical(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(
            Subscriber::of(ip("::ffff:192.0.2.9"), 64),
            Subscriber::of(ip("192.0.2.9"), 64)
        );
        assert_eq!(
            Subscriber::of(ip("::ffff:192.0.2.9"), 64).to_string(),
            "192.0.2.9"
        );
    }

    #[test]
    fn ipv6_addresses_are_counted_by_their_prefix() {
        let a = Subscriber::of(ip("2001:db8:1:2::5"), 64);
        let b = Subscriber::of(ip("2001:db8:1:2:ffff::9"), 64);
        let other = Subscriber::of(ip("2001:db8:1:3::5"), 64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert!(a.is_network());
        let single = Subscriber::of(ip("2001:db8:1:2::5"), 128);
        assert_eq!(single.to_string(), "2001:db8:1:2::5");
        assert!(!single.is_network());
        assert_eq!(
            Subscriber::of(ip("2001:db8:1:2::5"), 48).to_string(),
            "2001:db8:1::/48"
        );
        assert_eq!(
            Subscriber::of(ip("2001:db8:1:2::5"), 7).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn only_named_networks_must_send_a_header() {
        let trusted = TrustedProxies::new(
            false,
            parse_networks("127.0.0.1/32, 10.0.0.0/8,fd00::/8").unwrap(),
        );
        assert!(trusted.expects_header(ip("127.0.0.1")));
        assert!(trusted.expects_header(ip("::ffff:127.0.0.1")), "mapped");
        assert!(trusted.expects_header(ip("10.200.0.1")));
        assert!(trusted.expects_header(ip("fd12::1")));
        assert!(!trusted.expects_header(ip("127.0.0.2")));
        assert!(!trusted.expects_header(ip("2001:db8::1")));
        assert!(TrustedProxies::new(true, vec![]).expects_header(ip("192.0.2.1")));
        assert!(!TrustedProxies::new(false, vec![]).expects_header(ip("192.0.2.1")));
        assert!(!TrustedProxies::new(false, vec![]).is_on());
        assert_eq!(
            trusted.to_string(),
            "PROXY protocol required from 127.0.0.1/32, 10.0.0.0/8, fd00::/8 (others are direct clients)"
        );
    }

    #[test]
    fn network_lists() {
        assert_eq!(
            parse_networks("10.1.2.3/8,192.0.2.1").unwrap(),
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.1/32".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_networks("::1").unwrap(),
            vec!["::1/128".parse::<IpNet>().unwrap()]
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/8,",
            "example.com",
            "10.0.0.0/8;10.1.0.0/16",
            "::/129",
        ] {
            assert!(parse_networks(bad).is_err(), "{bad:?}");
        }
    }
}
