//! `--proxy-protocol-from`: a trusted source must send a header and is
//! believed; any other source is a direct client whose PROXY line is data.

use super::common::*;
use super::support::connect_from;
use super::v1_header;
use std::io::Write;
use std::net::Shutdown;
use std::process::{Command, Stdio};

#[test]
fn only_the_trusted_address_is_believed() {
    let server = ServerProcess::start(&["--proxy-protocol-from", "127.0.0.1/32,10.0.0.0/8"]);
    server.wait_log(
        "PROXY protocol required from 127.0.0.1/32, 10.0.0.0/8 (others are direct clients)",
    );

    // From the balancer's address: the header is believed.
    let mut balanced = connect_from("127.0.0.1", server.addr);
    balanced.write_all(&v1_header("192.0.2.7", 54321)).unwrap();
    round_trip(&mut balanced, b"HeartBeat\n", b"OK\n");
    let line = server.wait_log("connected");
    assert!(
        line.contains("from 192.0.2.7:54321 connected via 127.0.0.1:"),
        "{line}"
    );

    // From another address: the same header is a line like any other, and
    // the client is known by its TCP address.
    let mut direct = connect_from("127.0.0.2", server.addr);
    let claimed = v1_header("192.0.2.66", 1);
    let mut expected = claimed.to_ascii_uppercase();
    expected.extend_from_slice(b"OK\n");
    let mut sent = claimed.clone();
    sent.extend_from_slice(b"HeartBeat\n");
    round_trip(&mut direct, &sent, &expected);
    let direct_addr = direct.local_addr().unwrap();
    let line = server.wait_log("connected");
    assert!(
        line.ends_with(&format!("from {direct_addr} connected")),
        "{line}"
    );

    // From the balancer's address without a header: refused, no reply.
    let mut headerless = connect_from("127.0.0.1", server.addr);
    headerless.write_all(b"HeartBeat\n").unwrap();
    headerless.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut headerless), b"");
    let line = server.wait_log("refused");
    assert!(
        line.contains("refused: no valid PROXY header: malformed"),
        "{line}"
    );
}

#[test]
fn an_untrusted_source_cannot_claim_local() {
    let server = ServerProcess::start(&["--proxy-protocol-from", "127.0.0.1"]);
    // A v2 LOCAL header from an untrusted address: its bytes are data (the
    // NUL and CR make no line end), so the heartbeat after its LF is
    // answered, and the connection logs at info level under its own address.
    let mut c = connect_from("127.0.0.2", server.addr);
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(b"\nHeartBeat\n");
    c.write_all(&local).unwrap();
    let line = server.wait_log("connected");
    assert!(
        line.contains("INFO") && line.contains("from 127.0.0.2:"),
        "{line}"
    );
}

#[test]
fn a_bad_network_is_a_usage_error() {
    for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/8,", "::/129"] {
        let output = Command::new(env!("CARGO_BIN_EXE_hb-server"))
            .args(["--listen", "127.0.0.1:0", "--proxy-protocol-from", bad])
            .stdin(Stdio::null())
            .output()
            .expect("run hb-server");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--proxy-protocol-from"), "{bad}: {stderr}");
    }
}
