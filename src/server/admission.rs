//! What an accepted connection passes before it is served: with
//! `--proxy-protocol` a PROXY header, whose source becomes the client's
//! address; then a place in that address's count (`--max-connections-per-ip`);
//! then with `--tls-cert` a TLS handshake, whose client certificate (with
//! `--tls-client-ca`) names the client in the log. A connection that fails
//! any of them is refused here, in its own thread (a header or a handshake
//! may take seconds, which the accept loop cannot wait for), and the
//! refusal is logged with its reason.
//!
//! The PROXY header comes before the handshake: a load balancer passing TLS
//! through (HAProxy in TCP mode with `send-proxy-v2`) writes it in the clear
//! ahead of the client's bytes. The per-address limit comes before the
//! handshake too, so that one address's flood costs no handshakes; its
//! refusal is the plain `ERR` line, which hb-client recognises in place of
//! a handshake.

use super::conn_log::{ConnLog, Event};
use super::connection::{CloseReason, Connection, RefuseReason};
use super::per_ip::{AddressLimits, AddressSlot};
use super::proxy_header::Source;
use crate::tls::server::{ServerTls, handshake_deadline};
use log::Level;
use std::time::Duration;

/// Sent to a connection from an address at `--max-connections-per-ip`.
pub const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERR too many connections from your address\n";

/// A connection let through: what came after its PROXY header, whether it
/// is the load balancer's health check, its place in its address's count,
/// given back when dropped, and its TLS session.
pub struct Admitted<'a> {
    pub early: Vec<u8>,
    pub health_check: bool,
    pub address: AddressSlot<'a>,
    pub session: Option<Box<rustls::ServerConnection>>,
}

/// What a connection must pass, from the server's configuration.
#[derive(Clone, Copy)]
pub struct Checks<'a> {
    pub proxy_protocol: bool,
    pub limits: &'a AddressLimits,
    pub tls: Option<&'a ServerTls>,
    /// Bounds the TLS handshake (see [`handshake_deadline`]).
    pub idle_timeout: Option<Duration>,
}

/// The level of a line about a connection that is `usual` for a client's:
/// debug for a health check.
pub fn log_level(health_check: bool, usual: Level) -> Level {
    if health_check { Level::Debug } else { usual }
}

/// A connection that will not be served: why (`None` when the server closed
/// it while its header or handshake was awaited), and the line to send it
/// before the close ([`Connection::refuse`], which its caller does once it
/// has counted the refusal, since the close lingers until the client has
/// gone).
pub struct Refusal {
    pub reason: Option<RefuseReason>,
    pub line: &'static [u8],
}

/// Reads the PROXY header when `--proxy-protocol` is on, takes a place in
/// the client address's count, then runs the TLS handshake when TLS is on.
/// Refuses the connection (and says why in the log, within `log`'s rate
/// limit) when any fails.
///
/// The load balancer's own connections (a PROXY header without a client
/// address, or naming the TCP peer itself: HAProxy's health checks) are
/// logged at debug level: HAProxy checks every backend every 2 s, which at
/// info level would be most of the log.
pub fn admit<'a>(
    conn: &Connection,
    checks: Checks<'a>,
    log: &ConnLog,
) -> Result<Admitted<'a>, Refusal> {
    let mut admitted_early = Vec::new();
    let mut health_check = false;
    if checks.proxy_protocol {
        match conn.read_proxy_header() {
            Ok((source, rest)) => {
                admitted_early = rest;
                // HAProxy's checks send a v2 LOCAL header, or with v1 the
                // check connection's own addresses: no client behind it.
                health_check = source == Source::Local || source == Source::Client(conn.peer);
            }
            Err(error) => {
                let refused = match conn.closed_by() {
                    Some(reason) => {
                        if log.admit(Event::Closed(reason)) {
                            log::info!("conn {} from {} closed: {reason}", conn.id, conn.peer);
                        }
                        None
                    }
                    None => {
                        let reason = RefuseReason::ProxyHeader;
                        if log.admit(Event::Refused(reason)) {
                            log::warn!(
                                "conn {} from {} refused: {reason}: {error}",
                                conn.id,
                                conn.peer
                            );
                        }
                        Some(reason)
                    }
                };
                return Err(Refusal {
                    reason: refused,
                    line: b"",
                });
            }
        }
    }
    let client = conn.client_addr();
    let Some(address) = checks.limits.claim(client.ip()) else {
        let reason = RefuseReason::PerIp;
        if log.admit(Event::Refused(reason)) {
            log::warn!("conn {} from {client} refused: {reason}", conn.id);
        }
        return Err(Refusal {
            reason: Some(reason),
            line: TOO_MANY_FROM_ADDRESS,
        });
    };
    let mut session = None;
    let mut named = String::new();
    if let Some(tls) = checks.tls {
        let deadline = handshake_deadline(conn.started, checks.idle_timeout);
        let accepted = conn
            .accept_tls(tls, &admitted_early, deadline)
            .map_err(|error| refuse_handshake(conn, &error, log))?;
        admitted_early.clear();
        if let Some(name) = accepted.client_name {
            named = format!(" ({name})");
        }
        session = Some(accepted.session);
    }
    let level = log_level(health_check, Level::Info);
    // A load balancer's health checks log at debug level, outside the limit.
    let written = health_check || log.admit(Event::Connected);
    if written && client == conn.peer {
        log::log!(level, "conn {} from {client}{named} connected", conn.id);
    } else if written {
        log::log!(
            level,
            "conn {} from {client}{named} connected via {}",
            conn.id,
            conn.peer
        );
    }
    Ok(Admitted {
        early: admitted_early,
        health_check,
        address,
        session,
    })
}

/// Refuses a connection whose handshake failed, logging why; nothing is
/// sent (the client expects TLS). The reaper closing it (idle timeout)
/// means the handshake did not finish in time: a refusal like any failed
/// handshake. Shutdown and the drain closing it are not refusals.
fn refuse_handshake(
    conn: &Connection,
    error: &crate::tls::HandshakeError,
    log: &ConnLog,
) -> Refusal {
    let client = conn.client_addr();
    let reason = match conn.closed_by() {
        Some(reason) if reason != CloseReason::IdleTimeout => {
            if log.admit(Event::Closed(reason)) {
                log::info!("conn {} from {client} closed: {reason}", conn.id);
            }
            None
        }
        closed_by => {
            let reason = RefuseReason::TlsHandshake;
            if log.admit(Event::Refused(reason)) {
                let error = match closed_by {
                    Some(_) => "timed out".to_string(),
                    None => error.to_string(),
                };
                log::warn!("conn {} from {client} refused: {reason}: {error}", conn.id);
            }
            Some(reason)
        }
    };
    Refusal { reason, line: b"" }
}
