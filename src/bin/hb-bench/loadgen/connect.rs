//! Opening many connections to one server from one process.
//!
//! A client connection to one server address needs a free local port, and a
//! loopback source address has only the ephemeral range's ports (about
//! 28,000 on Linux), fewer still while closed connections sit in TIME_WAIT.
//! When the kernel reports none left, the connector moves on to the next
//! loopback source address (127.0.0.2, 127.0.0.3, ...), each bringing a
//! fresh range. Only a loopback IPv4 target can be reached from those.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// How long one connect may take: a full accept backlog drops SYNs, and the
/// kernel retries after 1 s, 3 s, ...; longer than that is a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The last source address tried: 127.0.0.254.
const LAST_SOURCE: u8 = 253;

/// Opens connections to one target, spreading source addresses on demand.
#[derive(Debug)]
pub struct Connector {
    target: SocketAddr,
    /// 0: let the kernel choose; k: bind to 127.0.0.(k+1). Only grows; read
    /// and advanced by every connecting task, hence an atomic.
    source: AtomicU8,
}

impl Connector {
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            source: AtomicU8::new(0),
        }
    }

    /// How many source addresses were used so far.
    pub fn sources_used(&self) -> usize {
        usize::from(self.source.load(Ordering::Relaxed)) + 1
    }

    /// Connects with TCP_NODELAY set (replies must not wait for Nagle).
    pub async fn connect(&self) -> io::Result<TcpStream> {
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
) -> (Vec<TcpStream>, usize, Option<io::Error>) {
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
