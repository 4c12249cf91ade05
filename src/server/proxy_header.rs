//! The PROXY protocol header (versions 1 and 2) that a load balancer such as
//! HAProxy, AWS NLB, nginx or Envoy sends first on each connection, to pass
//! on the client's own address.
//!
//! [`parse`] is pure: it looks at the bytes arrived so far and says whether
//! they hold a whole header yet. The parsing itself is the `ppp` crate's,
//! which implements both versions as the specification
//! (haproxy.org/download/1.8/doc/proxy-protocol.txt) describes them.
//! [`HeaderReader`] holds the bytes of a header being received, in a buffer
//! sized by what the header announces and never past [`MAX_HEADER`] (a
//! version 2 header announcing more is refused as soon as its length
//! arrives). [`read`] is the edge: it reads until a header is whole, however
//! it is split over TCP segments, within a deadline, and hands back the
//! bytes that came after it, which are the client's first data.

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

/// The longest header accepted: 4 KiB. A version 2 header may announce up
/// to 64 KiB of TLVs, but real load balancers send a few hundred bytes (AWS
/// NLB's VPC endpoint id, Azure's link id); at 64 KiB a thousand connections
/// that announce and stall held 76 MiB (docs/hardening.md). A header
/// announcing more is refused as soon as its length is read.
pub const MAX_HEADER: usize = 4096;

/// The longest version 1 header, CRLF included (the specification's 107).
const MAX_V1_HEADER: usize = 107;

/// Version 2's signature, and its fixed part: signature, version and
/// command, family, and the 16-bit length of what follows.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;

