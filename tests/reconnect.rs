//! `hb-client --reconnect` and `--connect-timeout` as real processes: the
//! backoff measured against nothing listening and against a listener that
//! accepts and closes, two clients out of lockstep, a connect timeout
//! against a listener whose backlog is full, riding through a real server's
//! restart, unanswered lines, stdin ending while disconnected, an
//! unresponsive server's exit code after the last attempt, `HB_RECONNECT`,
//! and the message when an idle timeout closes the connection.

mod common;

use common::{ClientProcess, PATIENCE, ServerProcess};
use crossbeam::channel::{self, Receiver};
use socket2::{Domain, Socket, Type};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How late past its drawn wait an attempt may come on a loaded 2-core
/// machine: process scheduling, a debug build, and the test's own threads
/// noticing the attempt.
const SLACK: Duration = Duration::from_millis(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `min(max, min x 2^(n-1))`, the formula's cap before attempt `n`.
fn cap(min: Duration, max: Duration, n: u32) -> Duration {
    (min * 2u32.pow(n - 1)).min(max)
}

/// An hb-client whose stderr lines are stamped with when the test read them.
struct TimedClient {
    child: Child,
    started: Instant,
    /// Held open: stdin's end would end a disconnected client.
    _stdin: ChildStdin,
    log: Receiver<(Instant, String)>,
}

impl TimedClient {
    fn start(addr: SocketAddr, args: &[&str]) -> TimedClient {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hb-client"))
            .args(["--connect", &addr.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hb-client");
        let stdin = child.stdin.take().expect("stdin piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, log) = channel::unbounded();
        thread::Builder::new()
            .name("test-stamped-lines".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn stderr reader");
        TimedClient {
            child,
            started,
            _stdin: stdin,
            log,
        }
    }

    /// Waits for exit within `limit`; returns the status, when the test saw
    /// it, and every stderr line.
    fn finish(mut self, limit: Duration) -> (ExitStatus, Instant, Vec<(Instant, String)>) {
        let status = common::wait_exit(&mut self.child, limit);
        let exited = Instant::now();
        let deadline = Instant::now() + PATIENCE;
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_deadline(deadline) {
            lines.push(line);
        }
        (status, exited, lines)
    }
}

/// The waits the client announced, `reconnecting in 0.123s (attempt n)`, in
/// order; checks that the attempt numbers count up from 1.
fn announced_waits(lines: &[(Instant, String)]) -> Vec<Duration> {
    let waits: Vec<(u32, Duration)> = lines
        .iter()
        .filter_map(|(_, line)| {
            let rest = line.split("reconnecting in ").nth(1)?;
            let (secs, rest) = rest.split_once("s (attempt ")?;
            let number = rest.strip_suffix(')')?.parse().ok()?;
            Some((number, Duration::from_secs_f64(secs.parse().ok()?)))
        })
        .collect();
    let numbers: Vec<u32> = waits.iter().map(|(n, _)| *n).collect();
    let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
    assert_eq!(numbers, expected, "attempt numbers: {lines:#?}");
    waits.into_iter().map(|(_, wait)| wait).collect()
}

/// A 127.0.0.1 port with nothing listening.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap()
}

/// A listener that accepts every connection and closes it at once; the
/// channel gets the time of each accept.
fn accept_and_close() -> (SocketAddr, Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel::unbounded();
    thread::Builder::new()
        .name("fake-accept-close".into())
        .spawn(move || {
            for connection in listener.incoming() {
                let accepted = Instant::now();
                drop(connection);
                if tx.send(accepted).is_err() {
                    return;
                }
            }
        })
        .expect("spawn fake server");
    (addr, rx)
}

/// Checks each measured gap against the formula's cap plus [`SLACK`], and
/// each announced wait against its cap.
fn assert_gaps_within_caps(
    times: &[Instant],
    announced: &[Duration],
    min: Duration,
    max: Duration,
) {
    for (i, pair) in times.windows(2).enumerate() {
        let n = i as u32 + 1;
        let gap = pair[1] - pair[0];
        let cap = cap(min, max, n);
        assert!(
            announced[i] <= cap,
            "attempt {n}: announced {:?} over the cap {cap:?}",
            announced[i]
        );
        assert!(
            gap <= cap + SLACK,
            "attempt {n} came {gap:?} after the one before, over the cap {cap:?} + {SLACK:?}"
        );
    }
}

#[test]
fn backoff_against_nothing_listening_follows_the_formula() {
    let (min, max, attempts) = (ms(100), ms(400), 6);
    let addr = closed_port();
    let client = TimedClient::start(
        addr,
        &[
            "--reconnect",
            "--reconnect-min",
            "100ms",
            "--reconnect-max",
            "400ms",
            "--reconnect-attempts",
            "6",
        ],
    );
    let started = client.started;
    let (status, exited, lines) = client.finish(PATIENCE);
    assert_eq!(status.code(), Some(1), "stderr: {lines:#?}");
    let last = &lines.last().expect("stderr lines").1;
    assert!(
        last.starts_with(&format!("hb-client: cannot connect to {addr}: ")),
        "last line: {last:?}"
    );
    // The refusals, each logged as its attempt fails: the first connect's,
    // then one per attempt.
    let refusals: Vec<Instant> = lines
        .iter()
        .filter(|(_, l)| l.contains("WARN") && l.contains("cannot connect to"))
        .map(|(at, _)| *at)
        .collect();
    let announced = announced_waits(&lines);
    assert_eq!(announced.len(), attempts, "stderr: {lines:#?}");
    assert_eq!(refusals.len(), attempts + 1, "stderr: {lines:#?}");
    assert_gaps_within_caps(&refusals, &announced, min, max);
    let waited: Duration = announced.iter().sum();
    assert!(
        exited - started >= waited,
        "exited {:?} after start, before the {waited:?} of announced waits",
        exited - started
    );
}

#[test]
fn accept_and_close_does_not_reset_the_counter() {
    let (min, max, attempts) = (ms(100), ms(800), 5);
    let (addr, accepts) = accept_and_close();
    let client = TimedClient::start(
        addr,
        &[
            "--reconnect",
            "--reconnect-min",
            "100ms",
            "--reconnect-max",
            "800ms",
            "--reconnect-attempts",
            "5",
        ],
    );
    let started = client.started;
    let (status, _, lines) = client.finish(PATIENCE);
    let accepted: Vec<Instant> = accepts.try_iter().collect();
    assert_eq!(status.code(), Some(1), "stderr: {lines:#?}");
    assert!(
        lines
            .last()
            .is_some_and(|(_, l)| l == "hb-client: server closed the connection"),
        "stderr: {lines:#?}"
    );
    // Reset by each accept, the counter would stay at attempt 1 and the
    // client would never give up.
    let announced = announced_waits(&lines);
    assert_eq!(announced.len(), attempts, "stderr: {lines:#?}");
    assert_eq!(accepted.len(), attempts + 1, "accepts: {accepted:?}");
    assert_gaps_within_caps(&accepted, &announced, min, max);
    let waited: Duration = announced.iter().sum();
    let last = *accepted.last().unwrap();
    assert!(
        last - started >= waited,
        "last accept {:?} after start, before the {waited:?} of announced waits",
        last - started
    );
}

#[test]
fn two_clients_started_together_do_not_attempt_in_lockstep() {
    let args = [
        "--reconnect",
        "--reconnect-min",
        "200ms",
        "--reconnect-max",
        "800ms",
        "--reconnect-attempts",
        "8",
    ];
    let (addr_a, accepts_a) = accept_and_close();
    let (addr_b, accepts_b) = accept_and_close();
    let a = TimedClient::start(addr_a, &args);
    let b = TimedClient::start(addr_b, &args);
    let (status_a, _, log_a) = a.finish(PATIENCE);
    let (status_b, _, log_b) = b.finish(PATIENCE);
    assert_eq!(status_a.code(), Some(1), "stderr: {log_a:#?}");
    assert_eq!(status_b.code(), Some(1), "stderr: {log_b:#?}");
    let offsets = |accepts: &Receiver<Instant>| -> Vec<Duration> {
        let times: Vec<Instant> = accepts.try_iter().collect();
        assert_eq!(times.len(), 9, "accepts: {times:?}");
        times.iter().map(|t| *t - times[0]).collect()
    };
    let (a, b) = (offsets(&accepts_a), offsets(&accepts_b));
    // In lockstep the offsets would differ by scheduling noise alone; with
    // independent full jitter they drift apart by hundreds of ms (a spread
    // this small by chance, simulated: about 1 run in 25,000).
    let apart = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    assert!(
        apart > ms(100),
        "attempts within {apart:?} of each other: {a:?} vs {b:?}"
    );
}

/// A listener that never accepts, with its accept queue full: the kernel
/// then drops further SYNs, on loopback too. Returns the connections that
/// fill it, to hold.
fn full_backlog() -> (Socket, SocketAddr, Vec<TcpStream>) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any.into()).expect("bind");
    listener.listen(1).expect("listen");
    let addr = listener
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an IP address");
    let mut held = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, ms(300)) {
            Ok(stream) => held.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, addr, held),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("64 connections did not fill a backlog of 1");
}

#[test]
fn connect_timeout_against_dropped_syns() {
    let (_listener, addr, _held) = full_backlog();
    let started = Instant::now();
    let mut client = ClientProcess::start(addr, &["--connect-timeout", "1s"]);
    let status = client.wait_exit(PATIENCE);
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(1), "stderr: {:?}", client.logged);
    assert!(elapsed >= ms(1000), "gave up early, after {elapsed:?}");
    assert!(
        elapsed <= ms(1000) + ms(1000),
        "gave up late, after {elapsed:?}"
    );
    let message = format!("hb-client: cannot connect to {addr}: timed out");
    assert!(
        client.logged.contains(&message),
        "stderr: {:?}",
        client.logged
    );
}

