//! Opening many connections to one server from one process, plain or TLS.
//!
//! A client connection to one server address needs a free local port, and a
//! loopback source address has only the ephemeral range's ports (about
//! 28,000 on Linux), fewer still while closed connections sit in TIME_WAIT.
//! When the kernel reports none left, the connector moves on to the next
//! loopback source address (127.0.0.2, 127.0.0.3, ...), each bringing a
//! fresh range. Only a loopback IPv4 target can be reached from those.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long one connect may take: a full accept backlog drops SYNs, and the
/// kernel retries after 1 s, 3 s, ...; longer than that is a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The last source address tried: 127.0.0.254.
const LAST_SOURCE: u8 = 253;

/// TLS for every connection (`--tls-ca`): the connector and the name the
/// server's certificate is checked against.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// Trusts the CAs in `ca`, checks certificates for `name`. Session
    /// resumption is off, so every connection is a full handshake: churn
    /// then counts full handshakes per second.
    pub fn new(ca: &Path, name: &str) -> Result<Self, String> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let certs = tcp_heartbeat::tls::load_certificates(ca).map_err(|e| e.to_string())?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = tokio_rustls::rustls::client::Resumption::disabled();
        let name = ServerName::try_from(name.to_string()).map_err(|e| format!("{name:?}: {e}"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A connection of the load generator: plain TCP or TLS over it (boxed: a
/// session is about a kilobyte, and plain streams are passed around too).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Opens connections to one target, spreading source addresses on demand.
#[derive(Debug)]
pub struct Connector {
    target: SocketAddr,
    tls: Option<Tls>,
    /// 0: let the kernel choose; k: bind to 127.0.0.(k+1). Only grows; read
    /// and advanced by every connecting task, hence an atomic.
    source: AtomicU8,
}

impl Connector {
    pub fn new(target: SocketAddr, tls: Option<Tls>) -> Self {
        Self {
            target,
            tls,
            source: AtomicU8::new(0),
        }
    }

    /// How many source addresses were used so far.
    pub fn sources_used(&self) -> usize {
        usize::from(self.source.load(Ordering::Relaxed)) + 1
    }

    /// Connects with TCP_NODELAY set (replies must not wait for Nagle), and
    /// with TLS runs the handshake, bounded by the connect timeout too.
    pub async fn connect(&self) -> io::Result<Stream> {
        let socket = self.connect_tcp().await?;
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(socket));
        };
        let handshake = tls.connector.connect(tls.name.clone(), socket);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Stream::Tls(Box::new(stream)))
    }

    async fn connect_tcp(&self) -> io::Result<TcpStream> {
        loop {
            let source = self.source.load(Ordering::Relaxed);
            match self.connect_from(source).await {
                Err(e) if ports_exhausted(&e) && self.can_spread(source) => {
                    // Another task may have advanced it already: fine.
                    let _ = self.source.compare_exchange(
                        source,
                        source + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                result => return result,
            }
        }
    }

    fn can_spread(&self, source: u8) -> bool {
        source < LAST_SOURCE && matches!(self.target.ip(), IpAddr::V4(ip) if ip.is_loopback())
    }

    async fn connect_from(&self, source: u8) -> io::Result<TcpStream> {
        let connecting = async {
            if source == 0 {
                return TcpStream::connect(self.target).await;
            }
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, source + 1), 0)))?;
            socket.connect(self.target).await
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| io::Error::new(ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn ports_exhausted(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::AddrNotAvailable | ErrorKind::AddrInUse)
}

/// Connections opened at once by [`open_all`]: enough to be quick, few
/// enough that a server's accept backlog is never flooded into SYN retries.
const CONNECTS_IN_FLIGHT: usize = 256;

/// Opens `count` connections, a bounded number at a time, ticking `bar`.
/// Returns the open streams and the first error of the ones that failed.
pub async fn open_all(
    connector: &std::sync::Arc<Connector>,
    count: usize,
    bar: &indicatif::ProgressBar,
) -> (Vec<Stream>, usize, Option<io::Error>) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let connector = connector.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            // The semaphore is never closed.
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            (index, connector.connect().await)
        });
    }
    let mut streams = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        bar.inc(1);
        match joined
            .map_err(io::Error::other)
            .and_then(|(i, r)| Ok((i, r?)))
        {
            Ok(indexed) => streams.push(indexed),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    // Keep the order of opening, so staggered schedules follow it.
    streams.sort_by_key(|(i, _)| *i);
    let streams = streams.into_iter().map(|(_, s)| s).collect();
    (streams, failed, first_error)
}
