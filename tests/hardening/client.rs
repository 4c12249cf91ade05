//! The client side: fake servers (a std listener on 127.0.0.1:0 served by a
//! test thread) that send garbage, a line without end, a flood, or garbage
//! for a heartbeat's answer, and the real server refusing a connection.
//! hb-client must print what it got byte for byte (except a heartbeat's
//! answer, which it never prints), stay within bounded memory, and exit with
//! a clear error, never hang.

use crate::common::*;
use crate::support::Rng;
use crossbeam::channel::{self, Receiver};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How soon the client must exit once the server has closed: it sees EOF
/// within milliseconds; the rest is scheduling on a loaded 2-core machine.
const EXIT_PROMPTLY: Duration = Duration::from_secs(2);

/// A fake server: accepts one connection and runs `serve` on it in a named
/// thread. The returned channel gets `serve`'s result, so the test waits for
/// it with a deadline instead of a join that could hang.
fn fake_server<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = channel::bounded(1);
    thread::Builder::new()
        .name("fake-server".into())
        .spawn(move || {
            let (stream, _) = listener.accept().expect("accept the client");
            let _ = tx.send(serve(stream));
        })
        .expect("spawn fake server");
    (addr, rx)
}

#[test]
fn garbage_then_close_is_printed_as_is_and_exits_1() {
    let mut garbage = Rng::new(6).bytes(64 * 1024);
    garbage.extend_from_slice(b"\0\0\xff\xfe\xc3\x28\xed\xa0\x80\0OK\nOK");
    let sent = garbage.clone();
    let (addr, closed) = fake_server(move |mut stream| {
        stream.write_all(&sent).expect("send garbage");
    });
    let mut client = ClientProcess::start(addr, &[]);
    closed
        .recv_timeout(PATIENCE)
        .expect("fake server did not finish");
    let status = client.wait_exit(EXIT_PROMPTLY);
    assert_eq!(status.code(), Some(1), "stderr: {:?}", client.logged);
    assert!(
        client.output == garbage,
        "stdout differs from what the server sent at byte {:?} (got {} of {} bytes)",
        client.output.iter().zip(&garbage).position(|(a, b)| a != b),
        client.output.len(),
        garbage.len()
    );
    assert!(
        client.has_logged("hb-client: server closed the connection"),
        "stderr: {:?}",
        client.logged
    );
}

/// Issue 16: a refusal is not a reply. It never reaches stdout, stderr
/// says so in the server's words, and the exit code is 1.
#[test]
fn err_server_full_from_the_real_server_is_a_refusal_not_output() {
    let server = ServerProcess::start(&["--max-connections", "1"]);
    let mut holder = connect(server.addr);
    round_trip(&mut holder, b"hold\n", b"HOLD\n");
    let mut client = ClientProcess::start(server.addr, &[]);
    client.send(b"a line sent before the refusal is read\n");
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "stderr: {:?}", client.logged);
    assert_eq!(String::from_utf8_lossy(&client.output), "");
    assert!(
        client.has_logged("hb-client: refused by the server: server full"),
        "stderr: {:?}",
        client.logged
    );
}

/// Garbage answers to heartbeats, in turn: none starts like `OK`, one does
/// and then diverges, one is `OK` spelt backwards.
const GARBAGE_ANSWERS: [&[u8]; 3] = [b"\xff\0 not ok\n", b"OKAY\n", b"KO\n"];
/// Heartbeats answered with garbage before the server turns honest: 9 x
/// 200 ms idle, longer than the 1.2 s give-up time.
const GARBAGE_ROUNDS: usize = 9;

