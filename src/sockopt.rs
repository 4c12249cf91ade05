//! TCP keepalive and TCP_USER_TIMEOUT, set the same way on every OS.
//!
//! Keepalive lets the kernel judge the network: after `idle` without traffic
//! it probes every `interval`, and closes the connection after `count`
//! unanswered probes (on Windows, socket2 sets these through
//! SIO_KEEPALIVE_VALS and TCP_KEEPCNT). Keepalive is silent while data is
//! unacknowledged, so TCP_USER_TIMEOUT bounds how long sent data may stay
//! unacknowledged before the kernel gives up. Only Linux has it; elsewhere it
//! is reported as unsupported and not set.

use socket2::{SockRef, TcpKeepalive};
use std::io;
use std::net::TcpStream;
use std::time::Duration;

/// TCP keepalive probing: first probe after `idle`, then every `interval`,
/// close after `count` unanswered probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Keepalive {
    /// How long a dead network stays unnoticed on an idle connection.
    pub fn detection_time(&self) -> Duration {
        self.idle + self.interval * self.count
    }
}

/// The socket options applied to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketOptions {
    /// `None` leaves keepalive off.
    pub keepalive: Option<Keepalive>,
    /// `None` leaves TCP_USER_TIMEOUT at the OS default (off).
    pub user_timeout: Option<Duration>,
}

/// Whether this OS supports TCP_USER_TIMEOUT.
pub const USER_TIMEOUT_SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Applies `options` to `stream`.
pub fn apply(stream: &TcpStream, options: &SocketOptions) -> io::Result<()> {
    let socket = SockRef::from(stream);
    if let Some(k) = options.keepalive {
        let params = TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.count);
        socket.set_tcp_keepalive(&params)?;
    }
    if let Some(timeout) = options.user_timeout {
        set_user_timeout(&socket, timeout)?;
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(socket: &SockRef<'_>, timeout: Duration) -> io::Result<()> {
    socket.set_tcp_user_timeout(Some(timeout))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_socket: &SockRef<'_>, _timeout: Duration) -> io::Result<()> {
    // Callers check USER_TIMEOUT_SUPPORTED and warn once at start.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn options_are_set_on_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let options = SocketOptions {
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(7),
                interval: Duration::from_secs(3),
                count: 4,
            }),
            user_timeout: Some(Duration::from_millis(2500)),
        };
        apply(&stream, &options).unwrap();
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        {
            assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
            assert_eq!(
                socket.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(3)
            );
            assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
            assert_eq!(
                socket.tcp_user_timeout().unwrap(),
                Some(Duration::from_millis(2500))
            );
        }
    }
}
