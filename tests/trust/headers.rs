//! The 4 KiB header bound: a version 2 header announcing more is refused as
//! soon as its length arrives, before its body; one with 1 KiB of TLVs
//! still works.

use super::common::*;
use super::v2_header;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn an_oversized_header_is_refused_at_its_length() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let mut c = connect(server.addr);
    let mut fixed = v2_header([203, 0, 113, 9], 40001, &[]);
    fixed[14..16].copy_from_slice(&60_000u16.to_be_bytes());
    let sent = Instant::now();
    c.write_all(&fixed).unwrap();
    assert_eq!(read_to_eof(&mut c), b"", "closed without a reply");
    let waited = sent.elapsed();
    // Without the bound it waits for the body, up to the 5 s header
    // timeout; 2 s is slack for a loaded 2-core machine.
    assert!(waited < Duration::from_secs(2), "closed after {waited:?}");
    let line = server.wait_log("refused");
    assert!(
        line.contains("refused: no valid PROXY header: PROXY header of 60016 bytes announced, more than the 4096 allowed"),
        "{line}"
    );
}

#[test]
fn a_header_with_a_kibibyte_of_tlvs_works() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let mut tlvs = vec![0xE0, 0x03, 0xFD];
    tlvs.extend_from_slice(&[b'v'; 1021]);
    let mut sent = v2_header([203, 0, 113, 10], 40002, &tlvs);
    assert_eq!(sent.len(), 16 + 12 + 1024);
    sent.extend_from_slice(b"HeartBeat\n");
    let mut c = connect(server.addr);
    round_trip(&mut c, &sent, b"OK\n");
    let line = server.wait_log("connected");
    assert!(
        line.contains("from 203.0.113.10:40002 connected via"),
        "{line}"
    );
    // The largest header allowed: 4096 bytes in all.
    let mut tlvs = vec![0xE0, 0x0F, 0xE1];
    tlvs.extend_from_slice(&[b'w'; 0x0FE1]);
    let mut largest = v2_header([203, 0, 113, 11], 40003, &tlvs);
    assert_eq!(largest.len(), 4096);
    largest.extend_from_slice(b"HeartBeat\n");
    let mut c = connect(server.addr);
    round_trip(&mut c, &largest, b"OK\n");
}
