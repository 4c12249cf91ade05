//! Addresses as subscribers: an IPv4-mapped address is its IPv4 address,
//! and IPv6 clients are limited per /64 unless the prefix is changed.

use super::common::*;
use super::v1_header;
use std::io::Write;
use std::process::{Command, Stdio};

/// A connection to `server` whose PROXY header names `source`; the reply to
/// a heartbeat, or the refusal it was sent.
fn claim(server: &ServerProcess, source: &str, port: u16) -> (std::net::TcpStream, Vec<u8>) {
    let mut c = connect(server.addr);
    let mut sent = v1_header(source, port);
    sent.extend_from_slice(b"HeartBeat\n");
    c.write_all(&sent).unwrap();
    let reply = read_n(&mut c, 3);
    if reply != b"OK\n" {
        let mut all = reply;
        all.extend_from_slice(&read_to_eof(&mut c));
        return (c, all);
    }
    (c, reply)
}

#[test]
fn a_mapped_address_is_its_ipv4_address() {
    let server = ServerProcess::start(&["--proxy-protocol", "--max-connections-per-ip", "1"]);
    let (_held, reply) = claim(&server, "192.0.2.9", 1000);
    assert_eq!(reply, b"OK\n");
    let (_c, reply) = claim(&server, "::ffff:192.0.2.9", 1001);
    assert_eq!(reply, b"ERR too many connections from your address\n");
    let line = server.wait_log("refused");
    assert!(
        line.contains("conn 2 from 192.0.2.9:1001 refused: too many connections from this address"),
        "{line}"
    );
}

#[test]
fn ipv6_clients_are_limited_per_64() {
    let server = ServerProcess::start(&["--proxy-protocol", "--max-connections-per-ip", "1"]);
    server.wait_log("max 1 connections per address (IPv6 per /64)");
    let (_held, reply) = claim(&server, "2001:db8:1:2::1", 1000);
    assert_eq!(reply, b"OK\n");
    let (_c, reply) = claim(&server, "2001:db8:1:2:ffff::2", 1001);
    assert_eq!(
        reply,
        b"ERR too many connections from your network 2001:db8:1:2::/64\n"
    );
    let line = server.wait_log("refused");
    assert!(
        line.contains("conn 2 from [2001:db8:1:2:ffff::2]:1001 refused: too many connections from this address: its network 2001:db8:1:2::/64 holds the most allowed"),
        "{line}"
    );
    let (_other, reply) = claim(&server, "2001:db8:1:3::1", 1002);
    assert_eq!(reply, b"OK\n", "the next /64 is another subscriber");
}

#[test]
fn the_prefix_can_be_changed() {
    let server = ServerProcess::start(&[
        "--proxy-protocol",
        "--max-connections-per-ip",
        "1",
        "--max-connections-per-ip-v6-prefix",
        "128",
    ]);
    let (_a, reply) = claim(&server, "2001:db8:1:2::1", 1000);
    assert_eq!(reply, b"OK\n");
    let (_b, reply) = claim(&server, "2001:db8:1:2::2", 1001);
    assert_eq!(reply, b"OK\n", "each address on its own");
    let (_c, reply) = claim(&server, "2001:db8:1:2::2", 1002);
    assert_eq!(reply, b"ERR too many connections from your address\n");
    let wide = ServerProcess::start(&[
        "--proxy-protocol",
        "--max-connections-per-ip",
        "1",
        "--max-connections-per-ip-v6-prefix",
        "48",
    ]);
    let (_d, reply) = claim(&wide, "2001:db8:1:2::1", 1000);
    assert_eq!(reply, b"OK\n");
    let (_e, reply) = claim(&wide, "2001:db8:1:ff::1", 1001);
    assert_eq!(
        reply,
        b"ERR too many connections from your network 2001:db8:1::/48\n"
    );
}

#[test]
fn a_prefix_out_of_range_is_a_usage_error() {
    for bad in ["47", "129", "-1", "x"] {
        let status = Command::new(env!("CARGO_BIN_EXE_hb-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--max-connections-per-ip-v6-prefix",
                bad,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run hb-server");
        assert_eq!(status.code(), Some(2), "{bad}");
    }
}
