//! tcp-heartbeat: long-lived TCP connections that notice dead peers.
//!
//! The server echoes lines (uppercased) and answers the `HeartBeat` line with
//! `OK`; connections idle longer than a timeout are closed by a reaper thread,
//! and TCP keepalive judges the network underneath. The client keeps its
//! connection alive with heartbeats and gives up on a server that stops
//! answering. The wire protocol is in `docs/protocol.md`.
//!
//! Map of the modules:
//! - [`protocol`]: the line handling of the wire protocol, no I/O.
//! - [`timeout_queue`]: the FIFO of connections by last activity, pure data
//!   that takes `now` as an argument.
//! - [`reaper`]: the registry of live connections and the thread that closes
//!   expired ones.
//! - [`connection`]: one client's read/echo loop on the server.
//! - [`server`]: the accept loop, the connection limit and shutdown.
//! - [`heartbeat`]: the client's heartbeat policy, pure state that takes
//!   `now` as an argument.
//! - [`replies`]: matching the server's replies to the client's requests, so
//!   a heartbeat's `OK` is hidden; no I/O.
//! - [`client`]: the client's coordinator, its stdin reader and socket
//!   reader and writer threads, and its errors.
//! - [`sockopt`]: TCP keepalive and user timeout on every OS.
//! - [`config`]: command-line values shared by the binaries.
//! - [`fdlimit`]: raising the open-file limit for 10,000+ connections.
//! - [`loadgen`]: the load generator behind `hb-bench`.


pub mod client;
pub mod config;
pub mod fdlimit;
pub mod protocol;
pub mod server;
pub mod sockopt;
