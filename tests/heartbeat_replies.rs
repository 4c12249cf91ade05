//! What `hb-client` does with the replies to its heartbeats: against fake
//! servers (a std listener on 127.0.0.1:0 served by a test thread) that
//! answer heartbeats with other text, stdout carries exactly the replies to
//! the user's lines and a warning says once what the server did; with `-v`,
//! each heartbeat's round trip and a summary at exit are logged.

mod common;

use common::{ClientProcess, PATIENCE, ServerProcess};
use crossbeam::channel::{self, Receiver};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// The warning, word for word, for a server that echoes `HEARTBEAT`.
const WARNING: &str = "the server answered a heartbeat with \"HEARTBEAT\", not \"OK\": it does \
                       not speak this heartbeat protocol; treating any reply as a sign of life";

/// A fake server for one connection: each line is answered by `answer`
/// after `delay`; each heartbeat received is reported on the returned
/// channel. It closes when the client closes its sending side.
fn fake_server(delay: Duration, answer: fn(&[u8]) -> Vec<u8>) -> (SocketAddr, Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (heartbeat, heartbeats) = channel::unbounded();
    thread::Builder::new()
        .name("fake-server".into())
        .spawn(move || {
            let (stream, _) = listener.accept().expect("accept the client");
            serve(stream, delay, answer, &heartbeat);
        })
        .expect("spawn fake server");
    (addr, heartbeats)
}

fn serve(
    stream: TcpStream,
    delay: Duration,
    answer: fn(&[u8]) -> Vec<u8>,
    heartbeat: &channel::Sender<()>,
) {
    let mut writer = stream.try_clone().expect("clone fake server socket");
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { return };
        // The delay under test (the round trip's lower bound), not a
        // synchronisation.
        thread::sleep(delay);
        if writer.write_all(&answer(&line)).is_err() {
            return;
        }
        if line == b"HeartBeat" {
            let _ = heartbeat.send(());
        }
    }
}

/// The article's server, as seen by a line client: every line, `HeartBeat`
/// too, comes back uppercased.
fn uppercase_everything(line: &[u8]) -> Vec<u8> {
    [line.to_ascii_uppercase().as_slice(), b"\n"].concat()
}

/// hb-server's answers.
fn line_protocol(line: &[u8]) -> Vec<u8> {
    match line {
        b"HeartBeat" => b"OK\n".to_vec(),
        _ => uppercase_everything(line),
    }
}

fn wait_heartbeats(heartbeats: &Receiver<()>, n: usize, client: &mut ClientProcess) {
    for i in 0..n {
        if heartbeats.recv_timeout(PATIENCE).is_err() {
            let status = client.wait_exit(PATIENCE);
            panic!(
                "only {i} heartbeats answered; client {status}: {:?}",
                client.logged
            );
        }
    }
}

/// Heartbeats every 100 ms of silence; giving up would take 100 ms + 10 s.
const OFTEN: [&str; 6] = [
    "--heartbeat-idle",
    "100ms",
    "--heartbeat-interval",
    "10s",
    "--heartbeat-retries",
    "1",
];

#[test]
fn a_heartbeat_answered_with_other_text_is_never_printed_and_warned_once() {
    let (addr, heartbeats) = fake_server(Duration::ZERO, uppercase_everything);
    let mut client = ClientProcess::start(addr, &OFTEN);
    wait_heartbeats(&heartbeats, 2, &mut client);
    client.send(b"one\n");
    client.wait_output(b"ONE\n");
    wait_heartbeats(&heartbeats, 2, &mut client);
    client.send(b"HeartBeat\n");
    client.wait_output(b"HEARTBEAT\n");
    wait_heartbeats(&heartbeats, 3, &mut client);
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    assert_eq!(
        String::from_utf8_lossy(&client.output),
        "ONE\nHEARTBEAT\n",
        "stdout is exactly the replies to the user's lines"
    );
    let warnings: Vec<&String> = client
        .logged
        .iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per session: {:?}",
        client.logged
    );
    assert!(warnings[0].ends_with(WARNING), "warning: {:?}", warnings[0]);
    assert!(!client.has_logged("unresponsive"), "{:?}", client.logged);
}

/// Parses a duration as `{:.1?}` prints it: `950.3µs`, `200.4ms`, `1.2s`.
fn parse_debug_duration(text: &str) -> Duration {
    let units = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))
        .unwrap_or_else(|| panic!("not a duration: {text:?}"));
    let value: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text:?}"));
    Duration::from_secs_f64(value * scale)
}

/// The server's delay before each answer: the round trip's lower bound.
const DELAY: Duration = Duration::from_millis(200);
/// How much longer than [`DELAY`] a round trip may take on a loaded 2-core
/// machine: loopback and the client's threads.
const RTT_TOLERANCE: Duration = Duration::from_secs(1);

#[test]
fn with_v_each_round_trip_is_logged_and_summed_up_at_exit() {
    let (addr, heartbeats) = fake_server(DELAY, line_protocol);
    let mut args = OFTEN.to_vec();
    args.push("-v");
    let mut client = ClientProcess::start(addr, &args);
    let mut round_trips = Vec::new();
    for _ in 0..3 {
        let line = client.wait_log("heartbeat answered in ");
        let rtt = line.rsplit(' ').next().expect("a round trip");
        round_trips.push(parse_debug_duration(rtt));
    }
    wait_heartbeats(&heartbeats, 3, &mut client);
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    for rtt in &round_trips {
        assert!(
            *rtt >= DELAY,
            "round trip {rtt:?} shorter than the server's delay"
        );
        assert!(*rtt <= DELAY + RTT_TOLERANCE, "round trip {rtt:?}");
    }
    let summary = client
        .logged
        .iter()
        .find_map(|l| l.split_once("heartbeats: ").map(|(_, s)| s.to_string()))
        .unwrap_or_else(|| panic!("no summary at exit: {:?}", client.logged));
    // "N sent, M answered; round trip min A, median B, max C"
    let words: Vec<&str> = summary
        .split([' ', ',', ';'])
        .filter(|w| !w.is_empty())
        .collect();
    let [
        sent,
        "sent",
        answered,
        "answered",
        "round",
        "trip",
        "min",
        min,
        "median",
        median,
        "max",
        max,
    ] = words[..]
    else {
        panic!("summary: {summary:?}");
    };
    let (sent, answered): (u64, u64) = (sent.parse().unwrap(), answered.parse().unwrap());
    assert!(answered >= 3 && sent >= answered, "summary: {summary:?}");
    let (min, median, max) = (
        parse_debug_duration(min),
        parse_debug_duration(median),
        parse_debug_duration(max),
    );
    assert!(
        DELAY <= min && min <= median && median <= max,
        "summary: {summary:?}"
    );
    assert!(max <= DELAY + RTT_TOLERANCE, "summary: {summary:?}");
    assert_eq!(client.output, b"", "heartbeat replies are never printed");
}

#[test]
fn without_v_heartbeats_are_not_logged() {
    let server = ServerProcess::start(&["-v"]);
    let mut client = ClientProcess::start(server.addr, &OFTEN);
    for _ in 0..3 {
        server.wait_log("heartbeat answered");
    }
    client.send(b"done\n");
    client.wait_output(b"DONE\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    for line in ["heartbeat sent", "heartbeat answered", "heartbeats: "] {
        assert!(!client.has_logged(line), "{line:?} in {:?}", client.logged);
    }
}
