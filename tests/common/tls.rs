//! Certificates for the TLS tests, made with rcgen into a fresh directory
//! (removed on drop): a CA, a server certificate for `localhost` and
//! 127.0.0.1, and a client certificate whose common name is `device-42`.
//! Also a TLS client built on rustls's own client, for tests that need
//! precise timing or many connections from the test process.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The common name of [`Pki::client_cert`].
pub const CLIENT_NAME: &str = "device-42";

/// A CA and certificates signed by it, as PEM files in [`Pki::dir`].
pub struct Pki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// A new CA named `ca_name`, with its server and client certificates.
    pub fn new(ca_name: &str) -> Pki {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hb-tls-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the certificates' directory");
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, ca_name);
        let key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let issuer = Issuer::new(params, key);
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let pki = Pki {
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            dir,
            issuer,
            ca,
        };
        pki.issue_server("localhost", &pki.server_cert, &pki.server_key);
        pki.issue(
            CLIENT_NAME,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            &pki.client_cert,
            &pki.client_key,
        );
        pki
    }

    /// A server certificate for `localhost` and 127.0.0.1 with common name
    /// `name`, written to `cert` and `key`.
    pub fn issue_server(&self, name: &str, cert: &Path, key: &Path) {
        self.issue(
            name,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            cert,
            key,
        );
    }

    fn issue(
        &self,
        name: &str,
        alt_names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        cert: &Path,
        key: &Path,
    ) {
        let alt_names: Vec<String> = alt_names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(alt_names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages.push(usage);
        let key_pair = KeyPair::generate().unwrap();
        let pem = params.signed_by(&key_pair, &self.issuer).unwrap().pem();
        std::fs::write(cert, pem).unwrap();
        std::fs::write(key, key_pair.serialize_pem()).unwrap();
    }

    /// The server flags for this CA's server certificate.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            arg_path(&self.server_cert),
            "--tls-key".into(),
            arg_path(&self.server_key),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A path as the binary under test takes it: a Windows path on drive Z:
/// (Wine's view of /) when another build runs under the launcher.
pub fn arg_path(path: &Path) -> String {
    let path = path.display().to_string();
    if super::other_build() {
        format!("Z:{}", path.replace('/', "\\"))
    } else {
        path
    }
}

/// A rustls client configuration trusting `ca`, presenting `client` (a
/// certificate and key) if given.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A TLS connection from the test process.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects to `addr` over TLS (the handshake happens with the first read
/// or write), with reads failing after [`super::PATIENCE`].
pub fn tls_connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsStream {
    let socket = super::connect(addr);
    tls_over(socket, config)
}

/// TLS over an already connected socket (e.g. after a PROXY header).
pub fn tls_over(socket: TcpStream, config: &Arc<rustls::ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(config.clone(), name).unwrap();
    rustls::StreamOwned::new(session, socket)
}

/// Sends `request` and checks that exactly `reply` comes back.
pub fn tls_round_trip(stream: &mut TlsStream, request: &[u8], reply: &[u8]) {
    stream.write_all(request).expect("send over TLS");
    stream.flush().expect("flush over TLS");
    let mut got = vec![0; reply.len()];
    stream
        .read_exact(&mut got)
        .expect("read the reply over TLS");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(reply)
    );
}
