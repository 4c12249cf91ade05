//! tcp-heartbeat: long-lived TCP connections that notice dead peers.
//!
//! The server echoes lines (uppercased) and answers the `HeartBeat` line with
//! `OK`; connections idle longer than a timeout are closed by a reaper thread,
//! and TCP keepalive judges the network underneath. The client keeps its
//! connection alive with heartbeats and gives up on a server that stops
//! answering. The wire protocol is in `docs/protocol.md`.
//!
//! Map of the parts:
//! - [`server`]: the accept loop and shutdown, one thread per connection,
//!   the timeout queue and the reaper that closes idle connections, the
//!   article's heartbeat framing (`--compat seed`), and the Prometheus
//!   metrics with their `/metrics` endpoint.
//! - [`client`]: the client's coordinator and its threads, the heartbeat
//!   policy, the matching of replies to requests, the heartbeat round
//!   trips, `--reconnect` with its backoff policy, and the search for a
//!   path's idle timeout with the adaptive heartbeat built on it.
//! - What both share: [`protocol`] (the wire protocol's line handling, no
//!   I/O), [`sockopt`] (TCP keepalive and user timeout on every OS),
//!   [`config`] (command-line values both binaries parse), [`fdlimit`]
//!   (raising the open-file limit for 10,000+ connections), [`wake`]
//!   (waking a thread blocked on a socket, which differs on Windows) and
//!   [`tls`] (TLS on both ends, with rustls: certificates, handshakes, and
//!   how each side's threads share a session).
//!
//! The load generator behind `hb-bench` is not part of the library: it lives
//! with its binary (`src/bin/hb-bench/`) behind the default `bench` feature,
//! so the library and the daemons do not depend on tokio.

pub mod client;
pub mod config;
pub mod fdlimit;
pub mod protocol;
pub mod server;
pub mod sockopt;
pub mod tls;
pub mod wake;
