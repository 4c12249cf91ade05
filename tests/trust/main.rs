//! Issue 17's trust boundaries, against the real server over real TCP:
//! PROXY headers believed only from `--proxy-protocol-from` (clients from
//! two loopback addresses, one trusted), the 4 KiB header bound, addresses
//! counted as subscribers (mapped IPv4, IPv6 per /64), every connection's
//! outcome counted once (the invariants after a mixed run), and a metrics
//! endpoint that stalled connections cannot block.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)] // Each test binary uses its own subset of these helpers.
#[path = "../deployment/support.rs"]
mod support;

mod headers;
mod measure;
mod outcomes;
mod scrapes;
mod sources;
mod subscribers;

/// A version 2 PROXY header: TCP over IPv4 from `source`:`port`, followed
/// by `tlvs` (counted in its length).
pub fn v2_header(source: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
    h.extend_from_slice(&source);
    h.extend_from_slice(&[198, 51, 100, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&5005u16.to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

/// A version 1 header naming `source` (TCP4 or TCP6 by its form).
pub fn v1_header(source: &str, port: u16) -> Vec<u8> {
    let (family, destination) = if source.contains(':') {
        ("TCP6", "2001:db8::100")
    } else {
        ("TCP4", "198.51.100.1")
    };
    format!("PROXY {family} {source} {destination} {port} 5005\r\n").into_bytes()
}
