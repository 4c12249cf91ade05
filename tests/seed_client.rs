//! The article's own C++ client (reconstructed in
//! `../shared/seed/reconstructed`, built here with make and g++) against the
//! real `hb-server`: with `--compat seed` its unterminated `HeartBeat` is
//! answered `OK`, its lines come back uppercased and unmerged, and the
//! connection outlives the idle timeout; without it, its first heartbeat goes
//! unanswered until the server closes the connection for idleness. A killed
//! and a frozen seed client are noticed as in the line mode. The mode's rule
//! is also checked over plain TCP, with no compiler needed.
//!
//! The article's client spins a CPU in each of its two threads (non-blocking
//! stdin, and a heartbeat thread that polls the clock), so the tests take
//! turns: one seed client runs at a time.

mod common;

use common::netns::{have, skip};
use common::{PATIENCE, ServerProcess, chunks_of, round_trip, signal, wait_exit};
use crossbeam::channel::Receiver;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The client's output for "heartbeat sent [1]" (its first try), "reply
/// received" and "server disconnected".
const SENT_FIRST: &str = "发送心跳包[1]";
const REPLY_RECEIVED: &str = "收到服务端回应";
const SERVER_DISCONNECTED: &str = "服务端断开连接";
/// "heartbeat sent [" of a second or later try, and "timed out".
const RETRY: [&str; 4] = [
    "发送心跳包[2]",
    "发送心跳包[3]",
    "发送心跳包[4]",
    "发送心跳包[5]",
];
const TIMED_OUT: &str = "超时断开连接";

/// The client's `outtime`: it sends a heartbeat once the whole seconds of
/// its clock have moved on by more than this since the last reply, that is
/// between 1 and 2 s later.
const OUTTIME: &str = "1";
/// So a heartbeat period is at most this.
const PERIOD: Duration = Duration::from_secs(2);
/// The server's idle timeout: a period plus a second of slack for a loaded
/// machine (the client's clock check spins, but it must be scheduled).
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const IDLE_TIMEOUT_FLAG: &str = "3s";

/// How much earlier than the idle timeout a close may be measured: the test
/// sees the client's output a little after the server saw its heartbeat.
const EARLY: Duration = Duration::from_millis(100);
/// How much later: scheduling, on 2 cores shared with compilers and with
/// the seed client's own spinning threads.
const LATE: Duration = Duration::from_secs(1);

/// One seed client at a time (see the module doc).
fn take_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The built client, or `None` (after saying SKIPPED) when the sources, make
/// or g++ are missing. Built once per test run, in a copy of the folder
/// (the shared one may be read-only).
fn seed_client(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(client) => Some(client.clone()),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

fn build() -> Result<PathBuf, String> {
    for program in ["make", "g++", "stdbuf"] {
        if !have(program, "--version") {
            return Err(format!("{program} not found"));
        }
    }
    let sources = find_sources().ok_or("the seed client's sources (../shared/seed/reconstructed or tests/seed/reconstructed) not found")?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seed-client");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    for entry in std::fs::read_dir(&sources).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            let to = dir.join(path.file_name().expect("a file name"));
            std::fs::copy(&path, &to).map_err(|e| format!("copy {}: {e}", path.display()))?;
        }
    }
    let made = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .output()
        .map_err(|e| format!("run make: {e}"))?;
    assert!(
        made.status.success(),
        "make failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok(dir.join("client"))
}

/// `shared/seed/reconstructed` in the nearest folder above the project that
/// has it (`../shared` for a clone beside shared/, further up for a
/// worktree), else the copy in tests/seed/ (a clone on its own).
fn find_sources() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/seed/reconstructed"))
        .chain([manifest.join("tests/seed/reconstructed")])
        .find(|dir| dir.join("client.cpp").is_file())
}

/// The article's client connected to `server`, its stdout line-buffered
/// (`stdbuf -oL`, else its printf lines wait in a pipe's full buffer) and
/// collected as it comes. Killed on drop.
struct SeedClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Receiver<Vec<u8>>,
    output: String,
}

