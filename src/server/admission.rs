//! What an accepted connection passes before it is served: with
//! `--proxy-protocol` a PROXY header, whose source becomes the client's
//! address; then a place in that address's count (`--max-connections-per-ip`).
//! A connection that fails either is refused here, in its own thread (a
//! header may take up to 5 s to arrive, which the accept loop cannot wait
//! for), and the refusal is logged with its reason.

use super::conn_log::{ConnLog, Event};
use super::connection::{Connection, RefuseReason};
use super::per_ip::{AddressLimits, AddressSlot};
use super::proxy_header::Source;
use log::Level;

/// Sent to a connection from an address at `--max-connections-per-ip`.
pub const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERR too many connections from your address\n";

/// A connection let through: what came after its PROXY header, whether it
/// is the load balancer's health check, and its place in its address's
/// count, given back when dropped.
pub struct Admitted<'a> {
    pub early: Vec<u8>,
    pub health_check: bool,
    pub address: AddressSlot<'a>,
}

/// The level of a line about a connection that is `usual` for a client's:
/// debug for a health check.
pub fn log_level(health_check: bool, usual: Level) -> Level {
    if health_check { Level::Debug } else { usual }
}

/// A connection that will not be served: why (`None` when the server closed
/// it while its header was awaited), and the line to send it before the
/// close ([`Connection::refuse`], which its caller does once it has counted
/// the refusal, since the close lingers until the client has gone).
pub struct Refusal {
    pub reason: Option<RefuseReason>,
    pub line: &'static [u8],
}

/// Reads the PROXY header when `--proxy-protocol` is on, then takes a place
/// in the client address's count. Refuses the connection (and says why in
/// the log, within `log`'s rate limit) when either fails.
///
/// The load balancer's own connections (a PROXY header without a client
/// address, or naming the TCP peer itself: HAProxy's health checks) are
/// logged at debug level: HAProxy checks every backend every 2 s, which at
/// info level would be most of the log.
pub fn admit<'a>(
    conn: &Connection,
    proxy_protocol: bool,
    limits: &'a AddressLimits,
    log: &ConnLog,
) -> Result<Admitted<'a>, Refusal> {
    let mut admitted_early = Vec::new();
    let mut health_check = false;
    if proxy_protocol {
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
    let Some(address) = limits.claim(client.ip()) else {
        let reason = RefuseReason::PerIp;
        if log.admit(Event::Refused(reason)) {
            log::warn!("conn {} from {client} refused: {reason}", conn.id);
        }
        return Err(Refusal {
            reason: Some(reason),
            line: TOO_MANY_FROM_ADDRESS,
        });
    };
    let level = log_level(health_check, Level::Info);
    // A load balancer's health checks log at debug level, outside the limit.
    let written = health_check || log.admit(Event::Connected);
    if written && client == conn.peer {
        log::log!(level, "conn {} from {client} connected", conn.id);
    } else if written {
        log::log!(
            level,
            "conn {} from {client} connected via {}",
            conn.id,
            conn.peer
        );
    }
    Ok(Admitted {
        early: admitted_early,
        health_check,
        address,
    })
}
