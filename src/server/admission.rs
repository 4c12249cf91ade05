//! What an accepted connection passes before it is served: a PROXY header
//! when it comes from where one is expected (`--proxy-protocol`, or a
//! network of `--proxy-protocol-from`), whose source becomes the client's
//! address; then a place in that address's count (`--max-connections-per-ip`,
//! an IPv6 client counted by its prefix); then with `--tls-cert` a TLS
//! handshake, whose client certificate (with `--tls-client-ca`) names the
//! client in the log. Runs in the connection's own thread (a header or a
//! handshake may take seconds, which the accept loop cannot wait for). It
//! decides; [`super::outcome`] records.
//!
//! The PROXY header comes before the handshake: a load balancer passing TLS
//! through (HAProxy in TCP mode with `send-proxy-v2`) writes it in the clear
//! ahead of the client's bytes. The per-address limit comes before the
//! handshake too, so that one address's flood costs no handshakes; its
//! refusal is the plain `ERR` line, which hb-client recognises in place of
//! a handshake.

use super::address::{Subscriber, TrustedProxies};
use super::connection::{CloseReason, Connection, RefuseReason};
use super::per_ip::{AddressLimits, AddressSlot};
use crate::tls::HandshakeError;
use crate::tls::server::{ServerTls, handshake_deadline};
use std::time::Duration;

/// Sent to a connection from an address at `--max-connections-per-ip`.
pub const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERR too many connections from your address\n";

/// A connection let through: what came after its PROXY header, its place
/// in its address's count, given back when dropped, and its TLS session.
pub struct Admitted<'a> {
    pub early: Vec<u8>,
    pub address: AddressSlot<'a>,
    pub session: Option<Box<rustls::ServerConnection>>,
}

/// The TLS a connection must speak: the server's settings, and its idle
/// timeout, which bounds the handshake (see [`handshake_deadline`]).
#[derive(Clone, Copy)]
pub struct Tls<'a> {
    pub settings: &'a ServerTls,
    pub idle_timeout: Option<Duration>,
}

/// A connection turned away: why, what its log line adds, and the line the
/// client is sent (nothing for a bad PROXY header: whatever sent it is no
/// client of ours to talk to).
#[derive(Debug)]
pub struct Refusal {
    pub reason: RefuseReason,
    pub detail: Option<String>,
    pub reply: Vec<u8>,
}

impl Refusal {
    /// The per-address refusal of `subscriber`, naming an IPv6 prefix (to
    /// the client and in the log) when the limit counted one.
    fn per_ip(subscriber: Subscriber) -> Self {
        if !subscriber.is_network() {
            return Self {
                reason: RefuseReason::PerIp,
                detail: None,
                reply: TOO_MANY_FROM_ADDRESS.to_vec(),
            };
        }
        Self {
            reason: RefuseReason::PerIp,
            detail: Some(format!("its network {subscriber} holds the most allowed")),
            reply: format!("ERR too many connections from your network {subscriber}\n")
                .into_bytes(),
        }
    }

    /// A failed handshake: nothing is sent (the client expects TLS). The
    /// reaper closing it (idle timeout) means it did not finish in time;
    /// shutdown or a drain closing it is said as such.
    fn handshake(conn: &Connection, error: &HandshakeError) -> Self {
        let detail = match conn.closed_by() {
            Some(CloseReason::IdleTimeout) => "timed out".to_string(),
            Some(by) => format!("closed by {by} before it finished"),
            None => error.to_string(),
        };
        Self {
            reason: RefuseReason::TlsHandshake,
            detail: Some(detail),
            reply: Vec::new(),
        }
    }
}

/// Reads the PROXY header when `trusted` expects one from this peer, takes
/// a place in the client's count, then runs the TLS handshake when `tls`
/// is on (the client certificate's name goes to the connection, for its
/// connect line).
pub fn admit<'a>(
    conn: &Connection,
    trusted: &TrustedProxies,
    limits: &'a AddressLimits,
    tls: Option<Tls<'_>>,
) -> Result<Admitted<'a>, Refusal> {
    let mut early = Vec::new();
    if trusted.expects_header(conn.peer.ip()) {
        early = conn.read_proxy_header().map_err(|error| {
            let detail = match conn.closed_by() {
                Some(by) => format!("closed by {by} before its header arrived"),
                None => error.to_string(),
            };
            Refusal {
                reason: RefuseReason::ProxyHeader,
                detail: Some(detail),
                reply: Vec::new(),
            }
        })?;
    }
    let address = limits
        .claim(conn.client_addr().ip())
        .map_err(Refusal::per_ip)?;
    let mut session = None;
    if let Some(tls) = tls {
        let deadline = handshake_deadline(conn.started, tls.idle_timeout);
        let accepted = conn
            .accept_tls(tls.settings, &early, deadline)
            .map_err(|error| Refusal::handshake(conn, &error))?;
        early.clear();
        session = Some(accepted);
    }
    Ok(Admitted {
        early,
        address,
        session,
    })
}
