//! TLS on both ends: hb-server and hb-client speak the line protocol inside
//! TLS 1.2 or 1.3, with rustls.
//!
//! rustls runs on the `ring` crypto provider: it cross-builds for
//! `x86_64-pc-windows-gnu` with mingw-w64 (the Windows build and its Wine
//! tests), and no OpenSSL is linked anywhere. Certificates and keys are PEM
//! files, parsed by rustls-pki-types; with `--tls` and no CA file, the
//! client trusts the OS's roots (rustls-native-certs).
//!
//! A session is a plain value driven over the blocking socket by whoever
//! owns the connection: no thread, no async runtime. On the server the
//! session lives in the connection's own thread; the reaper, shutdown and
//! the drain still close the raw TCP socket, which wakes that thread as it
//! does a plain connection's. The client's reader and writer threads share
//! one session: [`stream`] says how neither blocks the other.
//!
//! Map:
//! - this module: loading PEM files, and the errors of loading and of a
//!   handshake, in words an operator can act on.
//! - [`server`]: the server's certificate, key and client CA, reloadable
//!   (SIGHUP), and the handshake within a deadline.
//! - [`client`]: the client's trust (a CA file or the OS's roots), its
//!   optional certificate, and its handshake.
//! - [`stream`]: the established session as the server's connection thread
//!   and the client's reader and writer use it.
//! - [`subject`]: the common name of a certificate's subject, which names a
//!   client in the server's log.

pub mod client;
pub mod server;
pub mod stream;
pub mod subject;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The crypto provider of every session: ring (see the module doc).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS settings could not be loaded: a file, or what rustls said of its
/// contents. Its `Display` names the file.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// A file holds no usable PEM item of the kind wanted.
    Pem { path: PathBuf, problem: String },
    /// rustls refused what the files hold (e.g. a key that does not match
    /// the certificate).
    Rejected { what: String, source: rustls::Error },
    /// No trusted root certificate could be found (`--tls` without a CA
    /// file, on a system whose store is empty or unreadable).
    NoRoots(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Pem { path, problem } => write!(f, "{}: {problem}", path.display()),
            Self::Rejected { what, source } => write!(f, "{what}: {source}"),
            Self::NoRoots(why) => write!(f, "no trusted root certificates: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file, in order (a chain: the leaf first).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |problem: String| TlsError::Pem {
        path: path.to_owned(),
        problem,
    };
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE in this PEM file".into()));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        problem: format!("no private key in this PEM file ({e})"),
    })
}

/// The certificates of a CA file, as a store of trusted roots.
fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::Rejected {
            what: format!("CA certificate in {}", path.display()),
            source,
        })?;
    }
    Ok(roots)
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// It did not finish by its deadline.
    TimedOut,
    /// The peer closed the connection before it finished.
    Closed,
    /// The peer's messages were refused: a certificate that does not
    /// verify, no shared protocol version or cipher, or bytes that are not
    /// TLS at all (a plain-TCP client).
    Tls(rustls::Error),
    /// The server's certificate is not valid for the name checked (the
    /// host connected to, or `--tls-server-name`).
    NotValidFor(String),
    /// The peer answered in plain text with an `ERR` line (hb-server's
    /// refusals before the handshake: server full, too many connections
    /// from an address): its reason, the words after `ERR `, escaped.
    RefusedInPlainText(String),
    /// Reading or writing the socket failed.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("timed out"),
            Self::Closed => f.write_str("closed by the peer"),
            Self::Tls(e) => f.write_str(&explain(e)),
            Self::NotValidFor(name) => write!(
                f,
                "certificate not valid for {name:?} (--tls-server-name sets the name checked)"
            ),
            Self::RefusedInPlainText(reason) => write!(f, "refused in plain text: {reason}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl HandshakeError {
    /// Whether trying again may succeed: not when the peer's certificate or
    /// protocol was refused, which only a change of configuration mends.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Tls(_) | Self::NotValidFor(_))
    }
}

