//! Issue 10 test 4: `--proxy-protocol` and `--max-connections-per-ip`
//! without HAProxy: hand-made version 1 and 2 headers, whole and split,
//! garbage, silence, a version 2 LOCAL header; and a PROXY line sent to a
//! server without `--proxy-protocol`, which is only data.

use super::common::*;
use super::support::connect_from;
use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const V1_HEADER: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 54321 5005\r\n";

/// A version 2 header: PROXY (command 1) or LOCAL (0), TCP over IPv4 from
/// `source` port `port`, or no addresses for LOCAL.
fn v2_header(command: u8, source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    if command == 0 {
        h.extend_from_slice(&[0x00, 0, 0]);
        return h;
    }
    h.extend_from_slice(&[0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[198, 51, 100, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&5005u16.to_be_bytes());
    h
}

/// Writes `chunks` as separate TCP segments (Nagle off, a pause between).
fn send_split(stream: &mut TcpStream, chunks: &[&[u8]]) {
    stream.set_nodelay(true).unwrap();
    for chunk in chunks {
        stream.write_all(chunk).expect("send a piece of the header");
        // Not synchronisation: the pause makes each piece its own segment.
        thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn version_1_header_is_consumed_and_its_source_logged() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let mut c = connect(server.addr);
    c.write_all(V1_HEADER).unwrap();
    round_trip(&mut c, b"hello\n", b"HELLO\n");
    round_trip(&mut c, b"HeartBeat\n", b"OK\n");
    let line = server.wait_log("connected");
    let tcp_peer = c.local_addr().unwrap();
    assert!(
        line.contains("conn 1 from 192.0.2.7:54321 connected via ")
            && line.ends_with(&tcp_peer.to_string()),
        "{line}"
    );
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"");
    let closed = server.wait_log("closed");
    assert!(
        closed.contains("conn 1 from 192.0.2.7:54321 closed: peer_closed"),
        "{closed}"
    );
}

#[test]
fn version_2_header_with_data_in_the_same_segment() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let mut c = connect(server.addr);
    let mut first = v2_header(1, [203, 0, 113, 9], 40001);
    first.extend_from_slice(b"HeartBeat\nsame segment\n");
    round_trip(&mut c, &first, b"OK\nSAME SEGMENT\n");
    let line = server.wait_log("connected");
    assert!(
        line.contains("from 203.0.113.9:40001 connected via 127.0.0.1:"),
        "{line}"
    );
}

#[test]
fn headers_split_over_segments() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let mut v1 = connect(server.addr);
    // Split in the middle of a word, after a space, and before the CRLF.
    send_split(
        &mut v1,
        &[
            &V1_HEADER[..3],
            &V1_HEADER[3..40],
            &V1_HEADER[40..45],
            &V1_HEADER[45..],
        ],
    );
    round_trip(&mut v1, b"after v1\n", b"AFTER V1\n");
    let header = v2_header(1, [203, 0, 113, 10], 40002);
    let mut v2 = connect(server.addr);
    send_split(
        &mut v2,
        &[&header[..5], &header[5..15], &header[15..20], &header[20..]],
    );
    round_trip(&mut v2, b"after v2\n", b"AFTER V2\n");
    server.wait_log("from 192.0.2.7:54321 connected");
    server.wait_log("from 203.0.113.10:40002 connected");
}

/// Each case: what is sent instead of a good header, and the warning's
/// reason. The connection is closed without a byte of reply.
#[test]
fn garbage_instead_of_a_header_is_closed_without_reply() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let cases: [(&[u8], &str); 4] = [
        (b"HeartBeat\n", "malformed PROXY header"),
        (
            b"PROXY TCP4 999.0.0.1 198.51.100.1 1 2\r\nhello\n",
            "malformed PROXY header",
        ),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x2f\x11\0\x0c",
            "malformed PROXY header",
        ),
        (
            b"PROXY TCP4 192.0.2.7",
            "closed after 20 bytes of an incomplete PROXY header",
        ),
    ];
    for (sent, reason) in cases {
        let mut c = connect(server.addr);
        c.write_all(sent).unwrap();
        if reason.starts_with("closed") {
            c.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let tcp_peer = c.local_addr().unwrap();
        assert_eq!(read_to_eof(&mut c), b"", "a reply to {sent:?}");
        let line = server.wait_log("refused");
        assert!(
            line.contains("WARN")
                && line.contains(&format!(
                    "from {tcp_peer} refused: no valid PROXY header: {reason}"
                )),
            "{sent:?}: {line}"
        );
    }
}

