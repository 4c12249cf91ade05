//! What an accepted connection passes before it is served: a PROXY header
//! when it comes from where one is expected (`--proxy-protocol`, or a
//! network of `--proxy-protocol-from`), whose source becomes the client's
//! address; then a place in that address's count (`--max-connections-per-ip`,
//! an IPv6 client counted by its prefix). Runs in the connection's own
//! thread (a header may take up to 5 s to arrive, which the accept loop
//! cannot wait for). It decides; [`super::outcome`] records.

use super::address::{Subscriber, TrustedProxies};
use super::connection::{Connection, RefuseReason};
use super::per_ip::{AddressLimits, AddressSlot};

/// Sent to a connection from an address at `--max-connections-per-ip`.
pub const TOO_MANY_FROM_ADDRESS: &[u8] = b"ERR too many connections from your address\n";

/// A connection let through: what came after its PROXY header, and its
/// place in its address's count, given back when dropped.
pub struct Admitted<'a> {
    pub early: Vec<u8>,
    pub address: AddressSlot<'a>,
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
}

/// Reads the PROXY header when `trusted` expects one from this peer, then
/// takes a place in the client's count.
pub fn admit<'a>(
    conn: &Connection,
    trusted: &TrustedProxies,
    limits: &'a AddressLimits,
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
    Ok(Admitted { early, address })
}