/// The first read's size: any version 1 header and its LF, or version 2's
/// fixed part with a TCP4 or TCP6 address block; read further only as far
/// as a version 2 header announces.
const FIRST_READ: usize = MAX_V1_HEADER + 1;

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
    /// A version 2 header announcing more than [`MAX_HEADER`] bytes in
    /// all.
    TooLong {
        announced: usize,
    },
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
            Self::TooLong { announced } => write!(
                f,
                "PROXY header of {announced} bytes announced, more than the {MAX_HEADER} allowed"
            ),
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
    if let Some(announced) = v2_announced(bytes) {
        if announced > MAX_HEADER {
            return Err(HeaderError::TooLong { announced });
        }
    }
    // Version 1 is a line. ppp calls some prefixes of a valid line malformed
    // (one that ends in the space before a port), so a line goes to it only
    // once its end is there or it is longer than any header.
    // What ppp takes for version 1: anything that starts so (afl found
    // `PROXY\r...`, which ppp calls incomplete however long).
    let v1 = bytes.starts_with(b"PROXY");
    if v1 && bytes.len() < MAX_V1_HEADER && !bytes.contains(&b'\n') {
        return Ok(None);
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        // A line with its LF (or past 107 bytes) that ppp still finds
        // incomplete will never be whole (the fuzzer found one: a NUL
        // inside, CRLF later).
        if v1 {
            return Err(HeaderError::Malformed("not a version 1 line".into()));
        }
        // Neither a line (those start `PROXY`) nor a version 2 header (whose
        // length is known by now): ppp waits on some such prefixes (afl
        // found one starting `P\r`), but nothing more can make them a
        // header, and the reader's buffer holds no more than this.
        if v2_announced(bytes).is_none() && bytes.len() >= FIRST_READ {
            return Err(HeaderError::Malformed("not a PROXY header".into()));
        }
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

/// The whole length a version 2 header announces, once its fixed part has
/// arrived.
fn v2_announced(bytes: &[u8]) -> Option<usize> {
    let fixed = bytes.get(..V2_FIXED)?;
    if !fixed.starts_with(V2_SIGNATURE) {
        return None;
    }
    Some(V2_FIXED + usize::from(u16::from_be_bytes([fixed[14], fixed[15]])))
}

/// What a [`HeaderReader`] makes of the bytes so far: the header's source
/// and the bytes that followed it once it is whole, `None` while more are
/// needed, or why these bytes are no header.
pub type Decision = Result<Option<(Source, Vec<u8>)>, HeaderError>;

/// The bytes of a header being received, in a buffer sized by what the
/// header announces: 108 bytes (any version 1 header), then a version 2 header's
/// announced length, never more than [`MAX_HEADER`]. Pure: the caller reads
/// into [`space`](Self::space) and reports with [`filled`](Self::filled).
#[derive(Debug, Default)]
pub struct HeaderReader {
    buffer: Vec<u8>,
    filled: usize,
}

impl HeaderReader {
    /// Where the next read goes: up to the end of what is expected so far.
    pub fn space(&mut self) -> &mut [u8] {
        let want = self.want();
        if self.buffer.len() < want {
            // Exact, so the capacity is what was announced and no more.
            self.buffer.reserve_exact(want - self.buffer.len());
            self.buffer.resize(want, 0);
        }
        &mut self.buffer[self.filled..want]
    }

    /// Takes `n` more bytes read into [`space`](Self::space), and says what
    /// they make.
    pub fn filled(&mut self, n: usize) -> Decision {
        self.filled = (self.filled + n).min(self.buffer.len());
        let received = &self.buffer[..self.filled];
        match parse(received)? {
            Some(header) => Ok(Some((header.source, received[header.len..].to_vec()))),
            // Unreachable for what ppp parses today (a line ends by 107
            // bytes, a version 2 header at its length); kept so that a
            // reader never waits with no space to read into.
            None if self.filled >= self.want() => Err(HeaderError::Malformed(
                "no end where the header should end".into(),
            )),
            None => Ok(None),
        }
    }

    /// How many bytes the header may take, as far as is known: a version 2
    /// header's announced length once read, else [`FIRST_READ`].
    fn want(&self) -> usize {
        v2_announced(&self.buffer[..self.filled])
            .unwrap_or(FIRST_READ)
            .clamp(FIRST_READ, MAX_HEADER)
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.filled
    }

    /// The buffer's size, never above [`MAX_HEADER`].
    pub fn capacity(&self) -> usize {
        self.buffer.capacity()
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
    let mut reader = HeaderReader::default();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HeaderError::TimedOut {
                received: reader.received(),
            });
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(HeaderError::Io)?;
        match stream.read(reader.space()) {
            Ok(0) => {
                return Err(HeaderError::Closed {
                    received: reader.received(),
                });
            }
            Ok(n) => {
                if let Some(whole) = reader.filled(n)? {
                    return Ok(whole);
                }
            }
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
    fn a_line_ppp_finds_incomplete_once_it_ends_is_malformed() {
        let mut line = b"PROXY TCP4 1111111111\x00111\r\n".to_vec();
        line.extend_from_slice(&[0; 40]);
        assert!(matches!(parse(&line), Err(HeaderError::Malformed(_))));
        let mut no_space = b"PROXY\rTCP4 ".to_vec();
        no_space.extend_from_slice(&[b'1'; 100]);
        assert!(matches!(parse(&no_space), Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn neither_a_line_nor_a_version_2_header_is_malformed_by_the_first_read() {
        // What afl found (make fuzz in CI): ppp called it incomplete, so the
        // whole input waited while the reader, its 108 bytes full, refused.
        let mut found =
            b"P\rP\r\n\r@OP\x06\x0ff\xffRR 192.0RRR\x12=RRRRR\0\x7fRbbbbbbbb\x06\x0fO".to_vec();
        found.extend_from_slice(b"PROXY TC>\xff 1bbb\x0fOPR 1");
        found.resize(FIRST_READ + 20, 0xff);
        assert!(matches!(parse(&found), Err(HeaderError::Malformed(_))));
        assert!(matches!(
            parse(&found[..FIRST_READ]),
            Err(HeaderError::Malformed(_))
        ));
        let (_, split) = read_in_steps(&found, 7);
        assert!(matches!(split, Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn a_version_1_line_without_its_end_is_malformed_past_107_bytes() {
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(HeaderError::Malformed(_))));
    }

    /// Feeds `bytes` to a reader in reads of at most `step` bytes.
    fn read_in_steps(bytes: &[u8], step: usize) -> (HeaderReader, Decision) {
        let mut reader = HeaderReader::default();
        let mut rest = bytes;
        loop {
            let space = reader.space();
            let n = space.len().min(step).min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            match reader.filled(n) {
                Ok(None) if !rest.is_empty() => {}
                result => return (reader, result),
            }
        }
    }

    #[test]
    fn a_header_announcing_more_than_4_kib_is_refused_at_its_length() {
        let mut bytes = v2_header(1, 0x11, &V4_ADDRESSES);
        bytes[14..16].copy_from_slice(&60_000u16.to_be_bytes());
        assert!(matches!(
            parse(&bytes[..16]),
            Err(HeaderError::TooLong { announced: 60_016 })
        ));
        let (reader, result) = read_in_steps(&bytes, 16);
        assert!(
            matches!(result, Err(HeaderError::TooLong { .. })),
            "{result:?}"
        );
        assert!(reader.capacity() <= FIRST_READ, "{}", reader.capacity());
        let mut edge = v2_header(1, 0x11, &V4_ADDRESSES);
        edge[14..16].copy_from_slice(&((MAX_HEADER - 15) as u16).to_be_bytes());
        assert!(matches!(
            parse(&edge[..16]),
            Err(HeaderError::TooLong { announced: 4097 })
        ));
    }

    #[test]
    fn a_header_with_a_kibibyte_of_tlvs_is_read_in_a_buffer_of_its_size() {
        let mut addresses = V4_ADDRESSES.to_vec();
        // One TLV of type 0xE0 (custom) holding 1021 bytes: 1024 in all.
        addresses.extend_from_slice(&[0xE0, 0x03, 0xFD]);
        addresses.extend_from_slice(&[b'x'; 1021]);
        let mut bytes = v2_header(1, 0x11, &addresses);
        let header_len = bytes.len();
        bytes.extend_from_slice(b"HeartBeat\n");
        for step in [1, 7, 16, 100, 4096] {
            let (reader, result) = read_in_steps(&bytes, step);
            let (source, early) = result.expect("valid").expect("whole");
            assert_eq!(source, Source::Client("10.0.0.7:54321".parse().unwrap()));
            assert!(b"HeartBeat\n".starts_with(&early), "step {step}: {early:?}");
            assert_eq!(reader.capacity(), header_len, "step {step}");
        }
    }
}