const QUICK_RECONNECT: [&str; 5] = [
    "--reconnect",
    "--reconnect-min",
    "100ms",
    "--reconnect-max",
    "400ms",
];

/// An hb-server on `addr` again, once the old one is gone.
fn restart_server(addr: SocketAddr) -> ServerProcess {
    ServerProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_hb-server")),
        &addr.to_string(),
        &[],
    )
}

#[test]
fn rides_through_a_server_restart() {
    let mut server = ServerProcess::start(&[]);
    let addr = server.addr;
    let mut client = ClientProcess::start(addr, &QUICK_RECONNECT);
    client.send(b"before\n");
    client.wait_output(b"BEFORE\n");
    server.signal("KILL");
    server.wait_exit(PATIENCE);
    client.wait_log("server closed the connection");
    client.wait_log("reconnecting in");
    let _restarted = restart_server(addr);
    client.wait_log(&format!("reconnected to {addr}"));
    client.send(b"after\n");
    client.wait_output(b"AFTER\n");
    let running = client.child.try_wait().expect("try_wait");
    assert!(running.is_none(), "client exited: {running:?}");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "BEFORE\nAFTER\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

#[test]
fn a_line_unanswered_at_the_loss_is_reported_and_not_resent() {
    // A server that reads one line and closes without answering it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let swallower = thread::Builder::new()
        .name("fake-swallow".into())
        .spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).expect("read");
            line
        })
        .expect("spawn fake server");
    let mut client = ClientProcess::start(addr, &QUICK_RECONNECT);
    client.send(b"lost\n");
    assert_eq!(swallower.join().expect("fake server"), "lost\n");
    client.wait_log("1 line(s) sent without a reply before the connection was lost");
    let _server = restart_server(addr);
    client.wait_log("reconnected to");
    client.send(b"next\n");
    client.wait_output(b"NEXT\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "NEXT\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

#[test]
fn stdin_ending_while_disconnected_exits_0() {
    let mut client = ClientProcess::start(closed_port(), &QUICK_RECONNECT);
    client.wait_log("reconnecting in");
    client.close_stdin();
    let status = client.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    assert!(
        client.has_logged("stdin ended while disconnected"),
        "stderr: {:?}",
        client.logged
    );
}

#[test]
fn a_line_typed_while_disconnected_is_sent_after_reconnecting() {
    let addr = closed_port();
    let mut client = ClientProcess::start(addr, &QUICK_RECONNECT);
    client.wait_log("reconnecting in");
    client.send(b"waiting\n");
    let _server = restart_server(addr);
    client.wait_output(b"WAITING\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "WAITING\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

#[test]
fn an_idle_timeout_shorter_than_the_heartbeat_is_named() {
    let server = ServerProcess::start(&["--idle-timeout", "1s"]);
    let mut client = ClientProcess::start(server.addr, &["--heartbeat-idle", "5s"]);
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "stderr: {:?}", client.logged);
    let prefix = "hb-client: server closed the connection after ";
    let message = client
        .logged
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("stderr: {:?}", client.logged));
    // The client's silence clock starts when its connect returns, a moment
    // after the server stamped the connection's first activity, so the
    // silence it reports may be a millisecond short of the 1 s timeout.
    let silence: f64 = message[prefix.len()..]
        .split('s')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no silence in seconds: {message}"));
    assert!((0.9..3.0).contains(&silence), "{message}");
    assert!(
        message.ends_with(
            "s of silence, before the next heartbeat was due: if it keeps closing after \
             that much silence, an idle timeout on the path (the server's or a load \
             balancer's) is shorter than --heartbeat-idle 5s; set --heartbeat-idle below it"
        ),
        "{message}"
    );
}

#[test]
fn bad_reconnect_flags_give_exit_2() {
    let bad: [&[&str]; 4] = [
        &["--reconnect-min", "2s", "--reconnect-max", "1s"],
        &["--reconnect-min", "0"],
        &["--connect-timeout", "0"],
        &["--reconnect-attempts", "-1"],
    ];
    for args in bad {
        let mut client = ClientProcess::start(closed_port(), args);
        let status = client.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(2), "{args:?}: {:?}", client.logged);
    }
}

