//! Issue 10 tests 1 to 3 through a real HAProxy running deploy/haproxy.cfg:
//! the PROXY protocol (both versions) and the per-address limit; backend
//! failover and a rolling restart with reconnecting clients.

use super::common::*;
use super::haproxy::{Haproxy, ProxyVersion};
use super::support::connect_from;
use std::thread;
use std::time::{Duration, Instant};

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

/// The index of the first of `servers` to log a line containing `needle`.
fn first_to_log(servers: &[&ServerProcess], needle: &str) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (i, server) in servers.iter().enumerate() {
            if server.log.try_iter().any(|line| line.contains(needle)) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no server logged {needle:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Reconnect quickly, so the test does not wait out the default backoff.
const QUICK_RECONNECT: [&str; 5] = [
    "--reconnect",
    "--reconnect-min",
    "200ms",
    "--reconnect-max",
    "1s",
];

/// Issue 10 test 1: the backend a reconnecting client is on is killed;
/// the client comes back through HAProxy on the other one, and HAProxy's
/// stats show the killed one DOWN.
#[test]
fn backend_failover_through_haproxy() {
    let mut backends = [
        ServerProcess::start(&["--proxy-protocol"]),
        ServerProcess::start(&["--proxy-protocol"]),
    ];
    let test = "backend_failover_through_haproxy";
    let addrs = [backends[0].addr, backends[1].addr];
    let Some(haproxy) = Haproxy::start(test, addrs, ProxyVersion::V2) else {
        return;
    };
    let mut client = ClientProcess::start(haproxy.frontend, &QUICK_RECONNECT);
    client.send(b"before\n");
    client.wait_output(b"BEFORE\n");
    let on = first_to_log(&[&backends[0], &backends[1]], "connected via");
    let other = 1 - on;
    let killed = Instant::now();
    backends[on].signal("KILL");
    backends[on].wait_exit(PATIENCE);
    client.wait_log(&format!("reconnected to {}", haproxy.frontend));
    backends[other].wait_log("connected via");
    client.send(b"after\n");
    client.wait_output(b"AFTER\n");
    let name = ["hb1", "hb2"][on];
    let down = haproxy.wait_status(name, "DOWN");
    println!(
        "HAProxy marked the killed backend DOWN {:?} after SIGKILL (inter 1s fall 2)",
        down - killed
    );
    assert_eq!(haproxy.status(["hb1", "hb2"][other]).as_deref(), Some("UP"));
    let running = client.child.try_wait().expect("try_wait");
    assert!(running.is_none(), "client exited: {running:?}");
    client.close_stdin();
    assert_eq!(
        client.wait_exit(PATIENCE).code(),
        Some(0),
        "{:?}",
        client.logged
    );
    assert_eq!(String::from_utf8_lossy(&client.output), "BEFORE\nAFTER\n");
}

/// One rolling-restart client: its stdin (fed by the test) and how many
/// lines were written to it.
struct Typist {
    client: ClientProcess,
    sent: usize,
}

/// Issue 10 test 2: 200 reconnecting clients through HAProxy, each sending
/// a line every 500 ms; one backend drains over 4 s. No client exits, every
/// line is answered or reported unanswered, the reconnects are spread over
/// the drain, and at the end every client is on the other backend.
#[test]
fn rolling_restart_with_drain_through_haproxy() {
    const CLIENTS: usize = 200;
    let mut draining = ServerProcess::start(&["--proxy-protocol", "--drain", "4s"]);
    let staying = ServerProcess::start(&["--proxy-protocol", "--drain", "4s"]);
    let test = "rolling_restart_with_drain_through_haproxy";
    let Some(haproxy) = Haproxy::start(test, [draining.addr, staying.addr], ProxyVersion::V2)
    else {
        return;
    };
    let mut typists: Vec<Typist> = (0..CLIENTS)
        .map(|_| Typist {
            client: ClientProcess::start(haproxy.frontend, &["--reconnect"]),
            sent: 0,
        })
        .collect();
    for (i, t) in typists.iter_mut().enumerate() {
        t.client.send(format!("c{i} first\n").as_bytes());
        t.sent += 1;
        t.client.wait_output(format!("C{i} FIRST\n").as_bytes());
    }
    let on_draining = haproxy.sessions("hb1").expect("hb1's sessions");
    assert!(on_draining > 0, "leastconn put no client on hb1");
    let signalled = Instant::now();
    draining.signal("TERM");
    // A line from every client every 500 ms, through the drain and 2 s past
    // its end, so that every reconnected client is heard on its new backend.
    let mut round = 0;
    while signalled.elapsed() < Duration::from_secs(7) {
        round += 1;
        for (i, t) in typists.iter_mut().enumerate() {
            t.client.send(format!("c{i} line {round}\n").as_bytes());
            t.sent += 1;
        }
        for t in typists.iter_mut() {
            let running = t.client.child.try_wait().expect("try_wait");
            assert!(
                running.is_none(),
                "a client exited: {running:?}, {:?}",
                t.client.logged
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        draining.wait_exit(PATIENCE).code(),
        Some(0),
        "the drained backend's exit"
    );
    assert_eq!(
        haproxy.sessions("hb1"),
        Some(0),
        "sessions left on the drained backend"
    );
    assert_eq!(
        haproxy.sessions("hb2"),
        Some(CLIENTS as u64),
        "every client on the other backend"
    );
    let mut reconnects_per_second: std::collections::BTreeMap<String, usize> = Default::default();
    let mut reconnected = 0;
    for t in typists.iter_mut() {
        t.client.close_stdin();
        let status = t.client.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(0), "{:?}", t.client.logged);
        let answered = t.client.output.iter().filter(|&&b| b == b'\n').count();
        let unanswered: usize = t
            .client
            .logged
            .iter()
            .filter_map(|l| unanswered_in(l))
            .sum();
        assert_eq!(
            answered + unanswered,
            t.sent,
            "{answered} answered + {unanswered} reported unanswered != {} sent; {:?}",
            t.sent,
            t.client.logged
        );
        for line in t
            .client
            .logged
            .iter()
            .filter(|l| l.contains("reconnected to"))
        {
            // env_logger stamps whole seconds: [2026-12-03T15:40:08Z INFO ]
            let second = line.split(' ').next().unwrap_or_default().to_string();
            *reconnects_per_second.entry(second).or_default() += 1;
            reconnected += 1;
        }
    }
    assert!(
        reconnected >= on_draining as usize,
        "{reconnected} reconnects for {on_draining} drained clients"
    );
    let busiest = reconnects_per_second.values().copied().max().unwrap_or(0);
    println!("{reconnected} reconnects per second: {reconnects_per_second:?}");
    assert!(
        busiest * 100 <= reconnected * 40,
        "{busiest} of {reconnected} reconnects in one second: {reconnects_per_second:?}"
    );
}

/// N in a client's `N line(s) sent without a reply ...` line.
fn unanswered_in(line: &str) -> Option<usize> {
    let (before, _) = line.split_once(" line(s) sent without a reply")?;
    before.rsplit(' ').next()?.parse().ok()
}
