//! Shared helpers for the integration tests: start the real server (as a
//! process or in-process on 127.0.0.1:0), connect to it, and wait for things
//! with a deadline that fails loudly instead of hanging.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

pub mod netns;
pub mod scrape;
pub mod tls;

use crossbeam::channel::{self, Receiver};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tcp_heartbeat::server::compat::Compat;
use tcp_heartbeat::server::{Server, ServerConfig};
use tcp_heartbeat::sockopt::SocketOptions;

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// An in-process server on 127.0.0.1:0.
pub fn start_server(idle_timeout: Option<Duration>, max_connections: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let config = ServerConfig {
        idle_timeout,
        max_connections,
        socket_options: SocketOptions::default(),
        compat: Compat::None,
        proxy_protocol: false,
        max_connections_per_ip: 0,
        tls: None,
    };
    Server::start(listener, config).expect("start server")
}

/// A connection whose reads fail after [`PATIENCE`] instead of hanging.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to server");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads exactly `len` bytes.
pub fn read_n(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).expect("read reply");
    buf
}

/// Sends `request` and checks that exactly `reply` comes back.
pub fn round_trip(stream: &mut TcpStream, request: &[u8], reply: &[u8]) {
    stream.write_all(request).expect("send request");
    assert_eq!(
        String::from_utf8_lossy(&read_n(stream, reply.len())),
        String::from_utf8_lossy(reply)
    );
}

/// Reads until EOF; returns what came.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("read to EOF");
    buf
}

/// Polls `condition` until it holds, failing with `what` after [`PATIENCE`].
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `hb-server` binary, started with `args` on 127.0.0.1:0.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// stderr, line by line, as the server logs.
    pub log: Receiver<String>,
    /// stdout after its first line (`metrics on ...` with `--metrics-listen`).
    pub stdout: Receiver<String>,
}