/// A server that accepts every connection and holds it, answering nothing;
/// the channel gets the time of each accept.
fn silent_server() -> (SocketAddr, Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel::unbounded();
    thread::Builder::new()
        .name("fake-silent".into())
        .spawn(move || {
            let mut held = Vec::new();
            for connection in listener.incoming() {
                held.push(connection);
                if tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        })
        .expect("spawn fake server");
    (addr, rx)
}

#[test]
fn an_unresponsive_server_is_retried_and_the_last_failure_gives_exit_3() {
    let (addr, accepts) = silent_server();
    let mut client = ClientProcess::start(
        addr,
        &[
            "--heartbeat-idle",
            "200ms",
            "--heartbeat-interval",
            "100ms",
            "--heartbeat-retries",
            "1",
            "--reconnect",
            "--reconnect-min",
            "100ms",
            "--reconnect-max",
            "100ms",
            "--reconnect-attempts",
            "2",
        ],
    );
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(3), "stderr: {:?}", client.logged);
    // The first connection and the two attempts, and no more.
    for n in 1..=3 {
        accepts
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("connection {n} not accepted: {:?}", client.logged));
    }
    assert!(accepts.try_recv().is_err(), "a fourth connection");
    assert!(
        client
            .logged
            .last()
            .is_some_and(|l| l.starts_with("hb-client: server unresponsive: nothing received for ")),
        "stderr: {:?}",
        client.logged
    );
}

