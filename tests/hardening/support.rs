//! What several hardening tests need beyond tests/common: the wire model to
//! compare replies against, a reproducible byte generator, and CPU time and
//! latency figures from /proc. (A server started through a wrapper such as
//! prlimit is tests/common's `ServerProcess::spawn`.)

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

/// The plain model of the protocol (the same as the protocol proptest's):
/// a-z uppercased, every exact `HeartBeat` line (LF or CRLF) replaced by `OK`.
pub fn model(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for line in input.split_inclusive(|&b| b == b'\n') {
        match line {
            b"HeartBeat\n" => out.extend_from_slice(b"OK\n"),
            b"HeartBeat\r\n" => out.extend_from_slice(b"OK\r\n"),
            _ => out.extend(line.iter().map(u8::to_ascii_uppercase)),
        }
    }
    out
}

/// xorshift64*: reproducible pseudo-random bytes without a dependency, so a
/// failing input can be regenerated from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Sends `chunks` from a named thread (so a large input cannot deadlock
/// against unread replies), half-closes, and returns everything the server
/// sent until EOF.
pub fn exchange(stream: TcpStream, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone client socket");
    let sender = thread::Builder::new()
        .name("test-sender".into())
        .spawn(move || {
            for chunk in chunks {
                writer.write_all(&chunk).expect("send chunk");
            }
            writer.shutdown(Shutdown::Write).expect("half-close");
        })
        .expect("spawn sender");
    let mut received = Vec::new();
    (&stream)
        .read_to_end(&mut received)
        .expect("read replies to EOF");
    sender.join().expect("sender panicked");
    received
}

/// CPU time (user + system) the process has used, from /proc/<pid>/stat.
#[cfg(target_os = "linux")]
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name, which is in parentheses and may hold
    // spaces; utime and stime are fields 14 and 15, in clock ticks.
    let after_comm = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on every Linux architecture Rust targets.
    Duration::from_millis(ticks * 10)
}

/// How many of the process's descriptors are numbered below `limit`: what
/// RLIMIT_NOFILE counts against. Descriptors inherited above it (cargo's
/// jobserver pipe, for one) take no slot.
#[cfg(target_os = "linux")]
pub fn fds_below(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|&fd| fd < limit)
        .count()
}

/// Latency figures of a set of round trips.
#[derive(Debug)]
pub struct Latencies {
    pub count: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    pub fn of(mut samples: Vec<Duration>) -> Latencies {
        assert!(!samples.is_empty(), "no latency samples");
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        Latencies {
            count: samples.len(),
            median: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} round trips: median {:?}, p99 {:?}, max {:?}",
            self.count, self.median, self.p99, self.max
        )
    }
}