#[test]
fn garbage_answering_a_heartbeat_is_hidden_and_keeps_the_connection() {
    let (answered, answers) = channel::unbounded();
    let (addr, closed) = fake_server(move |stream| {
        let mut writer = stream.try_clone().expect("clone fake server socket");
        let mut lines = BufReader::new(stream).split(b'\n');
        let mut round = 0;
        while let Some(Ok(line)) = lines.next() {
            assert_eq!(line, b"HeartBeat", "the client sent only heartbeats");
            let answer: &[u8] = match GARBAGE_ANSWERS.get(round % 3) {
                Some(garbage) if round < GARBAGE_ROUNDS => garbage,
                _ => b"OK\n",
            };
            writer.write_all(answer).expect("answer the heartbeat");
            round += 1;
            let _ = answered.send(Instant::now());
        }
    });
    // Without the garbage resetting the timeline it would give up after
    // 200 ms + 1 x 1 s; the 1 s leaves room for an answer delayed by a
    // loaded machine.
    let args = [
        "--heartbeat-idle",
        "200ms",
        "--heartbeat-interval",
        "1s",
        "--heartbeat-retries",
        "1",
    ];
    let started = Instant::now();
    let mut client = ClientProcess::start(addr, &args);
    for round in 0..GARBAGE_ROUNDS {
        if answers.recv_timeout(PATIENCE).is_err() {
            let status = client.wait_exit(PATIENCE);
            panic!(
                "no heartbeat after {round} answers; client {status}: {:?}",
                client.logged
            );
        }
    }
    let span = started.elapsed();
    assert!(
        span >= Duration::from_millis(1800),
        "answered after {span:?}"
    );
    let early_exit = client.child.try_wait().expect("try_wait");
    assert!(early_exit.is_none(), "client exited: {early_exit:?}");
    client.close_stdin();
    closed
        .recv_timeout(PATIENCE)
        .expect("fake server did not see EOF");
    let status = client.wait_exit(EXIT_PROMPTLY);
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    assert_eq!(client.output, b"", "a heartbeat's answer is never shown");
    let warnings = client.logged.iter().filter(|l| l.contains("WARN")).count();
    assert_eq!(warnings, 1, "one warning per session: {:?}", client.logged);
    assert!(
        client.has_logged(r#"answered a heartbeat with "\xff\x00 not ok", not "OK""#),
        "{:?}",
        client.logged
    );
    assert!(!client.has_logged("unresponsive"), "{:?}", client.logged);
}

/// hb-client with its stdout left to the test to read fast, late or not at
/// all, and its stdin held open.
#[cfg(target_os = "linux")]
struct RawClient {
    child: Child,
    _stdin: ChildStdin,
    stdout: Option<ChildStdout>,
    log: Receiver<String>,
}

#[cfg(target_os = "linux")]
impl RawClient {
    fn start(addr: SocketAddr) -> RawClient {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hb-client"))
            .args(["--connect", &addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hb-client");
        let log = lines_of(child.stderr.take().expect("stderr piped"));
        let first = log
            .recv_timeout(PATIENCE)
            .expect("hb-client logged nothing");
        assert!(first.contains("connected to"), "first line: {first:?}");
        RawClient {
            _stdin: child.stdin.take().expect("stdin piped"),
            stdout: child.stdout.take(),
            child,
            log,
        }
    }

    fn rss_kb(&self) -> u64 {
        proc_status(self.child.id(), "VmRSS")
    }

    /// Raises `peak` to the client's RSS, unless it has already exited: the
    /// last bytes of stdout may come from a zombie, which has no VmRSS.
    fn sample_rss(&self, peak: &mut u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        let rss = status.ok().and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        });
        *peak = (*peak).max(rss.unwrap_or(0));
    }

    /// Reads stdout to EOF, checking it against `pattern` repeated and
    /// noting the client's peak RSS after each MiB in `rss_peak`; returns
    /// how many bytes came.
    fn read_all(&mut self, pattern: &[u8], rss_peak: &mut u64) -> usize {
        let twice = pattern.repeat(2);
        let chunks = chunks_of(self.stdout.take().expect("stdout already read"));
        let deadline = Instant::now() + PATIENCE;
        let mut received = 0;
        let mut next_sample = 0;
        loop {
            let chunk = match chunks.recv_deadline(deadline) {
                Ok(chunk) => chunk,
                Err(channel::RecvTimeoutError::Disconnected) => return received,
                Err(channel::RecvTimeoutError::Timeout) => {
                    panic!("stdout did not end; {received} bytes so far")
                }
            };
            // chunks_of reads at most 4 KiB, less than a pattern.
            let at = received % pattern.len();
            assert!(
                chunk == twice[at..at + chunk.len()],
                "stdout differs from what the server sent near byte {received}"
            );
            received += chunk.len();
            if received >= next_sample {
                self.sample_rss(rss_peak);
                next_sample += 1 << 20;
            }
        }
    }

    /// Waits for exit; returns the status and what was logged.
    fn exit(&mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_exit(&mut self.child, EXIT_PROMPTLY);
        (status, self.log.try_iter().collect())
    }
}

#[cfg(target_os = "linux")]
impl Drop for RawClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fake servers below stream: every byte value, 64 KiB long.
#[cfg(target_os = "linux")]
fn pattern(with_lf: bool) -> Vec<u8> {
    (0..=255u8)
        .filter(|&b| with_lf || b != b'\n')
        .cycle()
        .take(64 * 1024)
        .collect()
}

/// How far the client's RSS may rise above its level when connected while
/// it relays a stream: it holds a few socket chunks of 4 KiB in its queue
/// and one in hand, never the stream; the rest is allocator noise (glibc
/// per-thread arenas, measured at a few hundred kB).
#[cfg(target_os = "linux")]
const RSS_GROWTH_MAX_KB: u64 = 2048;

/// Full size in CI: about 2 s in a debug build.
#[cfg(target_os = "linux")]
#[test]
fn a_100_mb_line_without_end_is_printed_in_bounded_memory() {
    const SIZE: usize = 100 << 20;
    let line = pattern(false);
    let sent = line.clone();
    let (go, start) = channel::bounded::<()>(0);
    let (addr, closed) = fake_server(move |mut stream| {
        start.recv().expect("the test went away");
        for _ in 0..SIZE / sent.len() {
            stream.write_all(&sent).expect("stream the line");
        }
    });
    let mut client = RawClient::start(addr);
    let rss_before = client.rss_kb();
    let mut rss_peak = rss_before;
    let started = Instant::now();
    go.send(()).expect("fake server went away");
    let received = client.read_all(&line, &mut rss_peak);
    let took = started.elapsed();
    closed
        .recv_timeout(PATIENCE)
        .expect("fake server did not finish");
    let (status, logged) = client.exit();
    let growth = rss_peak - rss_before;
    eprintln!("100 MiB line to hb-client: printed in {took:?}, client RSS grew {growth} kB");
    assert_eq!(received, SIZE, "stdout is short");
    assert_eq!(status.code(), Some(1), "stderr: {logged:?}");
    assert!(growth < RSS_GROWTH_MAX_KB, "client RSS grew {growth} kB");
}

/// How long the flood lasts, and the most it sends: enough to show growth
/// without a fix, little enough not to take the shared machine's memory.
#[cfg(target_os = "linux")]
const FLOOD_FOR: Duration = Duration::from_secs(2);
#[cfg(target_os = "linux")]
const FLOOD_MAX: usize = 256 << 20;

/// A server writes as fast as it can while nobody reads the client's
/// stdout: pipe backpressure must reach the socket, so the client's memory
/// stays flat however long the flood goes on. Then stdout is read, and every
/// byte the server sent comes out.
#[cfg(target_os = "linux")]
#[test]
fn a_flood_while_stdout_is_not_read_stays_in_bounded_memory() {
    let flood = pattern(true);
    let twice = flood.repeat(2);
    let (go, start) = channel::bounded::<()>(0);
    let (addr, closed) = fake_server(move |mut stream| {
        // Short, so a blocked write notices the end of the flood.
        stream
            .set_write_timeout(Some(Duration::from_millis(50)))
            .expect("set write timeout");
        start.recv().expect("the test went away");
        let end = Instant::now() + FLOOD_FOR;
        let mut sent = 0;
        while Instant::now() < end && sent < FLOOD_MAX {
            let at = sent % flood.len();
            match stream.write(&twice[at..at + flood.len()]) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("flood write failed: {e}"),
            }
        }
        sent
    });
    let mut client = RawClient::start(addr);
    let rss_before = client.rss_kb();
    let mut rss_peak = rss_before;
    go.send(()).expect("fake server went away");
    // Samples the client's memory every 50 ms while the flood lasts.
    let sent = loop {
        match closed.recv_timeout(Duration::from_millis(50)) {
            Ok(sent) => break sent,
            Err(channel::RecvTimeoutError::Timeout) => client.sample_rss(&mut rss_peak),
            Err(e) => panic!("fake server failed: {e}"),
        }
    };
    let growth = rss_peak - rss_before;
    let received = client.read_all(&pattern(true), &mut rss_peak);
    let (status, logged) = client.exit();
    eprintln!(
        "flood into hb-client with stdout unread for {FLOOD_FOR:?}: server sent {sent} bytes, \
         client RSS grew {growth} kB"
    );
    assert!(growth < RSS_GROWTH_MAX_KB, "client RSS grew {growth} kB");
    assert_eq!(received, sent, "stdout lost or added bytes");
    assert_eq!(status.code(), Some(1), "stderr: {logged:?}");
}
