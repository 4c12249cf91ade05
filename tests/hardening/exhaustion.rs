//! Exhaustion of the process's resources: file descriptors (accept fails
//! with EMFILE) and threads (spawn fails with EAGAIN). The server must
//! neither crash nor spin, must say so once, and must recover by itself.

use crate::common::*;
use crate::support::{cpu_time, fds_below};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The descriptor limit the EMFILE test gives the server.
const NOFILE: usize = 64;

/// How much CPU the server may burn per second of wall time while it cannot
/// accept. The backoff (50 ms) makes it about 20 failed `accept` calls a
/// second, microseconds of CPU; 10% leaves room for the CPU accounting's
/// 10 ms tick and a loaded machine, and still fails a spinning loop (100%).
const MAX_CPU_SHARE_WHILE_FULL: f64 = 0.10;

/// How soon a freed descriptor must admit a waiting client: one accept
/// backoff (50 ms) plus the closing thread's exit, with 450 ms of tolerance
/// for a loaded 2-core CI machine.
const ADMIT_AFTER_FREE: Duration = Duration::from_millis(500);

#[cfg(target_os = "linux")]
#[test]
fn out_of_descriptors_the_server_backs_off_logs_once_and_recovers() {
    let mut prlimit = Command::new("prlimit");
    prlimit.args([
        &format!("--nofile={NOFILE}:{NOFILE}"),
        "--",
        env!("CARGO_BIN_EXE_hb-server"),
    ]);
    let mut server = ServerProcess::spawn(prlimit, "127.0.0.1:0", &["-q"]);
    let pid = server.pid();
    let spare = NOFILE - fds_below(pid, NOFILE);
    // Fill every spare descriptor with a served connection.
    let mut served: Vec<TcpStream> = (0..spare)
        .map(|i| {
            let mut c = connect(server.addr);
            round_trip(
                &mut c,
                format!("c{i}\n").as_bytes(),
                format!("C{i}\n").as_bytes(),
            );
            c
        })
        .collect();
    assert_eq!(fds_below(pid, NOFILE), NOFILE, "descriptor table not full");
    // These wait in the listen backlog: the server cannot accept them.
    let mut waiting: Vec<TcpStream> = (0..3).map(|_| connect(server.addr)).collect();
    for w in &mut waiting {
        w.set_nodelay(true).expect("set TCP_NODELAY");
        std::io::Write::write_all(w, b"waiting\n").expect("send to a waiting connection");
    }
    let logged = server.wait_log("accept failed");
    assert!(logged.contains("Too many open files"), "{logged}");

    // While full: no spinning, no more log lines.
    let (cpu_before, wall_before) = (cpu_time(pid), Instant::now());
    thread::sleep(Duration::from_secs(1)); // the interval measured, not synchronisation
    let (cpu, wall) = (cpu_time(pid) - cpu_before, wall_before.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "out of descriptors: {cpu:?} CPU in {wall:?} ({:.1}%)",
        share * 100.0
    );
    assert!(
        share < MAX_CPU_SHARE_WHILE_FULL,
        "server used {cpu:?} CPU in {wall:?}"
    );
    let repeats: Vec<String> = server
        .log
        .try_iter()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(
        repeats.is_empty(),
        "accept failure logged again in one burst: {repeats:?}"
    );
    for c in &mut served {
        round_trip(c, b"still served\n", b"STILL SERVED\n");
    }

    // Each freed descriptor lets one waiting connection in.
    for mut w in waiting {
        let freed = Instant::now();
        drop(served.pop());
        assert_eq!(read_n(&mut w, 8), b"WAITING\n");
        let waited = freed.elapsed();
        eprintln!(
            "out of descriptors: a waiting connection served {waited:?} after a descriptor freed"
        );
        assert!(
            waited < ADMIT_AFTER_FREE,
            "served {waited:?} after a descriptor freed"
        );
        served.push(w);
    }

    // A second burst is logged again, once.
    let mut extra = connect(server.addr);
    server.wait_log("accept failed");
    drop(served.pop());
    round_trip(&mut extra, b"extra\n", b"EXTRA\n");

    // Shutdown works with the descriptor table full: the self-connection
    // that wakes `accept` cannot be made, and the backoff's wait ends it.
    let _full = connect(server.addr);
    let start = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        start.elapsed()
    );
}