impl ServerProcess {
    /// The build under test (see [`launcher`]), on 127.0.0.1:0.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::spawn(
            launcher("HB_TEST_SERVER_CMD", env!("CARGO_BIN_EXE_hb-server")),
            "127.0.0.1:0",
            args,
        )
    }

    /// The Linux build of this checkout, whatever the launcher says: for the
    /// Windows build's client to face a server the test can freeze.
    pub fn start_native(args: &[&str]) -> ServerProcess {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_hb-server")),
            "127.0.0.1:0",
            args,
        )
    }

    /// Starts `command` as hb-server listening on `listen`, and reads the
    /// address it bound. `command` is the binary itself or a wrapper that
    /// ends with it (`prlimit ... --`, `ip netns exec NS`).
    pub fn spawn(mut command: Command, listen: &str, args: &[&str]) -> ServerProcess {
        let mut child = command
            .args(["--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hb-server");
        let log = lines_of(child.stderr.take().expect("stderr piped"));
        let stdout = lines_of(child.stdout.take().expect("stdout piped"));
        let first = stdout.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let log: Vec<String> = log.try_iter().collect();
            panic!("hb-server did not print its address; stderr: {log:?}")
        });
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
        ServerProcess {
            child,
            addr,
            log,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, INT, KILL, STOP, CONT).
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Waits for exit, failing after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_exit(&mut self.child, limit)
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let line = self
                .log
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no log line containing {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `hb-client` binary connected to `addr`, its stdin held open until
/// [`close_stdin`](Self::close_stdin).
pub struct ClientProcess {
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// stdout, in the chunks it was read in.
    stdout: Receiver<Vec<u8>>,
    /// Everything read from stdout so far.
    pub output: Vec<u8>,
    /// stderr, line by line.
    log: Receiver<String>,
    /// Every stderr line read so far, for failure messages.
    pub logged: Vec<String>,
}

impl ClientProcess {
    /// The build under test (see [`launcher`]), connected to `addr`.
    pub fn start(addr: SocketAddr, args: &[&str]) -> ClientProcess {
        let command = launcher("HB_TEST_CLIENT_CMD", env!("CARGO_BIN_EXE_hb-client"));
        Self::spawn(command, addr, args)
    }

    /// Starts `command` as hb-client connected to `addr`: the binary itself
    /// or a wrapper that ends with it (`ip netns exec NS`).
    pub fn spawn(mut command: Command, addr: SocketAddr, args: &[&str]) -> ClientProcess {
        let mut child = command
            .args(["--connect", &addr.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hb-client");
        let stdin = child.stdin.take();
        let stdout = chunks_of(child.stdout.take().unwrap());
        let log = lines_of(child.stderr.take().unwrap());
        ClientProcess {
            child,
            stdin,
            stdout,
            output: Vec::new(),
            log,
            logged: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(bytes).expect("write to the client's stdin");
        stdin.flush().expect("flush the client's stdin");
    }

    /// Takes stdin, e.g. for a thread that types into it.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin already taken")
    }

    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_log(&mut self, needle: &str) -> String {
        self.wait_log_within(needle, PATIENCE)
    }

    /// Waits up to `limit` for a stderr line containing `needle`.
    pub fn wait_log_within(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let line = self.log.recv_deadline(deadline).unwrap_or_else(|_| {
                panic!(
                    "no client log line containing {needle:?}; got {:?}",
                    self.logged
                )
            });
            self.logged.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The next stderr line, or `None` if none comes before `deadline`.
    pub fn next_log(&mut self, deadline: Instant) -> Option<String> {
        let line = self.log.recv_deadline(deadline).ok()?;
        self.logged.push(line.clone());
        Some(line)
    }

    /// Waits until stdout so far ends with `expected`.
    pub fn wait_output(&mut self, expected: &[u8]) {
        let deadline = Instant::now() + PATIENCE;
        while !self.output.ends_with(expected) {
            let chunk = self.stdout.recv_deadline(deadline).unwrap_or_else(|_| {
                panic!(
                    "stdout did not end with {:?}; got {:?}",
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(&self.output)
                )
            });
            self.output.extend_from_slice(&chunk);
        }
    }

    /// Waits for exit, failing after `limit`; then collects the rest of
    /// stdout and stderr.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = wait_exit(&mut self.child, limit);
        let deadline = Instant::now() + PATIENCE;
        while let Ok(chunk) = self.stdout.recv_deadline(deadline) {
            self.output.extend_from_slice(&chunk);
        }
        while let Ok(line) = self.log.recv_deadline(deadline) {
            self.logged.push(line);
        }
        status
    }

    /// Whether a stderr line read so far contains `needle`.
    pub fn has_logged(&self, needle: &str) -> bool {
        self.logged.iter().any(|l| l.contains(needle))
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that starts a binary under test: the words of the
/// environment variable `var` when set (split at whitespace, e.g.
/// `/usr/lib/wine/wine64 Z:\\build\\hb-server.exe`, as `make test-windows`
/// sets `HB_TEST_SERVER_CMD` and `HB_TEST_CLIENT_CMD`), else `native`, the
/// binary cargo built. So the same tests run against the Windows build.
pub fn launcher(var: &str, native: &str) -> Command {
    match std::env::var(var) {
        Ok(words) if !words.trim().is_empty() => {
            let mut words = words.split_whitespace();
            let mut command = Command::new(words.next().expect("not empty"));
            command.args(words);
            command
        }
        _ => Command::new(native),
    }
}

/// Whether the binaries under test are another build, started through
/// [`launcher`] (under Wine, the Windows build).
pub fn other_build() -> bool {
    ["HB_TEST_SERVER_CMD", "HB_TEST_CLIENT_CMD"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

/// For a test that cannot run against another build: says so with `reason`
/// and returns true when one is under test.
pub fn skipped_on_other_build(test: &str, reason: &str) -> bool {
    if other_build() {
        println!("SKIPPED: {test}: not on the launcher's build: {reason}");
    }
    other_build()
}

/// The program's path on PATH, or `None` after printing the SKIPPED line
/// for `test`.
pub fn require(test: &str, program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        println!("SKIPPED: {test}: {program} not found");
    }
    found
}

/// Sends a signal by name (TERM, INT, KILL, STOP, CONT).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits for a child to exit, failing after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {limit:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A channel of the lines read from `source` by a named thread.
pub fn lines_of(source: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel::unbounded();
    thread::Builder::new()
        .name("test-lines".into())
        .spawn(move || {
            for line in BufReader::new(source).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .expect("spawn line reader");
    rx
}

/// A field of /proc/<pid>/status, such as `Threads` or `VmRSS` (in kB).
#[cfg(target_os = "linux")]
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// How many descriptors the process has open.
#[cfg(target_os = "linux")]
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .count()
}

/// A channel of the chunks read from `source` by a named thread; it closes
/// at EOF.
pub fn chunks_of(mut source: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = channel::unbounded();
    thread::Builder::new()
        .name("test-chunks".into())
        .spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = source.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        })
        .expect("spawn chunk reader");
    rx
}
