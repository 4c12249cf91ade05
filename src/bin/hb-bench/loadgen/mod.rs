//! The load generator behind `hb-bench`: drives any server that speaks the
//! protocol (docs/protocol.md) and measures it.
//!
//! It is async (tokio) on purpose, unlike the server: one process must hold
//! 10,000+ connections and wake each within a millisecond of its timer, on a
//! machine whose two cores it shares with the server under test. A thread per
//! client would spend the cores it is meant to measure.
//!
//! Map:
//! - [`connect`]: opening connections, plain or TLS, spread over loopback
//!   source addresses when ports run short.
//! - [`echo`]: closed-loop or fixed-rate echo clients that verify every reply.
//! - [`idle`]: connections that heartbeat, then fall silent, and when the
//!   server closes them.
//! - [`churn`]: connect / heartbeat / close cycles.
//! - [`restart`]: connections that ride through a server restart with
//!   hb-client's backoff, and how the reconnects bunch up.
//! - [`latency`]: histograms and their summary.
//! - [`procstat`]: the server process's memory, CPU and context switches.
//! - [`progress`]: the progress bar on stderr.

pub mod churn;
pub mod connect;
pub mod echo;
pub mod idle;
pub mod latency;
pub mod procstat;
pub mod progress;
pub mod restart;

use std::io;
use std::net::SocketAddr;

/// Settings every mode shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// The server under test.
    pub target: SocketAddr,
    /// tokio worker threads of the load generator.
    pub threads: usize,
    /// The server's process id, to sample its memory and context switches
    /// (Linux only).
    pub server_pid: Option<u32>,
    /// Connect with TLS (`--tls-ca`).
    pub tls: Option<connect::Tls>,
}

/// Wall-clock milliseconds since the Unix epoch, so reports of runs in
/// different processes can be lined up (a sweep against echo windows).
fn unix_millis(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A multi-threaded runtime with named workers; dropping it joins them.
fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("hb-bench-worker")
        .enable_all()
        .build()
}
