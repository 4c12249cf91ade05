//! The server's TLS: its certificate and key, the CA its clients'
//! certificates must be signed by (`--tls-client-ca`), reloading them
//! without a restart, and the handshake of each new connection.
//!
//! [`ServerTls`] holds the files' paths and the configuration built from
//! them. A reload (SIGHUP, from `hb-server`'s main thread) builds a new
//! configuration from the same paths and swaps it in whole: connections
//! that start afterwards use it, open ones keep the session they have
//! (their keys are their own), and a reload that fails leaves the last good
//! configuration in place. So rotating a certificate is: write the new
//! files, then send SIGHUP.

use super::{HandshakeError, TlsError, load_certificates, load_private_key, load_roots};
use parking_lot::RwLock;
use rustls::ServerConnection;
use rustls::server::WebPkiClientVerifier;
use std::fmt;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a handshake may take, when the idle timeout is longer: a
/// client's first flight arrives within a round trip or two; 10 s leaves
/// room for a slow network and still frees a silent connection's thread.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of the server's TLS settings (`--tls-cert`, `--tls-key`,
/// `--tls-client-ca`), PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, every client must present a certificate signed by a CA in
    /// this file.
    pub client_ca: Option<PathBuf>,
}

/// The server's TLS settings, reloadable while it serves.
pub struct ServerTls {
    files: TlsFiles,
    /// Read (an `Arc` clone) by each connection's thread as its handshake
    /// starts; replaced whole by [`reload`](Self::reload). A read-write lock,
    /// not a mutex: reloads are rare, handshakes many and concurrent.
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files; fails when one is unreadable, holds no certificate
    /// or key, or the key does not match the certificate.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(config),
        })
    }

    /// Loads the files again, for connections that start from now on. On an
    /// error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        *self.current.write() = config;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Runs the server's side of a handshake on `socket` by `deadline`.
    /// `early` holds bytes already read from the socket (after a PROXY
    /// header). Returns the established session and, when the client
    /// presented a certificate, its subject's common name.
    pub fn accept(
        &self,
        socket: &TcpStream,
        early: &[u8],
        deadline: Instant,
    ) -> Result<Accepted, HandshakeError> {
        let config = self.current.read().clone();
        let mut session = ServerConnection::new(config).map_err(HandshakeError::Tls)?;
        super::handshake(&mut session, socket, early, deadline)?;
        let client_name = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| super::subject::common_name(leaf));
        Ok(Accepted {
            session: Box::new(session),
            client_name,
        })
    }
}

/// A connection whose handshake finished.
pub struct Accepted {
    /// Boxed: it moves from the handshake into the connection's stream, and
    /// a few hundred bytes are better moved as a pointer.
    pub session: Box<ServerConnection>,
    /// The common name of the client certificate's subject, escaped for
    /// the log.
    pub client_name: Option<String>,
}

/// The handshake's deadline for a connection accepted at `start`: at most
/// [`HANDSHAKE_TIMEOUT`], and no later than the idle timeout would close it.
pub fn handshake_deadline(start: Instant, idle_timeout: Option<Duration>) -> Instant {
    let timeout = idle_timeout.map_or(HANDSHAKE_TIMEOUT, |idle| idle.min(HANDSHAKE_TIMEOUT));
    start + timeout
}

fn build(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certificates(&files.cert)?;
    let key = load_private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            what: "TLS protocol versions".into(),
            source,
        })?;
    let builder = match &files.client_ca {
        Some(path) => {
            let roots = Arc::new(load_roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, super::provider())
                .build()
                .map_err(|e| TlsError::Rejected {
                    what: format!("client CA {}", path.display()),
                    source: rustls::Error::General(e.to_string()),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Rejected {
            what: format!(
                "certificate {} with key {}",
                files.cert.display(),
                files.key.display()
            ),
            source,
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_deadline_is_ten_seconds_or_the_idle_timeout_if_shorter() {
        let start = Instant::now();
        let secs = Duration::from_secs;
        assert_eq!(handshake_deadline(start, None), start + secs(10));
        assert_eq!(handshake_deadline(start, Some(secs(60))), start + secs(10));
        assert_eq!(handshake_deadline(start, Some(secs(3))), start + secs(3));
    }
}
