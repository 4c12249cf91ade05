//! Capacity and mass close at full size (issue 9): heavy, so `#[ignore]`d and
//! run one at a time by `make capacity`; the numbers they print are in
//! docs/benchmarks.md.
//!
//! - A mass close: 10,000 connections held by hb-bench, which is then killed,
//!   so every client socket closes at once. The queue must be empty
//!   afterwards, and the registry lock (which the acceptor and the reaper
//!   share with every close) held for well under 100 ms in total.
//! - Capacity: 19,900 heartbeating connections held for 60 s with 0 closed
//!   early, the echo p99 of 50 more clients meanwhile, and at the edge every
//!   refused connection told `ERR server full` or `ERR server busy` while the
//!   served ones carry on. 19,900 + 50 + the listener and std streams fit
//!   the 20,000 descriptors a process may hold on the machine of the issue.

mod common;

use common::*;
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Connecting 20,000 clients on a loaded 2-core machine takes a while.
const CONNECT_PATIENCE: Duration = Duration::from_secs(180);

/// Polls `condition` until it holds, failing with `what` after `limit`.
fn wait_long(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// hb-bench against `addr` with `args`, its JSON line on a pipe.
fn spawn_bench(addr: SocketAddr, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hb-bench"))
        .args(["--json", "--target", &addr.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hb-bench")
}

/// Waits for a `spawn_bench` run to end and parses its report.
fn report_of(child: Child) -> Value {
    let output = child.wait_with_output().expect("wait for hb-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("hb-bench printed no report ({e}): {stdout:?}"))
}

#[test]
#[ignore = "10,000 connections: run by `make capacity`"]
fn a_mass_close_of_10000_leaves_the_queue_empty_and_the_lock_barely_held() {
    const CONNS: usize = 10_000;
    tcp_heartbeat::fdlimit::raise_nofile_limit().expect("raise the open-file limit");
    let server = start_server(Some(Duration::from_secs(60)), CONNS + 100);
    let mut clients = spawn_bench(
        server.local_addr(),
        &["idle", "-c", "10000", "--heartbeat", "25s", "-d", "300s"],
    );
    wait_long("10,000 connections", CONNECT_PATIENCE, || {
        server.stats().open == CONNS
    });
    let held_before = server.registry_lock_held();
    let killed = Instant::now();
    clients.kill().expect("kill hb-bench");
    clients.wait().expect("reap hb-bench");
    wait_long("every connection to close", Duration::from_secs(60), || {
        server.stats().open == 0
    });
    let closed_in = killed.elapsed();
    let lock_time = server.registry_lock_held() - held_before;
    let stats = server.stats();
    println!(
        "mass close of {CONNS}: all closed {closed_in:?} after the kill; \
         registry lock held {lock_time:?} in total meanwhile; {} tracked after",
        stats.tracked
    );
    assert_eq!(stats.tracked, 0, "the queue must be empty");
    assert!(
        lock_time < Duration::from_millis(100),
        "registry lock held {lock_time:?} for {CONNS} closes"
    );
}

/// What a refused client reads: one of the two refusals, then EOF.
fn refusal(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect at the edge");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("a refusal, then EOF, within PATIENCE");
    String::from_utf8_lossy(&reply).into_owned()
}

/// The connections held: the 19,900, or `HB_CAPACITY_IDLE` to find
/// where a machine's own limits are (docs/benchmarks.md).
fn idle_connections() -> usize {
    std::env::var("HB_CAPACITY_IDLE").map_or(19_900, |v| {
        v.parse()
            .expect("HB_CAPACITY_IDLE: a number of connections")
    })
}

#[test]
#[ignore = "19,900 connections for 60 s: run by `make capacity`"]
fn holds_19900_heartbeating_connections_for_60s_and_refuses_cleanly_at_the_edge() {
    let idle_count = idle_connections();
    const ECHO: usize = 50;
    const EDGE_PROBES: usize = 20;
    let max = (idle_count + ECHO).to_string();
    let server = ServerProcess::start(&["-q", "--max-connections", &max]);
    let base_fds = open_fds(server.pid());
    let idle = spawn_bench(
        server.addr,
        &[
            "idle",
            "-c",
            &idle_count.to_string(),
            "--heartbeat",
            "25s",
            "-d",
            "60s",
        ],
    );
    wait_long("the idle connections", CONNECT_PATIENCE, || {
        open_fds(server.pid()) >= base_fds + idle_count
    });
    let echo = spawn_bench(server.addr, &["echo", "-c", "50", "-d", "50s"]);
    wait_long("the 50 echo clients", CONNECT_PATIENCE, || {
        open_fds(server.pid()) >= base_fds + idle_count + ECHO
    });
    let refusals: Vec<String> = (0..EDGE_PROBES).map(|_| refusal(server.addr)).collect();
    for reply in &refusals {
        assert!(
            reply == "ERR server full\n" || reply == "ERR server busy\n",
            "a refused client read {reply:?}"
        );
    }
    let threads = proc_status(server.pid(), "Threads");
    let rss_kib = proc_status(server.pid(), "VmRSS");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.pid()))
        .expect("read the server's maps")
        .lines()
        .count();
    println!(
        "capacity: the server holds {} descriptors, {threads} threads, {maps} memory maps, \
         {rss_kib} KiB RSS",
        open_fds(server.pid())
    );
    let echo = report_of(echo);
    let idle = report_of(idle);
    println!(
        "capacity: {} held of {idle_count} for 60 s, {} closed by the server ({} early), \
         {} failed connects, {} bad replies; echo of {ECHO} meanwhile: {} msg/s, \
         p50 {} us, p99 {} us, {} mismatches, {} I/O errors; \
         {EDGE_PROBES} refused at the edge: {:?}",
        idle["held"],
        idle["closed"],
        idle["early"],
        idle["failed_connects"],
        idle["bad_replies"],
        echo["throughput_per_s"],
        echo["latency"]["p50_us"],
        echo["latency"]["p99_us"],
        echo["mismatches"],
        echo["io_errors"],
        refusals.first()
    );
    // -q leaves warnings: a served connection closed by an error says why.
    let closes: Vec<String> = server
        .log
        .try_iter()
        .filter(|l| l.contains("closed:"))
        .collect();
    println!(
        "capacity: the server logged {} closes, the first: {:?}",
        closes.len(),
        closes.first()
    );
    assert_eq!(idle["held"], idle_count, "{idle}");
    assert_eq!(idle["closed"], 0, "{idle}");
    assert_eq!(idle["failed_connects"], 0, "{idle}");
    assert_eq!(idle["bad_replies"], 0, "{idle}");
    assert_eq!(echo["connected"], ECHO, "{echo}");
    assert_eq!(echo["mismatches"], 0, "{echo}");
    assert_eq!(echo["io_errors"], 0, "{echo}");
}

/// This process's CPU time so far, user and system: the in-process server's
/// threads, the test's own thread being asleep.
#[cfg(target_os = "linux")]
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage, for RUSAGE_SELF.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Issue 16's table: the server's CPU over 20 s, once past the first timeout
/// period, with N connections (held by hb-bench, another process) sending
/// `HeartBeat` every 5 s at evenly spread phases, the reaper on
/// (`--idle-timeout 15s`) and off; and the share of that time the registry
/// lock was held. The numbers are printed for docs/benchmarks.md; the test
/// checks only that nothing was reaped (the heartbeats keep every
/// connection alive) and that the 5 s heartbeats were answered. Run by
/// `make bench` (HB_REAPER_SIZES changes the sizes, e.g. "12000").
#[cfg(target_os = "linux")]
#[test]
#[ignore = "up to 24,000 sockets for minutes: run by `make bench`"]
fn reaper_cpu_with_heartbeating_connections_on_and_off() {
    const TIMEOUT: Duration = Duration::from_secs(15);
    const WINDOW: Duration = Duration::from_secs(20);
    tcp_heartbeat::fdlimit::raise_nofile_limit().expect("raise the open-file limit");
    let sizes: Vec<usize> = std::env::var("HB_REAPER_SIZES")
        .unwrap_or_else(|_| "5000 12000".into())
        .split_whitespace()
        .map(|n| n.parse().expect("HB_REAPER_SIZES: numbers"))
        .collect();
    for n in sizes {
        let mut cpu = Vec::new();
        for timeout in [None, Some(TIMEOUT)] {
            let server = start_server(timeout, n + 100);
            let hold = (CONNECT_PATIENCE + TIMEOUT + WINDOW).as_secs().to_string();
            let clients = spawn_bench(
                server.local_addr(),
                &[
                    "idle",
                    "-c",
                    &n.to_string(),
                    "--heartbeat",
                    "5s",
                    "-d",
                    &hold,
                ],
            );
            wait_long("the connections", CONNECT_PATIENCE, || {
                server.stats().open == n
            });
            // The measurement is the point of the wait: one timeout period
            // for the queue to reach its steady state, then the window.
            thread::sleep(TIMEOUT);
            let (cpu_before, lock_before, start) =
                (process_cpu(), server.registry_lock_held(), Instant::now());
            thread::sleep(WINDOW);
            let used = process_cpu() - cpu_before;
            let held = server.registry_lock_held() - lock_before;
            let wall = start.elapsed();
            let stats = server.stats();
            assert_eq!(stats.summary.reaped, 0, "heartbeating connections reaped");
            assert_eq!(stats.open, n, "connections lost during the window");
            let label = timeout.map_or("--idle-timeout 0".into(), |t| {
                format!("--idle-timeout {}s", t.as_secs())
            });
            println!(
                "{n} connections, {label}: server CPU {:.2} s over {:.1} s; registry lock held \
                 {:.1} ms ({:.4} % of the time)",
                used.as_secs_f64(),
                wall.as_secs_f64(),
                held.as_secs_f64() * 1e3,
                100.0 * held.as_secs_f64() / wall.as_secs_f64()
            );
            cpu.push(used);
            let mut clients = clients;
            clients.kill().expect("kill hb-bench");
            clients.wait().expect("reap hb-bench");
            drop(server);
        }
        println!(
            "{n} connections: reaper on / off = {:.2}",
            cpu[1].as_secs_f64() / cpu[0].as_secs_f64()
        );
    }
}
