//! The PROXY protocol header (versions 1 and 2) that a load balancer such as
//! HAProxy, AWS NLB, nginx or Envoy sends first on each connection, to pass
//! on the client's own address.
//!
//! [`parse`] is pure: it looks at the bytes arrived so far and says whether
//! they hold a whole header yet. The parsing itself is the `ppp` crate's,
//! which implements both versions as the specification
//! (haproxy.org/download/1.8/doc/proxy-protocol.txt) describes them.
//! [`read`] is the edge: it reads until a header is whole, however it is
//! split over TCP segments, within a deadline, and hands back the bytes that
//! came after it, which are the client's first data.

use ppp::{HeaderResult, PartialResult, v1, v2};
use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a connection may take to send its whole header. A load
/// balancer sends it at once with the connection's first segment; 5 s
/// leaves room for a slow network and still frees a silent connection's
/// thread soon.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest header: version 2's 16 fixed bytes and its 16-bit length.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// The longest version 1 header, CRLF included (the specification's 107).
const MAX_V1_HEADER: usize = 107;

/// Bytes read per `read` call while the header is incomplete.
const READ_CHUNK: usize = 4096;

/// Whose address a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's own address, as the load balancer saw it.
    Client(SocketAddr),
    /// No client: a version 2 `LOCAL` header (the load balancer's own
    /// connection, such as a health check) or a version 1 `UNKNOWN` one, or
    /// an address family other than IPv4 and IPv6. The TCP peer stands in.
    Local,
}

/// A whole header: whose address it carries and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub source: Source,
    pub len: usize,
}

/// Why a connection's header was not accepted.
#[derive(Debug)]
pub enum HeaderError {
    /// The peer closed the connection before a whole header arrived.
    Closed {
        received: usize,
    },
    /// The bytes are not a PROXY protocol header.
    Malformed(String),
    /// No whole header within [`HEADER_TIMEOUT`].
    TimedOut {
        received: usize,
    },
    Io(io::Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed { received: 0 } => write!(f, "closed before sending a PROXY header"),
            Self::Closed { received } => {
                write!(
                    f,
                    "closed after {received} bytes of an incomplete PROXY header"
                )
            }
            Self::Malformed(reason) => write!(f, "malformed PROXY header: {reason}"),
            Self::TimedOut { received } => write!(
                f,
                "no complete PROXY header within {}s ({received} bytes received)",
                HEADER_TIMEOUT.as_secs()
            ),
            Self::Io(e) => write!(f, "I/O error reading the PROXY header: {e}"),
        }
    }
}

/// Looks at the bytes received so far: `Ok(None)` while they could still
/// become a header, the header once it is whole, or why they never will.
pub fn parse(bytes: &[u8]) -> Result<Option<Header>, HeaderError> {
    // Version 1 is a line. ppp calls some prefixes of a valid line malformed
    // (one that ends in the space before a port), so a line goes to it only
    // once its end is there or it is longer than any header.
    if bytes.starts_with(b"PROXY ") && bytes.len() < MAX_V1_HEADER && !bytes.contains(&b'\n') {
        return Ok(None);
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        if bytes.len() >= MAX_HEADER {
            return Err(HeaderError::Malformed("longer than any header".into()));
        }
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(header)) => Ok(Some(Header {
            source: v1_source(&header.addresses),
            len: header.header.len(),
        })),
        HeaderResult::V2(Ok(header)) => Ok(Some(Header {
            source: v2_source(&header),
            len: header.len(),
        })),
        HeaderResult::V1(Err(e)) => Err(HeaderError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(HeaderError::Malformed(e.to_string())),
    }
}

fn v1_source(addresses: &v1::Addresses) -> Source {
    match addresses {
        v1::Addresses::Tcp4(a) => Source::Client((a.source_address, a.source_port).into()),
        v1::Addresses::Tcp6(a) => Source::Client((a.source_address, a.source_port).into()),
        v1::Addresses::Unknown => Source::Local,
    }
}

fn v2_source(header: &v2::Header<'_>) -> Source {
    if header.command == v2::Command::Local {
        return Source::Local;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Source::Client((a.source_address, a.source_port).into()),
        v2::Addresses::IPv6(a) => Source::Client((a.source_address, a.source_port).into()),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Source::Local,
    }
}

/// Reads from `stream` until a whole header has arrived, by `deadline`.
/// Returns it with the bytes that followed it in the same reads. Leaves the
/// stream without a read timeout.
pub fn read(stream: &TcpStream, deadline: Instant) -> Result<(Source, Vec<u8>), HeaderError> {
    let result = read_until_whole(stream, deadline);
    stream.set_read_timeout(None).map_err(HeaderError::Io)?;
    result
}

fn read_until_whole(
    mut stream: &TcpStream,
    deadline: Instant,
) -> Result<(Source, Vec<u8>), HeaderError> {
    let mut received = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        if let Some(header) = parse(&received)? {
            return Ok((header.source, received.split_off(header.len)));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HeaderError::TimedOut {
                received: received.len(),
            });
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(HeaderError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(HeaderError::Closed {
                    received: received.len(),
                });
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            // A read timeout is WouldBlock on Unix, TimedOut on Windows; the
            // deadline check above turns it into TimedOut.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(HeaderError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 header as HAProxy's `send-proxy-v2` writes it.
    fn v2_header(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    const V4_ADDRESSES: [u8; 12] = [10, 0, 0, 7, 10, 0, 0, 1, 0xd4, 0x31, 0x13, 0x8d];

    #[test]
    fn version_1_gives_the_client_address_and_its_length() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 54321 5005\r\n";
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"HeartBeat\n");
        let header = parse(&bytes).unwrap().unwrap();
        assert_eq!(header.len, line.len());
        assert_eq!(
            header.source,
            Source::Client("192.0.2.7:54321".parse().unwrap())
        );
        let v6 = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 5005\r\n").unwrap();
        assert_eq!(
            v6.unwrap().source,
            Source::Client("[2001:db8::7]:40000".parse().unwrap())
        );
        let unknown = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(unknown.source, Source::Local);
    }

    #[test]
    fn version_2_proxy_and_local() {
        let mut bytes = v2_header(1, 0x11, &V4_ADDRESSES);
        let len = bytes.len();
        bytes.extend_from_slice(b"data");
        let header = parse(&bytes).unwrap().unwrap();
        assert_eq!(header.len, len);
        assert_eq!(
            header.source,
            Source::Client("10.0.0.7:54321".parse().unwrap())
        );
        let local = parse(&v2_header(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!((local.source, local.len), (Source::Local, 16));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 54321 5005\r\n".to_vec();
        let v2 = v2_header(1, 0x11, &V4_ADDRESSES);
        for header in [v1, v2] {
            for end in 0..header.len() {
                assert!(
                    matches!(parse(&header[..end]), Ok(None)),
                    "prefix of {end} bytes of {header:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_malformed_at_once() {
        for garbage in [
            &b"HeartBeat\n"[..],
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 not-an-address 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
        ] {
            assert!(
                matches!(parse(garbage), Err(HeaderError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_version_1_line_without_its_end_is_malformed_past_107_bytes() {
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(HeaderError::Malformed(_))));
    }
}
