//! Issue 10 tests 1 to 3 through a real HAProxy running deploy/haproxy.cfg:
//! the PROXY protocol (both versions) and the per-address limit; backend
//! failover and a rolling restart with reconnecting clients.

use super::common::*;
use super::haproxy::{Haproxy, ProxyVersion};
use super::support::connect_from;

#[test]
fn proxy_protocol_through_haproxy_logs_the_clients_own_address() {
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let server = ServerProcess::start(&["--proxy-protocol", "--max-connections-per-ip", "1"]);
        // Both of HAProxy's backends are this one server, so the limit sees
        // every connection.
        let test = "proxy_protocol_through_haproxy_logs_the_clients_own_address";
        let Some(haproxy) = Haproxy::start(test, [server.addr, server.addr], version) else {
            return;
        };
        let mut client = connect_from("127.0.0.2", haproxy.frontend);
        round_trip(&mut client, b"hello\n", b"HELLO\n");
        let own = client.local_addr().unwrap();
        let line = server.wait_log(&format!("from {own} connected via 127.0.0.1:"));
        assert!(line.contains("INFO"), "{version:?}: {line}");

        let mut second = connect_from("127.0.0.2", haproxy.frontend);
        assert_eq!(
            String::from_utf8_lossy(&read_to_eof(&mut second)),
            "ERR too many connections from your address\n",
            "{version:?}: a second connection from {}",
            own.ip()
        );
        let refused = second.local_addr().unwrap();
        server.wait_log(&format!(
            "from {refused} refused: too many connections from this address"
        ));

        let mut other = connect_from("127.0.0.3", haproxy.frontend);
        round_trip(&mut other, b"another\n", b"ANOTHER\n");
        let other_addr = other.local_addr().unwrap();
        server.wait_log(&format!("from {other_addr} connected via 127.0.0.1:"));
        round_trip(&mut client, b"still served\n", b"STILL SERVED\n");
    }
}

/// HAProxy checks each backend every second here (every 2 s by default):
/// at the default log level those checks leave no line.
#[test]
fn health_checks_do_not_flood_the_log() {
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let quiet = ServerProcess::start(&["--proxy-protocol"]);
        let verbose = ServerProcess::start(&["--proxy-protocol", "-v"]);
        let test = "health_checks_do_not_flood_the_log";
        let Some(_haproxy) = Haproxy::start(test, [quiet.addr, verbose.addr], version) else {
            return;
        };
        for _ in 0..3 {
            let line = verbose.wait_log("connected");
            assert!(
                line.contains("DEBUG") && !line.contains("via"),
                "{version:?}: {line}"
            );
        }
        let logged: Vec<String> = quiet.log.try_iter().collect();
        let about_connections: Vec<&String> =
            logged.iter().filter(|l| l.contains("conn ")).collect();
        assert!(
            about_connections.is_empty(),
            "{version:?}: health checks logged at the default level: {about_connections:?}"
        );
    }
}