#[test]
fn no_header_within_5s_is_closed_without_reply() {
    let server = ServerProcess::start(&["--proxy-protocol"]);
    let mut silent = connect(server.addr);
    let mut partial = connect(server.addr);
    let started = Instant::now();
    partial
        .write_all(&v2_header(1, [203, 0, 113, 11], 1)[..10])
        .unwrap();
    assert_eq!(read_to_eof(&mut silent), b"");
    assert_eq!(read_to_eof(&mut partial), b"");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5), "closed after {waited:?}");
    // Slack for a loaded 2-core machine.
    assert!(
        waited <= Duration::from_millis(6500),
        "closed after {waited:?}"
    );
    // The two warnings, in either order.
    let reason = "refused: no valid PROXY header: no complete PROXY header within 5s";
    let mut warned: Vec<String> = (0..2).map(|_| server.wait_log(reason)).collect();
    warned.sort();
    assert!(warned[0].ends_with("(0 bytes received)"), "{warned:?}");
    assert!(warned[1].ends_with("(10 bytes received)"), "{warned:?}");
}

#[test]
fn version_2_local_uses_the_tcp_peer_and_logs_at_debug_only() {
    let quiet = ServerProcess::start(&["--proxy-protocol"]);
    let verbose = ServerProcess::start(&["--proxy-protocol", "-v"]);
    for server in [&quiet, &verbose] {
        let mut check = connect(server.addr);
        let mut sent = v2_header(0, [0; 4], 0);
        sent.extend_from_slice(b"HeartBeat\n");
        round_trip(&mut check, &sent, b"OK\n");
        check.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut check), b"");
        let tcp_peer = check.local_addr().unwrap();
        if std::ptr::eq(server, &verbose) {
            let line = verbose.wait_log("connected");
            assert!(
                line.contains(&format!("DEBUG] conn 1 from {tcp_peer} connected")),
                "{line}"
            );
        }
    }
    // A client's connection afterwards: the first info line after the
    // start-up lines is its own, not the health check's.
    let mut client = connect(quiet.addr);
    client.write_all(V1_HEADER).unwrap();
    round_trip(&mut client, b"x\n", b"X\n");
    let line = quiet.wait_log("conn ");
    assert!(
        line.contains("conn 2 from 192.0.2.7:54321 connected"),
        "{line}"
    );
}

#[test]
fn without_proxy_protocol_a_proxy_line_is_data() {
    let server = ServerProcess::start(&[]);
    let mut c = connect(server.addr);
    round_trip(&mut c, V1_HEADER, V1_HEADER);
    let tcp_peer = c.local_addr().unwrap();
    server.wait_log(&format!("conn 1 from {tcp_peer} connected"));
}

#[test]
fn per_ip_limit_counts_the_header_source() {
    let server = ServerProcess::start(&["--proxy-protocol", "--max-connections-per-ip", "1"]);
    let mut first = connect(server.addr);
    first
        .write_all(&v2_header(1, [203, 0, 113, 20], 1000))
        .unwrap();
    round_trip(&mut first, b"a\n", b"A\n");
    let mut second = connect(server.addr);
    second
        .write_all(&v2_header(1, [203, 0, 113, 20], 1001))
        .unwrap();
    assert_eq!(
        read_to_eof(&mut second),
        b"ERR too many connections from your address\n"
    );
    server
        .wait_log("conn 2 from 203.0.113.20:1001 refused: too many connections from this address");
    let mut other = connect(server.addr);
    other
        .write_all(&v2_header(1, [203, 0, 113, 21], 1002))
        .unwrap();
    round_trip(&mut other, b"b\n", b"B\n");
    // The slot comes back when the first connection ends.
    drop(first);
    server.wait_log("conn 1 from 203.0.113.20:1000 closed");
    let mut again = connect(server.addr);
    again
        .write_all(&v2_header(1, [203, 0, 113, 20], 1003))
        .unwrap();
    round_trip(&mut again, b"c\n", b"C\n");
}

#[test]
fn per_ip_limit_without_proxy_protocol_counts_the_tcp_peer() {
    let server = ServerProcess::start(&["--max-connections-per-ip", "2"]);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut c = connect_from("127.0.0.2", server.addr);
            round_trip(
                &mut c,
                format!("{i}\n").as_bytes(),
                format!("{i}\n").as_bytes(),
            );
            c
        })
        .collect();
    let mut third = connect_from("127.0.0.2", server.addr);
    assert_eq!(
        read_to_eof(&mut third),
        b"ERR too many connections from your address\n"
    );
    let mut elsewhere = connect_from("127.0.0.3", server.addr);
    round_trip(&mut elsewhere, b"ok?\n", b"OK?\n");
    round_trip(&mut held[0], b"still\n", b"STILL\n");
}