impl SeedClient {
    fn start(client: &Path, server: &ServerProcess) -> SeedClient {
        let port = server.addr.port().to_string();
        // host port outtime cnt difftime
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(client)
            .args(["127.0.0.1", &port, OUTTIME, "3", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the seed client");
        SeedClient {
            stdin: child.stdin.take().expect("stdin piped"),
            stdout: chunks_of(child.stdout.take().expect("stdout piped")),
            output: String::new(),
            child,
        }
    }

    fn send(&mut self, line: &str) {
        self.stdin
            .write_all(line.as_bytes())
            .expect("write to the seed client");
    }

    /// Waits until stdout so far holds `needle` `n` times; returns when.
    fn wait_for(&mut self, needle: &str, n: usize, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        while self.output.matches(needle).count() < n {
            let chunk = self
                .stdout
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("stdout lacks {n} x {needle:?}; got {:?}", self.output));
            self.output.push_str(&String::from_utf8_lossy(&chunk));
        }
        Instant::now()
    }

    /// Collects what else stdout holds, until EOF or `limit`.
    fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Ok(chunk) = self.stdout.recv_deadline(deadline) {
            self.output.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

impl Drop for SeedClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the server to log a connection's close; returns the reason and
/// when.
fn wait_close(server: &ServerProcess, limit: Duration) -> (String, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let line = server
            .log
            .recv_deadline(deadline)
            .unwrap_or_else(|_| panic!("the server logged no close within {limit:?}"));
        if let Some((_, reason)) = line.split_once(" closed: ") {
            return (reason.to_string(), Instant::now());
        }
    }
}

fn assert_no_close(server: &ServerProcess) {
    let closes: Vec<String> = server
        .log
        .try_iter()
        .filter(|l| l.contains(" closed: "))
        .collect();
    assert!(closes.is_empty(), "the server closed: {closes:?}");
}

#[test]
fn compat_seed_answers_the_seed_clients_heartbeats_past_the_idle_timeout() {
    let _turn = take_turn();
    let Some(client) =
        seed_client("compat_seed_answers_the_seed_clients_heartbeats_past_the_idle_timeout")
    else {
        return;
    };
    let mut server =
        ServerProcess::start(&["--compat", "seed", "--idle-timeout", IDLE_TIMEOUT_FLAG]);
    let mut seed = SeedClient::start(&client, &server);
    let connected = Instant::now();
    // A line right after each reply: the client's next heartbeat is at
    // least a second away, so the line's reply cannot meet a heartbeat's.
    for round in 1..=3 {
        seed.wait_for(REPLY_RECEIVED, round, PERIOD + PATIENCE);
        seed.send(&format!("line {round}\n"));
        seed.wait_for(&format!("LINE {round}\n"), 1, PATIENCE);
    }
    let survive = IDLE_TIMEOUT + PERIOD * 3;
    let mut replies = 3;
    while connected.elapsed() < survive {
        replies += 1;
        seed.wait_for(REPLY_RECEIVED, replies, PERIOD + LATE);
    }
    seed.send("last\n");
    seed.wait_for("LAST\n", 1, PATIENCE);
    assert_no_close(&server);
    assert!(
        seed.child.try_wait().expect("try_wait").is_none(),
        "the seed client exited: {:?}",
        seed.output
    );
    for unwanted in RETRY
        .iter()
        .chain(&["HEARTBEAT", TIMED_OUT, SERVER_DISCONNECTED])
    {
        assert!(
            !seed.output.contains(unwanted),
            "{unwanted:?} in {:?}",
            seed.output
        );
    }
    assert_eq!(
        seed.output.matches(SENT_FIRST).count(),
        replies,
        "{:?}",
        seed.output
    );
    let lines: Vec<&str> = seed.output.lines().filter(|l| l.is_ascii()).collect();
    assert_eq!(
        lines,
        ["LINE 1", "LINE 2", "LINE 3", "LAST"],
        "unmerged: {:?}",
        seed.output
    );
    signal(seed.child.id(), "KILL");
    let killed = Instant::now();
    let (reason, noticed) = wait_close(&server, PATIENCE);
    assert_eq!(reason, "peer_closed");
    assert!(
        noticed - killed <= LATE,
        "killed client noticed after {:?}",
        noticed - killed
    );
    server.signal("TERM");
    server.wait_exit(PATIENCE);
    let summary = server.wait_log("shut down:");
    let counted: usize = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" heartbeats answered")?.parse().ok())
        .unwrap_or_else(|| panic!("summary: {summary:?}"));
    assert!(
        counted >= replies,
        "{counted} heartbeats counted, {replies} answered: {summary}"
    );
}