#[test]
fn hb_reconnect_in_the_environment_turns_it_on_and_off() {
    let addr = closed_port();
    for (value, reconnects) in [("true", true), ("false", false)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hb-client"))
            .args(["--connect", &addr.to_string()])
            .env("HB_RECONNECT", value)
            .env("HB_RECONNECT_ATTEMPTS", "3")
            .env("HB_RECONNECT_MIN", "50ms")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hb-client");
        let log = common::lines_of(child.stderr.take().unwrap());
        let status = common::wait_exit(&mut child, PATIENCE);
        // The reader thread ends at stderr's EOF, closing the channel.
        let mut lines = Vec::new();
        while let Ok(line) = log.recv_timeout(PATIENCE) {
            lines.push(line);
        }
        assert_eq!(status.code(), Some(1), "HB_RECONNECT={value}: {lines:?}");
        assert_eq!(
            lines.iter().any(|l| l.contains("(attempt 3)")),
            reconnects,
            "HB_RECONNECT={value}: {lines:?}"
        );
    }
}

#[test]
fn a_malformed_address_is_not_retried() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hb-client"))
        .args(["--connect", "nonsense", "--reconnect"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hb-client");
    let log = common::lines_of(child.stderr.take().unwrap());
    let status = common::wait_exit(&mut child, Duration::from_secs(2));
    let mut lines = Vec::new();
    while let Ok(line) = log.recv_timeout(PATIENCE) {
        lines.push(line);
    }
    assert_eq!(status.code(), Some(1), "stderr: {lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some(
            "hb-client: cannot connect to nonsense: invalid socket address: the port is missing (expected HOST:PORT, e.g. 127.0.0.1:5005)"
        ),
        "stderr: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("reconnecting")),
        "{lines:?}"
    );
}

