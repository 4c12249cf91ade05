//! The client's TLS: whom it trusts (`--tls-ca FILE`, else the OS's roots),
//! the name it checks (`--tls-server-name`, else the host of `--connect`),
//! the certificate it presents (`--tls-cert`, `--tls-key`), and its
//! handshake, which must finish before anything of the user's is sent.

use super::{HandshakeError, TlsError, load_certificates, load_private_key, load_roots};
use rustls::{CertificateError, ClientConnection};
use rustls_pki_types::ServerName;
use std::fmt;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What the client's TLS flags ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// Trust the CAs in this PEM file instead of the OS's roots.
    pub ca: Option<PathBuf>,
    /// Check the server's certificate against this name instead of the
    /// host of the address connected to.
    pub server_name: Option<String>,
    /// Present this certificate chain, with `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The client's TLS configuration, built once and used for every
/// connection (and every reconnection).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
    /// For the start-up log line.
    trusting: String,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("trusting", &self.trusting)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub fn new(settings: &ClientTlsSettings) -> Result<Self, TlsError> {
        if let Some(name) = &settings.server_name {
            ServerName::try_from(name.as_str()).map_err(|e| TlsError::Rejected {
                what: format!("--tls-server-name {name:?}"),
                source: rustls::Error::General(e.to_string()),
            })?;
        }
        let (roots, trusting) = match &settings.ca {
            Some(path) => (load_roots(path)?, format!("CA {}", path.display())),
            None => (native_roots()?, "the system's root CAs".to_string()),
        };
        let builder = rustls::ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rejected {
                what: "TLS protocol versions".into(),
                source,
            })?
            .with_root_certificates(roots);
        let config = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certificates(cert)?, load_private_key(key)?)
                .map_err(|source| TlsError::Rejected {
                    what: format!(
                        "client certificate {} with key {}",
                        cert.display(),
                        key.display()
                    ),
                    source,
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
            server_name: settings.server_name.clone(),
            trusting,
        })
    }

    /// Says what the server's certificate is checked against, for the log.
    pub fn describe(&self, host: &str) -> String {
        format!(
            "TLS: the server's certificate must be valid for {} and signed by {}",
            self.server_name.as_deref().unwrap_or(host),
            self.trusting
        )
    }

    /// Runs the client's side of a handshake on `socket` by `deadline`,
    /// checking the certificate against `--tls-server-name`, else `host`
    /// (the host part of the address connected to).
    pub fn connect(
        &self,
        socket: &TcpStream,
        host: &str,
        deadline: Instant,
    ) -> Result<ClientConnection, HandshakeError> {
        let name_checked = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name_checked.to_string()).map_err(|e| {
            HandshakeError::Tls(rustls::Error::General(format!(
                "{name_checked:?} cannot be checked against a certificate ({e}): set --tls-server-name"
            )))
        })?;
        let mut session =
            ClientConnection::new(self.config.clone(), name).map_err(HandshakeError::Tls)?;
        super::handshake(&mut session, socket, &[], deadline).map_err(|e| match e {
            HandshakeError::Tls(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => HandshakeError::NotValidFor(name_checked.to_string()),
            other => other,
        })?;
        Ok(session)
    }
}

/// The OS's trusted roots: what it could read of them, or why none.
fn native_roots() -> Result<rustls::RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!("the system's store could not be read ({e}); use --tls-ca FILE"),
            None => "the system's store is empty; use --tls-ca FILE".to_string(),
        };
        return Err(TlsError::NoRoots(why));
    }
    Ok(roots)
}

/// The host part of `HOST:PORT` or `[V6]:PORT`: the name a certificate is
/// checked against by default.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_address_without_its_port() {
        assert_eq!(host_of("example.com:5005"), "example.com");
        assert_eq!(host_of("127.0.0.1:5005"), "127.0.0.1");
        assert_eq!(host_of("[::1]:5005"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