#[test]
fn without_compat_the_seed_clients_first_heartbeat_goes_unanswered() {
    let _turn = take_turn();
    let Some(client) =
        seed_client("without_compat_the_seed_clients_first_heartbeat_goes_unanswered")
    else {
        return;
    };
    let server = ServerProcess::start(&["--idle-timeout", IDLE_TIMEOUT_FLAG]);
    let mut seed = SeedClient::start(&client, &server);
    let sent = seed.wait_for(SENT_FIRST, 1, PERIOD + PATIENCE);
    // The unterminated HeartBeat is held as the start of a line, so nothing
    // answers it; its bytes were the last activity, and the reaper closes
    // the connection one idle timeout later.
    let (reason, closed) = wait_close(&server, IDLE_TIMEOUT + PATIENCE);
    assert_eq!(reason, "idle_timeout");
    let after = closed - sent;
    assert!(after + EARLY >= IDLE_TIMEOUT, "closed after {after:?}");
    assert!(after <= IDLE_TIMEOUT + LATE, "closed after {after:?}");
    // Its heartbeat thread, blocked in read, sees the close.
    seed.wait_for(SERVER_DISCONNECTED, 1, PATIENCE);
    let status = wait_exit(&mut seed.child, PATIENCE);
    seed.drain(PATIENCE);
    assert!(status.success(), "seed client: {status}");
    assert!(!seed.output.contains(REPLY_RECEIVED), "{:?}", seed.output);
    assert_eq!(
        seed.output.matches(SENT_FIRST).count(),
        1,
        "{:?}",
        seed.output
    );
}

#[test]
fn compat_seed_notices_a_frozen_seed_client_at_the_idle_timeout() {
    let _turn = take_turn();
    let Some(client) = seed_client("compat_seed_notices_a_frozen_seed_client_at_the_idle_timeout")
    else {
        return;
    };
    let server = ServerProcess::start(&["--compat", "seed", "--idle-timeout", IDLE_TIMEOUT_FLAG]);
    let mut seed = SeedClient::start(&client, &server);
    let last = seed.wait_for(REPLY_RECEIVED, 1, PERIOD + PATIENCE);
    signal(seed.child.id(), "STOP");
    let (reason, noticed) = wait_close(&server, IDLE_TIMEOUT + PATIENCE);
    signal(seed.child.id(), "CONT");
    assert_eq!(reason, "idle_timeout");
    let after = noticed - last;
    assert!(
        after + EARLY >= IDLE_TIMEOUT,
        "frozen client noticed after {after:?}"
    );
    assert!(
        after <= IDLE_TIMEOUT + LATE,
        "frozen client noticed after {after:?}"
    );
}

#[test]
fn compat_seed_over_tcp_answers_an_unterminated_heartbeat_read_ok_and_lines_as_lines() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hb-server"));
    command.env("HB_COMPAT", "seed").arg("-v");
    let server = ServerProcess::spawn(command, "127.0.0.1:0", &[]);
    let mut stream = common::connect(server.addr);
    stream.set_nodelay(true).expect("nodelay");
    server.wait_log(" connected");
    // Each reply is read to its last byte before the next request, so an
    // `OK` followed by a line end would show in the next reply.
    round_trip(&mut stream, b"hello\n", b"HELLO\n");
    round_trip(&mut stream, b"HeartBeat", b"OK");
    server.wait_log("heartbeat answered");
    round_trip(&mut stream, b"two\n", b"TWO\n");
    round_trip(&mut stream, b"HeartBeat\n", b"OK\n");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(
        common::read_to_eof(&mut stream),
        b"",
        "nothing after the last reply"
    );
}