#[test]
fn the_rest_of_a_line_cut_by_the_loss_is_dropped() {
    // A server that reads the first 4 KiB piece of a long line and closes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let cutter = thread::Builder::new()
        .name("fake-cutter".into())
        .spawn(move || {
            use std::io::Read;
            let (mut stream, _) = listener.accept().expect("accept");
            let mut head = vec![0; 4096];
            stream.read_exact(&mut head).expect("read the line's start");
            head
        })
        .expect("spawn fake server");
    let mut client = ClientProcess::start(addr, &QUICK_RECONNECT);
    // Exactly one piece: 4096 bytes of a line whose LF has not come yet.
    client.send(&[b'a'; 4096]);
    assert_eq!(cutter.join().expect("fake server"), vec![b'a'; 4096]);
    client.wait_log("1 line(s) sent without a reply before the connection was lost");
    client.send(&[b'b'; 5000]);
    client.send(b"\nnext\n");
    let _server = restart_server(addr);
    client.wait_output(b"NEXT\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "NEXT\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

/// Issue 16: against a full server, and against one at its per-address
/// limit, each refusal is a failed attempt: the attempt numbers count up,
/// the waits stay under the doubling caps, and `--reconnect-attempts` ends
/// it with exit 1 and the server's words. (A refusal used to reset the
/// counter, so the client reconnected at attempt 1 forever.)
#[test]
fn refusals_are_failed_attempts_that_back_off() {
    let (min, max, attempts) = (ms(100), ms(800), 4);
    let cases = [
        (["--max-connections", "1"], "server full"),
        (
            ["--max-connections-per-ip", "1"],
            "too many connections from your address",
        ),
    ];
    for (args, reason) in cases {
        let server = ServerProcess::start(&args);
        let mut holder = common::connect(server.addr);
        common::round_trip(&mut holder, b"hold\n", b"HOLD\n");
        let client = TimedClient::start(
            server.addr,
            &[
                "--reconnect",
                "--reconnect-min",
                "100ms",
                "--reconnect-max",
                "800ms",
                "--reconnect-attempts",
                "4",
            ],
        );
        let (status, _, lines) = client.finish(PATIENCE);
        assert_eq!(status.code(), Some(1), "stderr: {lines:#?}");
        let refused = format!("refused by the server: {reason}");
        assert_eq!(
            lines.last().map(|(_, l)| l.as_str()),
            Some(format!("hb-client: {refused}").as_str()),
            "stderr: {lines:#?}"
        );
        let refusals: Vec<Instant> = lines
            .iter()
            .filter(|(_, l)| l.contains("WARN") && l.ends_with(&refused))
            .map(|(at, _)| *at)
            .collect();
        let announced = announced_waits(&lines);
        assert_eq!(announced.len(), attempts, "stderr: {lines:#?}");
        assert_eq!(refusals.len(), attempts + 1, "stderr: {lines:#?}");
        assert_gaps_within_caps(&refusals, &announced, min, max);
    }
}

/// Issue 16: a line typed while the server refuses is held, not printed
/// nor lost: it goes to each attempt, and once the server has room it is
/// answered. stdout holds that reply and nothing of the refusals.
#[test]
fn a_line_held_while_refused_is_answered_once_the_server_has_room() {
    let server = ServerProcess::start(&["--max-connections", "1"]);
    let mut holder = common::connect(server.addr);
    common::round_trip(&mut holder, b"hold\n", b"HOLD\n");
    let mut client = ClientProcess::start(
        server.addr,
        &[
            "--reconnect",
            "--reconnect-min",
            "50ms",
            "--reconnect-max",
            "100ms",
        ],
    );
    client.wait_log("refused by the server: server full");
    client.send(b"hello\n");
    // Two refusals after the line was typed: at least one attempt sent it.
    client.wait_log("refused by the server: server full");
    client.wait_log("refused by the server: server full");
    drop(holder);
    client.wait_output(b"HELLO\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    assert_eq!(String::from_utf8_lossy(&client.output), "HELLO\n");
    assert!(
        !client.has_logged("sent without a reply"),
        "a refused connection's line is not lost: {:?}",
        client.logged
    );
}