/// rustls's error in words that say what to fix, with the word
/// `certificate` whenever a certificate is the reason.
fn explain(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate not signed by a trusted CA (UnknownIssuer)".into()
        }
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "certificate expired".into()
        }
        Error::InvalidCertificate(other) => format!("invalid certificate: {other:?}"),
        Error::NoCertificatesPresented => "no client certificate presented".into(),
        Error::AlertReceived(alert) => format!("the peer refused the handshake: {alert:?}"),
        Error::InvalidMessage(_) => format!("not a TLS peer ({error})"),
        other => other.to_string(),
    }
}

/// Drives a handshake over a blocking socket until it is done, by
/// `deadline`: sends what the session has to send, reads what it needs.
/// `early` is what was already read from the socket (what followed a PROXY
/// header). Leaves the socket without read or write timeouts.
fn handshake<S: rustls::SideData>(
    session: &mut rustls::ConnectionCommon<S>,
    socket: &TcpStream,
    early: &[u8],
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let result = drive_handshake(session, socket, early, deadline);
    let cleared = socket
        .set_read_timeout(None)
        .and_then(|()| socket.set_write_timeout(None));
    result?;
    cleared.map_err(HandshakeError::Io)
}

fn drive_handshake<S: rustls::SideData>(
    session: &mut rustls::ConnectionCommon<S>,
    mut socket: &TcpStream,
    mut early: &[u8],
    deadline: Instant,
) -> Result<(), HandshakeError> {
    while !early.is_empty() {
        session.read_tls(&mut early).map_err(HandshakeError::Io)?;
        process(session, socket)?;
    }
    let mut reader = FirstBytes {
        socket,
        first: [0; FIRST_BYTES],
        len: 0,
    };
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HandshakeError::TimedOut);
        }
        socket
            .set_write_timeout(Some(remaining))
            .and_then(|()| socket.set_read_timeout(Some(remaining)))
            .map_err(HandshakeError::Io)?;
        while session.wants_write() {
            match session.write_tls(&mut socket) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(HandshakeError::TimedOut),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        if !session.is_handshaking() {
            return Ok(());
        }
        match session.read_tls(&mut reader) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => process(session, socket).map_err(|e| reader.explain(e))?,
            // The deadline check above turns a timed-out read into TimedOut.
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
}

/// How many of the first bytes received a handshake keeps, to show an
/// `ERR` line received in place of TLS: hb-server's longest is 44 bytes.
const FIRST_BYTES: usize = 64;

/// The socket as the handshake reads it, keeping the first bytes received.
struct FirstBytes<'a> {
    socket: &'a TcpStream,
    first: [u8; FIRST_BYTES],
    len: usize,
}

impl Read for FirstBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        let keep = n.min(FIRST_BYTES - self.len);
        self.first[self.len..self.len + keep].copy_from_slice(&buf[..keep]);
        self.len += keep;
        Ok(n)
    }
}

impl FirstBytes<'_> {
    /// `error`, or the refusal it stands for when the peer's first bytes
    /// were an `ERR` line.
    fn explain(&self, error: HandshakeError) -> HandshakeError {
        let Some(reason) = self.first[..self.len].strip_prefix(b"ERR ") else {
            return error;
        };
        let line = reason.split(|&b| b == b'\n').next().unwrap_or_default();
        HandshakeError::RefusedInPlainText(line.trim_ascii().escape_ascii().to_string())
    }
}

/// Processes what was read; on an error, sends the alert rustls prepared
/// (best effort: the socket has a write timeout) before returning it.
fn process<S: rustls::SideData>(
    session: &mut rustls::ConnectionCommon<S>,
    mut socket: &TcpStream,
) -> Result<(), HandshakeError> {
    session.process_new_packets().map(drop).map_err(|e| {
        let _ = session.write_tls(&mut socket);
        let _ = socket.flush();
        HandshakeError::Tls(e)
    })
}

/// A read or write timeout: WouldBlock on Unix, TimedOut on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