/// A user id with no other processes, so RLIMIT_NPROC counts only the
/// server's threads: derived from this test process's id, so two test runs
/// on one machine (engineers share it) never share a count.
fn unprivileged_uid() -> u32 {
    100_000 + std::process::id()
}

/// Whether this process runs as root (needed to start the server as another
/// user; root itself ignores RLIMIT_NPROC).
#[cfg(target_os = "linux")]
fn is_root() -> bool {
    proc_status(std::process::id(), "Uid") == 0
}

/// Thread creation fails for real: the server runs as an unprivileged user
/// whose RLIMIT_NPROC (which counts threads) allows two connection threads.
/// The third connection must get `ERR server busy`, the others stay served,
/// and a freed thread slot serves the next one.
#[cfg(target_os = "linux")]
#[test]
fn when_no_thread_can_be_started_the_connection_gets_server_busy() {
    use std::os::unix::process::CommandExt;
    if !is_root() {
        eprintln!(
            "SKIPPED: needs root to run the server as another user (root ignores RLIMIT_NPROC)"
        );
        return;
    }
    let uid = unprivileged_uid();
    let can_switch = Command::new("true").uid(uid).gid(uid).status();
    if !can_switch.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot run a process as uid {uid} here ({can_switch:?})");
        return;
    }
    // A copy any user can execute: the build directory may not be.
    let dir = std::env::temp_dir().join(format!("hb-nproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let binary = dir.join("hb-server");
    std::fs::copy(env!("CARGO_BIN_EXE_hb-server"), &binary).expect("copy hb-server");
    std::process::Command::new("chmod")
        .args(["-R", "a+rX", dir.to_str().expect("utf-8 temp path")])
        .status()
        .expect("chmod");
    // The threads a server has before any connection, counted on one that
    // runs without the limit (prlimit cannot lower another user's limits
    // without CAP_SYS_RESOURCE, which containers often drop).
    // Both with the metrics endpoint, whose thread counts too.
    let args = ["-q", "--metrics-listen", "127.0.0.1:0"];
    let threads = {
        let server = ServerProcess::start(&args);
        proc_status(server.pid(), "Threads")
    };
    let limit = threads + 2;
    let mut command = Command::new("prlimit");
    command
        .args([&format!("--nproc={limit}:{limit}"), "--"])
        .arg(&binary)
        .uid(uid)
        .gid(uid);
    let server = ServerProcess::spawn(command, "127.0.0.1:0", &args);
    let metrics = scrape::metrics_addr(&server);
    let pid = server.pid();
    assert_eq!(
        proc_status(pid, "Threads"),
        threads,
        "thread count at start"
    );

    let mut first = connect(server.addr);
    let mut second = connect(server.addr);
    round_trip(&mut first, b"one\n", b"ONE\n");
    round_trip(&mut second, b"two\n", b"TWO\n");
    let mut third = connect(server.addr);
    assert_eq!(read_to_eof(&mut third), b"ERR server busy\n");
    let logged = server.wait_log("cannot start a thread");
    assert!(
        logged.contains("Resource temporarily unavailable"),
        "{logged}"
    );
    round_trip(&mut first, b"still one\n", b"STILL ONE\n");
    round_trip(&mut second, b"still two\n", b"STILL TWO\n");
    let samples = scrape::scrape(metrics);
    let busy = scrape::value(&samples, "hb_connections_refused_total{reason=\"busy\"}");
    let accepted = scrape::value(&samples, "hb_connections_accepted_total");
    assert_eq!((busy, accepted), (1.0, 2.0), "refused busy, accepted");

    drop(first);
    wait_for("a thread slot to free up", || {
        proc_status(pid, "Threads") < limit
    });
    let mut fourth = connect(server.addr);
    round_trip(&mut fourth, b"four\n", b"FOUR\n");
    drop((second, fourth));
    wait_for("the thread count to return to its baseline", || {
        proc_status(pid, "Threads") == threads
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
